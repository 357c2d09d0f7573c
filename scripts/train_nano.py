"""Train nano-musicgen: a MusicGen trained here, on the synthetic corpus of :mod:`mglab.corpus`.

    python scripts/train_nano.py --out data/models/nano-musicgen        # make nano-model

transformers' ``MusicgenForConditionalGeneration`` at small sizes: a T5 text encoder trained from scratch with
a word-level ``tokenizers`` tokenizer, MusicGen's decoder over 4 codebooks of 64 tokens with the usual delay
pattern, and condition dropout (20% of examples get the null condition: zero hidden states and a zero mask,
exactly what guidance feeds) so classifier-free guidance works. CPU, deterministic for a seed. Exported like
the tiny model (optimum, merged and split decoders in fp32, the merged one in q8), with the synthesizer codec
(:mod:`mglab.synth`) in place of EnCodec, into the Xenova layout, with the PyTorch weights in ``pytorch/`` for
the parity tests. The model card (``README.md``) is written by ``benchmarks/eval_nano.py``'s numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from build_tiny_model import build_torch_model, export_onnx  # noqa: E402

from mglab import corpus, delay, synth  # noqa: E402

SIZES = dict(
    text=dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, relative_attention_num_buckets=16,
              relative_attention_max_distance=32),
    # 1000 * 1.2 kbps // (50 frames/s * 6 bits) = 4 codebooks of 64 entries (the EnCodec is replaced)
    audio=dict(hidden_size=8, num_filters=2, num_residual_layers=1, codebook_size=synth.VOCAB,
               target_bandwidths=[1.2], num_lstm_layers=1),
    decoder=dict(vocab_size=synth.VOCAB, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, ffn_dim=512),
    max_length=256,
)
SECONDS = 5.0                     # training clips: 250 frames, 253 decoding steps
DROPOUT = 0.2                     # share of examples trained with the null condition


def build_tokenizer():
    """Word-level: every word of the corpus's grammar, lower-cased, split on whitespace; ``</s>`` appended."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", *corpus.vocabulary()])}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Lowercase(), normalizers.Replace(",", " ")])
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return tok


def batch(rng: np.random.Generator, size: int, tok, start: int):
    """Prompts' ids and mask, delayed decoder inputs ``[B*K, S-1]`` and targets (-100 where forced)."""
    clips = [corpus.example(rng, SECONDS) for _ in range(size)]
    tok.enable_padding(pad_id=0, pad_token="<pad>")
    enc = tok.encode_batch([c.prompt for c in clips])
    ids = np.array([e.ids for e in enc])
    mask = np.array([e.attention_mask for e in enc])
    codes = np.stack([c.codes for c in clips])                                  # [B, K, T]
    tokens = delay.delay(codes, start)                                          # [B, K, T + 4]
    pattern = delay.build_delay_pattern(4, tokens.shape[-1], start)             # [K, S]
    targets = np.where(pattern[None, :, 1:] == delay.PREDICT, tokens[:, :, 1:], -100)   # [B, K, S-1]
    b, k, s = tokens.shape
    return ids, mask, tokens[:, :, :-1].reshape(b * k, s - 1), targets.reshape(b * k, s - 1)


def train(model, tok, steps: int, batch_size: int, seed: int, lr: float, log_every: int = 50):
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    start = model.config.decoder.bos_token_id
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / 200) *
                                              0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    model.train()
    history, t0 = [], time.time()
    for step in range(steps):
        ids, mask, dec_in, targets = (torch.from_numpy(a) for a in batch(rng, batch_size, tok, start))
        keep = torch.from_numpy((rng.random(batch_size) >= DROPOUT).astype(np.float32))     # [B]
        hidden = model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state * keep[:, None, None]
        cond_mask = mask * keep[:, None].long()                                 # null condition: zeros, mask 0
        logits = model(encoder_outputs=(hidden,), attention_mask=cond_mask, decoder_input_ids=dec_in).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                 ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
        if step % log_every == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {np.mean(history[-log_every:]):.4f}  {time.time() - t0:7.1f} s",
                  flush=True)
    model.eval()
    return {"steps": steps, "batch_size": batch_size, "seconds": time.time() - t0,
            "final_loss": float(np.mean(history[-100:])), "loss_every_100": history[::100]}


def lay_out(model, tok, out: Path, log: dict) -> None:
    """Export (optimum), merge, quantize, swap in the synthesizer codec, write the Xenova layout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp = Path(tmp)
        stage = tmp / "out"
        (stage / "onnx").mkdir(parents=True)
        model.save_pretrained(stage / "pytorch")
        tok.save(str(stage / "pytorch" / "tokenizer.json"))
        export_onnx(stage / "pytorch", tmp / "export")
        for name in ["text_encoder", "decoder_model", "decoder_with_past_model", "decoder_model_merged",
                     "build_delay_pattern_mask"]:
            shutil.move(tmp / "export" / f"{name}.onnx", stage / "onnx" / f"{name}.onnx")
        synth.build(stage / "onnx" / "encodec_decode.onnx")
        quantize_decoders(stage / "onnx")
        # the synthesizer has no weights to quantize: its q8 file is the same graph
        shutil.copy(stage / "onnx" / "encodec_decode.onnx", stage / "onnx" / "encodec_decode_quantized.onnx")
        config = json.loads((stage / "pytorch" / "config.json").read_text())
        config["mglab_codec"] = "synth"
        (stage / "config.json").write_text(json.dumps(config, indent=2))
        shutil.copy(stage / "pytorch" / "generation_config.json", stage / "generation_config.json")
        tok.save(str(stage / "tokenizer.json"))
        (stage / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>", "eos_token": "</s>",
             "unk_token": "<unk>", "model_max_length": 64}, indent=2))
        (stage / "training.json").write_text(json.dumps(log, indent=2))
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(stage), out)


def quantize_decoders(onnx_dir: Path) -> None:
    """q8 of the text encoder and the merged decoder (uint8 MatMul weights; merged from the two quantized
    decoders like the tiny model's). The split q8 decoders are not kept: the bundle must stay small."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from optimum.onnx import merge_decoders

    for name in ["text_encoder", "decoder_model", "decoder_with_past_model"]:
        quantize_dynamic(onnx_dir / f"{name}.onnx", onnx_dir / f"{name}_quantized.onnx",
                         weight_type=QuantType.QUInt8, op_types_to_quantize=["MatMul", "Gemm"])
    merge_decoders(onnx_dir / "decoder_model_quantized.onnx", onnx_dir / "decoder_with_past_model_quantized.onnx",
                   save_path=str(onnx_dir / "decoder_model_merged_quantized.onnx"), strict=False)
    for name in ["decoder_model", "decoder_with_past_model"]:
        (onnx_dir / f"{name}_quantized.onnx").unlink()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "models" / "nano-musicgen")
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    tok = build_tokenizer()
    model = build_torch_model(tok.get_vocab_size(), args.seed, SIZES)
    model.config.decoder._attn_implementation = "eager"
    log = train(model, tok, args.steps, args.batch_size, args.seed, args.lr)
    log.update(command=" ".join(["python", "scripts/train_nano.py", *(argv or sys.argv[1:])]),
               torch=torch.__version__, threads=args.threads, seed=args.seed)
    gen = model.generation_config
    gen.top_k, gen.guidance_scale = 50, 3.0
    lay_out(model, tok, args.out, log)
    print(f"wrote {args.out} ({log['seconds'] / 60:.1f} min of training, final loss {log['final_loss']:.3f})")


if __name__ == "__main__":
    main()
