"""transformers.js (Node) as a peer: on the bundled nano model its codes equal mglab's and its audio is within
1e-4 (greedy, guidance 3, a batch of two prompts, fp32 and q8), and ``benchmarks/bench_peers.py`` runs end to end.

The pinned transformers.js is installed on first use by npm into ``$MGLAB_NODE_CACHE`` (default
``~/.cache/mglab/node``; about 5 s and 475 MB on the development machine, mostly onnxruntime-node's binaries for
every platform), so a fresh CI machine, which reaches the package registry, runs these tests rather than
skipping them. Skipped where ``node``/``npm`` is missing, or where the package is not installed and
``npm ping`` does not reach the registry. A failed install with the registry reachable fails the test. After the
install the module takes about 20 s on 2 cores.
"""

import json
import sys

import numpy as np
import pytest
from helpers import ROOT, TINY

sys.path.insert(0, str(ROOT / "benchmarks"))
import transformers_js  # noqa: E402

NANO = ROOT / "data" / "models" / "nano-musicgen"
PROMPTS = ["slow soft piano melody in C major", "loud fast organ scale"]
STEPS = 60


@pytest.fixture(scope="module")
def js_package():
    """The pinned transformers.js installed (installing it when the registry is reachable), else a skip."""
    missing = transformers_js.missing_node()
    if missing:
        pytest.skip(missing)
    if not transformers_js.installed() and not transformers_js.registry_reachable():
        pytest.skip(f"transformers.js {transformers_js.VERSION} is not in {transformers_js.install_dir()} and npm "
                    "cannot reach its registry")
    return transformers_js.install()


@pytest.fixture(scope="module")
def nano_view(tmp_path_factory):
    return transformers_js.model_view(NANO, tmp_path_factory.mktemp("js-models"), "nano-musicgen")


def test_model_view_fills_the_decoder_ids_an_export_leaves_out(tmp_path):
    """An export's config.json may omit the decoder's pad/bos ids (class defaults); transformers.js reads them."""
    model = tmp_path / "model"
    model.mkdir()
    config = json.loads((TINY / "config.json").read_text())
    for key in ("pad_token_id", "bos_token_id"):
        config["decoder"].pop(key, None)
    (model / "config.json").write_text(json.dumps(config))
    (model / "generation_config.json").write_text(json.dumps({"max_length": 100}))
    view = transformers_js.model_view(model, tmp_path / "views")
    decoder = json.loads((view / "config.json").read_text())["decoder"]
    assert decoder["pad_token_id"] == decoder["bos_token_id"] == config["decoder"]["vocab_size"]
    assert (view / "generation_config.json").is_symlink()


@pytest.mark.parametrize("variant", ["fp32", "q8"])
def test_transformers_js_codes_equal_mglab_on_nano(js_package, nano_view, variant):
    import mglab

    dtype = {"text_encoder": variant, "decoder_model_merged": variant, "encodec_decode": "fp32"}
    js = transformers_js.generate(nano_view, dtype, PROMPTS, STEPS, guidance_scale=3.0)
    model = mglab.load(NANO, dtype=dtype, decoder="merged")
    ids, _ = model.text.tokenize(PROMPTS)
    gen = model.generate(PROMPTS, max_new_tokens=STEPS, do_sample=False, guidance_scale=3.0)
    np.testing.assert_array_equal(js["input_ids"], ids)
    assert gen.codes.shape == js["codes"].shape == (2, 4, STEPS + 1 - 4)
    np.testing.assert_array_equal(js["codes"], gen.codes)
    np.testing.assert_allclose(js["audio"], gen.audio, rtol=0, atol=1e-4)


def test_transformers_js_parts_only_on_the_end_pads_frames(js_package, nano_view):
    """At 12 steps prompt 2's codebook 2 ends differently in transformers.js: it does not force the delay
    pattern's pads at the end (``transformers_js.end_pad_frames``). Every difference lies on those frames, and
    there mglab's codes are transformers' (PyTorch, the checkpoint the files were exported from)."""
    import torch
    from transformers import MusicgenForConditionalGeneration

    import mglab

    steps, dtype = 12, {"text_encoder": "fp32", "decoder_model_merged": "fp32", "encodec_decode": "fp32"}
    js = transformers_js.generate(nano_view, dtype, PROMPTS, steps)
    model = mglab.load(NANO, dtype=dtype, decoder="merged")
    gen = model.generate(PROMPTS, max_new_tokens=steps, do_sample=False, guidance_scale=3.0)
    torch_model = MusicgenForConditionalGeneration.from_pretrained(NANO / "pytorch").eval()
    seen, decode = {}, torch_model.audio_encoder.decode
    torch_model.audio_encoder.decode = lambda codes, *a, **k: decode(seen.setdefault("codes", codes), *a, **k)
    ids, mask = (torch.from_numpy(a) for a in model.text.tokenize(PROMPTS))
    with torch.no_grad():
        torch_model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=steps, do_sample=False,
                             guidance_scale=3.0)
    np.testing.assert_array_equal(seen["codes"][0].numpy(), gen.codes)
    tail = transformers_js.end_pad_frames(gen.codes.shape)
    np.testing.assert_array_equal(js["codes"][~tail], gen.codes[~tail])


def test_bench_peers_runs_and_reports(js_package, tmp_path, capsys):
    """The benchmark at toy sizes on the tiny model: every engine and variant timed, nano's equality checked,
    a table headed by the machine."""
    import bench_peers

    out = bench_peers.main(["--model", str(TINY), "--steps", "8", "--nano-steps", "20",
                            "--json", str(tmp_path / "peers.json")])
    assert set(out["engines"]) == {"mglab", "transformers.js", "transformers"}
    assert set(out["engines"]["mglab"]) == set(bench_peers.VARIANTS)
    assert set(out["engines"]["transformers.js"]) == {"fp32", "q8", "q4"}
    assert all(r["codes_equal"] and r["audio_max_abs_diff"] <= 1e-4 for r in out["nano_equality"].values())
    assert json.loads((tmp_path / "peers.json").read_text())["machine"]["flags"]
    printed = capsys.readouterr().out
    assert "| mglab | q4, accuracy level 4 |" in printed and "transformers.js 4.3.2" in printed
