"""Defects found by reading the suite against the references, each pinned by an expectation from outside mglab:
audiocraft's own window arithmetic, a fault injected on purpose, a real SIGINT."""

import _thread
import signal
import threading
import time
from fractions import Fraction

import numpy as np
import pytest

import mglab
from mglab.core import fileio, settings
from mglab.decoding import longform

KW = dict(max_new_tokens=20, seed=5, do_sample=True, top_k=20)
TWO = ["lofi piano", "rock"]


# --- long form: audiocraft's window arithmetic --------------------------------------------------------------
def audiocraft_windows(duration, max_duration, extend_stride, frame_rate, exact=True):
    """``GenModel._generate_tokens``'s loop (audiocraft/models/genmodel.py), ported:
    ``[(prompt_length, max_gen_len), ...]``. ``exact`` runs it on fractions (the seconds as written), else on
    floats as audiocraft does, where ``int((duration - offset) * rate)`` can fall a frame short."""
    if exact:
        duration, max_duration = Fraction(str(duration)), Fraction(str(max_duration))
        extend_stride, frame_rate = Fraction(str(extend_stride)), Fraction(frame_rate)
    total_gen_len = int(duration * frame_rate)
    out, current_gen_offset, prompt_length = [], 0, 0
    if duration <= max_duration:
        return [(0, total_gen_len)]
    stride_tokens = int(frame_rate * extend_stride)
    while current_gen_offset + prompt_length < total_gen_len:
        time_offset = current_gen_offset / frame_rate
        chunk_duration = min(duration - time_offset, max_duration)
        max_gen_len = int(chunk_duration * frame_rate)
        out.append((prompt_length, max_gen_len))
        prompt_length = max_gen_len - stride_tokens
        current_gen_offset += stride_tokens
    return out


GRID = [(d, w, s) for d in (6.0, 7.3, 12.5, 30.0, 47.1) for w, s in ((5.12, None), (5.0, 3.0), (4.2, 1.7),
                                                                        (10.0, 6.0))]


@pytest.mark.parametrize("duration,window,stride", GRID)
def test_long_form_windows_follow_audiocraft(merged_model, duration, window, stride):
    c, fr = merged_model.config, merged_model.config.frame_rate
    s = settings.resolve(c, merged_model.defaults, 1, duration=duration, window=window, extend_stride=stride)
    stride = 0.6 * window if stride is None else stride             # the default, audiocraft's 18 of 30
    assert int(duration * fr) == s.frames                           # the grid avoids round() vs int() totals
    ours = longform.plan(s.frames, s.window_frames, s.stride_frames)
    assert ours == audiocraft_windows(duration, window, stride, fr)


def test_where_audiocraft_loses_a_frame_to_float_error_mglab_does_not(merged_model):
    """47.1 s: audiocraft's last chunk is ``int((47.1 - 1071 / 50) * 50)`` = 212, a frame short of the 213
    left (float error), so it opens one more window for a single frame. mglab plans in whole frames."""
    s = settings.resolve(merged_model.config, merged_model.defaults, 1, duration=47.1, window=5.12)
    ours = longform.plan(s.frames, s.window_frames, s.stride_frames)
    theirs = audiocraft_windows(47.1, 5.12, 0.6 * 5.12, 50, exact=False)
    assert ours[:-1] == theirs[:-2] and ours[-1] == (103, 213) and theirs[-2:] == [(103, 212), (59, 60)]
    assert sum(n - p for p, n in ours) == s.frames == 2355


def test_the_default_stride_truncates_as_audiocraft_does(merged_model):
    # the tiny model's window is 256 / 50 = 5.12 s; 0.6 of it is 153.6 frames: audiocraft's int() gives 153
    s = settings.resolve(merged_model.config, merged_model.defaults, 1, duration=8.0)
    assert (s.window_frames, s.stride_frames) == (256, 153)


# --- Generation.save: one set -------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", [OSError, KeyboardInterrupt])
@pytest.mark.parametrize("fail_at", ["write", "rename"])
def test_a_failed_save_leaves_the_earlier_save_whole(merged_model, tmp_path, monkeypatch, fault, fail_at):
    old = merged_model.generate(TWO, **KW)
    old.save(tmp_path / "out.wav")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    new = merged_model.generate(TWO, **{**KW, "seed": 6})
    if fail_at == "write":        # the JSON (last file) fails to write after the WAVs and npz were written
        real = fileio.Path.write_text

        def write_text(self, *a, **k):
            raise fault("injected")
        monkeypatch.setattr(fileio.Path, "write_text", write_text)
    else:                         # the third rename fails: two new files are already in place
        real, calls = fileio.os.replace, []

        def replace(src, dst):
            calls.append(dst)
            if len(calls) == 3 + len(before):       # after the backups, the third new file
                raise fault("injected")
            return real(src, dst)
        monkeypatch.setattr(fileio.os, "replace", replace)
    with pytest.raises(fault):
        new.save(tmp_path / "out.wav")
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before                                    # the same files, byte for byte, nothing extra
    back = mglab.Generation.load(tmp_path / "out.wav")
    np.testing.assert_array_equal(back.codes, old.codes)
    new.save(tmp_path / "out.wav")                            # and a save that succeeds replaces the set
    np.testing.assert_array_equal(mglab.Generation.load(tmp_path / "out.wav").codes, new.codes)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)


# --- stream: no hook outlives its call -----------------------------------------------------------------------
def test_a_half_consumed_stream_leaks_no_hook(merged_model):
    ref = merged_model.generate(TWO, **KW)

    def force(tokens, hook):
        return np.zeros_like(tokens)

    stream = merged_model.stream(TWO, chunk_duration=0.1, hooks=[("sampler.hook_tokens", force)], **KW)
    with pytest.raises(KeyboardInterrupt):
        for _ in stream:                                      # Ctrl-C in the loop body, generator suspended
            raise KeyboardInterrupt
    assert stream.gi_frame is not None                        # still referenced, suspended inside the loop
    np.testing.assert_array_equal(merged_model.generate(TWO, **KW).tokens, ref.tokens)
    broken = merged_model.stream(TWO, chunk_duration=0.1, hooks=[("sampler.hook_tokens", force)], **KW)
    next(broken)                                              # a loop that breaks
    np.testing.assert_array_equal(merged_model.generate(TWO, **KW).tokens, ref.tokens)
    assert not merged_model._hooks


def _sigint_after(seconds: float):
    timer = threading.Timer(seconds, _thread.interrupt_main)
    timer.start()
    return timer


@pytest.fixture(autouse=True)
def _sigint_raises():
    """A background job (``cmd &`` in a script) starts with SIGINT ignored, and then ``interrupt_main`` does
    nothing: give this test Python's own handler, as a terminal's foreground process has."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


@pytest.mark.parametrize("how", ["generate", "stream"])
def test_a_real_sigint_stops_cleanly(merged_model, how):
    ref = merged_model.generate(TWO, **KW)

    def slow(value, hook):                                    # each step takes 20 ms: the signal lands mid-run
        time.sleep(0.02)

    timer = _sigint_after(0.15)
    try:
        with pytest.raises(KeyboardInterrupt):
            if how == "generate":
                merged_model.generate(TWO, max_new_tokens=200, hooks=[("delay.hook_tokens", slow)], seed=1)
            else:
                for _ in merged_model.stream(TWO, max_new_tokens=200, chunk_duration=0.1,
                                             hooks=[("delay.hook_tokens", slow)], seed=1):
                    pass
    finally:
        timer.cancel()
    assert not merged_model._hooks
    np.testing.assert_array_equal(merged_model.generate(TWO, **KW).tokens, ref.tokens)


# --- the activation cache never returns a history that did not happen --------------------------------------
def test_kv_history_records_edits_of_earlier_positions(merged_model):
    name = "decoder.layers.1.hook_key"
    live = []

    def edit(value, hook):                                   # at step 6, rewrite positions 2 and 4
        if hook.step == 6:
            value[:, :, [2, 4]] = 7.0
        live.append(np.array(value))                         # what the cache really holds after each step

    _, cache = merged_model.run_with_cache(TWO, names_filter=name, hooks=[(name, edit)], **KW)
    for t in range(KW["max_new_tokens"]):
        np.testing.assert_array_equal(cache.kv(name, t), live[t])
    np.testing.assert_array_equal(cache[name], live[-1])
    assert [(s, p.tolist()) for s, p in cache.edits(name)] == [(6, [2, 4])]
    assert (cache.kv(name, 5)[:, :, 2] != 7.0).all()         # before the edit, the old values


def test_kv_history_survives_save_and_load(merged_model, tmp_path):
    name = "decoder.layers.0.hook_value"

    def edit(value, hook):
        if hook.step == 3:
            value[:, :, 0] = -1.0

    _, cache = merged_model.run_with_cache(TWO, names_filter=name, hooks=[(name, edit)], **KW)
    back = mglab.inspect.activation_cache.ActivationCache.load(cache.save(tmp_path / "c.npz"))
    for t in (2, 3, 10):
        np.testing.assert_array_equal(back.kv(name, t), cache.kv(name, t))
    assert (back.kv(name, 3)[:, :, 0] == -1.0).all() and (back.kv(name, 2)[:, :, 0] != -1.0).all()


def test_saved_files_are_readable_like_any_other(merged_model, tmp_path):
    """Atomic writes go through mkstemp (mode 0600); the files saved must get the usual 0666 & ~umask, as
    open() gives: a WAV or a report was unreadable to anyone but its owner."""
    import os
    import stat

    from mglab.inspect import reports

    mask = os.umask(0o022)
    try:
        paths = merged_model.generate("lofi piano", max_new_tokens=6, seed=0).save(tmp_path / "a.wav")
        (tmp_path / "r").mkdir()
        index = reports.index(tmp_path / "r")
    finally:
        os.umask(mask)
    for p in [*paths, paths[0].with_suffix(".json"), paths[0].with_suffix(".npz"), index]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, (p.name, oct(p.stat().st_mode))
