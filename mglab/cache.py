"""``ActivationCache``: what ``MusicGen.run_with_cache`` recorded, by hook name.

Per-step values are stacked on a leading step axis: ``cache["guidance.hook_logits"]`` is
``[steps, B, K, V]``. Self-attention rows grow by one position a step; they are zero-padded on the right to
the longest, ``[steps, H*B, heads, 1, max_pos]``. Once-per-run values are stored as they are.

The self-attention KV cache is not stored step by step (that would cost O(steps^2)): each step's new
position is kept once, ``cache[name]`` gives the whole cache ``[H*B, heads, pos, head_dim]`` after the last
recorded step and ``cache.kv(name, step)`` the cache as it was after ``step``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .hooks import is_attention, is_kv


class ActivationCache:
    """Dict-like: ``cache[name]``, ``name in cache``, ``keys()``, ``items()``, ``len(cache)``."""

    def __init__(self):
        self._steps: dict[str, list] = {}      # name -> [step, ...] for per-step points
        self._values: dict[str, list] = {}     # name -> [array, ...] (new KV positions for KV points)
        self._once: dict[str, np.ndarray] = {}
        self._order: list[str] = []            # names in the order first recorded (pipeline order)

    # recording -------------------------------------------------------------------------------------------
    def record(self, value, hook) -> None:
        """A hook function: store a copy of ``value`` (for KV points, only the newest position)."""
        if hook.name not in self:
            self._order.append(hook.name)
        if hook.step is None:
            self._once[hook.name] = np.array(value, copy=True)
            return
        v = value[:, :, -1:] if is_kv(hook.name) else value
        self._steps.setdefault(hook.name, []).append(hook.step)
        self._values.setdefault(hook.name, []).append(np.array(v, copy=True))

    # reading ---------------------------------------------------------------------------------------------
    def keys(self):
        return list(self._order)

    def __contains__(self, name) -> bool:
        return name in self._once or name in self._steps

    def __len__(self) -> int:
        return len(self._once) + len(self._steps)

    def __iter__(self):
        return iter(self.keys())

    def items(self):
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
        if is_kv(name):
            return np.concatenate(values, axis=2)                             # [H*B, heads, pos, hd]
        if is_attention(name):
            width = max(v.shape[-1] for v in values)
            values = [np.pad(v, [(0, 0)] * (v.ndim - 1) + [(0, width - v.shape[-1])]) for v in values]
        return np.stack(values)                                               # [steps, ...]

    def kv(self, name: str, step: int) -> np.ndarray:
        """The self-attention key or value cache ``[H*B, heads, step + 1, head_dim]`` as it was after ``step``."""
        if not is_kv(name):
            raise KeyError(f"{name!r} is not a key/value hook point")
        steps = self._steps[name]
        if steps != list(range(len(steps))) or step >= len(steps) or step < 0:
            raise KeyError(f"step={step} is not available for {name!r}: recorded steps 0..{len(steps) - 1}")
        return np.concatenate(self._values[name][: step + 1], axis=2)

    @property
    def nbytes(self) -> int:
        """Bytes held by the recorded arrays."""
        return sum(v.nbytes for v in self._once.values()) + sum(
            v.nbytes for vs in self._values.values() for v in vs)

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} hook points, {self.nbytes / 2**20:.1f} MiB)"

    # files -----------------------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write a ``.npz`` (to a temporary name, then renamed)."""
        path = Path(path)
        arrays = {f"once::{k}": v for k, v in self._once.items()}
        arrays["order"] = np.array(self._order)
        for name, values in self._values.items():
            arrays[f"steps::{name}"] = np.array(self._steps[name])
            for i, v in enumerate(values):
                arrays[f"value::{name}::{i}"] = v
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
        os.close(fd)
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path) -> "ActivationCache":
        cache = cls()
        with np.load(path) as data:
            for key in data.files:
                if key == "order":
                    continue
                kind, name, *rest = key.split("::")
                if kind == "once":
                    cache._once[name] = data[key]
                elif kind == "steps":
                    cache._steps[name] = data[key].tolist()
            cache._order = list(data["order"]) if "order" in data.files else list(cache._once) + list(cache._steps)
            for name, steps in cache._steps.items():
                cache._values[name] = [data[f"value::{name}::{i}"] for i in range(len(steps))]
        return cache
