"""What nano-musicgen's residual stream says, checked against its corpus's ground truth: probes, an SAE, steering.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/probe_nano.py [--clips 600] [--sae-steps 3000] [--ship]
    .venv/bin/python benchmarks/probe_nano.py --steer-sae data/models/nano-musicgen/sae/<hook name> [--gain 2]

1. Teacher-forced activations of ``--clips`` corpus clips (a seed training never used): every layer's
   ``resid_post``, ``attn_out``, ``cross_attn_out``, ``mlp_out`` and layer 0's ``resid_pre``, every
   ``--every``-th frame (:func:`mglab.inspect.activations.record_clips`).
2. Probes (:mod:`mglab.probe`): instrument, register, key, mode, dynamics, figure (logistic regression) and
   tempo in bpm (ridge) on each clip's mean, pitch in MIDI (ridge) and key, mode per frame; 5-fold
   cross-validation grouped by clip, the control task (a random label per prompt) for selectivity. Where the
   word is read vs what was played: the best ``cross_attn_out`` and ``resid_post`` on clips whose prompt names
   the attribute and on clips whose prompt does not.
3. A TopK SAE (:mod:`mglab.sae`) on the point where instrument and register read best, trained on the frame rows
   of 80% of the clips; explained variance, L0 and dead latents on the other 20%; per instrument and register
   value the feature of highest AUROC (frame rows of the held-out clips). ``--ship`` saves it under
   ``data/models/nano-musicgen/sae/<hook name>/``.
4. Steering: per value, that feature clamped on (to its 99th percentile on the value's frames, x ``--gain``) while
   generating prompts that ask for another value; the share measured (``mglab.audio.evaluate``) with the clamped
   value, and the other attributes' adherence against the same prompts and seeds unclamped.

Prints markdown tables, writes ``--json`` and (``--card``) the section between the markers in the model card.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_json  # noqa: E402
from magnet_stages import timbre_switches  # noqa: E402

import mglab  # noqa: E402
from mglab.inspect import activations, features  # noqa: E402
from mglab.inspect import probe as pr  # noqa: E402
from mglab.inspect import sae as S  # noqa: E402
from mglab.nano import corpus  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("instrument", "register", "key", "mode", "dynamics", "figure")
TARGETS = ("instrument", "register", "key", "mode")
POINTS = ("resid_post", "attn_out", "cross_attn_out", "mlp_out")


def names(layers: int) -> list[str]:
    return ["decoder.layers.0.hook_resid_pre"] + [f"decoder.layers.{i}.hook_{p}" for i in range(layers)
                                                  for p in POINTS]


def probes(ds, folds: int) -> dict:
    """Clip-pooled table for every attribute, per-frame table for midi, key and mode at each resid_post."""
    t0 = time.time()
    pooled = pr.layer_table(ds, [*CLASSES, "tempo_bpm"], folds=folds)
    frame_names = [n for n in ds.names if n.endswith("resid_post")]
    frames = pr.layer_table(ds, ["midi", "key", "mode"], names=frame_names, rows="frames", folds=folds,
                            max_rows=20000)
    said = word_vs_played(ds, folds)
    print(f"probes: {time.time() - t0:.0f} s", flush=True)
    return {"pooled": pooled.to_dict("records"), "frames": frames.to_dict("records"), "said": said}


def word_vs_played(ds, folds: int) -> list[dict]:
    """Per attribute: the best cross_attn_out and resid_post (over layers) on clips whose prompt names it and
    on clips whose prompt does not."""
    out = []
    for attribute in ("instrument", "register", "key", "mode", "dynamics"):
        word = "key" if attribute == "mode" else attribute
        for part, named in (("named", True), ("not named", False)):
            where = lambda t, w=word, n=named: t["said"].map(lambda s: (w in s) == n)   # noqa: E731
            row = {"attribute": attribute, "prompt": part}
            for point in ("cross_attn_out", "resid_post"):
                table = pr.layer_table(ds, attribute, names=[n for n in ds.names if n.endswith(point)],
                                       where=where, folds=folds)
                b = table.loc[table["score"].idxmax()]
                row[point] = (float(b["score"]), int(b["layer"]), float(b["chance"]), int(b["rows"]))
            out.append(row)
    return out


def train_sae(ds, hook: str, args) -> tuple:
    """The SAE on ``hook``'s frame rows of the first 80% of the clips; its statistics on the rest."""
    idx = ds.index()
    split = int(0.8 * len(ds))
    train_rows, test_rows = idx[:, 0] < split, idx[:, 0] >= split
    x = np.asarray(ds.frames(hook))                                         # [rows, d]
    t0 = time.time()
    sae, log = S.train(x[train_rows], hook_name=hook, k=args.k, d_sae=args.d_sae, steps=args.sae_steps,
                       batch_size=1024, lr=args.lr, dead_after=args.dead_after,
                       progress=lambda r: print(f"  sae step {r['step']}: mse {r['mse']:.3f}, dead "
                                                f"{r['dead']:.1%}", flush=True))
    stats = sae.stats(x[test_rows])
    stats["train_explained_variance"] = sae.stats(x[train_rows][:20000])["explained_variance"]
    stats["minutes"] = (time.time() - t0) / 60
    sae.cfg["metadata"] = {"model_name": "nano-musicgen", "dataset": f"{len(ds)} teacher-forced corpus clips",
                           "stats": stats}
    return sae, stats, log, test_rows


def aurocs(ds, sae, hook: str, rows: np.ndarray) -> dict:
    """Per instrument and register value: the feature of highest AUROC on ``rows`` (frame rows), its AUROC and
    its 99th percentile activation on the value's rows; and the best AUROC of a feature's mean over each clip
    (``clip_feature``, ``clip_auroc``)."""
    z = sae.encode(np.asarray(ds.frames(hook))[rows])                        # [rows, d_sae]
    table = ds.table("frames")[rows].reset_index(drop=True)
    clip = table["clip"].to_numpy()
    clips, first = np.unique(clip, return_index=True)
    pooled = np.stack([z[clip == c].mean(0) for c in clips])                # [clips, d_sae]
    by_clip = features.best(features.aurocs(pooled, table.iloc[first].reset_index(drop=True),
                                            ["instrument", "register"]))
    out = {}
    for r, c in zip(features.best(features.aurocs(z, table, ["instrument", "register"])).itertuples(),
                    by_clip.itertuples()):
        on = (table[r.attribute] == r.value).to_numpy()
        out[f"{r.attribute}={r.value}"] = {"feature": int(r.feature), "auroc": float(r.auroc),
                                           "p99": float(np.percentile(z[on, r.feature], 99)),
                                           "clip_feature": int(c.feature), "clip_auroc": float(c.auroc)}
    return out


def asking(prompt: str, attribute: str, old: str, new: str) -> str:
    """``prompt`` with its word for ``attribute``'s value ``old`` (any synonym) replaced by ``new``'s word: the
    control for a clamp, the same prompt asking for the value in words."""
    words = corpus.SYNONYMS.get(old, (old,)) if attribute == "register" else (old,)
    pattern = r"\b(" + "|".join(re.escape(w) for w in words) + r")\b"
    out, n = re.subn(pattern, new, prompt, count=1)
    if not n:
        raise ValueError(f"prompt {prompt!r} has no word for {attribute}={old!r}")
    return out


def _compare(clips, pick, measured, gen, attribute, value) -> tuple[list, dict]:
    """Per picked clip: whether ``gen`` has ``value`` (None where the evaluator gives no verdict), and each other
    said attribute's ``(before, after, lost)``: hits measured unclamped and on ``gen``; an attribute measured
    before but not after (``lost``) counts as a miss, since the change made it unmeasurable."""
    from mglab.audio import evaluate

    hits, per = [], {}
    for j, i in enumerate(pick):
        m = evaluate.measure(gen.audio[j, 0], gen.sample_rate)
        got = m[attribute]
        hits.append(None if got is None else value in got if attribute == "register" else got == value)
        others = {a: v for a, v in clips[i].said.items() if a not in (attribute, "figure")}
        before = evaluate.adherence(others, None, None, measured=measured[i])
        after = evaluate.adherence(others, None, None, measured=m)
        for a in others:
            if before.get(a) is not None:
                per.setdefault(a, []).append((bool(before[a]), bool(after.get(a)), after.get(a) is None))
    return hits, per


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _mean(values) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _summary(hits: list, per: dict) -> dict:
    """Shares from :func:`_compare`: turned (a clip left without a verdict counts as not turned, and is counted in
    ``unmeasured``), the others before and after."""
    pairs = [x for v in per.values() for x in v]
    return {"changed": _mean([bool(h) for h in hits]), "unmeasured": sum(h is None for h in hits),
            "others_before": _mean([x[0] for x in pairs]), "others_after": _mean([x[1] for x in pairs]),
            "per_attribute": {a: {"measured": len(v), "before": _mean([x[0] for x in v]),
                                  "after": _mean([x[1] for x in v]), "lost": sum(x[2] for x in v)}
                              for a, v in per.items()}}


def steer(model, sae, features: dict, args) -> dict:
    """Clamp each value's feature on prompts that ask for another value: the share that turns to it, each other
    attribute's adherence before and after (the same prompts and seeds unclamped) and the timbre switches; beside
    it the control, the same prompts asking for the value in words (:func:`asking`), unclamped."""
    from mglab.audio import evaluate

    rng = np.random.default_rng(24680)
    clips = [corpus.example(rng, args.duration) for _ in range(4 * args.steer_prompts)]
    clips = [c for c in clips if "instrument" in c.said and "register" in c.said][: args.steer_prompts]
    kw = dict(duration=args.duration, seed=list(range(len(clips))), guidance_scale=3.0)
    prompts = [c.prompt for c in clips]
    base = model.generate(prompts, **kw)
    base_switches = np.array([timbre_switches(c) for c in base.codes])      # [clips]
    measured = [evaluate.measure(base.audio[i, 0], base.sample_rate) for i in range(len(clips))]
    out = {}
    for key, f in features.items():
        attribute, value = key.split("=")
        pick = [i for i, c in enumerate(clips) if c.said[attribute] != value]
        with S.clamp(model, sae, f["feature"], args.gain * f["p99"], steps=getattr(args, "steer_steps", None)):
            gen = model.generate([prompts[i] for i in pick], **{**kw, "seed": pick})
        asked = model.generate([asking(prompts[i], attribute, clips[i].said[attribute], value) for i in pick],
                               **{**kw, "seed": pick})
        out[key] = {"feature": f["feature"], "value": args.gain * f["p99"], "clips": len(pick),
                    **_summary(*_compare(clips, pick, measured, gen, attribute, value)),
                    "timbre_switches": float(np.mean([timbre_switches(c) for c in gen.codes])),
                    "timbre_switches_unclamped": float(base_switches[pick].mean()),
                    "asked": _summary(*_compare(clips, pick, measured, asked, attribute, value))}
        c = out[key]["asked"]
        print(f"  steer {key}: {_pct(out[key]['changed'])} of {len(pick)}, other attributes "
              f"{_pct(out[key]['others_before'])} -> {_pct(out[key]['others_after'])} ({most_fallen(out[key])}), "
              f"timbre switches a clip {out[key]['timbre_switches']:.1f}; asked in words: {_pct(c['changed'])}, "
              f"others {_pct(c['others_before'])} -> {_pct(c['others_after'])} ({most_fallen(c)})", flush=True)
    return out


def steer_again(model, args, t0: float) -> dict:
    """``--steer-sae``: steering alone with a saved SAE, merged into the full run's ``--json`` (its probes and SAE
    kept, the targets recomputed); ``--card`` then rewrites the card's section from it."""
    import json

    if args.ship:
        raise SystemExit("--ship trains and saves an SAE: it cannot go with --steer-sae (which steers a saved one)")
    result = json.loads(args.json.read_text()) if args.json.exists() else {}
    if args.card and not {"probes", "sae"} <= set(result):
        raise SystemExit(f"--card with --steer-sae needs a full run's results in {args.json} (probes and SAE)")
    sae = S.load(args.steer_sae)
    result["steer"] = steer(model, sae, sae.cfg["metadata"]["features"], args)
    result["args"] = {**result.get("args", {}), "gain": str(args.gain), "duration": str(args.duration),
                      "steer_steps": steps_text(args.steer_steps),
                      "steer_prompts": str(args.steer_prompts), "steer_sae": str(args.steer_sae)}
    result["steer_minutes"] = (time.time() - t0) / 60
    if "probes" in result:
        result["targets"] = targets(result)
    write_json(args.json, result)
    if args.card:
        write_card(args.model / "README.md", result)
    return result


def step_range(text: str) -> slice:
    """``'START:STOP'`` (``'25:'``: from step 25 on) -> ``slice(START, STOP)``, for ``--steer-steps``."""
    import argparse

    start, sep, stop = text.partition(":")
    try:
        lo, hi = int(start or 0), (int(stop) if stop else None)
    except ValueError:
        lo = hi = -1
    if not sep or lo < 0 or (hi is not None and hi <= lo):
        raise argparse.ArgumentTypeError(f"{text!r}: give START:STOP, whole steps with 0 <= START < STOP "
                                         "(STOP may be left out)")
    return slice(lo, hi)


def steps_text(steps: slice | None) -> str:
    """``--steer-steps`` as the JSON records it: ``'START:STOP'`` (STOP left out for the end), ``'None'``."""
    if steps is None:
        return "None"
    return f"{steps.start}:{'' if steps.stop is None else steps.stop}"


def recorded_args(args) -> dict:
    """The command line as the JSON records it: each value as text, ``--steer-steps`` as :func:`steps_text`."""
    return {k: steps_text(v) if k == "steer_steps" else str(v) for k, v in vars(args).items()}


def clamped_steps(args: dict) -> str:
    """The card's words for ``--steer-steps`` as the JSON records it (:func:`steps_text`): '' for every step."""
    text = args.get("steer_steps", "None")
    if text in ("None", None):
        return ""
    steps = step_range(text)
    return f" at decoding steps {steps.start} to {steps.stop - 1 if steps.stop is not None else 'the end'}"


def most_fallen(row: dict) -> str:
    """The other attribute whose adherence fell most, as ``'tempo 100% -> 43% of 7'`` (``'(2 unmeasured)'``
    where the change left some unmeasurable); ``'-'`` where none fell."""
    per = row.get("per_attribute")
    if not per:
        return "-"
    a, v = max(per.items(), key=lambda kv: kv[1]["before"] - kv[1]["after"])
    if v["before"] - v["after"] <= 0:
        return "-"
    lost = f" ({v['lost']} unmeasured)" if v.get("lost") else ""
    return f"{a} {_pct(v['before'])} -> {_pct(v['after'])} of {v['measured']}{lost}"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "data" / "models" / "nano-musicgen")
    p.add_argument("--clips", type=int, default=600)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--every", type=int, default=2)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--sae-point", default="decoder.layers.2.hook_resid_post",
                   help="hook name ('best': where instrument and register read best on clip means)")
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--d-sae", type=int, default=1024)
    p.add_argument("--sae-steps", type=int, default=3000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--dead-after", type=int, default=20000)
    p.add_argument("--steer-prompts", type=int, default=24)
    p.add_argument("--duration", type=float, default=3.0)
    # 2: at 1 (the value's 99th percentile) the prompt's own instrument still won some frames, and the timbre
    # flickered (3-37 switches a 3 s clip, each one a new onset the tempo measure hears; 2026-12-07); at 2 the
    # instrument clamps switch it in no clip (the register clamps do, 4-6 times a clip)
    p.add_argument("--gain", type=float, default=2.0)
    # when to clamp (2026-12-07, 12 prompts, 2x): 0:8 turns almost nothing and still moves the tempo; 25: turns
    # as from the start, and the others fall as far (docs/guide/probes.md)
    p.add_argument("--steer-steps", type=step_range, default=None, metavar="START:STOP",
                   help="clamp at these decoding steps only (STOP may be left out; default every step)")
    p.add_argument("--skip", nargs="*", default=[], choices=["sae", "steer"])
    p.add_argument("--steer-sae", type=Path, default=None, metavar="DIR",
                   help="only steer, with a saved SAE and the features its cfg.json records (no probes, no training)")
    p.add_argument("--ship", action="store_true", help="save the SAE into the model folder")
    p.add_argument("--card", action="store_true", help="write the results into the model card")
    p.add_argument("--json", type=Path, default=ROOT / "reports" / "probe_nano.json")
    args = p.parse_args(argv)
    t0 = time.time()
    model = mglab.load(args.model)
    if args.steer_sae:
        return steer_again(model, args, t0)
    rng = np.random.default_rng(13579)                                       # a seed training never used
    clips = [corpus.example(rng, args.seconds) for _ in range(args.clips)]
    work = Path(tempfile.mkdtemp(prefix="probe-nano-"))
    ds = activations.record_clips(model, clips, work / "acts", names(model.config.num_layers), batch_size=25,
                                  every=args.every)
    print(f"recorded {ds} in {time.time() - t0:.0f} s", flush=True)
    result = {"args": recorded_args(args), "probes": probes(ds, args.folds)}
    report_probes(result["probes"])
    if "sae" not in args.skip:
        pooled = [r for r in result["probes"]["pooled"] if r["attribute"] in ("instrument", "register")]
        hook = args.sae_point if args.sae_point != "best" else max(sorted({r["name"] for r in pooled}),
                                     key=lambda n: min(r["score"] for r in pooled if r["name"] == n))
        sae, stats, log, test_rows = train_sae(ds, hook, args)
        feats = aurocs(ds, sae, hook, test_rows)
        result["sae"] = {"hook": hook, "stats": stats, "log": log, "features": feats}
        sae.cfg["metadata"]["features"] = feats
        print(f"SAE at {hook}: {stats}")
        print(markdown_table(["value", "feature", "AUROC", "clip feature", "clip AUROC"],
                             [[k, v["feature"], f"{v['auroc']:.3f}", v["clip_feature"], f"{v['clip_auroc']:.3f}"]
                              for k, v in feats.items()]))
        if args.ship:
            S.save(sae, args.model / "sae" / hook)
        if "steer" not in args.skip:
            result["steer"] = steer(model, sae, feats, args)
    result["minutes"] = (time.time() - t0) / 60
    result["targets"] = targets(result)
    for name, (value, met) in result["targets"].items():
        print(f"target {name}: {value} -> {'met' if met else 'NOT met'}")
    write_json(args.json, result)
    if args.card:
        write_card(args.model / "README.md", result)
    print(f"{result['minutes']:.1f} min")
    return result


def best_of(rows: list[dict], attribute: str) -> dict:
    return max((r for r in rows if r["attribute"] == attribute), key=lambda r: r["score"])


def targets(result: dict) -> dict:
    """The issue's targets: ``{name: (measured, met)}``."""
    p, out = result["probes"], {}
    for a in TARGETS:
        b = max([best_of(p["pooled"], a), *(r for r in p["frames"] if r["attribute"] == a)], key=lambda r: r["score"])
        out[f"{a} probe >= 95%, selectivity >= 50"] = (
            f"{100 * b['score']:.1f}%, selectivity {100 * b['selectivity']:.0f} ({b['name']})",
            b["score"] >= 0.95 and b["selectivity"] >= 0.5)
    t = best_of(p["pooled"], "tempo_bpm")
    out["tempo R^2 >= 0.8"] = (f"{t['score']:.3f} ({t['name']})", t["score"] >= 0.8)
    if "sae" in result:
        st, f = result["sae"]["stats"], result["sae"]["features"]
        out["SAE EV >= 0.9, L0 <= 32, dead < 10%"] = (
            f"EV {st['explained_variance']:.3f}, L0 {st['l0']:.0f}, dead {100 * st['dead']:.1f}%",
            st["explained_variance"] >= 0.9 and st["l0"] <= 32 and st["dead"] < 0.1)
        low = {k: round(v["auroc"], 3) for k, v in f.items() if v["auroc"] < 0.95}
        out["a feature of AUROC >= 0.95 per instrument and register (frames)"] = (f"below: {low or 'none'}", not low)
        low = {k: round(v["clip_auroc"], 3) for k, v in f.items() if v["clip_auroc"] < 0.95}
        out["the same, a feature's mean over each clip"] = (f"below: {low or 'none'}", not low)
    if "steer" in result:
        drop = {k: (v["others_before"] or 0) - (v["others_after"] or 0) for k, v in result["steer"].items()}
        bad = {k: (round(v["changed"] or 0, 2), round(drop[k], 2)) for k, v in result["steer"].items()
               if (v["changed"] or 0) < 0.8 or drop[k] > 0.1}
        out["steering >= 80%, others within 10 points"] = (f"failing (share, others' drop): {bad or 'none'}",
                                                           not bad)
    return out


def card_section(result: dict) -> str:
    """The model card's section (between markers, kept by ``eval_nano.py``)."""
    p = result["probes"]
    lines = ["<!-- probe_nano -->", "## Probes and sparse autoencoder", "",
             f"`benchmarks/probe_nano.py` ({result['args']['clips']} teacher-forced corpus clips of "
             f"{result['args']['seconds']} s, a seed training never used; every {result['args']['every']}nd frame; "
             f"{result['minutes']:.0f} min on 2 shared cores). Probes: scikit-learn, 5 folds grouped by clip; control "
             "task: a random label per prompt (selectivity = held-out score - control score, points).", ""]
    rows = []
    for a in (*CLASSES, "tempo_bpm"):
        b = best_of(p["pooled"], a)
        rows.append([a, "clip mean", b["name"].replace("decoder.", ""), f"{b['score']:.3f}",
                     f"{b['control']:.3f}", f"{100 * b['selectivity']:.0f}"])
    for a in ("midi", "key", "mode"):
        b = best_of(p["frames"], a)
        rows.append([a, "per frame", b["name"].replace("decoder.", ""), f"{b['score']:.3f}",
                     f"{b['control']:.3f}", f"{100 * b['selectivity']:.0f}"])
    lines += [markdown_table(["attribute", "rows", "best point", "held-out (acc. or R^2)", "control", "selectivity"],
                             rows), "",
              "Where the word is read and where the music is: best layer's held-out accuracy on clips whose prompt "
              "names the attribute / does not.", "",
              markdown_table(["attribute", "cross_attn_out named", "not named", "resid_post named", "not named"],
                             [[a, *(f"{s[pt][0]:.2f}" for pt in ("cross_attn_out", "resid_post")
                                    for s in [x for x in p["said"] if x["attribute"] == a])]
                              for a in ("instrument", "register", "key", "mode", "dynamics")])]
    if "sae" in result:
        st, sae = result["sae"]["stats"], result["sae"]
        lines += ["", f"SAE: `sae/{sae['hook']}/` (SAE Lens files: `cfg.json`, `sae_weights.safetensors`), TopK, "
                  f"d_sae {result['args']['d_sae']}, k {result['args']['k']}, trained on the frame rows of 80% of "
                  f"the clips ({st['minutes']:.0f} min); on the other 20%: explained variance "
                  f"{st['explained_variance']:.3f}, L0 {st['l0']:.0f}, dead {100 * st['dead']:.1f}%. Best feature "
                  "per value, AUROC on frame rows / of the feature's mean over each clip:", "",
                  markdown_table(["value", "frames: feature", "AUROC", "clip means: feature", "AUROC"],
                                 [[k, v["feature"], f"{v['auroc']:.3f}", v["clip_feature"], f"{v['clip_auroc']:.3f}"]
                                  for k, v in sae["features"].items()])]
    if "steer" in result:
        lines += ["", f"Steering: the value's feature clamped to {result['args']['gain']} x its 99th percentile on "
                  f"the value's frames{clamped_steps(result['args'])}, guidance 3, {result['args']['duration']} s, "
                  "prompts that ask for another value (measured from the audio; the other attributes where measured "
                  "unclamped; a verdict the clamp left unmeasurable counts as a miss, for the value as for the "
                  "others). "
                  "Asked in words: the control, the same prompts with the value's word in place of theirs.", "",
                  markdown_table(["value", "feature", "clips", "turned to it", "other attributes before -> after",
                                  "fell most", "timbre switches a clip (unclamped)", "asked in words: turned",
                                  "others after"],
                                 [[k, v["feature"], v["clips"], _pct(v["changed"]),
                                   f"{_pct(v['others_before'])} -> {_pct(v['others_after'])}",
                                   most_fallen(v), _switches(v), *_asked(v)]
                                  for k, v in result["steer"].items()])]
    lines += ["", "Targets (issue 33): " + "; ".join(f"{k}: {v} ({'met' if ok else 'not met'})"
                                                    for k, (v, ok) in result["targets"].items()) + ".",
              "<!-- /probe_nano -->"]
    return "\n".join(lines) + "\n"


def _asked(row: dict) -> list[str]:
    """The control's turned share and its other attributes after (its pairs are the clamp's: the same clips
    and the same unclamped verdicts, so its "before" is the clamp's)."""
    c = row.get("asked")
    return [_pct(c["changed"]), _pct(c["others_after"])] if c else ["-", "-"]


def _switches(row: dict) -> str:
    if "timbre_switches" not in row:
        return "-"
    return f"{row['timbre_switches']:.1f} ({row['timbre_switches_unclamped']:.1f})"


def write_card(path: Path, result: dict) -> None:
    old = path.read_text()
    new = card_section(result)
    if "<!-- probe_nano -->" in old:
        text = re.sub(r"<!-- probe_nano -->.*?<!-- /probe_nano -->\n?", lambda m: new, old, flags=re.S)
    else:
        text = old.rstrip("\n") + "\n\n" + new
    path.write_text(text)


def report_probes(r: dict) -> None:
    best = {}
    for row in r["pooled"] + r["frames"]:
        key = (row["attribute"], "clip mean" if row in r["pooled"] else "per frame")
        if key not in best or row["score"] > best[key]["score"]:
            best[key] = row
    print(markdown_table(["attribute", "rows", "best point", "held-out", "control", "selectivity", "chance"],
                         [[a, view, b["name"].replace("decoder.", ""), f"{b['score']:.3f}", f"{b['control']:.3f}",
                           f"{100 * b['selectivity']:.0f}", f"{b['chance']:.2f}"] for (a, view), b in best.items()]))
    print(markdown_table(["attribute", "prompt", "cross_attn_out (best layer)", "resid_post (best layer)",
                          "chance", "clips"],
                         [[s["attribute"], s["prompt"], f"{s['cross_attn_out'][0]:.2f} ({s['cross_attn_out'][1]})",
                           f"{s['resid_post'][0]:.2f} ({s['resid_post'][1]})", f"{s['resid_post'][2]:.2f}",
                           s["resid_post"][3]] for s in r["said"]]))


if __name__ == "__main__":
    main()
