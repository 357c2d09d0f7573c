"""The generation parameters of a masked (MAGNeT) model, declared once, as :data:`mglab.core.settings.PARAMS`
does for MusicGen: ``MaskedMusicGen.generate``'s and ``vamp``'s signature and docstring and the checks in
:func:`mglab.core.masked_settings.resolve` are made from :data:`mglab.core.masked_settings.MASKED_PARAMS`.
Defaults come from the model's ``config.json`` (``"generation"``: MAGNeT's ``set_generation_params`` defaults);
a vamp takes the config's ``"vamp"`` block over them where it has one (a model's vamping defaults, as VampNet's
interface has its own: nano-magnet vamps at temperature 1).
An argument of autoregressive decoding only (``guidance_scale``, ``max_new_tokens``, ``window``, ...) is a
``TypeError`` that says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .settings import NAMES as AUTOREGRESSIVE
from .settings import Param, _seeds, check_integer, check_number

MASKED_PARAMS = (
    Param("duration", "float", "a number of seconds > 0 and <= the model's segment ({segment} s)",
          "Seconds of audio: ``int(duration * frame_rate)`` frames cut to a multiple of ``span_len`` (as "
          "audiocraft's MAGNeT counts and cuts them). Default: the model's segment."),
    Param("decoding_steps", "steps", "a list of {codebooks} integers >= 1, one per codebook",
          "Iterations of each stage (codebook); MAGNeT's default [20, 10, 10, 10]."),
    Param("temperature", "float", "a finite number >= 0",
          "Annealed: iteration i of a stage of n uses ``temperature * (n - 1 - i) / n`` (floor 0.01)."),
    Param("top_k", "int", "an integer in [0, {vocab}] (0 turns top-k off)",
          "Keep the k most likely tokens; used when ``top_p`` is 0."),
    Param("top_p", "float", "a number in [0, 1] (0 turns top-p off)",
          "Nucleus sampling over the tokens sorted by probability (audiocraft's rule); first when > 0."),
    Param("max_cfg_coef", "float", "a finite number >= 0",
          "Guidance at a stage's first iteration (everything masked), annealed with the masked share."),
    Param("min_cfg_coef", "float", "a finite number >= 0 and <= max_cfg_coef", "Guidance once nothing is masked."),
    Param("mask_temperature", "float", "a finite number >= 0 (0: audiocraft's MAGNeT, none)",
          "VampNet's (and MaskGIT's) noise on which spans are masked again: each span's confidence, the log of its "
          "sampled tokens' highest probability (the sum of their logs with ``span_scoring='prod'``; each frame's "
          "log p with ``span_arrangement='stride1'``, whose span sums then add several draws), gets "
          "``mask_temperature * (n - 1 - i) / n`` times Gumbel noise "
          "(iteration i of a stage of n), so the least sure are not always the ones redrawn. Default: the model's "
          "(0 where its config names none)."),
    Param("upper_codebooks", "choice", "'masked' or 'given'",
          "What a stage sees of the codebooks above it in a vamp's kept frames: 'masked' (mask tokens, as MAGNeT "
          "trains every stage: the default) or 'given' (the source's codes, as audiocraft's MAGNeT feeds a prompt). "
          "Generation from nothing is the same either way (they are all masked).",
          default="masked", choices=("masked", "given")),
    Param("span_scoring", "choice", "'max' or 'prod'",
          "How a span's sampled tokens score it when choosing what to mask again (audiocraft's MAGNeT): 'max' by its "
          "surest token (``1 - max p``: one sure token keeps the span, MAGNeT's default), 'prod' by all of them "
          "(``sum -log p``: one unsure token redraws it). Default: the model's ('max' where its config names none).",
          default="max", choices=("max", "prod")),
    Param("span_arrangement", "choice", "'nonoverlap' or 'stride1'",
          "Which spans are masked again (audiocraft's MAGNeT): 'nonoverlap', whole spans of ``span_len`` frames "
          "on a fixed grid, scored by ``span_scoring`` (MAGNeT's default); 'stride1', each frame scored by "
          "``-log p`` and the overlapping spans (any start) whose sums are highest masked, about the masked share "
          "of frames (``span_scoring`` then has no effect, as in audiocraft). Default: the model's ('nonoverlap' "
          "where its config names none).", default="nonoverlap", choices=("nonoverlap", "stride1")),
    Param("span_len", "int", "an integer in [1, frames]",
          "Frames per masked span (default: the model's, 3 for MAGNeT); spans do not overlap unless "
          "span_arrangement='stride1'. The frames are cut to a multiple of it under either arrangement "
          "(audiocraft cuts only for non-overlapping spans)."),
    Param("seed", "seeds", "a non-negative integer, a list of them, one per prompt ({batch}), or None",
          "Seeds the sampler; a prompt gives the same tokens alone or inside any batch."),
)
MASKED_NAMES = tuple(p.name for p in MASKED_PARAMS)
BY_NAME = {p.name: p for p in MASKED_PARAMS}
GENERIC = dict(segment="segment", codebooks="K", vocab="card", batch="the batch")


@dataclass(frozen=True)
class MaskedSettings:
    """Everything that decides a masked generation's tokens (besides the model, the prompts and a vamp's mask)."""

    frames: int                     # frames asked for (the codes are cut to a multiple of span_len)
    decoding_steps: list
    temperature: float
    top_k: int
    top_p: float
    max_cfg_coef: float
    min_cfg_coef: float
    mask_temperature: float
    upper_codebooks: str
    span_scoring: str
    span_arrangement: str
    span_len: int
    seed: int | list | None

    def to_dict(self) -> dict:
        """The settings as a Generation records them, ``"decoding": "masked"`` first."""
        return {"decoding": "masked", **asdict(self)}


def check_names(kwargs: dict) -> None:
    """Only :data:`MASKED_PARAMS`; an autoregressive-only argument says what a masked model takes instead."""
    for name in kwargs:
        if name in MASKED_NAMES:
            continue
        if name in AUTOREGRESSIVE:
            raise TypeError(f"{name} is an argument of autoregressive decoding (MusicGen); a masked model (MAGNeT) "
                            f"takes {list(MASKED_NAMES)}" + (": guidance is max_cfg_coef -> min_cfg_coef"
                                                              if name == "guidance_scale" else ""))
        raise TypeError(f"unknown argument {name!r}; a masked model takes {list(MASKED_NAMES)}")


def resolve(config: dict, batch: int, frames: int | None = None, **kw) -> MaskedSettings:
    """Fill unset arguments from ``config["generation"]`` and check them all, before any model runs.
    ``frames``: a vamp's source length (then ``duration`` may not be given, and ``config["vamp"]``'s defaults
    come first)."""
    check_names(kw)
    defaults = dict(config["generation"])
    if frames is not None:                                    # a vamp: the model's vamping defaults first
        vamp = config.get("vamp") or {}
        check_names(vamp)
        fixed = sorted(set(vamp) & {"duration", "span_len", "seed"})
        if fixed:
            raise ValueError(f"config's vamp block names {fixed}: a vamp's defaults may not set them (the source "
                             "gives the duration, the model the span length, the call the seed)")
        defaults.update(vamp)
    k, card, fr = config["num_codebooks"], config["card"], config["frame_rate"]
    segment = config["segment_duration"]
    ctx = dict(segment=f"{segment:g}", codebooks=k, vocab=card, batch=batch)
    allowed = lambda name: BY_NAME[name].allowed.format(**ctx)                       # noqa: E731
    duration = kw.get("duration")
    if frames is None:
        duration = segment if duration is None else duration
        check_number("duration", duration, allowed("duration"), lambda v: 0 < v <= segment)
        frames = int(duration * fr)                           # audiocraft: int(duration * frame_rate)
        if frames < 1:
            raise ValueError(f"duration={duration!r} is too short: it must give at least 1 frame (>= {1 / fr:g} s)")
    elif duration is not None:
        raise TypeError("duration is given by the source of a vamp: leave it out")
    steps = kw.get("decoding_steps")
    steps = list(defaults["decoding_steps"]) if steps is None else steps
    if not isinstance(steps, (list, tuple)) or len(steps) != k:
        raise ValueError(f"decoding_steps={steps!r} is not allowed: decoding_steps must be {allowed('decoding_steps')}")
    steps = [check_integer("decoding_steps", n, allowed("decoding_steps"), lambda v: v >= 1) for n in steps]
    get = lambda name: defaults.get(name) if kw.get(name) is None else kw[name]       # noqa: E731
    temperature = check_number("temperature", get("temperature"), allowed("temperature"), lambda v: 0 <= v < math.inf)
    top_k = check_integer("top_k", get("top_k"), allowed("top_k"), lambda v: 0 <= v <= card)
    top_p = check_number("top_p", get("top_p"), allowed("top_p"), lambda v: 0 <= v <= 1)
    high = check_number("max_cfg_coef", get("max_cfg_coef"), allowed("max_cfg_coef"), lambda v: 0 <= v < math.inf)
    low = check_number("min_cfg_coef", get("min_cfg_coef"), allowed("min_cfg_coef"), lambda v: 0 <= v < math.inf)
    if low > high:
        raise ValueError(f"min_cfg_coef={low!r} > max_cfg_coef={high!r}: guidance is annealed from max_cfg_coef "
                         "down to min_cfg_coef")
    noise = kw.get("mask_temperature")
    noise = defaults.get("mask_temperature", 0.0) if noise is None else noise
    noise = check_number("mask_temperature", noise, allowed("mask_temperature"), lambda v: 0 <= v < math.inf)
    def choice(name):                                   # given, else the config's, else mglab's default
        value = kw.get(name)
        value = defaults.get(name, BY_NAME[name].default) if value is None else value
        if value not in BY_NAME[name].choices:
            raise ValueError(f"{name}={value!r} is not allowed: {name} must be {allowed(name)}")
        return value

    upper, scoring, arrangement = (choice(n) for n in ("upper_codebooks", "span_scoring", "span_arrangement"))
    span = kw.get("span_len")
    span = config["span_len"] if span is None else span
    check_integer("span_len", span, f"an integer in [1, frames={frames}]", lambda v: 1 <= v <= frames)
    seed = _seeds(kw.get("seed"), batch, ctx)
    return MaskedSettings(frames=frames, decoding_steps=steps, temperature=float(temperature), top_k=top_k,
                          top_p=float(top_p), max_cfg_coef=float(high), min_cfg_coef=float(low),
                          mask_temperature=float(noise), upper_codebooks=upper, span_scoring=scoring,
                          span_arrangement=arrangement,
                          span_len=int(span),
                          seed=seed)


def docstring(skip=()) -> str:
    """The numpydoc lines of :data:`MASKED_PARAMS` (but ``skip``)."""
    import textwrap

    lines = []
    for p in (p for p in MASKED_PARAMS if p.name not in skip):
        kind = {"seeds": "int or list of int", "steps": "list of int"}.get(p.type, p.type)
        lines.append(f"{p.name} : {kind}, optional")
        lines += textwrap.wrap(f"{p.help} Allowed: {p.allowed.format(**GENERIC)}.", 106,
                               initial_indent="    ", subsequent_indent="    ")
    return "\n".join(lines)
