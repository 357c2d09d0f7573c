"""nano-magnet against nano-musicgen on the same prompts: adherence, decoder passes and time per clip, in one run.

    .venv/bin/python benchmarks/eval_nano.py --model data/models/nano-magnet [--prompts 96] [--seeds 2]

``eval_nano.py`` hands a masked model here. The same held-out prompts as ``eval_nano.py`` (half with attribute
combinations never seen in training), ``--seeds`` seeds each, ``--duration`` s, measured from the audio by
``mglab.audio.evaluate``: the masked model at its defaults (MAGNeT's schedule, 50 passes) and at shorter
schedules (8, 16, 32 passes, in MAGNeT's 2:1:1:1 proportion), and ``--compare`` (nano-musicgen) at guidance 3,
each on the same machine in the same pool. A pass is one call of the network: a masked LM pass over every
frame, or one autoregressive decoder step (both on the conditional and null rows together).
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from common import markdown_table, process_pool, write_json
from eval_nano import ATTRS, by_combination, combination, held_out_clips, score

import mglab
from mglab.audio import evaluate
from mglab.nano import corpus

SCHEDULES = {"8 passes": [5, 1, 1, 1], "16 passes": [7, 3, 3, 3], "32 passes": [14, 6, 6, 6], "default": None}
TARGETS = ("register", "tempo", "key+mode", "instrument")
_MODELS = {}


def _load(paths: dict) -> None:
    for name, path in paths.items():
        _MODELS[name] = mglab.load(path)


def _run(task) -> list[dict]:
    """One prompt under one setting, every seed: generate (timed), then measure each clip."""
    setting, prompt, said, combo, seeds, duration = task
    name, label, kwargs = setting
    model = _MODELS[name]
    t = time.perf_counter()
    gen = model.generate([prompt] * seeds, duration=duration, seed=list(range(seeds)), **kwargs)
    seconds = (time.perf_counter() - t) / seeds
    if name == "masked":
        passes = sum(gen.settings["decoding_steps"])
    else:
        passes = gen.settings["max_new_tokens"]
    rows = []
    for s in range(seeds):
        hits = evaluate.adherence(said, gen.audio[s, 0], gen.sample_rate)
        rows.append({"setting": label, "held_out": combo is not None, "combination": combo, "prompt": prompt,
                     "seed": s, "hits": dict(hits), "abstained": hits.abstained, "seconds": seconds,
                     "passes": passes, "guidance": 3.0 if label == "default" else None})
    return rows


def settings(compare: bool) -> list[tuple]:
    out = [("masked", label, {} if steps is None else {"decoding_steps": steps}) for label, steps in SCHEDULES.items()]
    return out + ([("compare", "nano-musicgen, guidance 3", {"guidance_scale": 3.0})] if compare else [])


def run(args) -> dict:
    paths = {"masked": str(args.model), **({"compare": str(args.compare)} if args.compare else {})}
    clips = held_out_clips(args.prompts, args.duration)
    tasks = [(s, c.prompt, c.said, combination(c.attributes), args.seeds, args.duration)
             for s in settings(bool(args.compare)) for c in clips]
    t0 = time.time()
    with process_pool(args.workers, _load, (paths,)) as pool:
        rows = [r for rows_ in pool.map(_run, tasks, chunksize=4) for r in rows_]
    result = {"model": paths["masked"], "compare": paths.get("compare"),
              "compare_commit": getattr(args, "compare_commit", None), "prompts": args.prompts,
              "seeds": args.seeds, "duration": args.duration, "seconds": time.time() - t0, "rows": rows}
    table = defaultdict(dict)
    for _, label, _ in settings(bool(args.compare)):
        for part, sel in (("all", lambda r: True), ("seen", lambda r: not r["held_out"]),
                          ("held-out", lambda r: r["held_out"])):
            chosen = [r for r in rows if r["setting"] == label and sel(r)]
            table[f"{label} ({part})"] = {**score(chosen), "passes": float(np.mean([r["passes"] for r in chosen])),
                                          "seconds": float(np.mean([r["seconds"] for r in chosen]))}
    result["table"] = table
    result["targets"] = targets(table, bool(args.compare))
    result["combinations"] = by_combination([{**r, "guidance": 3.0 if r["setting"] == "default" else None}
                                             for r in rows], 3.0)
    print(render(table))
    print("\n" + "\n".join(f"{k}: {v}" for k, v in result["targets"].items()))
    write_json(args.json.with_name("eval_magnet.json"), result)
    if args.card:
        vamp = args.json.with_name("vamp_nano.json")
        import json

        write_card(Path(args.model), result, json.loads(vamp.read_text()) if vamp.is_file() else None)
    return result


def targets(table: dict, compare: bool) -> dict:
    """The issue's targets: at the defaults, each of register, tempo, key+mode and instrument within 5 points of
    nano-musicgen at guidance 3, over all prompts and over the held-out combinations."""
    if not compare:
        return {}
    out = {}
    for part in ("all", "held-out"):
        ours, theirs = table[f"default ({part})"], table[f"nano-musicgen, guidance 3 ({part})"]
        for a in TARGETS:
            gap = 100 * (theirs[a][0] - ours[a][0])
            out[f"{a} ({part})"] = f"{100 * ours[a][0]:.0f}% vs {100 * theirs[a][0]:.0f}%: " + \
                ("met" if gap <= 5 else f"NOT met ({gap:.0f} points below)")
    return out


def render(table: dict) -> str:
    return markdown_table(["run", *ATTRS, "abstained", "passes", "s / clip"],
                          [[name, *(f"{100 * v[a][0]:.0f}%" for a in (*ATTRS, "abstained")), f"{v['passes']:.0f}",
                            f"{v['seconds']:.2f}"] for name, v in table.items()])


def default_compare(model: Path) -> Path | None:
    sibling = Path(model).parent / "nano-musicgen"
    return sibling if sibling.is_dir() else None


CARD = """# nano-magnet

## What it is
A MAGNeT (audiocraft's masked decoder, `MagnetLMModel`) trained here on the synthetic corpus that nano-musicgen
learned from, so that masked decoding can be heard and measured offline: {layers} non-causal layers x {dim},
{heads} heads, 4 codebooks of 64 tokens, spans of 3 frames, {attention},
{segment:g} s segments, GELU. Text: nano-musicgen's trained T5 encoder, frozen, with audiocraft's `output_proj` trained.
Codec: nano-musicgen's synthesizer (`mglab/nano/synth.py`), **not EnCodec**. Everything it knows is **synthetic**.
`audiocraft/` holds the checkpoint as audiocraft saves it; the ONNX graphs were made from it by
`python -m mglab export audiocraft/ .`, the one path the parity tests prove on tiny-magnet.

## Data
Clips of 4 s (2/3) and 6 s (1/3) drawn on the fly from the grammar of `mglab/nano/corpus.py` (seed {seed}), the
same attributes and the same four held-out combinations as nano-musicgen ({held_out}). {dropout:.0%} of
examples get the null condition (one zero text vector), which guidance feeds.

## Training
{warm}
{context}
`{command}`: audiocraft MAGNeT's objective (`solvers/magnet.py`) with the stage drawn per example: codebooks
below it given, above it masked, its own codebook masked in spans at a cosine-scheduled rate, cross-entropy on
those positions; label smoothing {smoothing:g}; {steps} steps of batch {batch}, AdamW lr {lr:g}, {warmup} warm-up
steps then cosine. {minutes:.0f} minutes on {threads} CPU threads (a 2-core machine shared with other work),
torch {torch}. Final loss {loss:.3f}. Deterministic for a seed. Cross-attention ignores padded text positions
(audiocraft's attends them; mglab's graph masks them), in training as in the graph.
{guided}
## Scores
`benchmarks/eval_nano.py --model data/models/nano-magnet{compare_flag}`: the {prompts} held-out prompts of
nano-musicgen's card (half with combinations never seen in training) x {seeds} seeds, {duration:g} s, measured
from the audio by `mglab.audio.evaluate`; {compared} at guidance 3 on the same prompts in the same run.
Passes: network calls per clip (each on the conditional and null rows together); seconds: wall time per clip on
this machine. Decoding at the bundle's defaults: {defaults}.

{table}

Targets (at the bundle's defaults, within 5 points of nano-musicgen at guidance 3):
{targets}

{vamp}
## Limits
- {weak}
- {speed}
- Monophonic melodies of six synthetic timbres; no real audio, no harmony.
- At most {segment:g} s (one segment): MAGNeT decodes whole segments; longer pieces are not supported.
- Word-level vocabulary (nano-musicgen's T5 and tokenizer): other words are unknown.
- Scores come from an automatic evaluator with its own errors (nano-musicgen's card gives its ceiling).
"""


VAMP_NOTE = """The sources are {source} 6 s clips, vamped by this model, as VampNet
vamps a given recording. The evaluator's key finder reads whole clips (the first and last notes are its tonic
evidence): on the source's own middle 2 s it finds the whole clip's key+mode only as often as its ceiling row says.
So "keeps key+mode" is measured inside the scale: at least 90% of the middle's voiced frames have pitch classes of
the source's key and mode (as the evaluator reads the whole source). It tells C major from C minor but not from A
minor. Its ceiling row is the source's own middle, its control row that middle a semitone higher (another key),
which the measure must reject. The evaluator's 2 s key+mode is reported beside it. An attribute the evaluator
abstains on (too few notes in 2 s to read an instrument's attack) is counted apart. A click is a sample step in
the 20 ms around a seam steeper than any the vamped clip has elsewhere. "Periodic frames changed" counts the
frames whose note (codebook 0) differs from the source's; one kept frame in 8 pins most of a melody whose notes
last 10-50 frames: a variation that holds each kept note until the next can change only the frames between two
kept frames whose notes differ (that row), more only by adding notes the kept frames do not ask for. Each
stage sees the codebooks above it masked (`upper_codebooks="masked"`, the default), as training shows them, and a
vamp decodes with the defaults of config.json's "vamp" block where it has one; docs/guide/masked.md ("Vamping")
measures both choices.

"""


def write_card(folder: Path, result: dict, vamp_result: dict | None = None) -> None:
    """``folder/README.md`` from ``training.json``, ``config.json`` and the measured ``result`` (and
    ``benchmarks/vamp_nano.py``'s JSON when given)."""
    import json

    log = json.loads((folder / "training.json").read_text())
    cfg = json.loads((folder / "config.json").read_text())
    vamp_text, vamp = "", (vamp_result or {}).get("summary")
    if vamp:
        vamp_text = ("## Vamping\n`benchmarks/vamp_nano.py`: 6 s clips, the middle 2 s regenerated "
                     "(`inpaint(2, 2)`), measured from the audio.\n\n" + markdown_table(
                         ["claim", "share", "measured", "abstained", "target"],
                         [[k, f"{100 * v['share']:.0f}%", v["measured"], v["abstained"],
                           "-" if v["target"] != v["target"] else f">= {100 * v['target']:.0f}%"]
                          for k, v in vamp.items()]) + "\n\n" + VAMP_NOTE.format(source=_source(vamp_result)))
    card = CARD.format(
        layers=cfg["num_layers"], dim=cfg["hidden_size"], heads=cfg["num_heads"], segment=cfg["segment_duration"],
        attention=attention(cfg["subcodes_context"]),
        seed=log["seed"], held_out="; ".join(", ".join(f"{k} {v}" for k, v in c.items()) for c in corpus.HELD_OUT),
        dropout=log["dropout"], command=rerun(log), smoothing=log["label_smoothing"], steps=log["steps"],
        batch=log["batch_size"], lr=log["lr"], warmup=log["warmup"], minutes=log["seconds"] / 60,
        guided=guided_note(log), compared=_compared(result), defaults=defaults_note(cfg),
        compare_flag=f" --compare-commit {result['compare_commit']}" if result.get("compare_commit") else "",
        threads=log["threads"], torch=log["torch"], loss=log["final_loss"], prompts=result["prompts"],
        seeds=result["seeds"], duration=result["duration"], table=render(result["table"]),
        targets="\n".join(f"- {k}: {v}" for k, v in result["targets"].items()) or "- (no comparison run)",
        vamp=vamp_text, weak=weak(result["table"], log), speed=speed(result["table"]), warm=warm(log, folder),
        context=context_note(cfg, folder, log))
    (folder / "README.md").write_text(card)


def guided_note(log: dict) -> str:
    """The card's paragraph on the last training stage, on the guided logits (empty where there was none)."""
    g = log.get("guided")
    if not g:
        return ""
    after = ", ".join(f"{100 * g['probe'][f'acc_stage{k}']:.0f}%" for k in range(4))
    before = ", ".join(f"{100 * log['probes'][-1][f'acc_stage{k}']:.0f}%" for k in range(4))
    return (f"\nLast, {g['steps']} steps trained the guided logits (`--guided-steps`; "
            "`scripts/train_nano_magnet.py: guided_stage`, nano-musicgen's last stage in MAGNeT's terms): each of "
            f"{g['batch_size']} clips a step runs with its condition and with the null one, and the loss is the "
            "masked cross-entropy of both and of their mix u + g (c - u), g the coefficient MAGNeT's decoding uses "
            f"at the clip's masked share ({g['max_cfg']:g} with all masked, annealed to {g['min_cfg']:g}); AdamW lr "
            f"{g['lr']:g}, a {g['warmup']}-step warm-up into its own cosine schedule, {g['seconds'] / 60:.0f} "
            f"minutes, final loss of the guided logits {g['final_loss']:.3f} "
            f"({(log['seconds'] + g['seconds']) / 60:.0f} minutes in all; the two stages were timed in different "
            "sessions). Teacher-forced after it, the conditional "
            f"logits got codebooks 0-3's masked positions right in {after} (before it: {before}).\n")


def defaults_note(cfg: dict) -> str:
    """The card's words for the decoding defaults in ``config.json``."""
    g = cfg["generation"]
    text = (f"MAGNeT's (temperature {g['temperature']:g} annealed, top-p {g['top_p']:g}, guidance "
            f"{g['max_cfg_coef']:g} -> {g['min_cfg_coef']:g}, {g['decoding_steps']})")
    if g.get("mask_temperature"):
        text += (f", with VampNet's mask temperature {g['mask_temperature']:g} (Gumbel noise on which spans are "
                 "redrawn; audiocraft's MAGNeT has none)")
    vamp = cfg.get("vamp") or {}
    if vamp:
        text += "; a vamp takes " + ", ".join(f"{k.replace('_', ' ')} {_value(v)}" for k, v in vamp.items()) + \
            " over them (config.json's \"vamp\" block)"
    return text


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _compared(result: dict) -> str:
    c = result.get("compare_commit")
    return f"nano-musicgen (as bundled at commit `{c}`, `--compare-commit`)" if c else "nano-musicgen"


def _source(vamp_result: dict) -> str:
    c = vamp_result.get("source_commit")
    return (f"nano-musicgen's (as bundled at commit `{c}`, the benchmark's `--source-commit`)" if c
            else "nano-musicgen's (the benchmark's `--source`)")


def rerun(log: dict) -> str:
    """The training command as the card gives it: the logged one, with ``--parent-commit`` added where the parent was
    read at a commit the command does not name (a run made before the flag existed), so it reruns on a clone."""
    command = log["command"]
    if log.get("parent_commit") and "--parent-commit" not in command:
        command += f" --parent-commit {log['parent_commit']}"
    return command


def attention(context: int) -> str:
    """The card's words for the self-attention of stages > 0 (audiocraft's ``subcodes_context``; -1: unrestricted)."""
    if context < 0:
        return "full self-attention at every stage (audiocraft's `subcodes_context` -1)"
    return f"local attention |i - j| <= {context} after the first stage"


def context_note(cfg: dict, folder: Path, log: dict | None = None) -> str:
    """The card's paragraph on the attention of stages > 0, with the controlled runs of ``context_experiment.json``
    (``benchmarks/magnet_stages.py`` on models that differ in ``--context`` only) when the folder has it; ``log``
    (``training.json``) says whether a guided stage followed the run."""
    import json

    exp = folder / "context_experiment.json"
    if not exp.is_file():
        return ""
    runs = json.loads(exp.read_text())
    rows = []
    for run in runs["runs"]:
        for kept in ("codebooks 0-2", "codebooks 0-1", "codebook 0", "none"):
            v = runs["table"][f"{run['name']}: {kept}"]
            rows.append([_where(run["context"]), kept,
                         *(f"{100 * v[a][0]:.0f}%" for a in ("tempo", "key+mode", "instrument")),
                         f"{v['strikes']:.2f} ({v['truth']:.2f})", f"{v['switches']:.1f}"])
    return ("\nAttention of stages > 0: " + attention(cfg["subcodes_context"]) + ". audiocraft restricts it for "
            "EnCodec, whose higher codebooks are residual detail; this codec's are not: codebook 1 holds the strikes "
            "(the rhythm) and codebook 2 the clip's one instrument. Runs that differ in `--context` only (same "
            f"seed, data, steps and parent), measured by `benchmarks/magnet_stages.py` ({runs['prompts']} of the "
            f"card's prompts x {runs['seeds']} seed(s), `{exp.name}`): corpus clips with the codebooks under 'kept' "
            "given and the rest decoded by the model ('none': generation from the prompt):\n\n"
            + markdown_table(["attention", "kept", "tempo", "key+mode", "instrument", "strikes/s (truth)",
                              "timbre switches"], rows) + "\n" + _probes(runs["runs"])
            + f"\nThe bundle is the run '{_bundled(runs['runs'], cfg)}'"
            + (", then the guided stage below (the table was measured before it).\n" if (log or {}).get("guided")
               else ".\n"))


def _bundled(runs: list[dict], cfg: dict) -> str:
    """The one run whose attention is the bundle's (an error unless exactly one is)."""
    same = [r for r in runs if r["context"] == cfg["subcodes_context"]]
    if len(same) != 1:
        raise ValueError(f"context_experiment.json has {len(same)} runs with the bundle's subcodes_context "
                         f"{cfg['subcodes_context']}: it must have exactly one")
    return _where(same[0]["context"])


def _where(context: int) -> str:
    if not isinstance(context, int):
        raise ValueError(f"subcodes_context={context!r}: the run does not say its attention")
    return "full" if context < 0 else f"within {context} frames"


def _probes(runs: list[dict]) -> str:
    """The runs' teacher-forced accuracy per codebook at the end of training, as a sentence (empty without)."""
    said = [f"{_where(r['context'])}: "
            + ", ".join(f"{100 * r['probe'][f'acc_stage{k}']:.0f}%" for k in range(4))
            for r in runs if r.get("probe")]
    return ("\nTeacher-forced at the end of training, the share of masked positions predicted right (over all "
            "masking rates) in codebooks 0, 1, 2, 3 ("
            + "; ".join(said) + ").\n") if said else ""


def _at(log: dict) -> str:
    """Where the parent's weights were when they were copied: `` as bundled at commit X`` when the log says."""
    return f" as bundled at commit `{log['parent_commit']}`" if log.get("parent_commit") else ""


def warm(log: dict, folder: Path) -> str:
    """The card's paragraph on where the weights started (and the controlled run that chose it, when bundled)."""
    import json

    if not log.get("parent"):
        return "Weights start at torch's defaults (no warm start)."
    text = (f"Warm start: every weight of the transformer, the embeddings, the output heads and the text projection "
            f"is copied from nano-musicgen (`{log['parent']}`{_at(log)}, `scripts/nano_magnet.py: warm_start`): "
            "the two are the same network at the same sizes, which a test proves by running the copy as MusicGen runs "
            "(causal mask, delayed codes) and getting transformers' logits. Only what it was trained to do differs "
            "(causal, delay pattern).")
    exp = folder / "warm_start_experiment.json"
    if exp.is_file():
        runs = json.loads(exp.read_text())["runs"]
        (cold, c), (hot, h) = [(name, r["probes"][-1] | {"lr": r["lr"]}) for name, r in runs.items()]
        text += (f" In a run of {h['step']} steps from the same seed and data (`{exp.name}`), codebook 0 got "
                 f"{100 * h['acc_stage0']:.0f}% of its masked positions right from the warm start (lr {h['lr']:g}) "
                 f"against {100 * c['acc_stage0']:.0f}% from {cold} (lr {c['lr']:g}, the earlier nano-magnet's), "
                 f"and the first pass found the key {100 * h['key']:.0f}% against {100 * c['key']:.0f}%.")
    return text


def weak(table: dict, log: dict) -> str:
    """The card's sentence on what the model follows poorly at its defaults, from the measured table."""
    ours = table["default (all)"]
    low = [f"{a} ({100 * ours[a][0]:.0f}%)" for a in ATTRS if ours[a][1] and ours[a][0] < 0.8]
    if not low:
        return "Every attribute is followed in at least 80% of clips at the defaults."
    probe = (log.get("guided") or {}).get("probe") or (log.get("probes") or [{}])[-1]   # after the last stage
    return ("Followed in fewer than 80% of clips at the defaults (not learned well in this training's budget): "
            + ", ".join(low) + f". Teacher-forced at the end of training, codebook 0 (pitch) got "
            f"{100 * probe.get('acc_stage0', float('nan')):.0f}% of its masked positions right and codebook 1 "
            f"(articulation: when notes start) {100 * probe.get('acc_stage1', float('nan')):.0f}%: those decide "
            "key, tempo and the instrument's attacks.")


def speed(table: dict) -> str:
    """The card's sentence on passes against wall time, from the measured table."""
    ours, theirs = table["default (all)"], table.get("nano-musicgen, guidance 3 (all)")
    if not theirs:
        return "No autoregressive comparison was run."
    return (f"Fewer passes is not less time here: {ours['passes']:.0f} passes took {ours['seconds']:.2f} s a clip "
            f"against nano-musicgen's {theirs['passes']:.0f} steps in {theirs['seconds']:.2f} s on this CPU. Each "
            "masked pass runs every frame through the network (no cache), while an autoregressive step runs one "
            "frame against its cached keys and values; at these sizes the masked passes cost more in all.")
