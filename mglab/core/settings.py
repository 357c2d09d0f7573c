"""Generation parameters, declared once: types, defaults, allowed ranges and help.

:data:`PARAMS` is the single list that ``MusicGen.generate``'s signature and docstring, the checks in
:func:`resolve` and the command line's flags are all made from. A value of the wrong type is a ``TypeError``,
a value of the right type outside its range a ``ValueError``; both name the argument and what is allowed, and
both are raised before any model runs.
"""

from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import asdict, dataclass

from .config import MusicGenConfig


@dataclass(frozen=True)
class Param:
    """One argument of ``generate``. ``allowed`` may name ``{vocab}``, ``{min_tokens}``, ``{batch}``,
    ``{min_window}`` and ``{window}``, filled in for the model and call at hand."""

    name: str
    type: str            # "float", "int", "bool", "choice", "seeds", "prompts"
    allowed: str
    help: str
    default: object = None          # None: from generation_config.json, or derived (see help)
    choices: tuple = ()
    metavar: str | None = None


MAX_SECONDS = 3600
# why a run is capped: said in the errors of duration and max_new_tokens
LIMIT_WHY = ("at most an hour of audio: 460 MB of float32 samples a prompt at 32 kHz, and hours of decoding at "
             "the 20-40 steps a second measured on 2 cores")

PARAMS = (
    Param("duration", "float", "a number of seconds > 0 and <= {max_seconds} (" + LIMIT_WHY + ")",
          "Seconds of audio: exactly ``round(duration * frame_rate)`` frames. Exclusive with "
          "``max_new_tokens``."),
    Param("max_new_tokens", "int", "an integer >= {min_tokens} and <= {max_tokens} (" + LIMIT_WHY + ")",
          "Decoding steps in all (every window of a long run together); one window of ``n`` steps gives "
          "``n - max(delays)`` frames. Default from ``generation_config.json``."),
    Param("guidance_scale", "float", "a finite number >= 0",
          "Classifier-free guidance ``uncond + s * (cond - uncond)``; exactly 1 runs the conditional model "
          "alone. Default from ``generation_config.json`` (3.0 for the public models)."),
    Param("temperature", "float", "a finite number > 0", "Divides the guided logits before sampling."),
    Param("top_k", "int", "an integer in [0, {vocab}] (0 turns top-k off)",
          "Keep the k most likely tokens (ties with the k-th kept too)."),
    Param("top_p", "float", "a number in [0, 1]",
          "Nucleus sampling: keep the most likely tokens whose probability exceeds top_p."),
    Param("do_sample", "bool", "True or False", "False decodes greedily (the most likely token)."),
    Param("seed", "seeds", "a non-negative integer, a list of them, one per prompt ({batch}), or None",
          "Seeds the sampler; a prompt gives the same tokens alone or inside any batch."),
    Param("negative_prompt", "prompts", "a non-empty string, or one per prompt ({batch})",
          "Replaces the null condition of the unconditional half with this prompt's encoding, so guidance "
          "pushes away from it."),
    Param("window", "float", "a number of seconds >= {min_window}",
          "Seconds the model decodes in one go (default ``max_length / frame_rate``, 30 s for the public "
          "models); longer runs go window by window."),
    Param("extend_stride", "float", "a number of seconds in (0, window={window})",
          "How far each new window moves (default 0.6 window: audiocraft's 18 s of 30); each new window is "
          "prompted with the last ``window - extend_stride`` seconds of codes."),
    Param("on_nonfinite", "choice", "'raise' or 'replace'",
          "NaN or inf logits stop with an error naming the step and codebook, or are replaced (NaN and -inf "
          "by -1e9, +inf by 1e9).", default="raise", choices=("raise", "replace")),
)
NAMES = tuple(p.name for p in PARAMS)
# how the model- and call-dependent parts of ``allowed`` read where no model is at hand (docs, --help)
GENERIC = dict(vocab="vocab_size", min_tokens="max(delays) + 1", batch="one per prompt",
               min_window="(2 * max(delays) + 1) frames", window="window", max_seconds=MAX_SECONDS,
               max_tokens="an hour of frames + max(delays)")
BY_NAME = {p.name: p for p in PARAMS}


@dataclass(frozen=True)
class Settings:
    """Everything that decides a generation's tokens (besides the model and the prompts)."""

    max_new_tokens: int
    guidance_scale: float
    do_sample: bool
    temperature: float
    top_k: int
    top_p: float
    seed: int | list[int] | None
    frames: int                 # frames of audio in all (= max_new_tokens - max(delays))
    window_frames: int          # frames the model decodes in one go; longer runs go window by window
    stride_frames: int          # each new window starts this many frames after the last (audiocraft's extend_stride)
    on_nonfinite: str = "raise"
    negative_prompt: list[str] | None = None   # replaces the null condition of the unconditional half

    @property
    def windows(self) -> int:
        """How many windows the run takes."""
        if self.frames <= self.window_frames:
            return 1
        return 1 + math.ceil((self.frames - self.window_frames) / self.stride_frames)

    def to_dict(self) -> dict:
        """The settings as a plain dict."""
        return asdict(self)


def _fail(name: str, value, ctx: dict, error=ValueError):
    allowed = BY_NAME[name].allowed.format(**ctx) if name in BY_NAME else ctx["allowed"]
    raise error(f"{name}={value!r} is not allowed: {name} must be {allowed}")


def check_number(name: str, value, allowed: str, ok) -> float:
    """``value`` if it is a real number (not bool, not NaN) for which ``ok`` holds: a ``TypeError`` for
    another type, a ``ValueError`` for NaN or a number out of range, each naming ``name`` and ``allowed``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} is not allowed: {name} must be {allowed}")
    if math.isnan(value) or not ok(value):
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be {allowed}")
    return value


def check_integer(name: str, value, allowed: str, ok) -> int:
    """As :func:`check_number`, for an integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} is not allowed: {name} must be {allowed}")
    if not ok(value):
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be {allowed}")
    return int(value)


def check_prompts(prompt, name: str = "prompt") -> list[str]:
    """A string or a non-empty list of non-empty strings -> list of strings."""
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, (list, tuple)) or len(prompts) == 0:
        raise TypeError(f"{name}={prompt!r} is not allowed: {name} must be a string or a non-empty list of strings")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"{name}[{i}]={p!r} is not allowed: each {name} must be a non-empty string")
        if not p.strip():
            raise ValueError(f"{name}[{i}]={p!r} is not allowed: each {name} must be a non-empty string")
    return list(prompts)


def check_names(kwargs: dict) -> None:
    """Only arguments of :data:`PARAMS`, else a ``TypeError`` listing the allowed names."""
    unknown = set(kwargs) - set(NAMES)
    if unknown:
        raise TypeError(f"unknown argument(s) {sorted(unknown)}; allowed: {list(NAMES)}")


def resolve(config: MusicGenConfig, defaults: dict, batch: int, **kw) -> Settings:
    """Fill unset arguments from ``defaults`` (generation_config over transformers') and validate them all."""
    check_names(kw)
    kw = {name: kw.get(name, BY_NAME[name].default) for name in NAMES}
    delay = max(config.delays)
    fr = config.frame_rate
    # one frame at least. (Below 2 * max_delay new tokens transformers applies no delay pattern at all, so it
    # has no reference there; mglab keeps the pattern, as audiocraft does.)
    min_tokens = delay + 1
    max_tokens = round(MAX_SECONDS * fr) + delay
    ctx = dict(vocab=config.vocab_size, min_tokens=min_tokens, batch=batch, min_window=(min_tokens + 1) / fr,
               max_seconds=MAX_SECONDS, max_tokens=max_tokens)
    duration, max_new_tokens = kw["duration"], kw["max_new_tokens"]
    if duration is not None and max_new_tokens is not None:
        raise ValueError(f"duration={duration!r} and max_new_tokens={max_new_tokens!r}: give one of them, not both")
    if duration is not None:
        check_number("duration", duration, BY_NAME["duration"].allowed.format(**ctx), lambda v: 0 < v <= MAX_SECONDS)
        frames = round(duration * fr)
        max_new_tokens = frames + delay                       # frames = max_new_tokens - max(delays)
        if frames < 1:
            raise ValueError(f"duration={duration!r} is too short: it must give at least 1 frame "
                             f"(>= {0.5 / fr:g} s)")
    elif max_new_tokens is None:
        max_new_tokens = defaults["max_new_tokens"] or defaults["max_length"] - 1
    max_new_tokens = check_integer("max_new_tokens", max_new_tokens, BY_NAME["max_new_tokens"].allowed.format(**ctx),
                                   lambda v: min_tokens <= v <= max_tokens)
    guidance_scale = _default(kw, defaults, "guidance_scale")
    guidance_scale = 1.0 if guidance_scale is None else guidance_scale
    check_number("guidance_scale", guidance_scale, BY_NAME["guidance_scale"].allowed, lambda v: 0 <= v < math.inf)
    do_sample = _default(kw, defaults, "do_sample")
    if not isinstance(do_sample, bool):
        _fail("do_sample", do_sample, ctx, TypeError)
    temperature = check_number("temperature", _default(kw, defaults, "temperature"),
                               BY_NAME["temperature"].allowed, lambda v: 0 < v < math.inf)
    top_k = check_integer("top_k", _default(kw, defaults, "top_k"), BY_NAME["top_k"].allowed.format(**ctx),
                          lambda v: 0 <= v <= config.vocab_size)
    top_p = check_number("top_p", _default(kw, defaults, "top_p"), BY_NAME["top_p"].allowed, lambda v: 0 <= v <= 1)
    seed = _seeds(kw["seed"], batch, ctx)
    window = defaults["max_length"] / fr if kw["window"] is None else kw["window"]
    check_number("window", window, BY_NAME["window"].allowed.format(**ctx),
                 lambda v: v < math.inf and min_tokens + 1 <= int(v * fr))
    extend_stride = 0.6 * window if kw["extend_stride"] is None else kw["extend_stride"]   # audiocraft: 18 s of 30
    check_number("extend_stride", extend_stride, BY_NAME["extend_stride"].allowed.format(window=f"{window:g}"),
                 lambda v: v < math.inf and 1 <= int(fr * v) < int(window * fr))
    on_nonfinite = kw["on_nonfinite"]
    if not isinstance(on_nonfinite, str):
        _fail("on_nonfinite", on_nonfinite, ctx, TypeError)
    if on_nonfinite not in BY_NAME["on_nonfinite"].choices:
        _fail("on_nonfinite", on_nonfinite, ctx)
    negative_prompt = _negative(kw["negative_prompt"], batch, guidance_scale)
    return Settings(max_new_tokens=max_new_tokens, guidance_scale=float(guidance_scale), do_sample=do_sample,
                    temperature=float(temperature), top_k=top_k, top_p=float(top_p), seed=seed,
                    frames=max_new_tokens - delay, window_frames=int(window * fr),
                    stride_frames=int(fr * extend_stride), on_nonfinite=on_nonfinite,
                    negative_prompt=negative_prompt)


def _default(kw: dict, defaults: dict, name: str):
    return defaults[name] if kw[name] is None else kw[name]


def _seeds(seed, batch: int, ctx: dict):
    seeds = seed if isinstance(seed, (list, tuple)) else [seed]
    for s in seeds:
        if s is not None and (isinstance(s, bool) or not isinstance(s, numbers.Integral)):
            _fail("seed", seed, ctx, TypeError)
        if s is not None and s < 0:
            _fail("seed", seed, ctx)
    if isinstance(seed, (list, tuple)):
        if len(seed) != batch:
            _fail("seed", seed, ctx)
        return [None if s is None else int(s) for s in seed]
    return None if seed is None else int(seed)


def _negative(negative_prompt, batch: int, guidance_scale: float):
    if negative_prompt is None:
        return None
    negative_prompt = check_prompts(negative_prompt, "negative_prompt")
    if len(negative_prompt) == 1:
        negative_prompt = negative_prompt * batch
    if len(negative_prompt) != batch:
        raise ValueError(f"negative_prompt has {len(negative_prompt)} entries: give one string, or one per "
                         f"prompt ({batch})")
    if guidance_scale == 1.0:
        raise ValueError("negative_prompt needs guidance: guidance_scale=1.0 runs the conditional model alone")
    return negative_prompt


def docstring() -> str:
    """The numpydoc lines of :data:`PARAMS`, for ``generate``'s docstring."""
    import textwrap

    lines = []
    for p in PARAMS:
        kind = {"seeds": "int or list of int", "prompts": "str or list of str", "choice": "str"}.get(p.type, p.type)
        lines.append(f"{p.name} : {kind}, optional")
        lines += textwrap.wrap(f"{p.help} Allowed: {p.allowed.format(**GENERIC)}.", 106,
                               initial_indent="    ", subsequent_indent="    ")
    return "\n".join(lines)


def signature(before: list[inspect.Parameter], after: list[inspect.Parameter]) -> inspect.Signature:
    """A signature with every :data:`PARAMS` entry as a keyword-only argument (for ``help()`` and
    tab completion), between ``before`` and ``after``."""
    params = [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default) for p in PARAMS]
    return inspect.Signature(before + params + after)
