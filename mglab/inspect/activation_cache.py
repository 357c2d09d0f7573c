"""``ActivationCache``: what ``MusicGen.run_with_cache`` recorded, by hook name.

Per-step values are stacked on a leading step axis: ``cache["guidance.hook_logits"]`` is
``[steps, B, K, V]``. Self-attention rows grow by one position a step; they are zero-padded on the right to
the longest, ``[steps, H*B, heads, 1, max_pos]``. Once-per-run values are stored as they are.

The self-attention KV cache is not stored step by step (that would cost O(steps^2)): each step's new
position is kept once, ``cache[name]`` gives the whole cache ``[H*B, heads, pos, head_dim]`` after the last
recorded step and ``cache.kv(name, step)`` the cache as the decoder had it after ``step``. A long-form run
starts a new cache each window (its prompt frames fed again): ``kv`` gives that window's positions only.
When another hook may edit a key/value point (``run_with_cache`` knows: a hook is attached to it), the
recorder also compares the earlier positions with what it has and records every change as an edit
``(step, positions, values)``, so the history it gives back is the one that happened.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.fileio import atomic_write
from ..core.hooks import ATTENTION, KV, LATENT


class ActivationCache:
    """Dict-like: ``cache[name]``, ``name in cache``, ``keys()``, ``items()``, ``len(cache)``."""

    def __init__(self, watch=()):
        self._steps: dict[str, list] = {}      # name -> [step, ...] for per-step points
        self._values: dict[str, list] = {}     # name -> [array, ...] (new KV positions for KV points)
        self._once: dict[str, np.ndarray] = {}
        self._kinds: dict[str, str] = {}       # name -> the hook point's kind
        self._order: list[str] = []            # names in the order first recorded (pipeline order)
        self._edits: dict[str, list] = {}      # KV name -> [(step, positions, values [H*B, heads, n, hd])]
        self._watch = set(watch)               # KV names another hook may edit: compare earlier positions
        self._current: dict[str, np.ndarray] = {}   # KV name -> the whole cache as recorded, for watched names
        self._positions: dict[str, list] = {}  # KV name -> [positions in the live cache after each step]

    # recording -------------------------------------------------------------------------------------------
    def record(self, value, hook) -> None:
        """A hook function: store a copy of ``value`` (for KV points, only the newest positions)."""
        if hook.name not in self:
            self._order.append(hook.name)
            self._kinds[hook.name] = hook.kind
        if hook.step is None:
            value = np.array(value, copy=True)
            if hook.kind == LATENT and hook.layer == 1 and hook.name in self._once:   # stereo: right channel
                value = np.stack([self._once[hook.name], value])
            self._once[hook.name] = value
            return
        kv = hook.kind == KV
        if kv and hook.name in self._watch:
            self._record_edits(hook.name, hook.step, value)
        new = 1
        if kv:              # the new positions: one a step, all of them where a window starts (a melody prefix)
            seen = self._positions.setdefault(hook.name, [])
            new = 1 if seen and value.shape[2] == seen[-1] + 1 else int(value.shape[2])
            seen.append(int(value.shape[2]))
        v = value[:, :, -new:] if kv else value
        self._steps.setdefault(hook.name, []).append(hook.step)
        self._values.setdefault(hook.name, []).append(np.array(v, copy=True))

    def _record_edits(self, name: str, step: int, value: np.ndarray) -> None:
        """Record the earlier positions of ``value`` (the live cache) that differ from the history so far."""
        old = self._current.get(name)
        if old is not None and value.shape[2] > old.shape[2]:                 # same window (a new one restarts)
            before = value[:, :, :old.shape[2]]                                # [H*B, heads, pos-1, hd]
            changed = np.flatnonzero((before != old).any(axis=(0, 1, 3)))       # positions edited
            if changed.size:
                self._edits.setdefault(name, []).append((step, changed, np.array(before[:, :, changed])))
        self._current[name] = np.array(value, copy=True)

    # reading ---------------------------------------------------------------------------------------------
    def keys(self):
        """The recorded hook point names, in recording order."""
        return list(self._order)

    def __contains__(self, name) -> bool:
        return name in self._once or name in self._steps

    def __len__(self) -> int:
        return len(self._once) + len(self._steps)

    def __iter__(self):
        return iter(self.keys())

    def items(self):
        """``(name, value)`` for every recorded point, values as ``cache[name]`` gives them."""
        return [(k, self[k]) for k in self.keys()]

    def steps(self, name: str) -> list[int]:
        """The decoding steps recorded for a per-step hook point."""
        return list(self._steps[name])

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._once:
            return self._once[name]
        if name not in self._steps:
            raise KeyError(f"{name!r} is not in this cache; cached: {self.keys()}")
        values = self._values[name]
        if self._kinds.get(name) == KV:
            return self.kv(name, self._steps[name][-1])                       # [H*B, heads, pos, hd]
        if self._kinds.get(name) == ATTENTION:
            width = max(v.shape[-1] for v in values)
            values = [np.pad(v, [(0, 0)] * (v.ndim - 1) + [(0, width - v.shape[-1])]) for v in values]
        return np.stack(values)                                               # [steps, ...]

    def kv(self, name: str, step: int) -> np.ndarray:
        """The self-attention key or value cache ``[H*B, heads, pos, head_dim]`` as the decoder had it after
        ``step``: ``pos`` is ``step + 1`` in a run of one window, the steps since its window began otherwise."""
        if self._kinds.get(name) != KV:
            raise KeyError(f"{name!r} is not a key/value hook point")
        steps = self._steps[name]
        if steps != list(range(len(steps))) or step >= len(steps) or step < 0:
            raise KeyError(f"step={step} is not available for {name!r}: recorded steps 0..{len(steps) - 1}")
        start = self.window_start(name, step)
        out = np.concatenate(self._values[name][start: step + 1], axis=2)    # [H*B, heads, pos, hd]
        for when, positions, values in self._edits.get(name, []):
            if start <= when <= step:
                out[:, :, positions] = values
        return out

    def window_start(self, name: str, step: int) -> int:
        """The first step of the window ``step`` belongs to, for a key/value point (0 for one window)."""
        positions = self._positions.get(name) or list(range(1, len(self._steps[name]) + 1))
        return next(i for i in range(step, -1, -1) if i == 0 or positions[i] != positions[i - 1] + 1)

    def edits(self, name: str) -> list[tuple[int, np.ndarray]]:
        """``[(step, positions), ...]``: where hooks rewrote earlier positions of a key/value point."""
        return [(step, positions) for step, positions, _ in self._edits.get(name, [])]

    @property
    def nbytes(self) -> int:
        """Bytes held by the recorded arrays."""
        return sum(v.nbytes for v in self._once.values()) + sum(
            v.nbytes for vs in self._values.values() for v in vs) + sum(
            e[2].nbytes for es in self._edits.values() for e in es)

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} hook points, {self.nbytes / 2**20:.1f} MiB)"

    # files -----------------------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write a ``.npz`` (to a temporary name, then renamed)."""
        path = Path(path)
        arrays = {f"once::{k}": v for k, v in self._once.items()}
        arrays["order"] = np.array(self._order)
        arrays["kinds"] = np.array([self._kinds[n] for n in self._order])
        for name, values in self._values.items():
            arrays[f"steps::{name}"] = np.array(self._steps[name])
            if name in self._positions:
                arrays[f"positions::{name}"] = np.array(self._positions[name])
            for i, v in enumerate(values):
                arrays[f"value::{name}::{i}"] = v
        for name, edits in self._edits.items():
            for i, (step, positions, values) in enumerate(edits):
                arrays[f"edit::{name}::{i}::{step}"] = positions
                arrays[f"editvalue::{name}::{i}"] = values
        atomic_write(path, lambda tmp: np.savez(tmp, **arrays))
        return path

    @classmethod
    def load(cls, path) -> "ActivationCache":
        """A cache written by :meth:`save`."""
        cache = cls()
        with np.load(path) as data:
            cache._order = [str(n) for n in data["order"]]
            cache._kinds = dict(zip(cache._order, (str(k) for k in data["kinds"])))
            for key in data.files:
                kind, *rest = key.split("::")
                if kind == "once":
                    cache._once[rest[0]] = data[key]
                elif kind == "steps":
                    cache._steps[rest[0]] = data[key].tolist()
                elif kind == "positions":
                    cache._positions[rest[0]] = data[key].tolist()
                elif kind == "edit":
                    name, i, step = rest
                    cache._edits.setdefault(name, []).append(
                        (int(i), int(step), data[key], data[f"editvalue::{name}::{i}"]))
            for name, steps in cache._steps.items():
                cache._values[name] = [data[f"value::{name}::{i}"] for i in range(len(steps))]
        cache._edits = {n: [e[1:] for e in sorted(es, key=lambda e: e[0])] for n, es in cache._edits.items()}
        return cache
