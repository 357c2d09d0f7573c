"""Train nano-magnet: audiocraft's MAGNeT (masked decoding) trained here, on the corpus of :mod:`mglab.nano.corpus`.

    python scripts/train_nano_magnet.py --out /work/nano-magnet-ckpt --parent-commit a13b50d   # 35-56 min, 2 threads

The model is audiocraft's ``MagnetLMModel`` built by its own builders (``scripts/nano_magnet.py``: 4 codebooks of
64 tokens, the synthesizer codec :mod:`mglab.nano.synth`, 50 frames/s), conditioned on text by audiocraft's
``T5Conditioner`` over nano-musicgen's trained T5 encoder (frozen; only ``output_proj`` trains), with
cross-attention that ignores padded text positions. It starts from nano-musicgen's trained decoder
(``--parent``, :func:`nano_magnet.warm_start`: the same transformer at the same sizes, copied tensor for
tensor; ``--parent-commit a13b50d`` reads it as it was before its retrain, the bundle's parent); from torch's
initialization (``--parent none``) 400 steps reached 22% of codebook 0's masked positions, against 75% from the
warm start (same seed and data; lr 2e-3 from scratch as the earlier model, 1e-3
warm). The objective is audiocraft's (``solvers/magnet.py``), the stage drawn per example
(``scripts/magnet_objective.py``); stages > 0 attend ``|i - j| <= --context`` frames (default 5 as audiocraft's
``subcodes_context``; -1 leaves every stage unrestricted, as audiocraft reads it). ``--guided-steps`` adds a last
stage on the guided logits (:func:`guided_stage`); ``--resume`` runs it alone on a finished checkpoint.

20% of examples get the null condition (one zero text vector), as guidance feeds it. Clips are 4 s (what the
evaluation generates) or 6 s (vamping), drawn per step. Deterministic for a seed (torch's seed for the weights,
a numpy Generator for clips, stages, masks and dropout). Writes audiocraft's checkpoint layout into ``--out``
(``state_dict.bin``, ``compression_state_dict.bin``, ``nano-t5/``) and ``training.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# torch's OpenMP threads spin while they wait; on a shared 2-core machine that made 2-thread steps 5-10x slower
# whenever another process ran (0.5 s -> 3-5 s). Passive waiting keeps them near the 1-thread time. Before torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import nano_magnet as magnet  # noqa: E402
from magnet_objective import (  # noqa: E402,F401  (the objective's names, read here and by the tests)
    DROPOUT,
    GUIDED_CFG,
    LABEL_SMOOTHING,
    SECONDS,
    SECONDS_P,
    draw_batch,
    guided_loss,
    mask_rates,
    masked_inputs,
    masked_loss,
    span_mask,
    span_starts_table,
    step_loss,
)

from mglab.nano import corpus, synth  # noqa: E402

MUSICGEN = ROOT / "data" / "models" / "nano-musicgen" / "pytorch"   # its text encoder and tokenizer
PROBE_SEED, PROBE_COUNT, PROBE_SECONDS = 10**6, 96, 4.0


def probe(lm, span_len: int) -> dict:
    """Checks on clips training never draws (seed :data:`PROBE_SEED`): masked cross-entropy and accuracy per
    stage at rate 0.5; and, teacher-forced from a fully masked stage (the first decoding pass), on the clips
    whose prompt says it: key (codebook 0's argmax at frame 0 is the tonic), dynamics (codebook 1's first strike
    level on the asked side) and instrument (codebook 2's majority argmax)."""
    import torch

    rng = np.random.default_rng(PROBE_SEED)
    clips = [corpus.example(rng, PROBE_SECONDS) for _ in range(PROBE_COUNT)]
    codes = np.stack([c.codes for c in clips])                                  # [B, K, T]
    b, k, frames = codes.shape
    card = lm.card
    out, stage_rows = {}, np.arange(b) % k
    lm.eval()
    with torch.no_grad():
        cond = magnet.conditions(lm, [c.prompt for c in clips])
        inputs, mask = masked_inputs(codes, stage_rows, span_mask(np.full(b, 0.5), frames, span_len, rng), card)
        logits = magnet.forward(lm, torch.from_numpy(inputs), cond, torch.from_numpy(stage_rows))
        for s in range(k):
            m = torch.from_numpy(mask & (stage_rows == s)[:, None, None])
            target = torch.from_numpy(codes)[m]
            out[f"ce_stage{s}"] = round(float(torch.nn.functional.cross_entropy(logits[m], target)), 4)
            out[f"acc_stage{s}"] = round(float((logits[m].argmax(-1) == target).float().mean()), 4)
        first = {}
        for s in range(3):
            inputs, _ = masked_inputs(codes, np.full(b, s), np.ones((b, frames), bool), card)
            first[s] = magnet.forward(lm, torch.from_numpy(inputs), cond, torch.full((b,), s)).argmax(-1)[:, s].numpy()
    lm.train()
    said = {name: [i for i, c in enumerate(clips) if name in c.said] for name in ("key", "dynamics", "instrument")}
    key = [first[0][i, 0] > 0 and (synth.token_to_midi(int(first[0][i, 0]))
                                   - corpus.KEYS[clips[i].attributes["key"]]) % 12 == 0 for i in said["key"]]
    strike = [np.flatnonzero(synth.is_strike(codes[i, 1])) for i in said["dynamics"]]
    dyn = [(first[1][i, f[0]] % 8 >= 5) == (clips[i].attributes["dynamics"] == "loud")
           for i, f in zip(said["dynamics"], strike) if f.size]
    inst = [np.bincount(first[2][i], minlength=card).argmax() == corpus.INSTRUMENTS.index(
        clips[i].attributes["instrument"]) for i in said["instrument"]]
    return {**out, "key": round(float(np.mean(key)), 3), "dynamics": round(float(np.mean(dyn)), 3),
            "instrument": round(float(np.mean(inst)), 3)}


def train(lm, steps: int, batch_size: int, seed: int, lr: float, warmup: int, log_every: int = 50,
          probe_every: int = 500, on_probe=None) -> dict:
    """``steps`` AdamW steps (one warm-up + cosine schedule, gradients clipped at 1), clip lengths drawn from
    :data:`SECONDS` per step; :func:`probe` every ``probe_every`` steps (then ``on_probe(lm, log)``)."""
    import torch

    rng = np.random.default_rng(seed)
    span_len = lm.span_len
    opt = torch.optim.AdamW([p for p in lm.parameters() if p.requires_grad], lr=lr, weight_decay=0.01,
                            betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warmup) *
                                              0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    history, probes, t0 = [], [], time.time()
    lm.train()
    for step in range(steps):
        seconds = float(rng.choice(SECONDS, p=SECONDS_P))
        loss, plain = step_loss(lm, draw_batch(rng, batch_size, seconds, span_len, lm.card), LABEL_SMOOTHING)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
        sched.step()
        history.append(plain)
        if step % log_every == 0 or step == steps - 1:
            print(f"step {step:5d}  {seconds:g} s clips  loss {np.mean(history[-log_every:]):.4f}  "
                  f"{time.time() - t0:7.1f} s", flush=True)
        if (step + 1) % probe_every == 0 or step == steps - 1:
            probes.append({"step": step + 1, "seconds": round(time.time() - t0, 1), **probe(lm, span_len)})
            print("  probe:", probes[-1], flush=True)
            log = {"steps": steps, "done": step + 1, "batch_size": batch_size, "lr": lr, "warmup": warmup,
                   "seconds": time.time() - t0, "loss_every_100": history[::100],
                   "final_loss": float(np.mean(history[-100:])), "probes": probes}
            if on_probe:
                on_probe(lm, log)
    lm.eval()
    return log


def guided_stage(lm, steps: int, batch_size: int, seed: int, lr: float, warmup: int, log_every: int = 50) -> dict:
    """``steps`` AdamW steps of :func:`guided_loss` (its own warm-up and cosine schedule, gradients clipped at 1),
    after :func:`train`: nano-musicgen's last stage (``train_nano.py: guided_stage``) in MAGNeT's terms. Its
    clips come from a generator of its own (``[seed, 1]``), so a run resumed from a finished checkpoint draws
    what the whole run would (torch's generator, which the transformer's dropout draws from, is seeded from it
too). Every clip has its prompt (the null row is run beside it)."""
    import torch

    rng = np.random.default_rng([seed, 1])
    torch.manual_seed(int(rng.integers(2**31)))            # the transformer's dropout: not the main stage's draws
    opt = torch.optim.AdamW([p for p in lm.parameters() if p.requires_grad], lr=lr, weight_decay=0.01,
                            betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warmup) *
                                              0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    history, t0 = [], time.time()
    lm.train()
    for step in range(steps):
        seconds = float(rng.choice(SECONDS, p=SECONDS_P))
        b = draw_batch(rng, batch_size, seconds, lm.span_len, lm.card, dropout=0.0)
        loss, plain = guided_loss(lm, b, LABEL_SMOOTHING)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
        sched.step()
        history.append(plain)
        if step % log_every == 0 or step == steps - 1:
            print(f"guided {step:5d}  {seconds:g} s clips  loss {np.mean(history[-log_every:]):.4f}  "
                  f"{time.time() - t0:7.1f} s", flush=True)
    out = {"steps": steps, "batch_size": batch_size, "lr": lr, "warmup": warmup, "max_cfg": GUIDED_CFG[0],
           "min_cfg": GUIDED_CFG[1], "seconds": time.time() - t0, "loss_every_50": history[::50],
           "final_loss": float(np.mean(history[-100:])) if history else None,
           "probe": probe(lm, lm.span_len) if steps else None}
    lm.eval()                                                                   # probe leaves it training
    return out


def state_hash(lm) -> str:
    """sha256 of the LM's state (names and float32 bytes, in order): equal for equal weights."""
    h = hashlib.sha256()
    for name, t in lm.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def reload_check(lm, out: Path) -> dict:
    """The saved checkpoint read back by audiocraft's builders (``nano_magnet.load``): same state,
    same logits on a probe batch."""
    import torch

    back = magnet.load(out)
    b = draw_batch(np.random.default_rng(PROBE_SEED + 1), 8, 4.0, lm.span_len, lm.card)
    with torch.no_grad():
        a, c = (magnet.forward(m.eval(), torch.from_numpy(b["inputs"]), magnet.conditions(m, b["prompts"]),
                               torch.from_numpy(b["stages"])) for m in (lm, back))
    return {"same_state": state_hash(back) == state_hash(lm), "max_abs_logit_diff": float((a - c).abs().max())}


def parent_at(commit: str, parent: Path, dest: Path) -> Path:
    """``parent``'s files as committed at ``commit`` (git, this repository), written into ``dest``.

    The bundled nano-magnet was warm-started from nano-musicgen as it was at a13b50d, before that model's retrain;
    this reads those bytes back so the training command reproduces the bundle on any clone. Raises ``ValueError``
    naming ``--parent-commit`` where the commit or the folder is not in the history, or ``dest`` holds files.
    Each file is written to a temporary name, then renamed. Needs the repository's history (not a shallow clone).
    """
    try:
        rel = parent.resolve().relative_to(ROOT)
    except ValueError:
        raise ValueError(f"--parent {parent}: must lie inside {ROOT} to be read at a commit") from None

    def git(*args) -> bytes:
        run = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True)
        if run.returncode:
            raise ValueError(f"--parent-commit {commit}: {run.stderr.decode().strip()}")
        return run.stdout

    entries = [e.split("\t", 1) for e in git("ls-tree", "-z", f"{commit}:{rel.as_posix()}").decode().split("\0") if e]
    names = [name for meta, name in entries if meta.split()[1] == "blob"]       # files, not folders
    if "tokenizer.json" not in names:
        raise ValueError(f"--parent-commit {commit}: {rel} there holds no tokenizer.json ({names})")
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"--parent-commit: {dest} is not empty (files of another parent would mix in)")
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        tmp = dest / f".{name}.tmp"
        tmp.write_bytes(git("show", f"{commit}:{rel.as_posix()}/{name}"))
        tmp.replace(dest / name)
    return dest


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/work/nano-magnet-ckpt"))
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parent", type=Path, default=MUSICGEN,
                        help="warm start from this nano-musicgen (PyTorch weights); 'none': torch's initialization")
    parser.add_argument("--parent-commit", default=None,
                        help="read --parent as committed at this git revision (the bundle's: a13b50d)")
    parser.add_argument("--context", type=int, default=5,
                        help="stages > 0 attend |i - j| <= context frames (audiocraft's subcodes_context; -1: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--probe-every", type=int, default=500)
    parser.add_argument("--guided-steps", type=int, default=0,
                        help="a last stage on the guided logits (guided_stage); 0: none")
    parser.add_argument("--guided-batch", type=int, default=8)
    parser.add_argument("--guided-lr", type=float, default=3e-4)
    parser.add_argument("--resume", type=Path, default=None,
                        help="a finished checkpoint of this script: only its guided stage runs (the main one is "
                             "that checkpoint's, as its training.json says)")
    args = parser.parse_args(argv)
    if args.guided_steps < 0 or args.guided_batch < 1 or not args.guided_lr > 0:
        parser.error(f"--guided-steps >= 0, --guided-batch >= 1 and --guided-lr > 0 (got {args.guided_steps}, "
                     f"{args.guided_batch}, {args.guided_lr})")
    if args.resume is not None:
        return resume(args, parser, argv)
    try:
        cfg = magnet.config(dropout=DROPOUT, context=args.context)            # checks context, before any work
    except ValueError as err:
        parser.error(f"--context: {err}")
    parent = None if str(args.parent) == "none" else args.parent
    if args.parent_commit:
        if parent is None:
            parser.error("--parent-commit: needs a --parent to read (not 'none')")
        held = tempfile.TemporaryDirectory(prefix="nano-magnet-parent-")        # not in --out: not bundled
        try:
            parent = parent_at(args.parent_commit, parent, Path(held.name))
        except ValueError as err:
            parser.error(str(err))
    if not ((parent or MUSICGEN) / "tokenizer.json").is_file():
        parser.error(f"--parent {parent}: no tokenizer.json there (the text encoder's tokenizer is copied with it)")

    import torch

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    t5 = magnet.write_t5(parent or MUSICGEN, args.out / magnet.T5_NAME)      # the text encoder the parent learned
    lm = magnet.build(cfg, t5, seed=args.seed)
    if parent:
        magnet.warm_start(lm, parent)
    command = " ".join(["python", "scripts/train_nano_magnet.py", *(sys.argv[1:] if argv is None else argv)])
    extra = dict(command=command, seed=args.seed, threads=args.threads, torch=torch.__version__,
                 clip_seconds=SECONDS, clip_seconds_p=SECONDS_P, dropout=DROPOUT, label_smoothing=LABEL_SMOOTHING,
                 stage="per example, uniform", cfg=cfg,
                 parent=parent and os.path.relpath(args.parent if args.parent_commit else parent, ROOT),
                 parent_commit=args.parent_commit)

    def write(lm, log, finished=False):
        magnet.save(lm, cfg, args.out)
        (args.out / "training.json").write_text(json.dumps({**log, **extra, "finished": finished}, indent=2))

    log = train(lm, args.steps, args.batch_size, args.seed, args.lr, args.warmup, probe_every=args.probe_every,
                on_probe=write)
    log.update(state_sha256=state_hash(lm), reload=reload_check(lm, magnet.save(lm, cfg, args.out)))
    write(lm, log, finished=True)                     # the main stage: what --resume takes if the rest is cut off
    if args.guided_steps:
        log["guided"] = guided_stage(lm, args.guided_steps, args.guided_batch, args.seed, args.guided_lr, 20)
        log.update(state_sha256=state_hash(lm), reload=reload_check(lm, magnet.save(lm, cfg, args.out)))
        write(lm, log, finished=True)
    print(f"wrote {args.out} ({log['seconds'] / 60:.1f} min, final loss {log['final_loss']:.3f}, "
          f"reload {log['reload']})")


def resume(args, parser, argv) -> None:
    """``--resume``: the guided stage on a finished checkpoint (its main stage done), written to a new ``--out``
    (a temporary folder, renamed at the end) with the checkpoint's log, the stage's and the command a whole run
    would take (``command``; ``commands_run``: the two that did). Refused before any work where the main stage's
    flags are given (they are the checkpoint's), the folders clash, or the weights, threads or torch differ
    from what the checkpoint's log says (any of them would end elsewhere than the whole run)."""
    import shutil

    import torch

    src, out = args.resume, args.out
    main_flags = [f"--{k.replace('_', '-')}" for k in ("steps", "batch_size", "lr", "warmup", "seed", "parent",
                                                       "parent_commit", "context")
                  if getattr(args, k) != parser.get_default(k)]
    if main_flags:
        parser.error(f"--resume: {', '.join(main_flags)} belong to the main stage, which is the checkpoint's")
    if not args.guided_steps:
        parser.error("--resume: give --guided-steps (the main stage is the checkpoint's)")
    try:
        log = json.loads((src / "training.json").read_text())
    except (OSError, ValueError) as err:
        parser.error(f"--resume {src}: no readable training.json ({err})")
    if not log.get("finished") or "guided" in log:
        parser.error(f"--resume {src}: its main stage did not finish, or it already has a guided stage")
    if out.exists() and (out.resolve() == src.resolve() or any(out.iterdir())):
        parser.error(f"--out {out}: must be a new or empty folder (the checkpoint is read, not replaced)")
    if log.get("torch") != torch.__version__ or log.get("threads") != args.threads:
        parser.error(f"--resume {src}: trained with torch {log.get('torch')} on {log.get('threads')} threads; this "
                     f"is torch {torch.__version__} on --threads {args.threads} (the stage would end elsewhere)")
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    cfg = torch.load(src / "state_dict.bin", map_location="cpu")["xp.cfg"]
    lm = magnet.load(src)
    if state_hash(lm) != log.get("state_sha256"):
        parser.error(f"--resume {src}: its weights are not the ones its training.json describes")
    this = " ".join(["python", "scripts/train_nano_magnet.py", *(sys.argv[1:] if argv is None else argv)])
    flags = f" --guided-steps {args.guided_steps} --guided-batch {args.guided_batch} --guided-lr {args.guided_lr}"
    log["guided"] = guided_stage(lm, args.guided_steps, args.guided_batch, log["seed"], args.guided_lr, 20)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        tmp = Path(tmp) / "ckpt"
        shutil.copytree(src / magnet.T5_NAME, tmp / magnet.T5_NAME)
        log.update(command=log["command"] + flags, commands_run=[log["command"], this],
                   state_sha256=state_hash(lm), reload=reload_check(lm, magnet.save(lm, cfg, tmp)))
        (tmp / "training.json").write_text(json.dumps(log, indent=2))
        if out.exists():
            out.rmdir()                                                         # empty, checked above
        tmp.rename(out)
    print(f"wrote {out} (guided stage {log['guided']['seconds'] / 60:.1f} min, loss "
          f"{log['guided']['final_loss']:.3f}, reload {log['reload']})")

if __name__ == "__main__":
    main()
