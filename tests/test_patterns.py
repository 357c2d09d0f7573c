"""Codebook patterns against audiocraft's own arithmetic (``audiocraft/modules/codebooks_patterns.py``).

The oracle below is a line-by-line port of audiocraft's providers' ``get_pattern`` and of
``Pattern._build_pattern_sequence_scatter_indexes`` (torch replaced by plain lists), kept independent of
mglab: it decides where every token goes, and mglab must agree.
"""

from collections import namedtuple

import numpy as np
import pytest

import mglab
from mglab.decoding import patterns

C = namedtuple("LayoutCoord", ["t", "q"])


# --- audiocraft, ported -------------------------------------------------------------------------------------
def ac_delayed(n_q, timesteps, delays=None, flatten_first=0, empty_initial=0):
    delays = list(range(n_q)) if delays is None else delays
    out = [[]]
    max_delay = max(delays)
    if empty_initial:
        out += [[] for _ in range(empty_initial)]
    if flatten_first:
        for t in range(min(timesteps, flatten_first)):
            for q in range(n_q):
                out.append([C(t, q)])
    for t in range(flatten_first, timesteps + max_delay):
        v = []
        for q, delay in enumerate(delays):
            t_for_q = t - delay
            if t_for_q >= flatten_first:
                v.append(C(t_for_q, q))
        out.append(v)
    return out


def ac_unrolled(n_q, timesteps, flattening=None, delays=None):
    flattening = list(range(n_q)) if flattening is None else flattening
    delays = [0] * n_q if delays is None else delays
    flat = {}
    for q, (inner_step, delay) in enumerate(zip(flattening, delays)):
        if inner_step not in flat:
            flat[inner_step] = ([q], delay)
        else:
            flat[inner_step][0].append(q)
    num_inner = max(flat) + 1
    max_delay = max(delays)
    indexed_out = [(-1, [])]
    max_timesteps = timesteps + max_delay
    for t in range(max_timesteps):
        for step in range(num_inner):
            if step in flat:
                codebooks, delay = flat[step]
                t_for_q = t + delay
                coords = [C(t, q) for q in codebooks]
                if t_for_q < max_timesteps and t < max_timesteps:
                    indexed_out.append((t_for_q, coords))
            else:
                indexed_out.append((t, []))
    return [coords for _, coords in sorted(indexed_out)]


def ac_coarse_first(n_q, timesteps, delays=None):
    delays = [0] * (n_q - 1) if delays is None else delays
    out = [[]]
    for t in range(timesteps):
        out.append([C(t, 0)])
    max_delay = max(delays)
    for t in range(timesteps + max_delay):
        v = []
        for q, delay in enumerate(delays):
            t_for_q = t - delay
            if t_for_q >= 0:
                v.append(C(t_for_q, q + 1))
        out.append(v)
    return out


def ac_musiclm(n_q, timesteps, group_by=2):
    out = [[]]
    for offset in range(0, n_q, group_by):
        for t in range(timesteps):
            for q in range(offset, offset + group_by):
                out.append([C(t, q)])
    return out


def ac_build(layout, z, special):
    """``Pattern.build_pattern_sequence``: z [B, K, T] -> values [B, K, S]."""
    b, k, timesteps = z.shape
    indexes = np.full((k, len(layout)), k * timesteps)
    for s, coords in enumerate(layout):
        for c in coords:
            if c.t < timesteps:
                indexes[c.q, s] = c.t + c.q * timesteps
    flat = np.concatenate([z.reshape(b, -1), np.full((b, 1), special)], axis=1)
    return flat[:, indexes.reshape(-1)].reshape(b, k, len(layout))
# ------------------------------------------------------------------------------------------------------------


CASES = [(1, 5), (2, 3), (3, 4), (4, 12), (8, 6)]


def codes(k, t):
    return np.random.default_rng(k * 100 + t).integers(0, 1000, size=(2, k, t))


@pytest.mark.parametrize("k,t", CASES)
def test_delay_and_parallel_equal_audiocraft(k, t):
    z = codes(k, t)
    np.testing.assert_array_equal(patterns.delay(k, t).build(z, -1), ac_build(ac_delayed(k, t), z, -1))
    np.testing.assert_array_equal(patterns.parallel(k, t).build(z, -1),
                                  ac_build(ac_delayed(k, t, [0] * k), z, -1))
    stereo = [q // 2 for q in range(k)]
    np.testing.assert_array_equal(patterns.delay(k, t, stereo).build(z, -1), ac_build(ac_delayed(k, t, stereo), z, -1))


@pytest.mark.parametrize("k,t", CASES)
def test_unroll_equals_audiocraft(k, t):
    z = codes(k, t)
    np.testing.assert_array_equal(patterns.flattening(k, t).build(z, -1), ac_build(ac_unrolled(k, t), z, -1))
    if k >= 3:
        fl, dl = [0] + [1] * (k - 1), [0] + [3] * (k - 1)
        np.testing.assert_array_equal(patterns.unroll(k, t, fl, dl).build(z, -1),
                                      ac_build(ac_unrolled(k, t, fl, dl), z, -1))


@pytest.mark.parametrize("k,t", [c for c in CASES if c[0] > 1])
def test_coarse_first_equals_audiocraft(k, t):
    z = codes(k, t)
    got = patterns.coarse_first(k, t)
    np.testing.assert_array_equal(got.build(z, -1), ac_build(ac_coarse_first(k, t), z, -1))
    assert got.num_steps == 2 * t                          # codebook 0 over all frames, then the rest together
    delays = list(range(k - 1))
    np.testing.assert_array_equal(patterns.coarse_first(k, t, delays).build(z, -1),
                                  ac_build(ac_coarse_first(k, t, delays), z, -1))


@pytest.mark.parametrize("k,t", [(2, 3), (4, 5), (8, 2)])
def test_musiclm_equals_audiocraft(k, t):
    z = codes(k, t)
    np.testing.assert_array_equal(patterns.musiclm(k, t).build(z, -1), ac_build(ac_musiclm(k, t), z, -1))
    assert patterns.musiclm(k, t).num_steps == k * t


@pytest.mark.parametrize("name", list(patterns.PATTERNS))
def test_revert_inverts_build(name):
    z = codes(4, 6)
    p = patterns.PATTERNS[name](4, 6)
    np.testing.assert_array_equal(p.revert(p.build(z, -1)), z)
    steps = p.steps()
    assert steps.min() == 0 and p.num_steps == steps.max() + 1


def test_hand_drawn_delay_layout():
    # K = 3, T = 4, delays 0, 1, 2: drawn by hand from MusicGen's paper (figure 1, "delay")
    drawn = np.array([[-1, 0, 1, 2, 3, -1, -1],
                      [-1, -1, 0, 1, 2, 3, -1],
                      [-1, -1, -1, 0, 1, 2, 3]])
    np.testing.assert_array_equal(patterns.delay(3, 4).build(np.tile(np.arange(4), (3, 1)), -1), drawn)
    np.testing.assert_array_equal(patterns.delay(3, 4).steps(), [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5]])


def test_the_transformers_mask_is_the_delay_pattern():
    mask = mglab.decoding.patterns.build_delay_pattern(4, 5 + 4, 9)
    np.testing.assert_array_equal(mask == -1, patterns.delay(4, 5).mask)


def test_bad_layouts_are_refused():
    with pytest.raises(ValueError, match="empty position"):
        patterns.Pattern([[(0, 0)]], 1, 1)
    with pytest.raises(ValueError, match="more than once"):
        patterns.Pattern([[], [(0, 0), (1, 0)]], 2, 1)
    with pytest.raises(ValueError, match="goes back"):
        patterns.Pattern([[], [(1, 0)], [(0, 0)]], 2, 1)
    with pytest.raises(ValueError, match="delays=.*ascending"):
        patterns.delay(3, 4, [2, 1, 0])
    with pytest.raises(ValueError, match="timesteps=0"):
        patterns.delay(3, 0)
