"""Train nano-magnet: audiocraft's MAGNeT (masked decoding) trained here, on the corpus of :mod:`mglab.nano.corpus`.

    python scripts/train_nano_magnet.py --out /work/nano-magnet-ckpt --parent-commit a13b50d   # 35-56 min, 2 CPU threads

The model is audiocraft's ``MagnetLMModel`` built by its own builders (``scripts/nano_magnet.py``: 4 codebooks of
64 tokens, the synthesizer codec :mod:`mglab.nano.synth`, 50 frames/s), conditioned on text by audiocraft's
``T5Conditioner`` over nano-musicgen's trained T5 encoder (frozen; only ``output_proj`` trains), with
cross-attention that ignores padded text positions. It starts from nano-musicgen's trained decoder
(``--parent``, :func:`nano_magnet.warm_start`: the same transformer at the same sizes, copied tensor for
tensor; ``--parent-commit a13b50d`` reads it as it was before its retrain, the bundle's parent); from torch's initialization (``--parent none``) 400 steps reached 22% of codebook 0's masked positions,
against 75% from the warm start (same seed and data; lr 2e-3 from scratch as the earlier model, 1e-3
warm). The objective is audiocraft's (``solvers/magnet.py``), with
the stage drawn per example rather than per batch:

- stage ``s`` uniform in 0..3; codebooks below it given, above it all masked (token ``card``), and the
  self-attention mask of the row full for stage 0, ``|i - j| <= subcodes_context`` above (what the export runs;
  ``--context``, default 5 as audiocraft's; -1 leaves every stage unrestricted, as audiocraft reads it);
- codebook ``s`` masked at rate ``cos(pi/2 * u)``, ``u ~ U(0, 1)``, in spans of ``span_len``: the rate is rounded
  to a percent and turned into a number of span starts whose expected masked share is that rate
  (:func:`span_starts_table`), the starts drawn uniformly, each span reaching ``span_len`` to its right;
- cross-entropy on the masked positions of codebook ``s`` only (mean over the batch's masked positions).

20% of examples get the null condition (one zero text vector), as guidance feeds it. Clips are 4 s (what the
evaluation generates) or 6 s (vamping), drawn per step. Deterministic for a seed (torch's seed for the weights,
a numpy Generator for clips, stages, masks and dropout). Writes audiocraft's checkpoint layout into ``--out``
(``state_dict.bin``, ``compression_state_dict.bin``, ``nano-t5/``) and ``training.json``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# torch's OpenMP threads spin while they wait; on a shared 2-core machine that made 2-thread steps 5-10x slower
# whenever another process ran (0.5 s -> 3-5 s). Passive waiting keeps them near the 1-thread time. Before torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import nano_magnet as magnet  # noqa: E402

from mglab.nano import corpus, synth  # noqa: E402

MUSICGEN = ROOT / "data" / "models" / "nano-musicgen" / "pytorch"   # its text encoder and tokenizer
DROPOUT = 0.2                     # share of examples trained with the null condition
SECONDS = (4.0, 6.0)              # clip lengths, drawn per step with SECONDS_P
SECONDS_P = (2 / 3, 1 / 3)
# As nano-musicgen: where the data never goes, cross-entropy leaves the conditional and unconditional tails
# free, and guidance (MAGNeT's starts at 10) multiplies their ratio. A small smoothing gives both one floor.
LABEL_SMOOTHING = 1e-3
PROBE_SEED, PROBE_COUNT, PROBE_SECONDS = 10**6, 96, 4.0
GUIDED_CFG = (10.0, 1.0)          # MAGNeT's max_cfg_coef, min_cfg_coef: what its decoding anneals between


@functools.lru_cache
def span_starts_table(frames: int, span_len: int) -> np.ndarray:
    """``[101]``: for a masking rate of m percent, the number of span starts ``u`` whose expected masked share
    ``1 - C(T - L, u) / C(T, u)`` first reaches m / 100 (audiocraft's ``_calc_mean_maskrate_to_u_LUT``)."""
    shares, kept = [0.0], (frames - span_len) / frames
    for u in range(1, frames):
        shares.append(1 - kept)
        kept *= (frames - span_len - u) / (frames - u)
    return np.searchsorted(shares, np.arange(101) / 100).astype(np.int64)     # side 'left', as audiocraft


def mask_rates(rng: np.random.Generator, count: int) -> np.ndarray:
    """The cosine schedule: ``cos(pi/2 * u)``, ``u ~ U(0, 1)`` ``[count]``."""
    return np.cos(rng.random(count) * math.pi * 0.5)


def span_mask(rates: np.ndarray, frames: int, span_len: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean ``[B, T]``: spans of ``span_len`` (cut at the clip's end) at uniformly drawn starts, as many as
    :func:`span_starts_table` gives for each row's rate (at least one)."""
    starts = span_starts_table(frames, span_len)[np.round(100 * rates).astype(np.int64)].clip(min=1)   # [B]
    order = rng.random((len(rates), frames)).argsort(-1)                        # [B, T] a permutation per row
    mask = order < starts[:, None]                                              # [B, T] span starts
    out = mask.copy()
    for shift in range(1, span_len):
        out[:, shift:] |= mask[:, :-shift]
    return out


def masked_inputs(codes: np.ndarray, stages: np.ndarray, stage_mask: np.ndarray, card: int):
    """Inputs ``[B, K, T]`` (codebooks above the stage and the stage's masked positions set to ``card``) and
    the loss mask ``[B, K, T]`` (the stage's masked positions only)."""
    k = np.arange(codes.shape[1])[None, :, None]                                # [1, K, 1]
    stage = stages[:, None, None]                                               # [B, 1, 1]
    loss_mask = (k == stage) & stage_mask[:, None, :]                           # [B, K, T]
    inputs = np.where(loss_mask | (k > stage), card, codes)                     # [B, K, T]
    return inputs, loss_mask


def masked_loss(logits, codes, loss_mask, smoothing: float = 0.0):
    """Cross-entropy of ``logits`` ``[B, K, T, V]`` against ``codes`` ``[B, K, T]`` over the positions of
    ``loss_mask`` ``[B, K, T]`` (mean over them)."""
    import torch

    return torch.nn.functional.cross_entropy(logits[loss_mask], codes[loss_mask], label_smoothing=smoothing)


def draw_batch(rng: np.random.Generator, size: int, seconds: float, span_len: int, card: int,
               dropout: float = DROPOUT) -> dict:
    """Clips of ``seconds`` with their prompts (``None``: the null condition), stages, inputs and loss masks."""
    clips = [corpus.example(rng, seconds) for _ in range(size)]
    codes = np.stack([c.codes for c in clips])                                  # [B, K, T]
    keep = rng.random(size) >= dropout                                          # [B]
    stages = rng.integers(0, codes.shape[1], size)                              # [B]
    stage_mask = span_mask(mask_rates(rng, size), codes.shape[-1], span_len, rng)   # [B, T]
    inputs, loss_mask = masked_inputs(codes, stages, stage_mask, card)
    return dict(prompts=[c.prompt if k else None for c, k in zip(clips, keep)], codes=codes, stages=stages,
                inputs=inputs, loss_mask=loss_mask)


def step_loss(lm, b: dict, smoothing: float):
    """(training loss, plain masked cross-entropy) of batch ``b`` (:func:`draw_batch`)."""
    import torch

    t = {k: torch.from_numpy(b[k]) for k in ("codes", "stages", "inputs", "loss_mask")}
    logits = magnet.forward(lm, t["inputs"], magnet.conditions(lm, b["prompts"]), t["stages"])   # [B, K, T, V]
    loss = masked_loss(logits, t["codes"], t["loss_mask"], smoothing)
    with torch.no_grad():
        plain = masked_loss(logits, t["codes"], t["loss_mask"])
    return loss, float(plain)


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


def guided_loss(lm, b: dict, smoothing: float, max_cfg: float = GUIDED_CFG[0], min_cfg: float = GUIDED_CFG[1]):
    """(training loss, plain masked cross-entropy of the guided logits) of batch ``b``, each clip run with its
    condition and with the null one: the masked cross-entropy of the conditional logits ``c``, the null ones
    ``u`` and their mix ``u + g (c - u)``, which is what MAGNeT's decoding samples from and no other term trains.
    ``g`` is the coefficient decoding uses at the clip's masked share ``m`` of its stage's codebook (``m max_cfg
    + (1 - m) min_cfg``: 10 with all masked, annealed to 1)."""
    import torch

    t = {k: torch.from_numpy(b[k]) for k in ("codes", "stages", "inputs", "loss_mask")}
    n = len(b["prompts"])
    rows = torch.cat([t["inputs"], t["inputs"]])                                # [2B, K, T]
    cond = magnet.conditions(lm, list(b["prompts"]) + [None] * n)
    logits = magnet.forward(lm, rows, cond, torch.cat([t["stages"], t["stages"]]))   # [2B, K, T, V]
    c, u = logits[:n], logits[n:]                                               # [B, K, T, V] each
    share = t["loss_mask"].any(1).float().mean(-1)                              # [B]: the stage's masked share
    g = (share * max_cfg + (1 - share) * min_cfg)[:, None, None, None]          # [B, 1, 1, 1]
    guided = u + g * (c - u)                                                    # [B, K, T, V]
    loss = sum(masked_loss(x, t["codes"], t["loss_mask"], smoothing) for x in (c, u, guided))
    with torch.no_grad():
        plain = masked_loss(guided, t["codes"], t["loss_mask"])
    return loss, float(plain)


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
    lm.eval()
    return {"steps": steps, "batch_size": batch_size, "lr": lr, "warmup": warmup, "max_cfg": GUIDED_CFG[0],
            "min_cfg": GUIDED_CFG[1], "seconds": time.time() - t0, "loss_every_50": history[::50],
            "final_loss": float(np.mean(history[-100:])) if history else None,
            "probe": probe(lm, lm.span_len) if steps else None}


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
    naming ``--parent-commit`` where the commit or the folder is not in the history. Each file is written to a
    temporary name, then renamed.
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

    names = git("ls-tree", "--name-only", f"{commit}:{rel.as_posix()}").decode().split()
    if "tokenizer.json" not in names:
        raise ValueError(f"--parent-commit {commit}: {rel} there holds no tokenizer.json ({names})")
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
                        help="read --parent as committed at this git revision (into OUT/parent): the bundle's is a13b50d")
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
        try:
            parent = parent_at(args.parent_commit, parent, args.out / "parent")
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
    if args.guided_steps:
        log["guided"] = guided_stage(lm, args.guided_steps, args.guided_batch, args.seed, args.guided_lr, 20)
    log.update(state_sha256=state_hash(lm), reload=reload_check(lm, magnet.save(lm, cfg, args.out)))
    write(lm, log, finished=True)
    print(f"wrote {args.out} ({log['seconds'] / 60:.1f} min, final loss {log['final_loss']:.3f}, "
          f"reload {log['reload']})")


def resume(args, parser, argv) -> None:
    """``--resume``: the guided stage on a finished checkpoint, written to ``--out`` with the checkpoint's log, the
    stage's and the command a whole run would take (``command``; ``commands_run``: the two that did)."""
    import shutil

    import torch

    src = args.resume
    try:
        log = json.loads((src / "training.json").read_text())
    except (OSError, ValueError) as err:
        parser.error(f"--resume {src}: no readable training.json ({err})")
    if not log.get("finished") or "guided" in log:
        parser.error(f"--resume {src}: its training did not finish, or it already has a guided stage")
    if not args.guided_steps:
        parser.error("--resume: give --guided-steps (the main stage is the checkpoint's)")
    if args.out.resolve() == src.resolve():
        parser.error("--resume: --out must be another folder (the checkpoint is read, not replaced)")
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    cfg = torch.load(src / "state_dict.bin", map_location="cpu")["xp.cfg"]
    lm = magnet.load(src)
    shutil.copytree(src / magnet.T5_NAME, args.out / magnet.T5_NAME, dirs_exist_ok=True)
    this = " ".join(["python", "scripts/train_nano_magnet.py", *(sys.argv[1:] if argv is None else argv)])
    flags = f" --guided-steps {args.guided_steps} --guided-batch {args.guided_batch} --guided-lr {args.guided_lr}"
    log["guided"] = guided_stage(lm, args.guided_steps, args.guided_batch, log["seed"], args.guided_lr, 20)
    log.update(command=log["command"] + flags, commands_run=[log["command"], this], state_sha256=state_hash(lm),
               reload=reload_check(lm, magnet.save(lm, cfg, args.out)))
    (args.out / "training.json").write_text(json.dumps(log, indent=2))
    print(f"wrote {args.out} (guided stage {log['guided']['seconds'] / 60:.1f} min, loss "
          f"{log['guided']['final_loss']:.3f}, reload {log['reload']})")


if __name__ == "__main__":
    main()
