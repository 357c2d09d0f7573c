"""``python -m mglab export SRC OUT`` for MAGNeT: an audiocraft checkpoint pair -> mglab's masked layout.

What it reads (``MAGNeT.get_pretrained``'s files, e.g. ``facebook/magnet-small-10secs``)::

    SRC/state_dict.bin              {'xp.cfg': the training config (YAML), 'best_state': the LM's weights}
    SRC/compression_state_dict.bin  {'pretrained': 'facebook/encodec_32khz'}: a transformers EnCodec (the folder
                                    SRC/<name> if there is one, else the Hub), or 'mglab:nano-synth' (the nano
                                    models' synthesizer, a codec built by mglab)
    SRC/<t5 name>/                  optional: the T5 the text conditioner names (T5EncoderModel + tokenizer.json),
                                    else the Hub's

What it writes::

    OUT/config.json                 {"decoding": "masked", sizes, rates, "generation": MAGNeT's defaults}
    OUT/tokenizer.json
    OUT/onnx/text_encoder.onnx      input_ids, attention_mask [B, n] -> encoder_hidden_states [B, n, dim]: T5,
                                    audiocraft's output_proj, times the mask (what the LM's cross-attention reads)
    OUT/onnx/masked_lm.onnx         :mod:`mglab.onnx.export_magnet`
    OUT/onnx/encodec_decode.onnx    audio_codes [1, B, K, frames] -> audio_values [B, C, samples]
    OUT/onnx/encodec_encode.onnx    (EnCodec) input_values [B, C, samples] -> audio_codes [1, B, K, frames]
    OUT/onnx/*_quantized.onnx ...   each graph in each extra dtype (:mod:`mglab.onnx.quantize`)

Needs the ``reference`` extra and audiocraft (``make test`` installs it; :mod:`mglab.onnx.audiocraft_env`).
Written under a temporary name beside OUT and renamed at the end, as the MusicGen export.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from . import export as common
from .export_magnet import export_masked_lm

LM_FILE, CODEC_FILE = "state_dict.bin", "compression_state_dict.bin"
GRAPHS = ("text_encoder", "masked_lm", "encodec_decode")
SYNTH = "mglab:nano-synth"


def is_checkpoint(src) -> bool:
    """An audiocraft checkpoint folder (``state_dict.bin`` + ``compression_state_dict.bin``)."""
    return (Path(src) / LM_FILE).is_file() and (Path(src) / CODEC_FILE).is_file()


def generation_defaults(num_codebooks: int) -> dict:
    """``MAGNeT.set_generation_params``'s defaults (audiocraft 1.3.0, ``models/magnet.py``)."""
    return {"decoding_steps": [20] + [10] * (num_codebooks - 1), "temperature": 3.0, "top_k": 0, "top_p": 0.9,
            "max_cfg_coef": 10.0, "min_cfg_coef": 1.0}


def read(src: Path) -> tuple[dict, dict]:
    """The two pickles, read with ``weights_only`` (tensors, strings and dicts: audiocraft's export format)."""
    import torch

    try:
        lm = torch.load(src / LM_FILE, map_location="cpu", weights_only=True)
        codec = torch.load(src / CODEC_FILE, map_location="cpu", weights_only=True)
    except Exception as err:                        # noqa: BLE001 - any unpickling failure, named
        raise ValueError(f"SRC={str(src)!r}: {LM_FILE} / {CODEC_FILE} are not audiocraft's export format "
                         f"(tensors, strings and dicts): {err}") from err
    if not isinstance(lm, dict) or not {"xp.cfg", "best_state"} <= set(lm):
        raise ValueError(f"SRC={str(src)!r}: {LM_FILE} must hold 'xp.cfg' and 'best_state'")
    if not isinstance(codec, dict) or not isinstance(codec.get("pretrained"), str):
        raise ValueError(f"SRC={str(src)!r}: {CODEC_FILE} must name a pretrained codec ({{'pretrained': ...}}); "
                         "codecs trained with audiocraft (their own weights) are not supported")
    return lm, codec


def build_lm(src: Path, pkg: dict, frame_rate: int):
    """audiocraft's ``MagnetLMModel`` as ``load_lm_model_magnet`` builds it, on CPU in float32, weights loaded
    strictly (a missing or unexpected tensor is an error)."""
    from .audiocraft_env import install, local_t5

    install()
    import omegaconf
    from audiocraft.models import builders

    cfg = omegaconf.OmegaConf.create(pkg["xp.cfg"])
    cfg.device, cfg.dtype = "cpu", "float32"
    cfg.transformer_lm.compression_model_framerate = frame_rate
    cfg.transformer_lm.segment_duration = cfg.dataset.segment_duration
    cfg.transformer_lm.span_len = cfg.masking.span_len
    _check_conditioning(cfg)
    with local_t5(src):
        lm = builders.get_lm_model(cfg)
    lm.load_state_dict(pkg["best_state"], strict=True)
    return lm.eval(), cfg


def _check_conditioning(cfg) -> None:
    """MAGNeT's conditioning or a clear error: one T5 text conditioner, its text not normalized (spacy), fused by
    cross-attention without a positional embedding."""
    conditioners = {k: v for k, v in dict(cfg.conditioners).items() if k != "args"}   # args: the builder's own
    fuser = cfg.fuser
    if set(conditioners) != {"description"} or conditioners["description"].get("model") != "t5":
        raise NotImplementedError(f"mglab export reads MAGNeT's one T5 text conditioner ('description'); this "
                                  f"checkpoint has {[(k, v.get('model')) for k, v in conditioners.items()]}")
    if conditioners["description"].get("t5", {}).get("normalize_text", False):
        raise NotImplementedError("this checkpoint's T5 conditioner normalizes text with spacy (normalize_text): "
                                  "mglab's tokenizer.json cannot do that")
    if list(fuser.cross) != ["description"] or fuser.get("cross_attention_pos_emb", False):
        raise NotImplementedError("mglab export needs the text fused by cross-attention without a positional "
                                  f"embedding, as MAGNeT's; this checkpoint's fuser: {dict(fuser)}")


def text_module(conditioner):
    """T5 + ``output_proj``, times the mask: audiocraft's ``T5Conditioner.forward`` as a module."""
    import torch

    class Text(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.t5, self.proj = conditioner.t5, conditioner.output_proj

        def forward(self, input_ids, attention_mask):                          # [B, n] each
            hidden = self.t5(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state   # [B, n, d_t5]
            return self.proj(hidden) * attention_mask[..., None].to(hidden.dtype)   # [B, n, dim]

    return Text().eval()


def export_text(conditioner, path: Path) -> Path:
    """``text_encoder.onnx`` from audiocraft's ``T5Conditioner`` (:func:`text_module`): ``input_ids``,
    ``attention_mask [B, n]`` -> ``encoder_hidden_states [B, n, dim]``, batch and length dynamic."""
    import torch

    ids = torch.tensor([[5, 6, 7, 1], [8, 1, 0, 0]])                                              # [B, n]
    with torch.no_grad():
        torch.onnx.export(text_module(conditioner), (ids, (ids > 0).long()), str(path), opset_version=17,
                          dynamo=False, input_names=["input_ids", "attention_mask"],
                          output_names=["encoder_hidden_states"],
                          dynamic_axes={n: {0: "batch_size", 1: "text_len"}
                                        for n in ("input_ids", "attention_mask", "encoder_hidden_states")})
    return path


def export_codec_decoder(encodec, path: Path) -> Path:
    """transformers EnCodec's ``decode`` as ONNX: ``audio_codes [1, B, K, frames]`` -> ``audio_values
    [B, C, samples]`` (the published ``encodec_decode.onnx``'s interface), batch and length dynamic."""
    import torch

    class Decode(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encodec = encodec

        def forward(self, audio_codes):                                       # [1, B, K, frames]
            return self.encodec.decode(audio_codes, [None], return_dict=True).audio_values   # [B, C, samples]

    k = encodec.quantizer.get_num_quantizers_for_bandwidth(encodec.config.target_bandwidths[-1])
    codes = torch.randint(0, encodec.config.codebook_size, (1, 2, k, 9))
    with torch.no_grad():
        torch.onnx.export(Decode().eval(), (codes,), str(path), opset_version=17, dynamo=False,
                          input_names=["audio_codes"], output_names=["audio_values"],
                          dynamic_axes={"audio_codes": {1: "batch_size", 3: "chunk_length"},
                                        "audio_values": {0: "batch_size", 2: "audio_length"}})
    return path


def _resolve(src: Path, name: str) -> str:
    return str(src / name) if (src / name).is_dir() else name


def export_codec(src: Path, name: str, onnx_dir: Path, codecs: dict) -> dict:
    """The codec's graphs; its description for ``config.json`` (rates, channels, which codec)."""
    if name in codecs:                                       # a codec mglab builds (the nano synthesizer)
        return codecs[name](onnx_dir / "encodec_decode.onnx")
    from transformers import EncodecModel

    encodec = EncodecModel.from_pretrained(_resolve(src, name)).eval()
    export_codec_decoder(encodec, onnx_dir / "encodec_decode.onnx")
    common.export_encoder(encodec, onnx_dir / "encodec_encode.onnx")
    c = encodec.config
    hop = 1
    for r in c.upsampling_ratios:
        hop *= r
    k = encodec.quantizer.get_num_quantizers_for_bandwidth(c.target_bandwidths[-1])
    return {"mglab_codec": "encodec", "sample_rate": c.sampling_rate, "hop_length": hop,
            "audio_channels": c.audio_channels, "codebook_size": c.codebook_size, "num_codebooks": int(k)}


def config(cfg, lm, codec: dict) -> dict:
    """``config.json``: ``"decoding": "masked"``, the sizes the graphs have, the codec's rates and MAGNeT's
    generation defaults."""
    t = cfg.transformer_lm
    frame_rate = codec["sample_rate"] / codec["hop_length"]
    return {"decoding": "masked", "model_type": "magnet",
            "num_codebooks": lm.num_codebooks, "card": lm.card, "hidden_size": lm.dim,
            "num_layers": len(lm.transformer.layers), "num_heads": t.num_heads,
            "span_len": int(cfg.masking.span_len), "subcodes_context": int(t.subcodes_context),
            "segment_duration": float(cfg.dataset.segment_duration), "frame_rate": frame_rate, **codec,
            "generation": generation_defaults(lm.num_codebooks)}


def export(src, out, dtypes=("fp32", "q8"), force: bool = False, codecs: dict | None = None) -> Path:
    """Export the audiocraft MAGNeT checkpoint folder ``src`` to ``out``; every argument checked first.
    ``codecs``: names of codecs mglab builds -> ``fn(path) -> codec description`` (the CLI passes the nano
    synthesizer's)."""
    dtypes = common.check_dtypes(dtypes)
    src = Path(src)
    if not is_checkpoint(src):
        raise ValueError(f"SRC={str(src)!r} is not an audiocraft checkpoint folder ({LM_FILE} + {CODEC_FILE})")
    common.check_apart(src, Path(out))
    out = common.check_out(out, force)
    pkg, codec_pkg = read(src)
    codecs = codecs or {}
    start = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        stage = Path(tmp) / "out"
        (stage / "onnx").mkdir(parents=True)
        common._say(f"codec {codec_pkg['pretrained']}")
        codec = export_codec(src, codec_pkg["pretrained"], stage / "onnx", codecs)
        lm, cfg = build_lm(src, pkg, round(codec["sample_rate"] / codec["hop_length"]))
        if (lm.card, lm.num_codebooks) != (codec["codebook_size"], codec["num_codebooks"]):
            raise ValueError(f"the LM predicts {lm.num_codebooks} codebooks of {lm.card}; the codec has "
                             f"{codec['num_codebooks']} of {codec['codebook_size']}")
        common._say("masked_lm.onnx")
        export_masked_lm(lm, stage / "onnx" / "masked_lm.onnx")
        conditioner = lm.condition_provider.conditioners["description"]
        common._say("text_encoder.onnx")
        export_text(conditioner, stage / "onnx" / "text_encoder.onnx")
        _tokenizer(src, conditioner, stage)
        from .quantize import make as make_variant

        for dtype in dtypes[1:]:
            for name in GRAPHS:
                common._say(f"{name}: {dtype}")
                make_variant(stage / "onnx" / f"{name}.onnx", dtype)
        (stage / "config.json").write_text(json.dumps(config(cfg, lm, codec), indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(stage), out)
    common._say(f"wrote {out} in {time.monotonic() - start:.0f} s")
    return out


def _tokenizer(src: Path, conditioner, dst: Path) -> None:
    folder = src / conditioner.name
    if (folder / "tokenizer.json").is_file():
        shutil.copy(folder / "tokenizer.json", dst / "tokenizer.json")
        return
    with tempfile.TemporaryDirectory() as tmp:                 # a Hub T5: its fast tokenizer's file
        conditioner.t5_tokenizer.save_pretrained(tmp)
        common.tokenizer_files(Path(tmp), dst)
