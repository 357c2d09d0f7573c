"""Does nano-melody read *which* pitches its melody has, or also *when* each one sounds?

    .venv/bin/python benchmarks/melody_timing.py [--model data/models/nano-melody] [--prompts 48]

Two measurements that tell the two apart:

- teacher-forced (the model's PyTorch weights, the clips' true codes fed in): the share of codebook 0's note
  changes whose most likely new note has the true pitch class (``train_nano_melody.melody_accuracy``'s measure),
  given the clip's chroma, the chroma shifted in time by 1, 2 and 4 frames (128 ms each; rolled, so the frames
  pushed off one end come back at the other), and no melody.
  A model that reads the melody where it is in it loses accuracy when the chroma is shifted; one that reads only
  which pitch classes come, in what order, does not;
- free-running (ONNX, guidance 3, seed 0, 4 s): held-out corpus clips each given *their own* prompt and their own
  rendering as the melody (no contradiction between text and melody), per tempo word: chroma cosine
  (:func:`mglab.audio.chroma.chroma_cosine`'s frame match), its best over shifts of up to 2 frames, the share of
  frames whose pitch class is one the melody has, and the pitch-class changes per clip, the melody's and the
  generated clip's.

- attention (teacher-forced, 8 of those clips): for each layer and head, the share of a code position's
  self-attention on the chroma prefix, and how well the attended chroma frame (the attention-weighted mean
  index) follows the code position's own chroma frame (``t * 640 / 4096``), as a correlation over code frames
  20 on: a head that reads the melody where the clip is in it draws that diagonal.

- when (teacher-forced, 32 clips as they are and 32 re-timed by ``train_nano_melody.warp``, each note its own
  length): how well the model's probability that codebook 0 changes at a frame (1 - p(the note before)) picks the
  frames where a note starts (AUROC), given the melody, the melody shifted 2 frames, and none. A model that takes
  its timing from the melody does better with it than without, and worse with it shifted.

Prints the tables and writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "scripts"))
from common import markdown_table, write_json  # noqa: E402
from eval_nano import held_out_clips  # noqa: E402

import mglab  # noqa: E402
from mglab.audio.chroma import HOP, chroma  # noqa: E402
from mglab.nano import corpus, synth  # noqa: E402

SHIFTS = (0, 1, 2, 4)


def load_torch(path: Path):
    """The model's PyTorch weights (eager attention, so attentions can be returned) and its tokenizer."""
    from tokenizers import Tokenizer
    from transformers import MusicgenMelodyForConditionalGeneration

    model = MusicgenMelodyForConditionalGeneration.from_pretrained(str(path / "pytorch")).eval()
    model.config.decoder._attn_implementation = "eager"
    return model, Tokenizer.from_file(str(path / "pytorch" / "tokenizer.json"))


def forced(model, tok, clips):
    """The clips as the training feeds them: text states, mask, decoder input and their melodies' chroma."""
    import torch
    import train_nano as nano
    import train_nano_melody as tm

    start = model.config.decoder.bos_token_id
    ids, mask, dec_in, _, _, _ = (torch.from_numpy(a) for a in nano.batch(clips, tok, start))
    with torch.no_grad():
        hidden = model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state    # [B, n, d_text]
    return hidden, mask, dec_in, torch.from_numpy(tm.melody_of(clips))                       # chroma [B, F, 12]


def teacher_forced(model, tok, count: int) -> dict:
    """New-note pitch-class accuracy given the chroma shifted by each of :data:`SHIFTS` frames (both ways, mean),
    and given none."""
    import torch
    import train_nano_melody as tm

    rng = np.random.default_rng(10**6)                                          # melody_accuracy's clips
    clips = [corpus.example(rng, tm.SECONDS) for _ in range(count)]
    hidden, mask, dec_in, given = forced(model, tok, clips)
    out = {}
    with torch.no_grad():
        runs = {f"shift {s}": [torch.roll(given, d, 1) for d in ({s, -s})] for s in SHIFTS}
        runs["no melody"] = [tm.null_chroma(count)]
        for name, chromas in runs.items():
            hits = []
            for c in chromas:
                logits = tm.decode(model, tm.prefix(model, hidden, mask, c), dec_in)         # [B*K, T, V]
                hits += tm.new_note_hits(logits.reshape(count, synth.K, -1, synth.VOCAB), clips)
            out[name] = float(np.mean(hits))
    return out


def attention(model, tok, count: int = 8) -> list[dict]:
    """Per layer and head: the chroma prefix's share of the code positions' attention, and the correlation of the
    attended chroma frame with the code position's own."""
    import torch
    import train_nano_melody as tm

    rng = np.random.default_rng(10**6)
    hidden, mask, dec_in, given = forced(model, tok, [corpus.example(rng, tm.SECONDS) for _ in range(count)])
    with torch.no_grad():
        pre = tm.prefix(model, hidden, mask, given)                             # [B, L + n, d]
        out = model.decoder(input_ids=dec_in, encoder_hidden_states=pre, output_attentions=True)
    length, rows = model.config.chroma_length, []
    for layer, a in enumerate(out.attentions):                                  # [B*K, H, P + S, P + S]
        a = a[:, :, pre.shape[1]:, :length].numpy()                             # [B*K, H, S, L]: codes -> chroma
        mass = a.sum(-1)                                                        # [B*K, H, S]
        index = (a * np.arange(length)).sum(-1) / np.maximum(mass, 1e-9)        # [B*K, H, S] attended frame
        own = np.arange(a.shape[2]) * synth.HOP / HOP                          # [S] the code frame's chroma frame
        for head in range(a.shape[1]):
            rows.append({"layer": layer, "head": head, "chroma share": float(mass[:, head].mean()),
                         "follows position": float(np.corrcoef(index[:, head].mean(0)[20:], own[20:])[0, 1])})
    return rows


def onsets(model, tok, count: int = 32) -> dict:
    """AUROC of the model's probability of a note change for the frames where one happens, per rhythm (steady,
    re-timed) and melody (given, shifted 2 frames, none)."""
    import torch
    import train_nano_melody as tm
    from sklearn.metrics import roc_auc_score

    out = {}
    for rhythm in ("steady", "re-timed"):
        rng = np.random.default_rng(10**6 + 1)
        clips = [corpus.example(rng, tm.SECONDS) for _ in range(count)]
        if rhythm == "re-timed":
            clips = [tm.warp(c, rng) for c in clips]
        hidden, mask, dec_in, given = forced(model, tok, clips)
        with torch.no_grad():
            for name, chroma in (("melody", given), ("shift 2", torch.roll(given, 2, 1)),
                                 ("no melody", tm.null_chroma(count))):
                logits = tm.decode(model, tm.prefix(model, hidden, mask, chroma), dec_in)         # [B*K, T, V]
                p = logits.reshape(count, synth.K, -1, synth.VOCAB).softmax(-1)[:, 0]           # [B, T, V]
                truth, score = [], []
                for b, c in enumerate(clips):
                    codes = c.codes[0]                                                            # [T]
                    truth += list(codes[1:] != codes[:-1])
                    score += list(1 - p[b, np.arange(1, len(codes)), codes[:-1]].numpy())
                out[f"{rhythm}, {name}"] = float(roc_auc_score(truth, score))
    return out


def free_running(path: Path, count: int) -> list[dict]:
    """Each held-out clip with its own prompt and melody: frame matches of the generated clip's chroma."""
    model = mglab.load(path)
    rows = []
    for c in held_out_clips(count, 4.0):
        line = model.codec.decode(c.codes[None])[0]                             # [1, samples]
        gen = model.generate([c.prompt], duration=4.0, guidance_scale=3.0, seed=[0], melody=[line])
        want = chroma(line[None], gen.sample_rate)[0].argmax(-1)                # [F] pitch classes
        got = chroma(gen.audio[:1], gen.sample_rate)[0].argmax(-1)              # [F]
        n = min(len(want), len(got))
        want, got = want[:n], got[:n]
        match = {s: float(np.mean(want[max(0, s):n + min(0, s)] == got[max(0, -s):n - max(0, s)]))
                 for s in range(-2, 3)}
        rows.append({"tempo": c.attributes["tempo"], "match": match[0], "best shift": max(match.values()),
                     "in melody's set": float(np.mean(np.isin(got, np.unique(want)))),
                     "changes (melody)": int(np.sum(np.diff(want) != 0)),
                     "changes (generated)": int(np.sum(np.diff(got) != 0))})
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "data" / "models" / "nano-melody")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--json", type=Path, default=ROOT / "reports" / "melody_timing.json")
    args = parser.parse_args(argv)
    t0 = time.time()
    model, tok = load_torch(args.model)
    accuracy = teacher_forced(model, tok, args.prompts)
    print(markdown_table(["teacher-forced", *accuracy],
                         [["new note's pitch class", *(f"{v:.3f}" for v in accuracy.values())]]))
    heads = attention(model, tok)
    print()
    print(markdown_table(["layer.head", "chroma share", "follows position"],
                         [[f"{h['layer']}.{h['head']}", f"{h['chroma share']:.2f}", f"{h['follows position']:.2f}"]
                          for h in heads]))
    when = onsets(model, tok)
    print()
    print(markdown_table(["note-change AUROC", *when], [["", *(f"{v:.3f}" for v in when.values())]]))
    rows = free_running(args.model, args.prompts)
    columns = ["match", "best shift", "in melody's set", "changes (melody)", "changes (generated)"]
    table = {t: {k: float(np.mean([r[k] for r in rows if r["tempo"] == t])) for k in columns}
             for t in sorted({r["tempo"] for r in rows})}
    table["all"] = {k: float(np.mean([r[k] for r in rows])) for k in columns}
    print()
    print(markdown_table(["tempo (clips)", *columns],
                         [[f"{t} ({sum(r['tempo'] == t for r in rows) if t != 'all' else len(rows)})",
                           *(f"{v[k]:.2f}" if k in columns[:3] else f"{v[k]:.1f}" for k in columns)]
                          for t, v in table.items()]))
    result = {"model": str(args.model), "prompts": args.prompts, "seconds": time.time() - t0,
              "teacher_forced": accuracy, "attention": heads, "onsets": when, "free_running": table, "rows": rows}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
