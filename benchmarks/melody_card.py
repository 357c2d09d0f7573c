"""nano-melody's model card (``README.md``), written from its ``training.json`` and ``eval_melody.py``'s result."""

from __future__ import annotations

import json
from pathlib import Path

from common import markdown_table

CARD = """# nano-melody

## What it is
The melody sibling of nano-musicgen, trained here for teaching and testing offline: transformers'
`MusicgenMelodyForConditionalGeneration` at nano-musicgen's sizes (T5 text encoder d=64, 2 layers, its word-level
tokenizer; decoder 4 layers x 128, 4 heads, **no cross-attention**; 4 codebooks of 64 tokens, delay pattern).
The condition is a prefix of the decoder's input: the melody's chroma (`chroma_length` {chroma_length} frames of
128 ms: 4 s) projected, then the prompt's T5 states projected and masked. Exported by `python -m mglab export`
(torch.onnx: text encoder, melody condition, first-step and with-past decoders, fp32 and q8), with the nano
synthesizer in EnCodec's place; its PyTorch weights in `pytorch/`.
Everything it knows is **synthetic**: it has never heard real music, and its codec is a synthesizer.

## Data
{count} synthetic clips of {seconds:g} s drawn on the fly from the grammar of `mglab/nano/corpus.py` (seed
{seed}), as for nano-musicgen (the same held-out attribute combinations are never drawn). The melody given with
each clip is the chroma of the clip's own rendering (the synthesizer's audio through
`mglab.audio.chroma.chroma`, transformers' feature extractor's one-hot). Condition dropout: {drop}.{warp}{padding}

## Training
`{command}` (`make nano-melody`). Warm start: every weight of nano-musicgen's that this architecture has (text
encoder, decoder embeddings, self-attention, feed-forward, heads, text projection) is copied from
`{parent}`; its cross-attention is dropped and the chroma projection starts random. Then {steps} steps of
nano-musicgen's objective (`scripts/train_nano.py`: position-weighted cross-entropy with label smoothing, the
new-note and tempo terms) on {seconds:g} s clips, batch {batch}, AdamW (lr {lr:g}, one cosine schedule), and
{guided} steps of its guided objective with a fresh optimizer and schedule (each clip with text and melody and
with the null condition, the loss of both and of their mix at guidance {guidance:g}). {minutes:.0f} minutes on
{threads} CPU threads (2-core development machine), torch {torch}; final loss {loss:.3f}. Deterministic for a
seed. Teacher-forced at the end of the first stage (`training.json`): the new note's pitch class is the true
one at {melody:.0%} of note changes given the melody, {text_only:.0%} given the text alone.

## Scores
`benchmarks/eval_melody.py`: nano-musicgen's {prompts} held-out prompts (half with attribute combinations never
seen in training) x {seeds} seeds, {duration:g} s, default sampling (top-k 50), each given the melody of
another corpus clip (a seed no training draws; its own rhythm and pitch classes, so the prompt's key, mode
and tempo words may contradict it). Measured from the audio: chroma cosine with the given melody (audiocraft's
metric, `mglab.audio.chroma.chroma_cosine`: the share of frames whose strongest pitch class is the melody's;
1/12 by chance) and the prompt's attributes (`mglab.audio.evaluate`). "melody's key" / "prompt's key": on the
clips whose prompt names a key whose scale is not the melody's, how often the clip's measured key and mode are
the melody's, and the prompt's (so "key+mode", the prompt's, is low with a melody: the melody mostly overrules it).

{table}

## Limits
- Below the target it was built for (chroma cosine >= 0.8 at guidance 3): {gap}. Teacher-forced, the new
  note's pitch class is right at {melody:.0%} of note changes; free-running, the clips keep the melody's pitch
  classes more than its note timing (their notes change at a tempo of their own: notebook 09 draws both
  chromas), and chroma cosine scores frame by frame. 128 ms chroma frames (transformers' extractor) say when a
  note changes only to within a frame.
- {seconds:g} s melodies: a longer one is cut to {chroma_length} chroma frames, a shorter one repeated (as
  transformers does); one window only (mglab's melody models have no long form).
{no_text}- Monophonic melodies of six synthetic timbres; no real audio.
- Scores come from automatic measurements with their own errors.

## Rebuild
```bash
make nano-melody    # trains from nano-musicgen's weights, exports, measures (about 60 min on 2 cores)
```
"""


def write(model: Path, result: dict, cell, columns: list[str]) -> None:
    log = json.loads((Path(model) / "training.json").read_text())
    probe = log["probes"][-1]                                   # the plain stage's last probe
    table = markdown_table(["run", *columns], [[name, *(cell(v[c], c == "chroma") for c in columns)]
                                               for name, v in result["table"].items()])
    drop, guided = log["drop"], log.get("guided_stage", {"steps": 0, "seconds": 0.0, "guidance": 3.0})
    text = CARD.format(
        chroma_length=log["chroma_length"], count=log["batch_size"] * log["steps"]
        + log["batch_size"] // 2 * guided["steps"], seconds=log["clip_seconds"], seed=log["seed"],
        drop=f"{drop['text']:.0%} of examples without the text, {drop['melody']:.0%} without the melody (the null "
             f"chroma), {drop['both']:.0%} without both (the null condition guidance feeds)",
        command=log["command"], parent=log["parent"] + (f"` as bundled at commit `{log['parent_commit']}"
                                                        if log.get("parent_commit") else ""),
        steps=log["steps"], batch=log["batch_size"], lr=log["lr"],
        guided=guided["steps"], guidance=guided["guidance"], minutes=(log["seconds"] + guided["seconds"]) / 60,
        threads=log["threads"],
        torch=log["torch"], loss=log["final_loss"], melody=probe["melody"], text_only=probe["text_only"],
        prompts=result["prompts"], seeds=result["seeds"], duration=result["duration"], table=table,
        gap=_gap(result["table"]), padding=_padding(log), no_text=_no_text(log), warp=_warp(log))
    path = Path(model) / "README.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _warp(log: dict) -> str:
    share = log.get("warp", 0.0)
    return "" if not share else (
        f"\nRe-timed: {share:.0%} of the clips given with their melody have each note's length scaled by its own "
        f"factor from {log['warp_range'][0]:g} to {log['warp_range'][1]:g} (`train_nano_melody.warp`): the corpus's "
        "rhythm is a steady grid, on which the notes already played say when the next one starts; on these only the "
        "melody does.")


def _padding(log: dict) -> str:
    n = log.get("text_length")
    return "" if n is None else (
        f"\nEvery prompt is padded to {n} tokens, in training and when generating (`tokenizer.json`'s padding, which "
        "mglab keeps; transformers: `padding=\"max_length\"`), so a code frame sits at the same position, and the "
        "same distance from its chroma frame, whatever the prompt (and alone or in a batch).")


def _no_text(log: dict) -> str:
    if log.get("text_length") is not None:
        return ""
    return ("- `prompt=None` gives one zero text position (`\"\"` is one token); training dropped the text as zeros "
            "over the\n  batch's prompt length, so no-text generation sits at code positions it never trained on.\n"
            "- A prompt's tokens depend on the prompts batched with it: prompts are padded to the batch's longest, "
            "so a\n  longer neighbour moves its codes further from its chroma (greedy, 47% of a short prompt's tokens "
            "changed\n  beside a longer one). Generate it alone to reproduce it; `scripts/train_nano_melody.py "
            "--text-length`\n  trains a model whose prompts are padded to a fixed length instead (a controlled "
            "run of it is described beside `TEXT_LENGTH` in the script).\n")


def _gap(table: dict) -> str:
    g3, free = table.get("guidance 3, melody"), table.get("guidance 3, no melody")
    return (f"{g3['chroma'][0]:.2f} with the melody at guidance 3, {free['chroma'][0]:.2f} without it"
            if g3 and free else "not measured")
