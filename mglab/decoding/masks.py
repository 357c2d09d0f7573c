"""Which codes a vamp regenerates: mask builders as in VampNet's ``mask.py``, combined with ``&``, ``|`` and ``~``.

A mask is True where a code is decoded anew and False where the source's code is kept. Builders describe a mask
without knowing the clip; :meth:`mglab.decoding.masks.Mask.resolve` makes the bool array for ``K`` codebooks of
``T`` frames at a frame rate. For K = 4, T = 12 at 4 frames a second (1 = regenerate)::

    inpaint(1, 1)        periodic(4, 1)        codebooks(2)          inpaint(1, 1) & periodic(4, 1)
    0000 1111 0000       0111 0111 0111        0000 0000 0000        0000 0111 0000
    0000 1111 0000       0111 0111 0111        0000 0000 0000        0000 0111 0000
    0000 1111 0000       0111 0111 0111        1111 1111 1111        0000 0111 0000
    0000 1111 0000       0111 0111 0111        1111 1111 1111        0000 0111 0000

``periodic(period, width)`` keeps the frames around every ``period``-th (VampNet's rhythmic prompt),
``inpaint(prefix, suffix)`` keeps the first ``prefix`` and last ``suffix`` seconds, ``codebooks(k)`` regenerates
codebooks ``>= k`` (keeps the coarse ones), ``random(p, seed)`` each code with probability ``p``.
"""

from __future__ import annotations

import numpy as np


class Mask:
    """A mask description; ``resolve(num_codebooks, frames, frame_rate)`` gives bool ``[K, T]``."""

    def __init__(self, make, name: str):
        self._make, self.name = make, name

    def resolve(self, num_codebooks: int, frames: int, frame_rate: float) -> np.ndarray:
        """The mask for a clip of this shape: bool ``[num_codebooks, frames]``, True where codes are regenerated."""
        out = np.asarray(self._make(num_codebooks, frames, frame_rate), dtype=bool)              # [K, T]
        return np.broadcast_to(out, (num_codebooks, frames)).copy()

    def __and__(self, other: "Mask") -> "Mask":
        return Mask(lambda k, t, r: self.resolve(k, t, r) & other.resolve(k, t, r), f"({self.name} & {other.name})")

    def __or__(self, other: "Mask") -> "Mask":
        return Mask(lambda k, t, r: self.resolve(k, t, r) | other.resolve(k, t, r), f"({self.name} | {other.name})")

    def __invert__(self) -> "Mask":
        return Mask(lambda k, t, r: ~self.resolve(k, t, r), f"~{self.name}")

    def __repr__(self) -> str:
        return f"Mask({self.name})"

    def picture(self, num_codebooks: int, frames: int, frame_rate: float) -> str:
        """The resolved mask as text, a row per codebook (``1`` regenerate, ``0`` keep), codebook 0 on top.

        Examples
        --------
        >>> print((inpaint(1, 1) & periodic(4, 1)).picture(2, 12, 4))
        000001110000
        000001110000
        """
        m = self.resolve(num_codebooks, frames, frame_rate)
        return "\n".join("".join("1" if v else "0" for v in row) for row in m)

    def svg(self, num_codebooks: int = 4, frames: int = 300, frame_rate: float = 50.0, cell: int = 2) -> str:
        """The resolved mask as an SVG picture: a row per codebook (codebook 0 on top), regenerated codes dark."""
        m = self.resolve(num_codebooks, frames, frame_rate)                    # [K, T]
        h = 4 * cell
        rects = "".join(f'<rect x="{t * cell}" y="{k * h}" width="{cell}" height="{h - 1}"/>'
                        for k, t in zip(*np.nonzero(m)))
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{frames * cell}" height="{num_codebooks * h}">'
                f'<rect width="100%" height="100%" fill="#eee"/><g fill="#335">{rects}</g></svg>')

    def _repr_html_(self) -> str:
        """In Jupyter: the mask over 6 s of 4 codebooks at 50 frames a second (the nano models' shape)."""
        return f"<div><code>{self.name}</code>: 4 codebooks x 6 s, dark = regenerate<br>{self.svg()}</div>"


def _check(name: str, value, low: float, allowed: str, integer: bool = False) -> float:
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value >= low:
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be {allowed}")
    return value


def _frames(seconds: float, rate: float) -> int:
    """Seconds to frames, halves rounded up (Python's round() would round 2.5 to 2)."""
    return int(np.floor(seconds * rate + 0.5))


def inpaint(prefix: float, suffix: float) -> Mask:
    """Keep the first ``prefix`` and the last ``suffix`` seconds, regenerate what lies between."""
    _check("prefix", prefix, 0, "a number of seconds >= 0")
    _check("suffix", suffix, 0, "a number of seconds >= 0")

    def make(k, t, rate):
        frame = np.arange(t)                                                  # [T]
        return (frame >= _frames(prefix, rate)) & (frame < t - _frames(suffix, rate))
    return Mask(make, f"inpaint({prefix:g}, {suffix:g})")


def periodic(period: int, width: int = 1) -> Mask:
    """Keep the frames around every ``period``-th frame (from frame 0), regenerate the rest: VampNet's
    ``periodic_mask``, which keeps ``width // 2`` frames either side of each multiple of ``period`` (so an even
    ``width`` keeps ``width + 1`` frames, and ``width`` 0 and 1 keep the one frame)."""
    _check("period", period, 1, "an integer >= 1", integer=True)
    _check("width", width, 0, "an integer >= 0", integer=True)

    def make(k, t, rate):
        keep = np.zeros(t, dtype=bool)                                        # [T]
        for j in range(0, t, int(period)):
            keep[max(0, j - int(width) // 2): j + int(width) // 2 + 1] = True
        return ~keep
    return Mask(make, f"periodic({period}, {width})")


def codebooks(first: int) -> Mask:
    """Regenerate codebooks ``first`` and above; keep the coarser ones."""
    _check("first", first, 0, "an integer >= 0", integer=True)
    return Mask(lambda k, t, rate: (np.arange(k) >= int(first))[:, None], f"codebooks({first})")


def random(p: float, seed: int = 0) -> Mask:
    """Each code regenerated with probability ``p``, drawn from ``seed`` (two random masks combined need two
    seeds: ``random(.5) & random(.5)`` is ``random(.5)``)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ValueError(f"p={p!r} is not allowed: p must be a probability in [0, 1]")
    return Mask(lambda k, t, rate: np.random.default_rng(seed).random((k, t)) < p, f"random({p:g}, {seed})")
