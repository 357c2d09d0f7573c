"""Masked iterative decoding (MAGNeT): every frame of a codebook at once, refined over a few iterations.

The second decoding system of the MusicGen family (audiocraft's ``MagnetLMModel._generate_magnet``). The codes
``[B, K, T]`` start all masked (token ``card``). Codebook by codebook (a *stage*), lower ones fixed, higher
ones still masked, ``n`` iterations each; at iteration i the masked share is ``cos(pi/2 * i / (n - 1))`` of the
stage's spans (``span_len`` frames each, T cut to a multiple of it), the spans whose sampled tokens were least
sure masked again (``span_scoring``: ``"max"``, MAGNeT's default, scores a span ``1 - max prob`` of its
sampled tokens, so one sure token vouches for the span; ``"prod"`` sums ``-log prob`` over the span, so any
unsure token marks it, as audiocraft's ``span_scoring="prod"`` does)::

    stage 0, n = 4, 8 spans           iteration 0   1     2     3
    masked share cos(pi/2 * i/3)      1.00          0.87  0.50  0.00 -> at least 1 span
    spans masked                      8             6     4     1
    codebook 0   [M M M M M M M M] -> [a M b M M c M M] -> ... -> [a e b f g c h d]
    codebooks 1-3 stay masked; stage 1 then decodes codebook 1 with codebook 0 given.

Each iteration is one call of the masked LM (:mod:`mglab.onnx.export_magnet`) on the conditional and null rows
together; guidance is annealed from ``max_cfg_coef`` to ``min_cfg_coef`` with the masked share, the temperature
as ``temperature * (n - 1 - i) / n`` (floor 0.01) with the iterations left; top-p, else top-k, else plain sampling, each
drawn as audiocraft draws it (top-p over the tokens sorted by probability) from one uniform per position.

audiocraft defect, and what mglab does instead: its ``sample_top_k`` renormalizes ``probs`` in place, so with
top-k sampling the span scores come from the filtered distribution (with ``top_k=1`` every score is 0 and the
spans masked again are torch.topk's choice among ties). mglab scores spans with the model's probabilities
under every sampling rule, as audiocraft does under top-p and plain sampling.

``mask_temperature`` (VampNet's name; 0, audiocraft's MAGNeT, by default) adds annealed Gumbel noise to the
confidences that choose which spans are masked again (:func:`noisy_scores`), as VampNet and MaskGIT do.

Where mglab cannot follow audiocraft exactly (both named in the tests): the masked share is
``cos(pi/2 * t)`` with ``t`` torch's float32 ``linspace``, whose CPU kernel rounds some ``t`` differently with
the number of steps and the CPU's vector width (n = 10 here: ``t[6]`` = 0.66666669 where the halfway formula gives
0.66666663), so at a share of exactly 1/2 with an even number of spans audiocraft masks one span fewer or more
depending on the machine; mglab uses torch's halfway formula throughout. Ties between span scores (a saturated
softmax gives several exact 0s) go to the first span here, to ``torch.topk``'s choice there.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.numeric import softmax
from . import sampling

KEEP = -1e4                                        # a span's score that is never masked again (audiocraft's)
SPAN_SCORING = ("max", "prod")                     # audiocraft's span_scoring choices
SPAN_ARRANGEMENT = ("nonoverlap", "stride1")       # audiocraft's span_arrangement choices


def mask_shares(n: int) -> list[float]:
    """The masked share of each of ``n`` iterations: ``cos(pi/2 * t)`` over ``t = linspace(0, 1, n)``, in
    float32 with torch's ``linspace`` rounding (the number of masked spans truncates it, so the last bit counts)."""
    t = np.zeros(n, dtype=np.float32)
    if n > 1:
        step = np.float32(1.0) / np.float32(n - 1)
        half = n // 2
        for i in range(n):                                    # torch: start + i * step, then end - (n-1-i) * step
            t[i] = np.float32(i) * step if i < half else np.float32(1.0) - np.float32(n - 1 - i) * step
    return [float(np.cos(x * np.float32(math.pi) * np.float32(0.5), dtype=np.float32)) for x in t]


def no_hooks(name, value, step=None, layer=None):
    """Where no hooks are given: every value as it is."""
    return value


no_hooks.wants = lambda name: False                                        # as mglab.core.hooks.Hooks.wants


def decode_stage(run, codes: np.ndarray, stage: int, n: int, rngs, *, card: int, span_len: int,
                 temperature: float, top_k: int, top_p: float, max_cfg_coef: float, min_cfg_coef: float,
                 mask_temperature: float = 0.0, upper_codebooks: str = "masked", guided: bool = True,
                 span_scoring: str = "max", span_arrangement: str = "nonoverlap", keep: np.ndarray | None = None,
                 hooks=no_hooks, step0: int = 0, on_step=None) -> np.ndarray:
    """Decode codebook ``stage`` of ``codes [B, K, T]`` (T a multiple of ``span_len``) in ``n`` iterations.

    ``run(codes [R, K, T], stage, step) -> logits [R, K, T, card]``; with ``guided`` the rows are the conditional
    batch, then the null one (R = 2B). ``keep [B, T]``: positions whose given code stays (an audio prompt, or
    what a vamp keeps); a span wholly kept is never masked, the others share the schedule (as audiocraft's prompt).
    ``upper_codebooks``: ``"masked"`` shows the model the codebooks above ``stage`` as mask tokens (as MAGNeT's
    training masks them), ``"given"`` as they are in ``codes`` (audiocraft's decoding of a prompt).
    ``hooks(name, value, step, layer)`` fires the ``masked.*`` points at each iteration (``step0 + i``, layer =
    ``stage``): the mask the model sees, the guided logits ``[B, K, T, V]`` (editable), the span scores (frame
    scores with ``span_arrangement="stride1"``) and the
    codes after the iteration. ``on_step(1)`` is told each iteration as it ends (a progress bar).
    """
    _check_scoring(span_scoring)
    _check_arrangement(span_arrangement)
    codes = codes.copy()                                                       # [B, K, T]
    b, _, t = codes.shape
    overlap = span_arrangement == "stride1" and span_len > 1
    unit = 1 if overlap else span_len                  # what is scored: a frame (stride1) or a whole span
    rule = "prod" if overlap else span_scoring           # stride1 scores frames by -log p, whatever the rule
    bound = -KEEP / (2 * span_len)                       # stride1's noisy frame scores stay within +-bound
    spans = t // unit
    keep = np.zeros((b, t), dtype=bool) if keep is None else keep             # [B, T]
    given = codes[:, stage].copy()                                             # [B, T]
    kept_spans = keep.reshape(b, spans, unit).all(axis=-1)                     # [B, spans]
    to_make = spans - kept_spans.sum(axis=1)                                   # [B]
    if not to_make.any():
        if on_step is not None:
            on_step(n)                                                         # nothing to do: skipped
        return codes
    active = np.flatnonzero(to_make)                                           # [A]: rows with spans to make
    active_rngs = [rngs[row] for row in active]          # a row with nothing to make draws nothing
    if active.size == b:
        active = slice(None)                             # every row: index without copying probs each iteration
    current = np.where(keep, given, card)                                      # [B, T]: the stage's codebook
    scores = np.where(kept_spans, np.float32(KEEP), np.float32(0)).astype(np.float32)   # [B, spans]
    every = hooks.wants("masked.hook_logits")            # guide every codebook only for a hook that sees them
    books = slice(None) if every else slice(stage, stage + 1)
    for i, share in enumerate(mask_shares(n)):
        left = n - 1 - i
        span_mask = np.zeros((b, spans), dtype=bool)                           # [B, spans]
        for row in range(b):                                                   # the least sure spans, again
            if to_make[row]:
                count = max(int(np.float32(share) * np.float32(to_make[row])), 1)
                if overlap:
                    span_mask[row] = least_probable_spans(scores[row], count, span_len)
                else:
                    span_mask[row, _top(scores[row], count)] = True
        current[np.repeat(span_mask, unit, axis=1)] = card
        current = np.where(keep, given, current)                               # what is kept stays
        mask = current == card                                                 # [B, T]: to draw now
        if overlap:
            span_mask = mask                             # audiocraft: every frame drawn now is scored
        codes[:, stage] = current
        step = step0 + i
        seen = codes.copy()                                                    # [B, K, T]: what the model sees
        if upper_codebooks == "masked":
            seen[:, stage + 1:] = card
        hooks("masked.hook_mask", seen == card, step, stage)                   # [B, K, T]
        rows = np.concatenate([seen, seen]) if guided else seen                # [R, K, T]
        logits = run(rows, stage, step)[:, books]                              # [R, K or 1, T, card]
        if guided:
            cond, uncond = logits[:b], logits[b:]                              # [B, K or 1, T, card] each
            coef = share * max_cfg_coef + (1 - share) * min_cfg_coef
            logits = uncond + (cond - uncond) * np.float32(coef)               # [B, K or 1, T, card]
        if every:
            logits = hooks("masked.hook_logits", logits, step, stage)[:, stage]   # [B, T, card]
        else:
            logits = logits[:, 0]                                              # [B, T, card]
        temp = max(temperature * left / n, 1e-2)                               # annealed to 0 (floor 0.01)
        probs = softmax(logits / np.float32(temp))                             # [B, T, card]
        tokens = current.copy()                                                # [B, T]
        tokens[active] = _sample(probs[active], top_k, top_p, active_rngs)     # rows with work draw, alone
        current = np.where(mask, tokens, current)                              # [B, T]
        codes[:, stage] = current
        picked = np.take_along_axis(probs, tokens[..., None], axis=-1)[..., 0]   # [B, T]: the draws' probs
        scores = span_scores(picked.reshape(b, spans, unit), rule)              # [B, spans]
        if mask_temperature > 0 and left > 0:
            scores[active] = noisy_scores(scores[active], span_mask[active], mask_temperature * left / n,
                                          active_rngs, rule)                   # [A, spans]
            if overlap:                                  # a span's sum with one decided frame stays below any
                scores = np.clip(scores, -bound, bound).astype(np.float32)   # span of drawn frames
        scores = np.where(span_mask, scores, np.float32(KEEP)).astype(np.float32)
        scores = hooks("masked.hook_scores", scores, step, stage)              # [B, spans]
        codes = hooks("masked.hook_tokens", codes, step, stage)                # [B, K, T]
        current = codes[:, stage].copy()                                       # an edit counts from here on
        if on_step is not None:
            on_step(1)
    return codes


def generate(run, batch: int, frames: int, rngs, *, num_codebooks: int, card: int, span_len: int,
             decoding_steps, temperature: float = 3.0, top_k: int = 0, top_p: float = 0.9,
             max_cfg_coef: float = 10.0, min_cfg_coef: float = 1.0, mask_temperature: float = 0.0,
             upper_codebooks: str = "masked", guided: bool = True, span_scoring: str = "max",
             span_arrangement: str = "nonoverlap", source: np.ndarray | None = None,
             regenerate: np.ndarray | None = None, hooks=no_hooks, on_step=None) -> np.ndarray:
    """Codes ``[B, K, T]`` (T = ``frames`` cut to a multiple of ``span_len``, under either arrangement: audiocraft
    cuts only non-overlapping spans), stage after stage.

    With ``source [B, K, frames]`` and ``regenerate`` (bool ``[K, frames]`` or ``[B, K, frames]``): the positions
    marked are decoded anew, every other code of ``source`` is kept exactly (VampNet's vamping; a prefix
    with ``upper_codebooks="given"`` is audiocraft's prompt). Every argument is checked before the model runs.
    ``hooks`` as in :func:`decode_stage`; ``on_step(n)`` is told the iterations as they end (a progress bar).
    """
    check(batch, frames, rngs, num_codebooks=num_codebooks, card=card, span_len=span_len,
          decoding_steps=decoding_steps, temperature=temperature, top_k=top_k, top_p=top_p,
          max_cfg_coef=max_cfg_coef, min_cfg_coef=min_cfg_coef, mask_temperature=mask_temperature,
          upper_codebooks=upper_codebooks, span_scoring=span_scoring, span_arrangement=span_arrangement)
    t = frames // span_len * span_len
    if source is None:
        if regenerate is not None:
            raise ValueError("regenerate is given without source: a mask needs the codes it keeps")
        codes = np.full((batch, num_codebooks, t), card, dtype=np.int64)      # [B, K, T]: all masked
        regenerate = np.ones_like(codes, dtype=bool)
    else:
        source = np.asarray(source)
        if source.shape != (batch, num_codebooks, frames) or not np.issubdtype(source.dtype, np.integer):
            raise ValueError(f"source of shape {source.shape} is not allowed: source must be integer codes "
                             f"[batch, num_codebooks, frames] = {(batch, num_codebooks, frames)}")
        if ((source < 0) | (source >= card)).any():
            raise ValueError(f"source holds codes outside [0, {card}): source must be codes of the codec")
        if regenerate is None:
            raise ValueError("source is given without regenerate: say which codes to decode anew")
        regenerate = np.asarray(regenerate, dtype=bool)
        if regenerate.shape not in ((num_codebooks, frames), (batch, num_codebooks, frames)):
            raise ValueError(f"regenerate of shape {regenerate.shape} does not fit source {source.shape}: give "
                             f"[{num_codebooks}, {frames}] or [{batch}, {num_codebooks}, {frames}]")
        regenerate = np.broadcast_to(regenerate, source.shape)[..., :t]        # [B, K, T]
        codes = np.where(regenerate, card, source.astype(np.int64)[..., :t])  # [B, K, T]
    step0 = 0
    for stage, n in enumerate(decoding_steps):
        codes = decode_stage(run, codes, stage, n, rngs, card=card, span_len=span_len, temperature=temperature,
                             top_k=top_k, top_p=top_p, max_cfg_coef=max_cfg_coef, min_cfg_coef=min_cfg_coef,
                             mask_temperature=mask_temperature, upper_codebooks=upper_codebooks, guided=guided,
                             span_scoring=span_scoring, span_arrangement=span_arrangement,
                             keep=~regenerate[:, stage],
                             hooks=hooks, step0=step0, on_step=on_step)
        step0 += n
    return codes


def check(batch: int, frames: int, rngs, *, num_codebooks: int, card: int, span_len: int, decoding_steps,
          temperature: float, top_k: int, top_p: float, max_cfg_coef: float, min_cfg_coef: float,
          mask_temperature: float = 0.0, upper_codebooks: str = "masked", span_scoring: str = "max",
          span_arrangement: str = "nonoverlap") -> None:
    """Every argument of :func:`generate`, each error naming it and what is allowed."""
    if upper_codebooks not in ("masked", "given"):
        raise ValueError(f"upper_codebooks={upper_codebooks!r} is not allowed: upper_codebooks must be 'masked' "
                         "or 'given'")
    _check_scoring(span_scoring)
    _check_arrangement(span_arrangement)

    def integer(name, v, low, high=None):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low or (high is not None and v > high):
            bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise ValueError(f"{name}={v!r} is not allowed: {name} must be an integer {bound}")

    integer("span_len", span_len, 1)
    integer("frames", frames, span_len)                                        # at least one span
    integer("batch", batch, 1)
    integer("top_k", top_k, 0, card)
    steps = list(decoding_steps) if isinstance(decoding_steps, (list, tuple)) else None
    if steps is None or len(steps) != num_codebooks:
        raise ValueError(f"decoding_steps={decoding_steps!r} is not allowed: decoding_steps must be a list of "
                         f"{num_codebooks} iteration counts, one per codebook")
    for n in steps:
        integer("decoding_steps", n, 1)
    for name, v, ok in (("temperature", temperature, lambda x: 0 <= x < math.inf),
                        ("top_p", top_p, lambda x: 0 <= x <= 1),
                        ("max_cfg_coef", max_cfg_coef, lambda x: 0 <= x < math.inf),
                        ("min_cfg_coef", min_cfg_coef, lambda x: 0 <= x < math.inf),
                        ("mask_temperature", mask_temperature, lambda x: 0 <= x < math.inf)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not ok(v):
            raise ValueError(f"{name}={v!r} is not allowed: {name} must be a finite number in its range")
    if min_cfg_coef > max_cfg_coef:
        raise ValueError(f"min_cfg_coef={min_cfg_coef!r} > max_cfg_coef={max_cfg_coef!r}: guidance is annealed "
                         "from max_cfg_coef down to min_cfg_coef")
    if len(rngs) != batch:
        raise ValueError(f"rngs holds {len(rngs)} generators for a batch of {batch}: one per row")


def _check_scoring(span_scoring) -> None:
    if span_scoring not in SPAN_SCORING:
        raise ValueError(f"span_scoring={span_scoring!r} is not allowed: span_scoring must be 'max' or 'prod'")


def _check_arrangement(span_arrangement) -> None:
    if span_arrangement not in SPAN_ARRANGEMENT:
        raise ValueError(f"span_arrangement={span_arrangement!r} is not allowed: span_arrangement must be "
                         "'nonoverlap' or 'stride1'")


def least_probable_spans(scores: np.ndarray, count: int, span_len: int) -> np.ndarray:
    """audiocraft's ``_least_probable_span_masking``: the frames ``span_arrangement="stride1"`` masks again.

    A bool ``[T]`` covering the ``u`` overlapping spans of ``span_len`` frames whose summed frame scores
    ``scores [T]`` (``-log p``) are the highest, ``u`` found by audiocraft's binary search for a cover near
    ``count`` frames (at least ``span_len``), the last cover it tried returned as it returns it. Ties between
    span sums go to the first span (torch's unstable ``argsort`` orders them its own way: equal to audiocraft
    where no two sums tie)::

        scores  0 0 9 0 0 0 5 5 0 0      span_len 3, count 6; sums at starts 0..7: 9 9 9 0 5 10 10 5
        mask    M M M . . M M M M .      u = 3 (starts 5, 6, 0) covers 7 > 6 frames; the search then
                                         stops at u = 2 without building it, so the 7 are returned

    Examples
    --------
    >>> least_probable_spans(np.float32([0, 0, 9, 0, 0, 0, 5, 5, 0, 0]), 6, 3).astype(int)
    array([1, 1, 1, 0, 0, 1, 1, 1, 1, 0])
    """
    t = scores.size
    sums = np.lib.stride_tricks.sliding_window_view(scores, span_len).sum(axis=-1)   # [T - span_len + 1]
    order = np.argsort(-sums, kind="stable")                                  # highest sums first
    count = max(count, span_len)
    low, high = count // span_len, count - span_len + 1
    mid = round(0.5 * (low + high))                     # Python's round, as audiocraft's (half to even)

    def cover(u):
        mask = np.zeros(t, dtype=bool)                                         # [T]
        for start in order[:u]:
            mask[start:start + span_len] = True
        return mask

    if mid in (low, high):
        return cover(mid)
    while low < mid < high:
        mask = cover(mid)
        if mask.sum() > count:
            high = mid
        else:
            low = mid
        mid = round(0.5 * (low + high))
    return mask


def span_scores(picked: np.ndarray, span_scoring: str = "max") -> np.ndarray:
    """audiocraft's score of each span from its sampled tokens' probabilities ``picked [B, spans, span_len]``
    (higher: masked again first): ``"max"`` ``1 - max(p)``, ``"prod"`` ``sum(-log p)``; float32 ``[B, spans]``.

    Examples
    --------
    >>> p = np.array([[[0.9, 0.1, 0.9], [0.5, 0.5, 0.5]]], dtype=np.float32)   # a sure span with one unsure token
    >>> span_scores(p, "max").round(2), span_scores(p, "prod").round(2)       # max keeps it, prod redraws it
    (array([[0.1, 0.5]], dtype=float32), array([[2.51, 2.08]], dtype=float32))
    """
    _check_scoring(span_scoring)
    if span_scoring == "max":
        return (1 - picked.max(axis=-1)).astype(np.float32)                    # [B, spans]
    with np.errstate(divide="ignore"):                   # p = 0: a kept token the model rules out (masked to KEEP)
        return (-np.log(picked.astype(np.float32))).sum(axis=-1, dtype=np.float32)   # [B, spans]


def noisy_scores(scores: np.ndarray, drawn: np.ndarray, tau: float, rngs, span_scoring: str = "max") -> np.ndarray:
    """VampNet's and MaskGIT's choice of what to redraw: the confidence of each span drawn this iteration
    (``drawn [B, spans]``), the log of its tokens' highest probability (``log(1 - score)``, ``"max"`` scoring) or
    the sum of their logs (``-score``, ``"prod"``), plus ``tau`` times Gumbel noise from the row's own generator
    (a row's draws do not depend on its batch); returned as a score (higher: masked again), never down to KEEP (a
    kept span stays last however large ``tau``). Spans not drawn are left as they are (their score is replaced by
    KEEP)."""
    _check_scoring(span_scoring)
    out = scores.astype(np.float64).copy()                                     # [B, spans]
    for row, rng in enumerate(rngs):
        g = rng.gumbel(size=scores.shape[1])                                   # [spans]
        sure = (np.log(np.clip(1.0 - scores[row], 1e-12, 1.0)) if span_scoring == "max"
                else -scores[row].astype(np.float64))                          # [spans]
        confidence = sure + tau * g                                            # [spans]
        out[row] = np.where(drawn[row], np.maximum(-confidence, KEEP / 2), scores[row])   # above KEEP, always
    return out.astype(np.float32)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest ``scores [spans]`` (ties: the first, as a stable sort gives)."""
    return np.argsort(-scores, kind="stable")[:k]


def _sample(probs: np.ndarray, top_k: int, top_p: float, rngs) -> np.ndarray:
    """audiocraft's rule on ``probs [B, T, V]``: top-p when ``top_p > 0`` (over the tokens sorted by
    probability), else top-k when ``top_k > 0``, else plain sampling; one uniform per position from ``rngs[b]``."""
    p = probs.astype(np.float64)                                              # [B, T, V]
    order = None
    if top_p > 0:
        order = np.argsort(-p, axis=-1, kind="stable")                        # [B, T, V]: descending
        p = np.take_along_axis(p, order, axis=-1)
        p = p * ((np.cumsum(p, axis=-1) - p) <= top_p)                        # keep until the mass passes top_p
    elif top_k > 0:
        kth = -np.sort(-p, axis=-1)[..., top_k - 1: top_k]                     # [B, T, 1]
        p = p * (p >= kth)
    tokens = sampling.draw(p, rngs)                                           # [B, T]
    if order is not None:
        tokens = np.take_along_axis(order, tokens[..., None], axis=-1)[..., 0]
    return tokens
