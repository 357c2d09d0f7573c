"""Build the tiny random-weight MusicGen that ships with mglab.

The model has MusicGen's real architecture at toy sizes: a T5 text encoder, a MusicGen decoder with 4
codebooks and an EnCodec codec at 32 kHz (hop 640, 50 frames per second). It is seeded, exported with
optimum (task ``text-to-audio``), its two decoders merged with ``optimum.onnx.merge_decoders``, and its
variants made the way Xenova's published ones were (``scripts/quantize.py``): q8 and fp16 of every graph, and
the merged decoder in all of Xenova's variants (q8, fp16, int8, uint8, bnb4, q4, q4f16). The folder is laid
out exactly like ``Xenova/musicgen-small``::

    <out>/config.json, generation_config.json, tokenizer.json, tokenizer_config.json
    <out>/onnx/text_encoder.onnx            <out>/onnx/text_encoder_quantized.onnx
    <out>/onnx/decoder_model.onnx           <out>/onnx/decoder_model_quantized.onnx
    <out>/onnx/decoder_with_past_model.onnx <out>/onnx/decoder_with_past_model_quantized.onnx
    <out>/onnx/decoder_model_merged.onnx    <out>/onnx/decoder_model_merged_quantized.onnx
    <out>/onnx/encodec_decode.onnx          <out>/onnx/encodec_decode_quantized.onnx
    <out>/onnx/build_delay_pattern_mask.onnx
    <out>/onnx/encodec_encode.onnx          (mglab's own, for continuation: mglab.onnx.export.export_encoder)
    <out>/onnx/*_fp16.onnx (every graph), decoder_model_merged_{int8,uint8,bnb4,q4,q4f16}.onnx
    <out>/pytorch/ (model.safetensors + configs: the very same weights, for parity tests)

Needs the ``reference`` extra (torch, transformers, optimum-onnx). Rebuild with::

    python scripts/build_tiny_model.py --out data/models/tiny-musicgen [--gabotechs DIR]

``--stereo`` builds the stereo variant (8 codebooks, left/right interleaved, 2 channels, as
``musicgen-stereo-*``; the tests build it into a temporary folder, ``--no-variants``: fp32 only).
``--melody`` builds a tiny random ``MusicgenMelodyForConditionalGeneration`` (the text encoder 24 wide, so the
text projection is there; chroma_length 235 as the public checkpoints) and exports it with ``mglab export``'s
torch.onnx route (:mod:`mglab.onnx.export_melody`), fp32 and q8; with ``--stereo`` the stereo melody variant.
``--gabotechs DIR`` also lays the model out like ``gabotechs/music_gen`` (the tests build that copy themselves
rather than commit a second set of graphs).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mglab.onnx import export_melody  # noqa: E402
from mglab.onnx.export import export_encoder, export_onnx, tokenizer_files  # noqa: E402
from mglab.onnx.quantize import make as make_variant  # noqa: E402

CORPUS = [
    "lofi piano with soft drums", "80s pop track with bassy drums and synth",
    "90s rock song with loud guitars and heavy drums", "ambient pad with slow strings",
    "jazz trio with upright bass and brushed snare", "techno beat with a deep kick",
    "acoustic guitar folk song", "orchestral film score with horns and choir",
    "happy ukulele melody", "sad cello solo in a minor key", "hip hop beat with vinyl crackle",
    "funky bass line and electric piano", "epic trailer music with big drums",
    "calm flute over rain sounds", "fast drum and bass with a reese bass",
]


def build_tokenizer(vocab_size: int):
    """A T5-style Unigram tokenizer (``<pad>``=0, ``</s>``=1, ``<unk>``=2, ``</s>`` appended)."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from tokenizers.trainers import UnigramTrainer

    tok = Tokenizer(Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = UnigramTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
                             unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    return tok


# Toy sizes of MusicGen's architecture; benchmarks/build_small_shapes.py passes musicgen-small's real ones.
TINY = dict(
    text=dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
              relative_attention_max_distance=32),
    # 1000 * 1.4 kbps // (50 frames/s * 7 bits) = 4 quantizers = 4 codebooks of 128 entries.
    audio=dict(hidden_size=16, num_filters=4, num_residual_layers=1, codebook_size=128, target_bandwidths=[1.4],
               num_lstm_layers=1),
    decoder=dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=64),
    max_length=256,
)


def build_torch_model(text_vocab: int, seed: int, sizes: dict = TINY, stereo: bool = False, melody: bool = False):
    import torch
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    torch.manual_seed(seed)
    text_sizes = {**sizes["text"], "d_model": 24} if melody else sizes["text"]    # melody: a text projection
    text = T5Config(vocab_size=text_vocab, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **text_sizes)
    audio = EncodecConfig(sampling_rate=32000, audio_channels=1, upsampling_ratios=[8, 5, 4, 4],
                          use_causal_conv=False, normalize=False, pad_mode="reflect", norm_type="weight_norm",
                          **sizes["audio"])
    vocab = sizes["decoder"]["vocab_size"]
    # stereo (as musicgen-stereo-*): 8 codebooks, left and right interleaved, each channel through the mono codec
    decoder = MusicgenDecoderConfig(num_codebooks=8 if stereo else 4, audio_channels=2 if stereo else 1,
                                    max_position_embeddings=2048, pad_token_id=vocab, bos_token_id=vocab,
                                    **sizes["decoder"])
    assert audio.num_quantizers * decoder.audio_channels == decoder.num_codebooks
    if melody:
        model = _melody_model(text, audio, decoder)
    else:
        config = MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(),
                                decoder=decoder.to_dict())
        model = MusicgenForConditionalGeneration(config).eval()
    # transformers starts EnCodec codebooks at zero: then the audio would not depend on the codes.
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            embed = torch.randn_like(layer.codebook.embed)
            layer.codebook.embed.copy_(embed)
            layer.codebook.embed_avg.copy_(embed)
            layer.codebook.inited.fill_(1.0)
    gen = model.generation_config
    gen.do_sample, gen.guidance_scale, gen.max_length = True, 3.0, sizes["max_length"]
    gen.pad_token_id = gen.decoder_start_token_id = gen.bos_token_id = vocab
    return model


def _melody_model(text, audio, decoder):
    import torch
    from transformers import (
        MusicgenMelodyConfig,
        MusicgenMelodyDecoderConfig,
        MusicgenMelodyForConditionalGeneration,
    )

    decoder = MusicgenMelodyDecoderConfig(**{k: v for k, v in decoder.to_dict().items()
                                             if k not in ("model_type", "architectures", "transformers_version")})
    config = MusicgenMelodyConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(),
                                  decoder=decoder.to_dict(), num_chroma=12, chroma_length=235)
    model = MusicgenMelodyForConditionalGeneration(config).eval()
    # At transformers' initial scale (std 0.02) the prefix is drowned by the sinusoidal positions (~1): the
    # random model would ignore its condition and a parity test would prove little. Louder projections and
    # sharper, louder attention make text and melody change the tokens.
    with torch.no_grad():
        model.audio_enc_to_dec_proj.weight.normal_(0.0, 2.0)
        model.enc_to_dec_proj.weight.normal_(0.0, 2.0 / text.d_model ** 0.5)
        for layer in model.decoder.model.decoder.layers:
            layer.self_attn.q_proj.weight.mul_(20.0)
            layer.self_attn.k_proj.weight.mul_(20.0)
            layer.self_attn.v_proj.weight.mul_(10.0)
            layer.self_attn.out_proj.weight.mul_(10.0)
    return model


GRAPHS = ("text_encoder", "decoder_model", "decoder_with_past_model", "decoder_model_merged", "encodec_decode")
EVERY = ("q8", "fp16")                                         # variants of every graph
MERGED = ("q8", "fp16", "int8", "uint8", "bnb4", "q4", "q4f16")   # of the merged decoder: all of Xenova's


def write_variants(onnx_dir: Path, every=EVERY, merged=MERGED) -> None:
    """Quantized variants made with Xenova's recipe (``scripts/quantize.py``): ``every`` for each graph,
    ``merged`` for the merged decoder (quantized as one graph, inside its ``If`` branches)."""
    for name in GRAPHS:
        for variant in merged if name == "decoder_model_merged" else every:
            make_variant(onnx_dir / f"{name}.onnx", variant)


def model_for_encoder(pytorch_dir: Path):
    from transformers import MusicgenForConditionalGeneration

    return MusicgenForConditionalGeneration.from_pretrained(pytorch_dir).audio_encoder


def gabotechs_copy(src: Path, dst: Path, size: str = "small") -> None:
    """Lay out an Xenova-layout model like ``gabotechs/music_gen``: ``<size>/config.json`` and tokenizer, and
    per-variant folders (``<size>_fp32``, ``<size>_fp16``, ``<size>_i8``) whose graphs keep their weights in
    external ``.onnx_data`` files, as that repository's medium and large models do."""
    import onnx

    (dst / size).mkdir(parents=True, exist_ok=True)
    for name in ["config.json", "generation_config.json", "tokenizer.json"]:
        shutil.copy(src / name, dst / size / name)
    for variant, suffix in [("fp32", ""), ("fp16", "_fp16"), ("i8", "_quantized")]:
        folder = dst / f"{size}_{variant}"
        folder.mkdir(exist_ok=True)
        for name in ["text_encoder", "decoder_model_merged", "decoder_model", "decoder_with_past_model",
                     "encodec_decode"]:
            model = onnx.load(src / "onnx" / f"{name}{suffix}.onnx")
            onnx.save(model, folder / f"{name}.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                      location=f"{name}.onnx_data", size_threshold=1024)


def build(out: Path, *, seed: int = 0, sizes: dict = TINY, text_vocab: int | None = None,
          variants: tuple = (EVERY, MERGED), stereo: bool = False, melody: bool = False) -> None:
    """Build, export, merge, quantize and lay out one model at ``out`` (replaced whole at the end). A melody
    model is exported by ``mglab export``'s torch.onnx route, fp32 and (if ``variants`` names any) q8."""
    tok = build_tokenizer(vocab_size=128)
    model = build_torch_model(text_vocab or tok.get_vocab_size(), seed, sizes, stereo=stereo, melody=melody)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp = Path(tmp)
        stage = tmp / "out"
        (stage / "onnx").mkdir(parents=True)
        model.save_pretrained(stage / "pytorch")
        del model
        tok.save(str(stage / "pytorch" / "tokenizer.json"))
        if melody:
            dtypes = ("fp32", "q8") if any(variants) else ("fp32",)
            export_encoder(export_melody.export_to(stage / "pytorch", stage, dtypes, print).audio_encoder,
                           stage / "onnx" / "encodec_encode.onnx")
            tokenizer_files(stage / "pytorch", stage)
            return _replace(stage, out)
        export_onnx(stage / "pytorch", tmp / "export")
        export_encoder(model_for_encoder(stage / "pytorch"), stage / "onnx" / "encodec_encode.onnx")
        for f in (tmp / "export").iterdir():
            if f.suffix in (".onnx", ".onnx_data") or f.name.endswith(".onnx.data"):
                shutil.move(f, stage / "onnx" / f.name)
        write_variants(stage / "onnx", *variants)                             # (every graph, merged decoder)
        for name in ["config.json", "generation_config.json"]:
            shutil.copy(stage / "pytorch" / name, stage / name)
        tok.save(str(stage / "tokenizer.json"))
        (stage / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "T5Tokenizer", "pad_token": "<pad>", "eos_token": "</s>",
             "unk_token": "<unk>", "model_max_length": 512}, indent=2))
        _replace(stage, out)


def _replace(stage: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    shutil.move(str(stage), out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/models/tiny-musicgen"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stereo", action="store_true", help="8 codebooks, 2 channels (as musicgen-stereo-*)")
    parser.add_argument("--melody", action="store_true", help="a MusicGen-Melody (chroma prepended to the decoder)")
    parser.add_argument("--no-variants", action="store_true", help="fp32 graphs only")
    parser.add_argument("--gabotechs", type=Path, default=None,
                        help="also write a gabotechs/music_gen-shaped copy here (external .onnx_data files)")
    args = parser.parse_args(argv)
    build(args.out, seed=args.seed, stereo=args.stereo, melody=args.melody,
          variants=((), ()) if args.no_variants else (EVERY, MERGED))
    print(f"wrote {args.out}")
    if args.gabotechs:
        gabotechs_copy(args.out, args.gabotechs)
        print(f"wrote {args.gabotechs}")


if __name__ == "__main__":
    main()
