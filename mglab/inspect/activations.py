"""Activation datasets: hook points recorded over many clips, streamed to disk, with what each clip is.

A dataset is a folder. Every recorded point is a raw float file of rows, appended batch by batch, so a
musicgen-small-shaped model (d = 1024) is recorded in pieces and read back as a memory map::

    ds/dataset.json            the points, their width and dtype, the row counts
    ds/clips.jsonl             one line a clip: clip id, prompt, seed, source, its attributes
    ds/frames.i32              [frames, 3]: clip, step, frame of each frame row
    ds/frames.midi.f32         [frames]: the pitch sounding at that frame (NaN: unknown or a rest)
    ds/frames/<hook name>.bin  [frames, d]: the point at each frame row (conditional rows only)
    ds/clips/<hook name>.bin   [clips, d]: its mean over the clip's frame rows

Two ways to fill one. :func:`record_clips` feeds a clip's own codes through the decoder (teacher forcing,
the codes given as a continuation prefix) and reads the points: the activations of music whose ground truth
is known (the nano corpus: every attribute and every note). :func:`record_prompts` generates and reads; the
attributes are those the prompt asks for. :func:`from_sweep` turns a sweep's ``record=`` rows into one.

Rows: at decoding step ``t`` the decoder has been fed codebook 0 of frames ``0 .. t-1``; the row is labelled
``frame = t - 1`` (the last frame played), for steps 1 .. frames.

Examples
--------
>>> import mglab, numpy as np, tempfile
>>> from mglab.nano import corpus
>>> model = mglab.load("data/models/nano-musicgen")
>>> clips = [corpus.example(np.random.default_rng(i), 1.0) for i in range(2)]
>>> ds = record_clips(model, clips, tempfile.mkdtemp(), ["decoder.layers.1.hook_resid_post"])
>>> ds.frames("decoder.layers.1.hook_resid_post").shape, ds.clips("decoder.layers.1.hook_resid_post").shape
((100, 128), (2, 128))
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np

from ..audio.vocabulary import attributes as prompt_attributes
from ..core.fileio import atomic_write
from ..core.hooks import match

DTYPES = ("float32", "float16")


def _file(name: str) -> str:
    return name.replace("/", "_") + ".bin"


class Dataset:
    """An activation dataset on disk (see the module docstring): ``frames(name)``, ``clips(name)``,
    ``table(rows)``."""

    def __init__(self, path):
        self.path = Path(path)
        if not (self.path / "dataset.json").is_file():
            raise FileNotFoundError(f"{str(self.path)!r} holds no activation dataset (no dataset.json)")
        self.meta = json.loads((self.path / "dataset.json").read_text())

    @property
    def names(self) -> list[str]:
        """The hook points the dataset holds, in recording order."""
        return list(self.meta["names"])

    def __len__(self) -> int:
        return self.meta["clips"]

    def _map(self, kind: str, name: str, rows: int) -> np.ndarray:
        if name not in self.meta["names"]:
            raise KeyError(f"{name!r} is not in this dataset; recorded: {self.names}")
        d, dtype = self.meta["names"][name]["d"], self.meta["dtype"]
        if rows == 0:
            return np.zeros((0, d), dtype=dtype)
        return np.memmap(self.path / kind / _file(name), dtype=dtype, mode="r", shape=(rows, d))   # [rows, d]

    def frames(self, name: str) -> np.ndarray:
        """``[frame rows, d]`` (a read-only memory map)."""
        return self._map("frames", name, self.meta["frames"])

    def clips(self, name: str) -> np.ndarray:
        """``[clips, d]``: each clip's mean over its frames (a read-only memory map)."""
        return self._map("clips", name, self.meta["clips"])

    def index(self) -> np.ndarray:
        """``[frame rows, 3]`` int32: clip, step, frame."""
        n = self.meta["frames"]
        return np.fromfile(self.path / "frames.i32", dtype=np.int32).reshape(n, 3)

    def clip_table(self):
        """One row a clip: ``clip``, ``prompt``, ``seed``, ``source``, and its attributes (a DataFrame)."""
        import pandas as pd

        lines = (self.path / "clips.jsonl").read_text().splitlines()
        return pd.DataFrame([{**r, **r.pop("attributes")} for r in map(json.loads, lines)])

    def table(self, rows: str = "clips"):
        """The labels of each row: ``rows='clips'`` one a clip, ``'frames'`` one a frame row (the clip's
        columns, plus ``step``, ``frame`` and ``midi``)."""
        clips = self.clip_table()
        if rows == "clips":
            return clips
        if rows != "frames":
            raise ValueError(f"rows={rows!r} is not allowed: rows must be 'clips' or 'frames'")
        idx = self.index()
        table = clips.iloc[idx[:, 0]].reset_index(drop=True)
        table["step"], table["frame"] = idx[:, 1], idx[:, 2]
        table["midi"] = np.fromfile(self.path / "frames.midi.f32", dtype=np.float32)
        return table

    def __repr__(self) -> str:
        return (f"Dataset({str(self.path)!r}: {self.meta['clips']} clips, {self.meta['frames']} frame rows, "
                f"{len(self.names)} points)")


class Writer:
    """Appends clips to a dataset folder: ``add(values, clips, steps)`` per batch, ``close()`` at the end."""

    def __init__(self, path, names: list[str], dtype: str = "float32"):
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r} is not allowed: dtype must be one of {DTYPES}")
        self.path = Path(path)
        if (self.path / "dataset.json").exists():
            raise FileExistsError(f"{str(self.path)!r} already holds a dataset: give a new folder")
        for kind in ("frames", "clips"):
            (self.path / kind).mkdir(parents=True, exist_ok=True)
        self.names, self.dtype = list(names), dtype
        self.meta = {"names": {}, "dtype": dtype, "clips": 0, "frames": 0}
        self._open = {}
        self._lines = []

    def _append(self, kind: str, name: str, x: np.ndarray) -> None:
        f = self._open.get((kind, name)) or open(self.path / kind / _file(name), "ab")  # noqa: SIM115
        self._open[(kind, name)] = f
        f.write(np.ascontiguousarray(x, dtype=self.dtype).tobytes())

    def add(self, values: dict, clips: list[dict], steps: np.ndarray, midi: np.ndarray | None = None) -> None:
        """One batch. ``values``: ``{name: [steps, B, d]}`` (conditional rows); ``clips``: B dicts (``prompt``,
        ``seed``, ``source``, ``attributes``); ``steps``: the decoding step of each of the ``steps`` rows (frame
        = step - 1); ``midi``: ``[B, steps]`` the pitch at each row's frame, or None."""
        b, n = len(clips), len(steps)
        midi = np.full((b, n), np.nan, np.float32) if midi is None else np.asarray(midi, np.float32)
        for name in self.names:
            x = np.asarray(values[name])                                   # [steps, B, d]
            self.meta["names"].setdefault(name, {"d": int(x.shape[-1])})
            self._append("frames", name, x.transpose(1, 0, 2).reshape(b * n, -1))   # [B*steps, d]
            self._append("clips", name, x.astype(np.float64).mean(axis=0))          # [B, d]
        first = self.meta["clips"]
        idx = np.stack([np.repeat(np.arange(first, first + b), n), np.tile(steps, b), np.tile(steps - 1, b)], 1)
        self._append_raw("frames.i32", idx.astype(np.int32))              # [B*steps, 3]
        self._append_raw("frames.midi.f32", midi.reshape(-1))              # [B*steps]
        for i, c in enumerate(clips):
            self._lines.append(json.dumps({"clip": first + i, **c}, default=_jsonable))
        self.meta["clips"] += b
        self.meta["frames"] += b * n
        with open(self.path / "clips.jsonl", "a") as f:
            f.write("".join(line + "\n" for line in self._lines))
        self._lines = []

    def _append_raw(self, file: str, x: np.ndarray) -> None:
        with open(self.path / file, "ab") as f:
            f.write(np.ascontiguousarray(x).tobytes())

    def close(self) -> Dataset:
        """Flush and close every point's file; the finished :class:`Dataset`."""
        for f in self._open.values():
            f.close()
        atomic_write(self.path / "dataset.json", lambda tmp: Path(tmp).write_text(json.dumps(self.meta, indent=1)))
        return Dataset(self.path)


def _jsonable(v):
    return v.item() if hasattr(v, "item") else str(v)


def _resid_names(model, names) -> list[str]:
    names = match(names, model.hook_names(), "names")
    bad = [n for n in names if model.hook_names()[n].shape != "[H*batch, 1, d]"]
    if bad:
        raise ValueError(f"names={bad}: a dataset records residual points ([H*batch, 1, d]) only")
    return names


def note_midi(notes, frames: int) -> np.ndarray:
    """``[frames]``: the MIDI pitch sounding at each frame of ``[(midi, start, length), ...]`` (NaN: none)."""
    out = np.full(frames, np.nan, np.float32)
    for pitch, start, length in notes:
        out[start: start + length] = pitch
    return out


def played_bpm(notes, frame_rate: float) -> float | None:
    """Notes a minute of a clip's ``[(midi, start, length), ...]``: the median length of its notes but the last
    (which rings to the end)."""
    lengths = [n[2] for n in notes[:-1]]
    return float(60 * frame_rate / np.median(lengths)) if lengths else None


def _rows(cache, names, batch: int, steps: np.ndarray) -> dict:
    return {n: cache[n][steps, :batch, 0] for n in names}                  # [steps, B, d] each


def record_clips(model, clips, path, names, *, batch_size: int = 8, dtype: str = "float32", every: int = 1,
                 seed: int = 0) -> Dataset:
    """Teacher-forced: feed each clip's codes (``clip.codes [K, frames]``) with its prompt
    (``clip.prompt``) and record ``names`` (residual points) at every played frame.

    ``clip.attributes`` (a dict) become the clip's columns, with ``tempo_bpm`` (notes a minute) and each
    frame's ``midi`` when the clip has ``notes``, and ``said`` the attributes its prompt names
    (``clip.said``). Clips of one batch must have the same length. Guidance is off (the conditional rows
    are what the model computes either way). ``every``: keep every n-th frame row (the clip means are over
    the rows kept)."""
    names = _resid_names(model, names)
    out = Writer(path, names, dtype)
    clips = list(clips)
    for i in range(0, len(clips), batch_size):
        group = clips[i: i + batch_size]
        codes = np.stack([np.asarray(c.codes) for c in group])                # [B, K, frames]
        frames = codes.shape[-1]
        _, cache = model.run_with_cache([c.prompt for c in group], names_filter=names, guidance_scale=1.0,
                                        continue_from=types.SimpleNamespace(codes=codes),
                                        duration=1 / model.config.frame_rate, seed=seed)
        steps = np.arange(1, frames + 1, every)
        rows = []
        for c in group:
            a = dict(getattr(c, "attributes", None) or {})
            notes = getattr(c, "notes", None)
            if notes:
                a["tempo_bpm"] = played_bpm(notes, model.config.frame_rate)
            said = sorted(getattr(c, "said", None) or {})
            rows.append({"prompt": c.prompt, "seed": None, "source": "corpus", "said": said, "attributes": a})
        midi = np.stack([note_midi(getattr(c, "notes", None) or [], frames)[steps - 1] for c in group])   # [B, n]
        out.add(_rows(cache, names, len(group), steps), rows, steps, midi)
    return out.close()


def record_prompts(model, prompts, seeds, path, names, *, dtype: str = "float32", labels=None,
                   **generate_kwargs) -> Dataset:
    """Generate each prompt with each seed and record ``names`` (residual points) at every step that played a
    frame. The clip's columns are what the prompt asks for (:func:`mglab.audio.vocabulary.attributes`), and
    ``labels(codes [K, frames]) -> (dict, midi [frames] or None)`` adds what the generated codes say."""
    names = _resid_names(model, names)
    out, prompts = Writer(path, names, dtype), list(prompts)
    for seed in seeds:
        gen, cache = model.run_with_cache(prompts, names_filter=names, seed=[seed] * len(prompts),
                                          **generate_kwargs)
        frames = gen.codes.shape[-1]
        steps = np.arange(1, frames + 1)
        rows, midi = [], np.full((len(prompts), frames), np.nan, np.float32)
        for b, p in enumerate(prompts):
            a = prompt_attributes(p)[0]
            if labels is not None:
                extra, m = labels(gen.codes[b])
                a.update(extra)
                midi[b] = np.nan if m is None else m
            rows.append({"prompt": p, "seed": int(seed), "source": "generated", "attributes": a})
        out.add(_rows(cache, names, len(prompts), steps), rows, steps, midi)
    return out.close()


def from_sweep(out_dir, path, names, *, dtype: str = "float32") -> Dataset:
    """A dataset from a sweep's rows recorded with ``record=`` (their ``.cache.npz``): every row's steps that
    played a frame; the columns are the row's settings and what its prompt asks for."""
    import pandas as pd

    from .activation_cache import ActivationCache

    table = pd.read_parquet(Path(out_dir) / "results.parquet")
    names = list(names) if not isinstance(names, str) else [names]
    out = Writer(path, names, dtype)
    for _, row in table.iterrows():
        file = Path(out_dir) / "rows" / f"{row['row']}.cache.npz"
        if row.get("status") != "ok" or not file.is_file():
            continue
        cache = ActivationCache.load(file)
        frames = int(cache["codec.hook_codes"].shape[-1]) if "codec.hook_codes" in cache else None
        total = cache[names[0]].shape[0]
        steps = np.arange(1, min(total, frames + 1) if frames else total)
        a = prompt_attributes(row["prompt"])[0]
        settings = {k: row[k] for k in ("guidance_scale", "temperature") if k in row}
        clip = {"prompt": row["prompt"], "seed": int(row["seed"]) if "seed" in row else None, "source": "sweep",
                "row": row["row"], "attributes": {**a, **settings}}
        out.add(_rows(cache, names, 1, steps), [clip], steps)
    return out.close()
