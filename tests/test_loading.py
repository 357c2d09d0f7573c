"""Loading published layouts by Hub id, offline, from a Hugging Face cache laid out as huggingface_hub does."""

import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, TINY

import mglab
from mglab.onnx import hub

sys.path.insert(0, str(ROOT / "scripts"))
from build_tiny_model import gabotechs_copy  # noqa: E402

REV = "0123456789abcdef0123456789abcdef01234567"


def lay_out_cache(hub_dir: Path, repo_id: str, src: Path) -> Path:
    """Copy ``src`` into ``hub_dir`` the way huggingface_hub stores a download: blobs + snapshot symlinks."""
    repo = hub_dir / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REV)
    for f in sorted(src.rglob("*")):
        if f.is_dir() or "pytorch" in f.parts:
            continue
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / REV / f.relative_to(src)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return repo / "snapshots" / REV


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("hf_home")
    lay_out_cache(home / "hub", "Xenova/musicgen-small", TINY)
    gabo = tmp_path_factory.mktemp("gabo")
    gabotechs_copy(TINY, gabo)
    lay_out_cache(home / "hub", "gabotechs/music_gen", gabo)
    return home


OFFLINE_SCRIPT = r"""
import json, sys, mglab
out = {}
for repo, kw in [("Xenova/musicgen-small", dict(dtype="fp32")), ("Xenova/musicgen-small", dict(dtype="q8")),
                 ("Xenova/musicgen-small", dict(dtype="fp16")),
                 ("Xenova/musicgen-small", dict(dtype={"decoder_model_merged": "q4"})),
                 ("Xenova/musicgen-small", dict(dtype="fp32", decoder="split")),
                 ("gabotechs/music_gen", dict(size="small", dtype="fp32")),
                 ("gabotechs/music_gen", dict(size="small", dtype="fp16")),
                 ("gabotechs/music_gen", dict(dtype="q8"))]:
    m = mglab.load(repo, **kw)
    g = m.generate(["lofi piano", "rock"], max_new_tokens=24, do_sample=False)
    out[repo + " " + json.dumps(kw)] = dict(tokens=g.tokens.tolist(), finite=bool((abs(g.audio) < 10).all()),
                                            peak=float(abs(g.audio).max()), layout=m.files.layout,
                                            files=[str(p) for p in m.paths.values()])
print(json.dumps(out))
"""


def test_load_by_id_offline_every_variant(hf_home):
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = json.loads(res.stdout.strip().splitlines()[-1])
    local = mglab.load(TINY).generate(["lofi piano", "rock"], max_new_tokens=24, do_sample=False).tokens
    for name, run in runs.items():
        assert run["finite"] and run["peak"] > 1e-3, name
        assert all(str(hf_home) in f for f in run["files"]), name          # loaded from the cache, by id
        if '"fp32"' in name:
            np.testing.assert_array_equal(np.array(run["tokens"]), local, err_msg=name)
    assert runs['gabotechs/music_gen {"dtype": "q8"}']["layout"] == "gabotechs"
    assert any("small_i8" in f for f in runs['gabotechs/music_gen {"dtype": "q8"}']["files"])


def test_local_files_only_and_cache_dir(hf_home):
    m = mglab.load("Xenova/musicgen-small", dtype="q8", local_files_only=True, cache_dir=hf_home / "hub")
    assert m.dtype == "q8" and "decoder_model_merged_quantized.onnx" in str(m.paths["decoder_model_merged"])
    ref = mglab.load(TINY, dtype="q8").generate("jazz", max_new_tokens=16, seed=0)
    np.testing.assert_array_equal(m.generate("jazz", max_new_tokens=16, seed=0).tokens, ref.tokens)


def test_offline_with_nothing_cached_says_what_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not in the Hugging Face cache.*huggingface-cli download "
                                                r"Xenova/musicgen-small"):
        mglab.load("Xenova/musicgen-small", dtype="q8", local_files_only=True, cache_dir=tmp_path)


def test_only_the_chosen_variant_is_asked_for():
    pats = hub.allow_patterns({"text_encoder": "q8", "decoder_model_merged": "q8", "encodec_decode": "fp32"},
                              size=None)
    assert "onnx/decoder_model_merged_quantized.onnx" in pats and "onnx/encodec_decode.onnx" in pats
    assert not any(p.startswith("onnx/decoder_model_merged.onnx") for p in pats)
    assert not any("*" in p and not p.split("*")[0].endswith(".onnx_data") for p in pats)   # no blanket globs
    gabo = hub.allow_patterns({"decoder_model_merged": "fp16"}, size="medium")
    assert "medium_fp16/decoder_model_merged.onnx" in gabo and "medium_fp16/decoder_model_merged.onnx_data*" in gabo


def test_dtype_per_component_and_missing_variant(tiny_path):
    m = mglab.load(tiny_path, dtype={"text_encoder": "fp16", "decoder_model_merged": "q4"})
    assert m.dtype == {"text_encoder": "fp16", "decoder_model_merged": "q4", "encodec_decode": "fp32"}
    assert np.isfinite(m.generate("a", max_new_tokens=12, seed=0).audio).all()
    with pytest.raises(FileNotFoundError, match=r"variants present: \['fp32', 'fp16', 'q8'\].*dict"):
        mglab.load(tiny_path, dtype="q4")
    with pytest.raises(ValueError, match="dtype key 'decodr'"):
        mglab.load(tiny_path, dtype={"decodr": "q8"})


def test_fp16_graphs_take_fp16_kv_and_give_float32(tiny_path):
    m = mglab.load(tiny_path, dtype="fp16")
    g, cache = m.run_with_cache("a", names_filter=["decoder.layers.0.hook_key", "guidance.hook_logits"],
                                max_new_tokens=12, seed=0)
    assert cache["decoder.layers.0.hook_key"].dtype == np.float16
    assert cache["guidance.hook_logits"].dtype == np.float32 and g.audio.dtype == np.float32


def test_gabotechs_layout_with_external_data(tmp_path, tiny_path):
    gabotechs_copy(tiny_path, tmp_path)
    assert (tmp_path / "small_fp32" / "decoder_model_merged.onnx_data").is_file()
    m = mglab.load(tmp_path, dtype="fp32")
    assert m.files.size == "small"
    np.testing.assert_array_equal(m.generate("a", max_new_tokens=12, seed=0).tokens,
                                  mglab.load(tiny_path).generate("a", max_new_tokens=12, seed=0).tokens)
    info = m.info()
    assert info["components"]["decoder_model_merged"]["mb"] > 0.5     # external data counted
    with pytest.raises(ValueError, match="size='large'.*sizes present: \\['small'\\]"):
        mglab.load(tmp_path, size="large")


def test_unavailable_provider_falls_back_with_a_warning(tiny_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = mglab.load(tiny_path, device="cuda")
    assert m.providers == ["CPUExecutionProvider"]
    assert any("CUDAExecutionProvider" in str(w.message) and "using ['CPUExecutionProvider']" in str(w.message)
               for w in caught)
    with pytest.raises(ValueError, match="device='tpu'"):
        mglab.load(tiny_path, device="tpu")
    with pytest.raises(ValueError, match="not both"):
        mglab.load(tiny_path, device="cpu", providers=["CPUExecutionProvider"])


def test_info(tiny_path):
    m = mglab.load(tiny_path, dtype="q8")
    info = m.info()
    assert info["layout"] == "xenova" and info["decoder"] == "merged" and info["layers"] == 2
    assert info["codebooks"] == 4 and info["sample_rate"] == 32000 and info["frame_rate"] == 50
    assert set(info["components"]) == {"text_encoder", "decoder_model_merged", "encodec_decode"}
    assert all(c["dtype"] == "q8" for c in info["components"].values())
    assert "MusicGen" in m._repr_html_() and "q8" in repr(m)


def test_not_a_folder_nor_an_id(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model folder, and not a Hub id"):
        mglab.load(tmp_path / "nope" / "deeper")


def test_optimized_graphs_are_cached_and_give_the_same_tokens(tiny_path, tmp_path, monkeypatch):
    from mglab.onnx.session import optimized_folder

    monkeypatch.setenv("MGLAB_CACHE", str(tmp_path))
    first = mglab.load(tiny_path, decoder="split")
    used = [p for name, p in first.paths.items() if name != "decoder_with_past_model"]   # in-place graph instead
    assert all((optimized_folder(p) / "model.onnx").is_file() for p in used + [first.decoder.inplace.path])
    assert not optimized_folder(first.paths["decoder_with_past_model"]).exists()
    again = mglab.load(tiny_path, decoder="split")
    kw = dict(max_new_tokens=20, do_sample=True, seed=1, guidance_scale=3.0)
    monkeypatch.setenv("MGLAB_ORT_CACHE", "0")
    plain = mglab.load(tiny_path, decoder="split")
    np.testing.assert_array_equal(again.generate("rock", **kw).tokens, plain.generate("rock", **kw).tokens)


def test_a_damaged_optimized_graph_is_rebuilt(tiny_path, tmp_path, monkeypatch):
    from mglab.onnx.session import optimized_folder

    monkeypatch.setenv("MGLAB_CACHE", str(tmp_path))
    model = mglab.load(tiny_path, decoder="merged")
    cached = optimized_folder(model.paths["text_encoder"]) / "model.onnx"
    cached.write_bytes(cached.read_bytes()[:100])
    again = mglab.load(tiny_path, decoder="merged")
    assert cached.stat().st_size > 100
    kw = dict(max_new_tokens=10, do_sample=False)
    np.testing.assert_array_equal(again.generate("rock", **kw).tokens, model.generate("rock", **kw).tokens)


def test_offline_with_an_empty_hf_home_is_a_clear_error(tmp_path):
    """HF_HUB_OFFLINE=1 and nothing cached, in a fresh process with an empty HF_HOME."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}
    script = "import mglab; mglab.load('Xenova/musicgen-small', dtype='q8')"
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert res.returncode != 0
    assert "FileNotFoundError: Xenova/musicgen-small is not in the Hugging Face cache" in res.stderr
    assert "HF_HUB_OFFLINE=1" in res.stderr and "decoder_model_merged_quantized.onnx" in res.stderr


def _partial(tmp_path, keep):
    """A Hub cache holding only the files ``keep(name)`` accepts."""
    src = tmp_path / "src"
    for f in TINY.rglob("*"):
        if f.is_file() and "pytorch" not in f.parts and keep(f.name):
            (src / f.relative_to(TINY)).parent.mkdir(parents=True, exist_ok=True)
            (src / f.relative_to(TINY)).write_bytes(f.read_bytes())
    lay_out_cache(tmp_path / "hub", "Xenova/musicgen-small", src)
    return tmp_path / "hub"


def test_a_partly_cached_snapshot_names_what_is_there(tmp_path):
    """q8 cached, fp32 asked, offline: an error naming the missing file and the variants present."""
    hub_dir = _partial(tmp_path, lambda n: not n.endswith(".onnx") or "_quantized" in n)
    assert mglab.load("Xenova/musicgen-small", dtype="q8", local_files_only=True, cache_dir=hub_dir).dtype == "q8"
    with pytest.raises(FileNotFoundError, match=r"text_encoder has no 'fp32' variant .*variants present: \['q8'\]"):
        mglab.load("Xenova/musicgen-small", dtype="fp32", local_files_only=True, cache_dir=hub_dir)


def test_snapshot_download_receives_only_the_variants_patterns(monkeypatch, hf_home):
    import huggingface_hub

    calls = []
    real = huggingface_hub.snapshot_download

    def spy(repo_id, **kw):
        calls.append((repo_id, kw["allow_patterns"]))
        return real(repo_id, **kw)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", spy)
    mglab.load("Xenova/musicgen-small", dtype={"decoder_model_merged": "q8"}, local_files_only=True,
               cache_dir=hf_home / "hub")
    assert len(calls) == 1 and calls[0][0] == "Xenova/musicgen-small"
    onnx = sorted(p for p in calls[0][1] if p.endswith(".onnx"))
    assert onnx == ["decoder_model_merged_quantized.onnx", "encodec_decode.onnx",
                    "onnx/decoder_model_merged_quantized.onnx", "onnx/encodec_decode.onnx", "onnx/text_encoder.onnx",
                    "text_encoder.onnx"]


def test_a_snapshot_without_a_merged_decoder_falls_back_to_the_split_pair(tmp_path, monkeypatch):
    import huggingface_hub

    hub_dir = _partial(tmp_path, lambda n: "merged" not in n)
    asked = []
    real = huggingface_hub.snapshot_download
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, **kw: asked.append(kw["allow_patterns"]) or real(repo_id, **kw))
    m = mglab.load("Xenova/musicgen-small", local_files_only=True, cache_dir=hub_dir)
    assert m.layout == "split" and len(asked) == 2
    assert "onnx/decoder_model_merged.onnx" in asked[0] and "onnx/decoder_with_past_model.onnx" in asked[1]
    ref = mglab.load(TINY, decoder="split").generate("rock", max_new_tokens=12, do_sample=False)
    np.testing.assert_array_equal(m.generate("rock", max_new_tokens=12, do_sample=False).tokens, ref.tokens)


def test_a_second_load_reads_the_optimized_graphs(tiny_path, tmp_path, monkeypatch):
    """Asserted on what ONNX Runtime is asked to open, not inferred from the tokens."""
    import onnxruntime as ort

    from mglab.onnx import session

    monkeypatch.setenv("MGLAB_CACHE", str(tmp_path))
    mglab.load(tiny_path, decoder="merged")
    opened = []
    real = ort.InferenceSession

    def spy(path, options=None, **kw):
        opened.append((str(path), bool(options and options.optimized_model_filepath)))
        return real(path, options, **kw)

    monkeypatch.setattr(session.ort, "InferenceSession", spy)
    mglab.load(tiny_path, decoder="merged")
    assert opened and all(p.startswith(str(tmp_path / "ort")) and p.endswith("model.onnx") for p, _ in opened)
    assert not any(saving for _, saving in opened)                     # nothing optimized again


def test_an_fp16_graph_with_float16_inputs_and_outputs_loads(tmp_path):
    """The README's claim, on such a graph (converted here without keep_io_types): the float32 pipeline feeds
    it, the in-place KV cache holds float16, and greedy tokens equal fp32's (fp16 agrees on every argmax of
    the tiny model)."""
    import shutil

    import onnx

    from mglab.onnx import graphfile, quantize

    copy = tmp_path / "tiny"
    shutil.copytree(TINY, copy, ignore=shutil.ignore_patterns("pytorch"))
    half = quantize.fp16(graphfile.load(TINY / "onnx" / "decoder_model_merged.onnx"), keep_io_types=False)
    onnx.save(half, copy / "onnx" / "decoder_model_merged_fp16.onnx")
    model = mglab.load(copy, dtype={"decoder_model_merged": "fp16"}, decoder="merged")
    session = model.decoder._session("merged").session
    assert {i.type for i in session.get_inputs() if i.name == "encoder_hidden_states"} == {"tensor(float16)"}
    assert {o.type for o in session.get_outputs() if o.name == "logits"} == {"tensor(float16)"}
    assert model.decoder.inplace is not None
    ours = model.generate(["rock", "lofi piano"], max_new_tokens=16, do_sample=False)
    fp32 = mglab.load(TINY, decoder="merged").generate(["rock", "lofi piano"], max_new_tokens=16, do_sample=False)
    np.testing.assert_array_equal(ours.tokens, fp32.tokens)
    _, cache = model.run_with_cache("rock", names_filter="decoder.layers.0.hook_key", max_new_tokens=8,
                                    do_sample=False)
    assert cache["decoder.layers.0.hook_key"].dtype == np.float16
