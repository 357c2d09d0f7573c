"""Generation settings: the model's defaults, overridden by the caller, checked before any work starts."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

from .config import MusicGenConfig


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
    frames: int                 # frames of audio in all (= max_new_tokens + 1 - K for one window)
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
        return asdict(self)


def check_number(name: str, value, allowed: str, ok) -> float:
    """``value`` if it is a real number (not bool, not NaN) for which ``ok`` holds, else an error naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value) or not ok(value):
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be {allowed}")
    return value


def check_prompts(prompt, name: str = "prompt") -> list[str]:
    """A string or a non-empty list of non-empty strings -> list of strings."""
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, (list, tuple)) or len(prompts) == 0:
        raise TypeError(f"{name}={prompt!r} is not allowed: {name} must be a string or a non-empty list of strings")
    for i, p in enumerate(prompts):
        if not isinstance(p, str) or not p.strip():
            raise ValueError(f"{name}[{i}]={p!r} is not allowed: each {name} must be a non-empty string")
    return list(prompts)


def resolve(config: MusicGenConfig, defaults: dict, batch: int, *, duration=None, max_new_tokens=None,
            guidance_scale=None, temperature=None, top_k=None, top_p=None, do_sample=None,
            seed=None, window=None, extend_stride=None, on_nonfinite="raise", negative_prompt=None) -> Settings:
    """Fill unset arguments from ``defaults`` (generation_config over transformers') and validate them all."""
    if duration is not None and max_new_tokens is not None:
        raise ValueError(f"duration={duration!r} and max_new_tokens={max_new_tokens!r}: give one of them, not both")
    k_delay = max(config.delays)
    # transformers applies no delay pattern at all below 2 * max_delay new tokens; refuse that corner.
    min_tokens = 2 * k_delay
    if duration is not None:
        check_number("duration", duration, "a number of seconds > 0", lambda v: 0 < v < math.inf)
        frames = round(duration * config.frame_rate)
        max_new_tokens = frames + k_delay                     # frames = max_new_tokens + 1 - K
        if frames < 1 or max_new_tokens < min_tokens:
            raise ValueError(f"duration={duration!r} is too short: it must give at least "
                             f"{max(1, min_tokens - k_delay)} frames (>= "
                             f"{max(1, min_tokens - k_delay) / config.frame_rate:g} s)")
    elif max_new_tokens is None:
        max_new_tokens = defaults["max_new_tokens"] or defaults["max_length"] - 1
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) \
            or max_new_tokens < min_tokens:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} is not allowed: max_new_tokens must be an "
                         f"integer >= {min_tokens} for {config.num_codebooks} codebooks")
    guidance_scale = defaults["guidance_scale"] if guidance_scale is None else guidance_scale
    guidance_scale = 1.0 if guidance_scale is None else guidance_scale
    check_number("guidance_scale", guidance_scale, "a finite number >= 0", lambda v: 0 <= v < math.inf)
    do_sample = defaults["do_sample"] if do_sample is None else do_sample
    if not isinstance(do_sample, bool):
        raise TypeError(f"do_sample={do_sample!r} is not allowed: do_sample must be True or False")
    temperature = defaults["temperature"] if temperature is None else temperature
    check_number("temperature", temperature, "a finite number > 0", lambda v: 0 < v < math.inf)
    top_k = defaults["top_k"] if top_k is None else top_k
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or not 0 <= top_k <= config.vocab_size:
        raise ValueError(f"top_k={top_k!r} is not allowed: top_k must be an integer in [0, {config.vocab_size}] "
                         "(0 turns top-k off)")
    top_p = defaults["top_p"] if top_p is None else top_p
    check_number("top_p", top_p, "a number in [0, 1]", lambda v: 0 <= v <= 1)
    seeds = seed if isinstance(seed, (list, tuple)) else [seed]
    for s in seeds:
        if s is not None and (isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0):
            raise ValueError(f"seed={seed!r} is not allowed: seed must be a non-negative integer, "
                             f"a list of {batch} of them (one per prompt), or None")
    if isinstance(seed, (list, tuple)) and len(seed) != batch:
        raise ValueError(f"seed={seed!r} is not allowed: a list of seeds needs one per prompt ({batch})")
    fr = config.frame_rate
    window = defaults["max_length"] / fr if window is None else window
    check_number("window", window, f"a number of seconds >= {(min_tokens + 1) / fr:g}",
            lambda v: min_tokens + 1 <= round(v * fr) and v < math.inf)
    extend_stride = 0.6 * window if extend_stride is None else extend_stride     # audiocraft: 18 s of 30
    check_number("extend_stride", extend_stride, f"a number of seconds in (0, window={window:g})",
            lambda v: 1 <= round(v * fr) < round(window * fr))
    if on_nonfinite not in ("raise", "replace"):
        raise ValueError(f"on_nonfinite={on_nonfinite!r} is not allowed: on_nonfinite must be 'raise' or 'replace'")
    if negative_prompt is not None:
        negative_prompt = check_prompts(negative_prompt, "negative_prompt")
        if len(negative_prompt) == 1:
            negative_prompt = negative_prompt * batch
        if len(negative_prompt) != batch:
            raise ValueError(f"negative_prompt has {len(negative_prompt)} entries: give one string, or one per "
                             f"prompt ({batch})")
        if guidance_scale == 1.0:
            raise ValueError("negative_prompt needs guidance: guidance_scale=1.0 runs the conditional model alone")
    return Settings(max_new_tokens=int(max_new_tokens), guidance_scale=float(guidance_scale),
                    do_sample=do_sample, temperature=float(temperature), top_k=int(top_k),
                    top_p=float(top_p), seed=list(seed) if isinstance(seed, (list, tuple)) else seed,
                    frames=int(max_new_tokens) - k_delay, window_frames=round(window * fr),
                    stride_frames=round(extend_stride * fr), on_nonfinite=on_nonfinite,
                    negative_prompt=negative_prompt)
