"""The synthesizer codec: pitch from equal temperament, distinct timbres, no clicks, streams like one shot."""

import numpy as np
import pytest

from mglab.core.hooks import Hooks, hook_points
from mglab.decoding import streaming
from mglab.nano import corpus, synth

SR, HOP = synth.SAMPLE_RATE, synth.HOP


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    path = synth.build(tmp_path_factory.mktemp("synth") / "encodec_decode.onnx")
    return synth.SynthCodec(path, sample_rate=SR, hop_length=HOP, channels=1)


def codes_for(notes, frames, instrument=0, level=6, vibrato=0, ages=False):
    """``notes``: [(midi, start, length)] -> codes [1, 4, frames]; held frames carry their note's age stage
    when ``ages``."""
    c = np.zeros((4, frames), dtype=np.int64)
    c[2], c[3] = instrument, 32 + vibrato
    for midi, start, length in notes:
        c[0, start:start + length] = synth.midi_to_token(midi)
        c[1, start:start + length] = [synth.dynamics_token(level, a if ages else None) for a in range(length)]
        c[1, start] = synth.dynamics_token(level, 0)
    return c[None]


def test_age_stages_sound_as_held_notes(codec):
    """Stages 2..7 say how old a note is; they neither strike nor change the sound (stages 3, 5, 7 were
    strikes when the flag was a parity bit: a bug this would catch)."""
    notes = [(60, 0, 30), (64, 30, 20), (64, 50, 30)]
    plain, aged = codes_for(notes, 80, instrument=0), codes_for(notes, 80, instrument=0, ages=True)
    assert (plain != aged).any()
    np.testing.assert_array_equal(codec.decode(aged), codec.decode(plain))
    assert synth.onsets(aged[0]).nonzero()[0].tolist() == [0, 30, 50]


def peak_hz(y):
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size), n=1 << 18))
    return np.fft.rfftfreq(1 << 18, 1 / SR)[np.argmax(spec)]


@pytest.mark.parametrize("midi", [36, 57, 69, 81, 96])
def test_pitch_is_equal_temperament(codec, midi):
    y = codec.decode(codes_for([(midi, 0, 50)], 50, instrument=2))[0, 0]       # flute: the fundamental dominates
    expected = 440.0 * 2 ** ((midi - 69) / 12)
    assert abs(peak_hz(y[HOP * 5:]) - expected) < expected * 0.003              # within 5 cents


def test_rests_are_silent_and_levels_follow_the_table(codec):
    c = codes_for([(60, 10, 30)], 50, instrument=1, level=1)
    y = codec.decode(c)[0, 0]
    assert np.abs(y[:10 * HOP]).max() == 0 and np.abs(y[40 * HOP:]).max() == 0
    loud = codec.decode(codes_for([(60, 10, 30)], 50, instrument=1, level=7))[0, 0]
    rms = lambda a: np.sqrt((a[15 * HOP:35 * HOP] ** 2).mean())
    assert 20 * np.log10(rms(loud) / rms(y)) == pytest.approx(3.0 * 6, abs=0.1)   # 3 dB a level
    assert 20 * np.log10(rms(loud)) == pytest.approx(synth.level_db(7), abs=0.5)  # RMS in dBFS (organ holds)


def harmonic_profile(y, f0):
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    freqs = np.fft.rfftfreq(y.size, 1 / SR)
    return np.array([spec[np.argmin(np.abs(freqs - r * f0))] for r in (1, 2, 3, 4, 5, 3.93)])


def test_six_timbres_differ_in_spectrum_or_envelope(codec):
    profiles, envelopes = [], []
    for i in range(len(synth.INSTRUMENTS)):
        y = codec.decode(codes_for([(57, 0, 100)], 100, instrument=i))[0, 0]
        p = harmonic_profile(y[10 * HOP: 30 * HOP], 220.0)
        profiles.append(20 * np.log10(p / p[0] + 1e-9))
        frames = np.sqrt((y.reshape(100, HOP) ** 2).mean(axis=1))
        envelopes.append(20 * np.log10(frames[80] / frames[5]))               # decay over 1.5 s
    for a in range(6):
        for b in range(a + 1, 6):
            spectral = np.abs(profiles[a] - profiles[b]).max()
            assert spectral > 6 or abs(envelopes[a] - envelopes[b]) > 6, (synth.INSTRUMENTS[a], synth.INSTRUMENTS[b])
    assert envelopes[0] < -6 and envelopes[4] < -20 and abs(envelopes[1]) < 0.5   # piano, marimba decay; organ holds


def test_no_clicks_at_frame_or_note_boundaries(codec):
    """No sample step anywhere exceeds what the partials allow: |dy/dn| <= gain * sum(a_h * 2 pi f_h / sr),
    with note changes, re-strikes, a rest, a legato pitch change, a level change and an instrument change."""
    c = codes_for([(60, 0, 20), (67, 20, 13), (67, 33, 10), (72, 50, 40)], 90, instrument=2, level=7)
    c[0, 0, 60:70] = synth.midi_to_token(74)                                   # legato: pitch moves, no strike
    c[0, 1, 70:] = 4                                                           # level drops mid-note
    c[0, 2, 80:] = 5                                                           # instrument change: a new note
    y = codec.decode(c)[0, 0]
    step = np.abs(np.diff(y))
    ratio, amp, _, _ = synth.instrument_partials()
    f0 = 440 * 2 ** ((74 - 69) / 12) * 2 ** (24 / 1200)                       # highest pitch, vibrato included
    slope = max((amp[i] * 2 * np.pi * ratio[i] * f0 / SR).sum() for i in (2, 5))
    bound = 10 ** (synth.level_db(7) / 20) * slope * 1.2
    assert step.max() < bound
    boundaries = [f * HOP for f in (20, 33, 43, 50, 60, 70, 80)]
    assert max(step[b - 2: b + 2].max() for b in boundaries) < bound
    jump = y.copy()                                                            # the test can see a click:
    jump[25 * HOP + 123:] *= -1                                                # a sign flip mid-note
    assert np.abs(np.diff(jump)).max() > bound


@pytest.mark.parametrize("change", ["pitch", "vibrato"])
@pytest.mark.parametrize("at", range(3, 37))
def test_a_legato_change_under_vibrato_does_not_click(codec, change, at):
    """The vibrato's phase runs on through a legato pitch change (or a change of vibrato depth) as the
    fundamental's does. The change falls 14 frames after the strike, where the vibrato's phase offset
    f0 * depth * (1 - cos) / (2 pi 5.5 Hz) is near its largest: recomputed from the new frame's f0 alone, this
    octave leap at 56 cents jumped 0.48 cycles (a step of 7.7x the slope bound; 6.7x for the depth change). The
    change frame sweeps the vibrato's period, where a wrong sign or a frame-late offset clicks at most frames."""
    c = codes_for([(60, 0, 40)], 40, instrument=2, level=7, vibrato=7)
    if change == "pitch":
        c[0, 0, at:] = synth.midi_to_token(72)                                     # legato: no strike
    else:
        c[0, 3, at:] = 32 + 1                                                      # 56 -> 8 cents, mid-note
    y = codec.decode(c)[0, 0]
    ratio, amp, _, _ = synth.instrument_partials()
    f0 = 440 * 2 ** ((72 - 69) / 12) * 2 ** (56 / 1200)                       # highest pitch, vibrato included
    bound = 10 ** (synth.level_db(7) / 20) * (amp[2] * 2 * np.pi * ratio[2] * f0 / SR).sum() * 1.2
    assert np.abs(np.diff(y)).max() < bound
    assert synth.onsets(c[0]).nonzero()[0].tolist() == [0]                     # one note: nothing restarts it


def test_codebooks_are_the_tables(codec):
    np.testing.assert_array_equal(codec.codebooks(), synth.tables())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_stream_equals_the_one_shot_decode(codec, seed):
    """Long notes (slow corpus clips, notes of up to 0.8 s) and chunks of 0.1 s: each chunk starts at the note
    that sounds, not 50 frames back."""
    rng = np.random.default_rng(seed)
    clips = [corpus.example(rng, 6.0) for _ in range(2)]
    codes = np.stack([c.codes for c in clips])                                  # [2, 4, 300]
    whole = codec.decode(codes)
    hooks = Hooks(hook_points(1))
    frames = ((codes[..., f:f + 1], None) for f in range(codes.shape[-1]))
    joined = np.concatenate(list(streaming.chunks(frames, codec, hooks, chunk=5)), axis=-1)
    assert joined.shape == whole.shape
    assert np.abs(joined - whole).max() <= 1e-4


@pytest.mark.parametrize("chunk", [1, 5, 7])
def test_a_stream_equals_the_one_shot_decode_through_legato_changes(codec, chunk):
    """Pitch and vibrato changing every few frames without strikes, rests, instrument changes: what a frame sounds
    still depends on its own note's frames only (the vibrato's carried phase included)."""
    rng = np.random.default_rng(5)
    t = 150
    c = np.zeros((2, 4, t), dtype=np.int64)
    for b in range(2):
        c[b, 0] = np.repeat(rng.integers(1, 62, t // 5 + 1), 5)[:t]                # legato every 5 frames
        c[b, 0, rng.random(t) < 0.05] = 0                                        # rests
        c[b, 1] = rng.choice([7, 7, 7, 7, 7, 15], t)                              # held; now and then a strike
        c[b, 2] = np.repeat(rng.integers(0, 6, t // 50 + 1), 50)[:t]             # instrument changes
        c[b, 3] = np.repeat(rng.integers(0, 64, t // 3 + 1), 3)[:t]              # vibrato and detune every 3
    whole = codec.decode(c)
    frames = ((c[..., f:f + 1], None) for f in range(t))
    joined = np.concatenate(list(streaming.chunks(frames, codec, Hooks(hook_points(1)), chunk=chunk)), axis=-1)
    assert np.abs(joined - whole).max() <= 1e-4
