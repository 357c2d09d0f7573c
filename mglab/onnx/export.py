"""``python -m mglab export SRC OUT``: a transformers MusicGen checkpoint -> the Xenova layout, plus an encoder.

What it writes, with ``--dtypes fp32,q8`` (the default)::

    OUT/config.json, generation_config.json, tokenizer.json, tokenizer_config.json
    OUT/onnx/text_encoder.onnx             (optimum, task text-to-audio)
    OUT/onnx/decoder_model.onnx            decoder_with_past_model.onnx
    OUT/onnx/decoder_model_merged.onnx     (optimum.onnx.merge_decoders)
    OUT/onnx/encodec_decode.onnx           build_delay_pattern_mask.onnx (sequence axis made dynamic)
    OUT/onnx/encodec_encode.onnx           (ours, torch.onnx: input_values [B, C, samples]
                                            -> audio_codes [1, B, K, frames], what transformers' encode gives)
    OUT/onnx/*_quantized.onnx ...          (each graph but the encoder in each dtype, Xenova's recipe:
                                            :mod:`mglab.onnx.quantize`)

A MusicGen-Melody checkpoint (``model_type: musicgen_melody``), which optimum cannot export, is exported by
torch.onnx instead (:mod:`mglab.onnx.export_melody`: its own graphs and layout).

``SRC`` is a checkpoint folder (``config.json`` + weights) or a Hub id (only the config, weights and tokenizer
files are downloaded). Everything is written under a temporary name beside ``OUT`` and renamed at the end; a
non-empty ``OUT`` is refused unless ``force``. Progress goes to stderr. Needs the ``reference`` extra (torch,
transformers, optimum-onnx). Stereo checkpoints (8 codebooks, 2 channels): optimum 2.1 alone fails inside
EnCodec's dummy inputs (it gives the codec the decoder's 8 codebooks); the export corrects that dummy input for
its duration, and the codec graph, like transformers, decodes and encodes each channel's 4 codebooks.

Examples
--------
>>> from mglab.onnx.export import export                                     # doctest: +SKIP
>>> export("path/to/musicgen-checkpoint", "exports/my-musicgen", dtypes=("fp32", "q8"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from . import export_melody
from .modelfiles import SUFFIXES

GRAPHS = ("text_encoder", "decoder_model", "decoder_with_past_model", "decoder_model_merged", "encodec_decode")
HUB_FILES = ["config.json", "generation_config.json", "*.safetensors", "*.bin", "*.json", "spiece.model"]


def _say(message: str) -> None:
    print(f"mglab export: {message}", file=sys.stderr, flush=True)


def check_dtypes(dtypes) -> tuple[str, ...]:
    """``--dtypes`` (a list or ``"fp32,q8"``) checked; fp32 first, always."""
    dtypes = tuple(dtypes.split(",") if isinstance(dtypes, str) else dtypes)
    bad = [d for d in dtypes if d not in SUFFIXES]
    if bad or not dtypes:
        raise ValueError(f"dtypes={list(dtypes)} is not allowed: each must be one of {list(SUFFIXES)}")
    return tuple(dict.fromkeys(("fp32",) + dtypes))                  # fp32 always: the variants are made from it


def source(src) -> Path:
    """A checkpoint folder, or a Hub id downloaded (config, weights, tokenizer only); checked to be MusicGen."""
    path = Path(src)
    if not path.is_dir():
        if path.exists() or str(src).count("/") != 1:
            raise ValueError(f"SRC={str(src)!r} is neither a checkpoint folder nor a Hub id (owner/name)")
        from huggingface_hub import snapshot_download

        _say(f"downloading {src} (config, weights, tokenizer)")
        path = Path(snapshot_download(str(src), allow_patterns=HUB_FILES))
    config = path / "config.json"
    if not config.is_file():
        raise ValueError(f"SRC={str(src)!r} has no config.json: not a transformers checkpoint")
    kind = json.loads(config.read_text()).get("model_type")
    if kind not in ("musicgen", "musicgen_melody"):
        raise ValueError(f"SRC={str(src)!r} is not a MusicGen checkpoint: its config.json has "
                         f"model_type={kind!r}, mglab export needs 'musicgen' or 'musicgen_melody'")
    return path


def check_out(out, force: bool) -> Path:
    """OUT as a Path; a non-empty one needs ``force``."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise FileExistsError(f"OUT={str(out)!r} exists and is not empty: pass --force to replace it")
    return out


def _same(x: Path, y: Path) -> bool:
    return x == y or (x.exists() and y.exists() and os.path.samefile(x, y))


def check_apart(src: Path, out: Path) -> None:
    """``--force`` replaces an old export, never the input: OUT may not be SRC, hold it, or lie inside it (paths
    compared resolved, and as the same file on disk: symlinks, case-insensitive file systems)."""
    a, b = Path(src).resolve(), Path(out).resolve()
    same, holds = _same(a, b), any(_same(p, b) for p in a.parents)
    inside = any(_same(p, a) for p in b.parents)
    if same or holds or inside:
        where = "is" if same else "contains" if holds else "lies inside"
        raise ValueError(f"OUT={str(out)!r} {where} SRC={str(src)!r}: the export would replace its own input; "
                         "choose an OUT outside SRC")


@contextmanager
def _codec_codebooks_per_channel():
    """optimum 2.1 gives ``encodec_decode``'s dummy ``audio_codes`` the decoder's codebook count: 8 for a stereo
    checkpoint, whose EnCodec (mono, run once per channel) has 4, so the export fails inside EnCodec. For the
    block, the dummy codes get ``num_codebooks // audio_channels``, what the codec graph really takes."""
    from optimum.utils import input_generators

    cls = input_generators.DummyEncodecInputGenerator
    original = cls.__init__

    def init(self, task, normalized_config, *args, **kwargs):
        original(self, task, normalized_config, *args, **kwargs)
        self.num_codebooks //= getattr(normalized_config.decoder, "audio_channels", 1) or 1

    cls.__init__ = init
    try:
        yield
    finally:
        cls.__init__ = original


def export_onnx(model_dir: Path, onnx_dir: Path) -> None:
    """optimum's export (task ``text-to-audio``), the two decoders merged, the delay graph's axis freed.
    Stereo checkpoints too (the codec's dummy input fixed for the export: ``_codec_codebooks_per_channel``)."""
    from optimum.exporters.onnx import main_export
    from optimum.onnx import merge_decoders

    with _codec_codebooks_per_channel():
        main_export(str(model_dir), output=str(onnx_dir), task="text-to-audio", do_validation=False,
                    no_post_process=True)
    merged = merge_decoders(onnx_dir / "decoder_model.onnx", onnx_dir / "decoder_with_past_model.onnx",
                            save_path=str(onnx_dir / "decoder_model_merged.onnx"), strict=False)
    del merged
    free_sequence_axis(onnx_dir / "build_delay_pattern_mask.onnx")


def free_sequence_axis(path: Path) -> None:
    """optimum traces ``build_delay_pattern_mask.onnx`` with its dummy sequence length (16) frozen into the
    ``input_ids`` / ``input_ids_edited`` shapes; the graph itself is general. Make that axis dynamic."""
    import onnx

    model = onnx.load(path)
    for value in (model.graph.input[0], model.graph.output[0]):
        dim = value.type.tensor_type.shape.dim[1]
        dim.Clear()
        dim.dim_param = "sequence_length"
    onnx.save(model, path)


def export_encoder(audio_encoder, path: Path) -> Path:
    """EnCodec's ``encode`` as ONNX (torch.onnx, TorchScript exporter): ``input_values [B, C, samples]`` float32
    -> ``audio_codes [1, B, K, frames]`` int64, the batch and the length dynamic (checked at three lengths in
    the tests). ``audio_encoder``: transformers' ``EncodecModel`` (``model.audio_encoder``)."""
    import torch

    class Encode(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_values):                                     # [B, C, samples]
            return self.encoder.encode(input_values, return_dict=True).audio_codes   # [1, B, K, frames]

    channels = audio_encoder.config.audio_channels
    dummy = torch.randn(2, channels, 7 * 640 + 123) * 0.1                   # not a whole number of frames
    with torch.no_grad():
        torch.onnx.export(Encode(audio_encoder.eval()), (dummy,), str(path), input_names=["input_values"],
                          output_names=["audio_codes"], opset_version=17, dynamo=False,
                          dynamic_axes={"input_values": {0: "batch_size", 2: "num_samples"},
                                        "audio_codes": {1: "batch_size", 3: "num_frames"}})
    return path


def tokenizer_files(src: Path, dst: Path) -> None:
    """``tokenizer.json`` (converted by transformers from ``spiece.model`` when the checkpoint lacks it) and
    ``tokenizer_config.json``."""
    if (src / "tokenizer.json").is_file():
        shutil.copy(src / "tokenizer.json", dst / "tokenizer.json")
    else:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(dst))
    config = src / "tokenizer_config.json"
    if config.is_file():
        shutil.copy(config, dst / "tokenizer_config.json")
    elif not (dst / "tokenizer_config.json").is_file():
        (dst / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "T5Tokenizer", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
             "model_max_length": 512}, indent=2))


def export(src, out, dtypes=("fp32", "q8"), force: bool = False) -> Path:
    """Export ``src`` (checkpoint folder or Hub id) to ``out`` in the Xenova layout with ``encodec_encode``.
    Every argument is checked before any work starts."""
    dtypes = check_dtypes(dtypes)
    if Path(src).is_dir():
        check_apart(Path(src), Path(out))             # before check_out: its --force hint would not help here
    out = check_out(out, force)
    path = source(src)
    if not Path(src).is_dir():
        check_apart(path, out)                         # a Hub id: its download, checked once it is known
    from transformers import MusicgenForConditionalGeneration

    from .quantize import make as make_variant

    start = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        stage, raw = Path(tmp) / "out", Path(tmp) / "export"
        (stage / "onnx").mkdir(parents=True)
        if _is_melody(path):                     # optimum cannot: torch.onnx graphs (mglab.onnx.export_melody)
            model = export_melody.export_to(path, stage, dtypes, _say)
            export_encoder(model.audio_encoder, stage / "onnx" / "encodec_encode.onnx")
            tokenizer_files(path, stage)
            return _finish(stage, out, start)
        _say(f"exporting {path} with optimum (text encoder, decoders, codec)")
        export_onnx(path, raw)
        for f in raw.iterdir():
            if f.suffix in (".onnx", ".onnx_data") or f.name.endswith(".onnx.data"):
                shutil.move(str(f), stage / "onnx" / f.name)
        _say("exporting the EnCodec encoder (encodec_encode.onnx)")
        model = MusicgenForConditionalGeneration.from_pretrained(str(path))
        export_encoder(model.audio_encoder, stage / "onnx" / "encodec_encode.onnx")
        del model
        for dtype in dtypes[1:]:
            for name in GRAPHS:
                _say(f"{name}: {dtype}")
                make_variant(stage / "onnx" / f"{name}.onnx", dtype)
        for name in ("config.json", "generation_config.json"):
            if (path / name).is_file():
                shutil.copy(path / name, stage / name)
        tokenizer_files(path, stage)
        return _finish(stage, out, start)


def _is_melody(path: Path) -> bool:
    return json.loads((path / "config.json").read_text()).get("model_type") == "musicgen_melody"


def _finish(stage: Path, out: Path, start: float) -> Path:
    if out.exists():
        shutil.rmtree(out)
    shutil.move(str(stage), out)
    _say(f"wrote {out} in {time.monotonic() - start:.0f} s")
    return out
