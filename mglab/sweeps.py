"""Sweeps: the cartesian product of ``generate`` settings, run on Dask, measured, resumable.

::

    df = mglab.sweep(model, {"prompt": ["a slow low organ melody", "a fast high flute scale"],
                             "seed": [0, 1, 2], "guidance_scale": [1.0, 3.0]},
                     "reports/sweep", duration=4.0)          # 12 rows: a LocalCluster, one worker per core
    df.groupby("guidance_scale")["onset_rate"].mean()

One row per generation: ``row`` (its key), every setting, ``wav`` (``Generation.load(row["wav"])`` reads it
back), ``status`` (``ok`` / ``error``), ``error``, ``seconds``, ``worker``, and with ``evaluate=True`` what
:func:`mglab.audio.evaluate.measure` hears. The table is also ``out_dir/results.parquet``. On disk::

    out_dir/rows/<key>.wav, .json, .npz    the generation (Generation.save)
    out_dir/rows/<key>.row.json            the row, written last: the row is done
    out_dir/rows/<key>.cache.npz           with record=: the recorded hook points (ActivationCache)
    out_dir/results.parquet

A row's key hashes its prompt, every generation parameter as ``generate`` resolves it (the model's
``generation_config.json`` defaults included), ``record``, the per-call ``hooks`` and ``hook_steps``, and the
model's provenance: the SHA-256 of every file it read (graphs, ``config.json``, ``generation_config.json``,
``tokenizer.json``), hashed when it was loaded. Hooks and a callable ``record`` are identified by their
qualified name, source and the values they close over (not ``repr``, which changes every process). A second
call returns the stored rows and regenerates nothing (``retry_errors=True`` runs the rows that failed again;
``evaluate=True`` measures stored rows that were not measured, from their WAV); an interrupted sweep loses at
most the rows in flight. A row that kills its Dask worker (past Dask's allowed failures) records the loss as
its error. Each Dask worker loads the model once (from its load spec) and keeps it. Rows that
differ only in their prompt run as one batch (each prompt has its own RNG stream, so its tokens are those it
gets alone); a batch that fails is run row by row, and a row that still fails records its error.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np

from .core.fileio import atomic_write
from .core.fingerprint import fingerprint
from .core.settings import PARAMS, check_prompts, resolve
from .model import load
from .onnx.spec import LoadSpec

GRID_KEYS = ("prompt",) + tuple(p.name for p in PARAMS)
PARAM_NAMES = frozenset(p.name for p in PARAMS)
_MODELS: dict = {}                       # per worker process: load spec -> model


def check(model, grid: dict, out_dir, generate_kwargs: dict) -> list[dict]:
    """The rows of ``grid`` (each a dict of settings, ``prompt`` included), every value checked; errors name
    the grid key."""
    if not isinstance(grid, dict) or not grid:
        raise TypeError(f"grid={grid!r} is not allowed: grid must be a non-empty dict of generate arguments to lists")
    for key, values in grid.items():
        if key not in GRID_KEYS:
            raise ValueError(f"grid key {key!r} is not a generate argument; allowed: {', '.join(GRID_KEYS)}")
        if not isinstance(values, (list, tuple)):
            raise TypeError(f"grid[{key!r}]={values!r} is not allowed: each grid value must be a list")
        if not values:
            raise ValueError(f"grid[{key!r}] is an empty list: give at least one value")
    both = sorted(set(grid) & set(generate_kwargs))
    if both:
        raise ValueError(f"{both} are given in grid and as keyword arguments: give each in one place")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir={str(out_dir)!r} is a file, not a folder")
    rows = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    for row in rows:
        settings = {**generate_kwargs, **row}
        prompt = settings.pop("prompt", None)
        if prompt is None:
            raise ValueError("no prompt: give grid['prompt'] or prompt=")
        if len(check_prompts(prompt)) != 1:
            raise ValueError(f"prompt={prompt!r}: a row has one prompt (list several in grid['prompt'])")
        try:
            resolve(model.config, model.defaults, 1, **{k: v for k, v in settings.items()
                                                         if k not in ("hooks", "hook_steps")})
        except (TypeError, ValueError) as err:
            raise type(err)(f"grid row {row}: {err}") from None
    return rows


def row_key(model, settings: dict, provenance: dict, record) -> str:
    """The key of one row: its prompt, the resolved generation settings, the rest of its keyword arguments
    (``hooks``, ``hook_steps``), ``record`` and the model's provenance."""
    params = {k: v for k, v in settings.items() if k in PARAM_NAMES}
    resolved = resolve(model.config, model.defaults, 1, **params).to_dict()     # generation_config's defaults in
    other = {k: fingerprint(v) for k, v in settings.items() if k not in PARAM_NAMES and k != "prompt"}
    text = json.dumps({"prompt": settings["prompt"], "settings": resolved, "other": other, "model": provenance,
                       "record": fingerprint(record)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def batches(rows: list[dict], size: int) -> list[list[dict]]:
    """Rows that differ only in their prompt, in groups of at most ``size``."""
    groups: dict = {}
    for r in rows:
        same = json.dumps({k: v for k, v in r["settings"].items() if k != "prompt"}, sort_keys=True, default=str)
        groups.setdefault(same, []).append(r)
    return [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]


def sweep(model, grid: dict, out_dir, *, client=None, evaluate: bool = True, record=None, batch_size: int = 8,
          progress: bool = True, retry_errors: bool = False, **generate_kwargs):
    """Run the cartesian product of ``grid`` (generate argument -> list of values), with ``generate_kwargs``
    fixed, and return one row per generation as a ``pandas.DataFrame`` (also ``out_dir/results.parquet``).

    ``client``: None starts a ``distributed.LocalCluster`` (processes, one thread each, one worker per core)
    and closes it after; a ``distributed.Client`` uses that cluster; False runs in this process. ``record``:
    hook names (or a filter) whose values each row stores (``mglab.sweep_cache`` reads them back). ``model``: a
    model, or what :func:`mglab.load` takes (a folder or Hub id), loaded here and, from its load spec, on
    each worker. ``retry_errors``: run the stored rows that failed again (by default they are returned).
    """
    import pandas as pd

    model = _as_model(model)
    rows = check(model, grid, out_dir, generate_kwargs)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed: batch_size must be an integer >= 1")
    out = Path(out_dir)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    provenance = model.provenance()
    records = []
    for row in rows:
        key = row_key(model, {**generate_kwargs, **row}, provenance, record)
        records.append({"key": key, "settings": {**generate_kwargs, **row}, "grid": row})
    done = {r["key"]: _stored(out, r, evaluate, retry_errors) for r in records}
    todo = [r for r in records if done[r["key"]] is None]
    if todo:
        groups = batches(todo, 1 if record else batch_size)
        for rec in _run(model, groups, out, evaluate, record, client, progress, provenance):
            done[rec["row"]] = rec
    table = pd.DataFrame([done[r["key"]] for r in records])
    atomic_write(out / "results.parquet", lambda tmp: table.to_parquet(tmp, index=False))
    return table


def _as_model(model):
    """A model, or a folder / Hub id / LoadSpec loaded as :func:`mglab.load` does; anything else a TypeError."""
    if hasattr(model, "generate") and hasattr(model, "config"):
        return model
    if isinstance(model, (str, os.PathLike, LoadSpec)):
        try:
            return load(model)
        except (TypeError, ValueError, FileNotFoundError, KeyError) as err:
            kind = next(k for k in (FileNotFoundError, KeyError, TypeError, ValueError) if isinstance(err, k))
            raise kind(f"model={model!r} cannot be loaded: {type(err).__name__}: {err}") from err
    raise TypeError(f"model={model!r} is not allowed: model must be a MusicGen (mglab.load) or what mglab.load "
                    "takes (a model folder, a Hub id or a LoadSpec)")


def _stored(out: Path, r: dict, evaluate: bool, retry_errors: bool) -> dict | None:
    """The stored row of ``r``, measured from its WAV if it was stored unmeasured and ``evaluate``; None to run it."""
    path = out / "rows" / f"{r['key']}.row.json"
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    if rec.get("status") != "ok":
        return None if retry_errors else rec
    if evaluate and not rec.get("evaluated", False):
        from .generation import Generation

        measured = _measure(Generation.load(out / "rows" / f"{r['key']}.wav"))
        rec = {**rec, **{k: _plain(v) for k, v in measured.items()}, "evaluated": True}
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(rec)))
    return rec


def _run(model, groups, out, evaluate, record, client, progress, provenance):
    """Yield each finished row: in this process (``client=False``) or on Dask. A batch whose worker was lost
    runs again row by row; a row that loses its worker alone records the loss as its error."""
    from tqdm.auto import tqdm

    bar = tqdm(total=sum(len(g) for g in groups), desc="sweep", disable=not progress)
    try:
        if client is False:
            for g in groups:
                for rec in run_batch(model, g, str(out), evaluate, record, provenance):
                    bar.update()
                    yield rec
            return
        spec = model.spec
        if spec is None:
            raise TypeError("a sweep on Dask needs a model made by mglab.load (its load spec is sent)")
        own = client is None
        if own:
            from distributed import Client, LocalCluster

            cluster = LocalCluster(n_workers=os.cpu_count() or 1, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
        try:
            from distributed import as_completed

            submit = lambda g: client.submit(run_batch, spec, g, str(out), evaluate, record, provenance,  # noqa: E731
                                             pure=False)
            futures = {submit(g): g for g in groups}
            running = as_completed(list(futures))
            for future in running:
                group = futures.pop(future)
                try:
                    recs = future.result()
                except Exception as err:                          # noqa: BLE001 - a lost worker
                    recs = [] if len(group) > 1 else [_write_row(out, group[0], status="error", seconds=0.0,
                                                                 error=f"{type(err).__name__}: {err}",
                                                                 evaluated=False)]
                    for r in group if len(group) > 1 else []:     # which row was it? each alone
                        again = submit([r])
                        futures[again] = [r]
                        running.add(again)
                future.release()             # done: a worker lost later must not run it (and rewrite it) again
                for rec in recs:
                    bar.update()
                    yield rec
        finally:
            if own:
                client.close()
                cluster.close()
    finally:
        bar.close()


def _model(spec_or_model, provenance: dict | None = None):
    """The model of a load spec, loaded once per process (a Dask worker keeps it), or the model itself. With
    ``provenance`` (the caller's model's, which the row keys hash), a worker's model must be that one: a kept
    model that is not is loaded again, and files changed on disk since the caller loaded them are an error."""
    if hasattr(spec_or_model, "generate"):
        return spec_or_model
    key = repr(spec_or_model)
    if key not in _MODELS or (provenance is not None and _MODELS[key].provenance() != provenance):
        _MODELS[key] = load(spec_or_model)
    model = _MODELS[key]
    if provenance is not None and model.provenance() != provenance:
        changed = sorted(n for n, p in {**model.provenance()["components"], **model.provenance()["files"]}.items()
                         if p != {**provenance["components"], **provenance["files"]}.get(n))
        raise ValueError(f"the model's files changed on disk since the sweep's model was loaded ({', '.join(changed)}):"
                         " load the model again and rerun")
    return model


def _worker() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"local:{os.getpid()}"


def run_batch(spec_or_model, group: list[dict], out_dir: str, evaluate: bool, record,
              provenance: dict | None = None) -> list[dict]:
    """Generate one batch (rows that differ only in their prompt) and store each row; a batch that fails is
    run row by row, and a row that still fails is stored with its error."""
    try:
        model = _model(spec_or_model, provenance)
    except Exception as err:                                       # noqa: BLE001 - recorded, not fatal
        return [_write_row(Path(out_dir), r, status="error", error=f"{type(err).__name__}: {err}", seconds=0.0,
                           evaluated=False) for r in group]
    try:
        return _generate(model, group, Path(out_dir), evaluate, record)
    except Exception as err:                                       # noqa: BLE001 - recorded, not fatal
        if len(group) > 1:
            return [rec for r in group for rec in run_batch(model, [r], out_dir, evaluate, record)]
        return [_write_row(Path(out_dir), group[0], status="error", error=f"{type(err).__name__}: {err}",
                           seconds=0.0, evaluated=False)]


def _generate(model, group, out: Path, evaluate: bool, record) -> list[dict]:
    from .generation import Generation

    settings = {k: v for k, v in group[0]["settings"].items() if k != "prompt"}
    prompts = [r["settings"]["prompt"] for r in group]
    t0 = time.perf_counter()
    if record is not None:
        gen, cache = model.run_with_cache(prompts, names_filter=record, **settings)
    else:
        gen, cache = model.generate(prompts, **settings), None
    seconds = (time.perf_counter() - t0) / len(group)
    recs = []
    for i, r in enumerate(group):
        one = Generation(audio=gen.audio[i:i + 1], sample_rate=gen.sample_rate, codes=gen.codes[i:i + 1],
                         tokens=gen.tokens[i:i + 1], prompts=[prompts[i]], settings=gen.settings, model=gen.model,
                         mglab_version=gen.mglab_version)
        wav = one.save(out / "rows" / f"{r['key']}.wav")[0]
        if cache is not None:
            cache.save(out / "rows" / f"{r['key']}.cache.npz")
        measured = _measure(one) if evaluate else {}
        recs.append(_write_row(out, r, status="ok", error="", seconds=seconds, wav=str(wav), **measured,
                               evaluated=evaluate))
    return recs


def _measure(gen) -> dict:
    from .audio import evaluate

    m = evaluate.measure(gen.audio[0], gen.sample_rate)
    m["abstained"] = "; ".join(f"{k}: {why}" for k, why in m["abstained"].items())
    return {k: (", ".join(v) if isinstance(v, list) else v) for k, v in m.items()}


def _write_row(out: Path, r: dict, **fields) -> dict:
    rec = {"row": r["key"], **{k: _plain(v) for k, v in r["grid"].items()},
           **{k: _plain(v) for k, v in r["settings"].items() if k not in r["grid"] and k != "hooks"},
           "wav": fields.pop("wav", ""), **fields, "worker": _worker()}
    rec = {k: _plain(v) for k, v in rec.items()}
    atomic_write(out / "rows" / f"{r['key']}.row.json", lambda tmp: Path(tmp).write_text(json.dumps(rec)))
    return rec


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, slice):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return json.dumps([_plain(x) for x in v])
    return v


def sweep_cache(out_dir, name: str) -> tuple[np.ndarray, list[str]]:
    """One recorded hook point across a sweep's rows: ``(values [rows, ...], row keys)`` in
    ``results.parquet``'s order (rows that recorded it)."""
    import pandas as pd

    from .inspect.activation_cache import ActivationCache

    out = Path(out_dir)
    table = pd.read_parquet(out / "results.parquet")
    values, keys = [], []
    for key in table["row"]:
        path = out / "rows" / f"{key}.cache.npz"
        if path.is_file():
            cache = ActivationCache.load(path)
            if name in cache:
                values.append(cache[name])
                keys.append(key)
    if not values:
        raise KeyError(f"no row of {str(out)!r} recorded {name!r} (sweep(..., record=...))")
    shapes = {v.shape for v in values}
    if len(shapes) > 1:
        raise ValueError(f"{name!r} has different shapes across rows {sorted(shapes)}: sweep rows of one length")
    return np.stack(values), keys
