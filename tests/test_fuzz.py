"""A seeded fuzz of the public API: random types and values for each argument of ``load``, ``generate``, ``stream``,
``run_with_cache``, ``steer``, ``sweep``, ``evaluate.measure``, ``Generation.load`` and the command line. Every
call either works or raises TypeError / ValueError / FileNotFoundError / KeyError naming the argument, within a
time bound; no other exception escapes."""

import contextlib
import io
import math
import time

import numpy as np
import pytest
from helpers import TINY

import mglab
from mglab import cli
from mglab.audio import evaluate
from mglab.core import settings

ALLOWED = (TypeError, ValueError, FileNotFoundError, KeyError)
VALUES = [None, -1, 0, 1, 2.5, -0.5, math.nan, math.inf, "x", "", [], [1, 2], {}, {"a": 1}, True, 10**12, -10**12,
          np.array([1.0, 2.0]), b"bytes", object(), (1,), "decoder.layers.0.hook_resid_post", 0.05, 3]
SECONDS = 20                                      # the bound on any one call


def _value(rng):
    return VALUES[int(rng.integers(len(VALUES)))]


def _calls(model, tmp_path):
    """(argument name, a call with that argument set to v) for every argument fuzzed."""
    gen_kw = dict(max_new_tokens=8)
    calls = [("path", lambda v: mglab.load(v)),
             ("prompt", lambda v: model.generate(v, **gen_kw)),
             ("hooks", lambda v: model.generate("a", hooks=v, **gen_kw)),
             ("hook_steps", lambda v: model.generate("a", hooks=[("sampler.hook_tokens", lambda x, h: None)],
                                                     hook_steps=v, **gen_kw)),
             ("audio", lambda v: model.generate("a", audio=v, **gen_kw)),
             ("sample_rate", lambda v: model.generate("a", audio=np.zeros(3200, np.float32), sample_rate=v,
                                                      **gen_kw)),
             ("continue_from", lambda v: model.generate("a", continue_from=v, **gen_kw)),
             ("chunk_duration", lambda v: list(model.stream("a", chunk_duration=v, **gen_kw))),
             ("names_filter", lambda v: model.run_with_cache("a", names_filter=v, **gen_kw)),
             ("steps", lambda v: model.run_with_cache("a", steps=v, **gen_kw)),
             ("vector", lambda v: _steer(model, vector=v)),
             ("layer", lambda v: _steer(model, layer=v)),
             ("scale", lambda v: _steer(model, scale=v)),
             ("rows", lambda v: _steer(model, rows=v)),
             ("point", lambda v: _steer(model, point=v)),
             ("grid", lambda v: mglab.sweep(model, v, tmp_path / "s", client=False, progress=False, **gen_kw)),
             ("batch_size", lambda v: mglab.sweep(model, {"prompt": ["a"]}, tmp_path / "s", client=False,
                                                  progress=False, batch_size=v, evaluate=False, **gen_kw)),
             ("model", lambda v: mglab.sweep(v, {"prompt": ["a"]}, tmp_path / "s", client=False, progress=False)),
             ("audio", lambda v: evaluate.measure(v, 32000)),
             ("sr", lambda v: evaluate.measure(np.zeros(8000, np.float32), v)),
             ("path", lambda v: mglab.Generation.load(v))]
    for name in settings.NAMES:
        kw = {} if name in ("max_new_tokens", "duration") else dict(gen_kw)
        calls.append((name, lambda v, name=name, kw=kw: model.generate("a", **kw, **{name: v})))
    return calls


def _steer(model, vector=None, layer=0, scale=1.0, rows="cond", point="resid_post"):
    vector = np.zeros(model.config.hidden_size, np.float32) if vector is None else vector
    with mglab.steer(model, vector, layer, scale=scale, rows=rows, point=point):
        return model.generate("a", max_new_tokens=8)


def test_the_public_api_works_or_names_the_argument(merged_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                       # a fuzzed relative path writes here, not into the repository
    rng = np.random.default_rng(2026)
    calls = _calls(merged_model, tmp_path)
    tried, start = 0, time.monotonic()
    for _ in range(260):
        name, call = calls[int(rng.integers(len(calls)))]
        value = _value(rng)
        t0 = time.monotonic()
        try:
            call(value)
        except ALLOWED as err:
            assert name in str(err), f"{name}={value!r}: {type(err).__name__}: {err}"
        except Exception as err:                                            # noqa: BLE001
            pytest.fail(f"{name}={value!r} raised {type(err).__name__}: {err}")
        assert time.monotonic() - t0 < SECONDS, f"{name}={value!r} took {time.monotonic() - t0:.0f} s"
        tried += 1
    assert tried == 260 and time.monotonic() - start < 120


HUGE = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))      # a plan of billions of windows dies here
import mglab
m = mglab.load(sys.argv[1])
for name, value in (("duration", 1e9), ("duration", 3600.5), ("max_new_tokens", 10**12)):
    t0 = time.monotonic()
    try:
        m.generate("x", **{name: value})
    except ValueError as err:
        assert str(err).startswith(f"{name}=") and "at most an hour of audio" in str(err), err
        assert time.monotonic() - t0 < 1.0
    else:
        raise SystemExit(f"{name}={value} was not refused")
print("refused")
"""


def test_a_huge_duration_is_refused_at_once(tmp_path):
    """``duration=1e9`` used to plan billions of windows in Python before anything started: refused now, naming
    the argument given, in under a second (run in a process with 4 GB of address space and a time limit, so a
    regression fails instead of filling the machine)."""
    import subprocess
    import sys

    script = tmp_path / "huge.py"
    script.write_text(HUGE)
    run = subprocess.run([sys.executable, str(script), str(TINY)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "refused", run.stderr[-1500:]


def test_the_command_line_fuzzed(tmp_path, monkeypatch):
    """Random flags and values: exit 0 or 2 (argparse and mglab's own usage errors), nothing else; the sweep
    command with random model paths and grid files too."""
    monkeypatch.chdir(tmp_path)                       # --out x writes here, not into the repository
    rng = np.random.default_rng(7)
    flags = ["--duration", "--seed", "--guidance-scale", "--top-k", "--model", "--out", "--temperature", "--dtype"]
    for _ in range(25):
        argv = ["generate", str(VALUES[int(rng.integers(len(VALUES)))]), "--model", str(TINY), "--out",
                str(tmp_path / "o.wav"), "--max-new-tokens", "8"]
        for _ in range(int(rng.integers(1, 3))):
            argv += [str(rng.choice(flags)), str(VALUES[int(rng.integers(len(VALUES)))])]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as exit_:
                code = exit_.code
        assert code in (0, 2, None), (argv, code, err.getvalue()[-500:])
    grids = ['model = "{m}"\n[grid]\nprompt = ["a"]\n', 'model = "{m}"\n[grid]\nseed = 3\n', "not toml [",
             'model = 3\n', '[grid]\nprompt = ["a"]\n', 'model = "{m}"\n[grid]\nprompt = ["a"]\nwindow = ["x"]\n']
    for i, text in enumerate(grids):
        for model in (str(TINY), "no/such/model", ""):
            grid = tmp_path / f"g{i}.toml"
            grid.write_text(text.replace("{m}", model))
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                try:
                    code = cli.main(["sweep", str(grid), "--out", str(tmp_path / f"s{i}"), "--no-evaluate",
                                     "--in-process"])
                except SystemExit as exit_:
                    code = exit_.code
            assert code in (0, 2, None), (text, model, code)


def test_ctrl_c_stops_generate_and_sweep_and_leaves_no_half_row(merged_model, tmp_path):
    """Ctrl-C (KeyboardInterrupt) at a decoding step is not caught as a hook's error nor as a sweep row's: it
    stops the call, and the sweep leaves no row file for the row it interrupted."""
    def interrupt(tokens, hook):
        if hook.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        merged_model.generate("a", max_new_tokens=12, hooks=[("sampler.hook_tokens", interrupt)])
    with pytest.raises(KeyboardInterrupt):
        mglab.sweep(merged_model, {"prompt": ["a"]}, tmp_path, client=False, progress=False, evaluate=False,
                    max_new_tokens=12, hooks=[("sampler.hook_tokens", interrupt)])
    assert list((tmp_path / "rows").iterdir()) == [] and not (tmp_path / "results.parquet").exists()
