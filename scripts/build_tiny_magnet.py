"""Build the tiny random-weight MAGNeT that ships with mglab, as audiocraft saves one, then export it.

    python scripts/build_tiny_magnet.py --out data/models/tiny-magnet          # make tiny-magnet

audiocraft's ``MagnetLMModel`` at toy sizes (4 codebooks of 128, 32 wide, 2 layers, spans of 3, 1 s segments),
conditioned by a T5 (tiny-musicgen's random one) and decoded by tiny-musicgen's random EnCodec (32 kHz, 50
frames a second), seeded. The checkpoint is written exactly as audiocraft's ``export_lm`` writes one, and
``python -m mglab export`` (:mod:`mglab.onnx.magnet_checkpoint`) turns it into the ONNX layout, the one path
from checkpoint to graphs that the parity tests prove::

    <out>/audiocraft/state_dict.bin              {'xp.cfg': YAML, 'best_state': weights, 'exported': True}
    <out>/audiocraft/compression_state_dict.bin  {'pretrained': 'encodec'}
    <out>/audiocraft/encodec/                    transformers EncodecModel (tiny-musicgen's)
    <out>/audiocraft/tiny-t5/                    transformers T5EncoderModel + tokenizer.json (tiny-musicgen's)
    <out>/config.json, tokenizer.json, onnx/     the export (fp32 and q8)
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mglab.onnx import magnet_checkpoint  # noqa: E402
from mglab.onnx.audiocraft_env import install, local_t5  # noqa: E402

SOURCE = ROOT / "data" / "models" / "tiny-musicgen" / "pytorch"
CONFIG = {
    "lm_model": "transformer_lm_magnet", "device": "cpu", "dtype": "float32",
    "dataset": {"segment_duration": 1}, "masking": {"span_len": 3},
    "transformer_lm": {"n_q": 4, "card": 128, "dim": 32, "num_heads": 4, "num_layers": 2, "hidden_scale": 4,
                       "causal": False, "cross_attention": True, "custom": True, "memory_efficient": False,
                       "norm_first": True, "norm": "layer_norm", "positional_embedding": "sin", "bias_proj": False,
                       "bias_ff": False, "bias_attn": False, "subcodes_context": 5,
                       "compression_model_framerate": 50, "segment_duration": 1, "span_len": 3},
    "codebooks_pattern": {"modeling": "parallel", "parallel": {"empty_initial": 0}},
    "attribute_dropout": {}, "classifier_free_guidance": {"training_dropout": 0.0, "inference_coef": 3.0},
    "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1, "sum": [], "prepend": [],
              "cross": ["description"], "input_interpolate": []},
    "conditioners": {"description": {"model": "t5", "t5": {"name": "tiny-t5", "finetune": False,
                                                           "word_dropout": 0.0, "normalize_text": False}}},
}


def parts(ckpt: Path) -> None:
    """tiny-musicgen's T5 and EnCodec, saved as the checkpoint's own folders."""
    from transformers import MusicgenForConditionalGeneration

    model = MusicgenForConditionalGeneration.from_pretrained(str(SOURCE))
    model.text_encoder.save_pretrained(str(ckpt / "tiny-t5"))
    shutil.copy(SOURCE / "tokenizer.json", ckpt / "tiny-t5" / "tokenizer.json")
    model.audio_encoder.save_pretrained(str(ckpt / "encodec"))


def checkpoint(ckpt: Path, seed: int, config: dict | None = None) -> Path:
    """A random ``MagnetLMModel`` saved as audiocraft's ``export_lm`` saves one (plus the codec's pointer)."""
    install()
    import omegaconf
    import torch
    from audiocraft.models import builders

    cfg = omegaconf.OmegaConf.create(copy.deepcopy(config or CONFIG))
    torch.manual_seed(seed)
    with local_t5(ckpt):
        lm = builders.get_lm_model(cfg)
    pkg = {"best_state": lm.state_dict(), "xp.cfg": omegaconf.OmegaConf.to_yaml(cfg), "version": "1.3.0",
           "exported": True}
    torch.save(pkg, ckpt / magnet_checkpoint.LM_FILE)
    torch.save({"pretrained": "encodec"}, ckpt / magnet_checkpoint.CODEC_FILE)
    return ckpt


def build(out: Path, seed: int = 0, dtypes=("fp32", "q8"), config: dict | None = None) -> Path:
    """The checkpoint in ``out/audiocraft``, exported into ``out`` (replaced as a whole, atomically)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        ckpt = Path(tmp) / "audiocraft"
        ckpt.mkdir()
        parts(ckpt)
        checkpoint(ckpt, seed, config)
        exported = magnet_checkpoint.export(ckpt, Path(tmp) / "export", dtypes)
        shutil.move(str(ckpt), exported / "audiocraft")
        shutil.copy(Path(__file__).with_name("tiny_magnet_card.md"), exported / "README.md")
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(exported), out)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "data" / "models" / "tiny-magnet")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(build(args.out, args.seed))


if __name__ == "__main__":
    main()
