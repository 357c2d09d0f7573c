"""The vamping benchmark's measures (benchmarks/vamp_nano.py) against the corpus's ground truth: a corpus clip's
middle 2 s lies in the scale of the key and mode its grammar drew (not in the scale a semitone away), and the seam
check finds a step that is there and none where the audio is the source's own."""

import sys

import numpy as np
import pytest
from helpers import ROOT

import mglab
from mglab.nano import corpus

sys.path.insert(0, str(ROOT / "benchmarks"))
import vamp_nano as v  # noqa: E402


@pytest.fixture(scope="module")
def clips():
    model = mglab.load(ROOT / "data" / "models" / "nano-musicgen")
    rng = np.random.default_rng(31)
    out = []
    for _ in range(6):
        clip = corpus.example(rng, v.SECONDS)
        audio = model.codec.decode(clip.codes[None])[0, 0]                      # [samples]
        out.append((clip, audio, model.codec.sample_rate))
    return out


def test_a_corpus_middle_is_in_its_drawn_scale_and_not_a_semitone_away(clips):
    measured = 0
    for clip, audio, sr in clips:
        truth = {"key": clip.attributes["key"], "mode": clip.attributes["mode"]}
        mid = v.middle(audio, sr)
        assert mid.size == int(2 * sr)
        share = v.evaluate.scale_share(mid, sr, truth["key"], truth["mode"])
        if share is None:                                                       # a rest-heavy middle: abstains
            continue
        measured += 1
        assert share >= v.IN_SCALE and v.in_scale(mid, sr, truth) is True, (clip.prompt, share)
        assert v.in_scale(mid, sr, truth, shift=1) is False, clip.prompt          # the control: another key
    assert measured >= 4
    assert v.in_scale(clips[0][1], clips[0][2], {"key": None, "mode": "major"}) is None


def test_seam_clicks_finds_a_step_only_where_there_is_one(clips):
    _, audio, sr = clips[0]
    assert not v.seam_clicks(audio, sr)
    clicked = audio.copy()
    at = int(v.MIDDLE[0] * sr)
    clicked[at:] += 2 * np.abs(np.diff(audio)).max()                            # a step larger than any in the clip
    assert v.seam_clicks(clicked, sr)
    away = audio.copy()
    away[at + sr // 10:] += 4 * np.abs(np.diff(audio)).max()                    # a step 100 ms from the seam
    assert not v.seam_clicks(away, sr)
    louder = away.copy()
    louder[at:] += 1.5 * np.abs(np.diff(audio)).max()                           # at the seam, but gentler than it
    assert not v.seam_clicks(louder, sr)


def test_periodic_frames_changed_counts_the_notes(monkeypatch):
    """"periodic frames changed" is the share of frames whose codebook 0 (the note) differs from the source's;
    the any-codebook share is reported beside it (a stub model hands back known codes)."""
    from types import SimpleNamespace

    k, t, sr = 4, 300, 32000
    codes = np.zeros((1, k, t), dtype=np.int64)
    audio = np.zeros((1, 1, int(v.SECONDS * sr)), dtype=np.float32)
    varied = codes.copy()
    varied[0, 0, :30] = 1                                                       # 10% of the notes
    varied[0, 3, :150] = 1                                                      # half the frames' vibrato

    class Model:
        num_codebooks, frame_rate = k, 50

        def vamp(self, source, mask, prompt=None, seed=0):
            return SimpleNamespace(codes=varied if seed == 2 else codes, audio=audio)

    monkeypatch.setattr(v.evaluate, "measure", lambda y, sr: {"key": "C", "mode": "major", "instrument": None})
    monkeypatch.setattr(v, "in_scale", lambda *a, **kw: None)
    inst = list(v.vocabulary.INSTRUMENTS)[0]
    src = SimpleNamespace(sample_rate=sr, codes=codes, audio=audio)
    row = v.clip_rows(Model(), SimpleNamespace(generate=lambda *a, **kw: src), f"a {inst} tune", inst, seed=0)
    assert row["periodic frames changed"] == pytest.approx(0.1)
    assert row["periodic frames changed (any codebook)"] == pytest.approx(0.5)


@pytest.mark.parametrize("notes, share", [
    ([5] * 24, 0.0),                                    # one note: every pair of kept frames agrees
    ([5] * 8 + [6] * 16, 7 / 24),                       # kept 0, 8, 16 -> 5, 6, 6: the 7 frames of the first gap
    ([5] * 3 + [6] * 2 + [5] * 19, 0.0),                # a short note between two kept frames of one note
    ([1, 2] * 12, 0.0),                                 # kept frames all even: they agree
    ([5] * 8 + [6] * 8 + [7] * 2, 14 / 18),             # the last gap (16 -> 24) runs off the end: not counted
    ([5] * 16 + [6], 7 / 17),                           # the last kept pair ends on the final frame: counted
])
def test_frames_between_kept_notes_that_differ(notes, share):
    """Frames lie between two kept frames (every 8th) whose notes differ, counted by hand."""
    assert v.between_changes(np.array(notes), 8) == pytest.approx(share)


def test_the_sources_prompts_name_their_instrument_and_do_not_depend_on_the_count():
    """vamp_nano and vamp_periodic vamp the same sources: the first n prompts are the same whatever the count,
    each names its instrument, and they alternate seen and held-out draws (a held-out draw carries a held-out
    combination's instrument)."""
    six = v.prompts(6)
    assert v.prompts(3) == six[:3] and len(six) == 6
    assert all(instrument in prompt for prompt, instrument in six)
    held = {combo["instrument"] for combo in corpus.HELD_OUT}
    assert all(instrument in held for _, instrument in six[1::2])


def test_key_mode_is_none_where_either_is_unread():
    assert v.key_mode({"key": "d", "mode": "major"}) == ("d", "major")
    assert v.key_mode({"key": None, "mode": "major"}) is None and v.key_mode({"key": "d", "mode": None}) is None


def test_vamp_periodic_vamps_the_same_sources_with_the_same_seeds(monkeypatch):
    """benchmarks/vamp_periodic.py's sources are vamp_nano's: its prompts in order, seed i for the i-th."""
    import vamp_periodic as vp

    calls = []

    class Source:
        def generate(self, prompt, duration, seed):
            calls.append((prompt, duration, seed))
            return type("G", (), {"audio": np.zeros((1, 1, 8)), "sample_rate": 32000})()

    monkeypatch.setattr(vp.evaluate, "measure", lambda y, sr: {"key": "d", "mode": "major"})
    out = vp.sources(Source(), 5)
    assert calls == [(p, v.SECONDS, i) for i, (p, _) in enumerate(v.prompts(5))]
    assert [(seed, km) for _, seed, km in out] == [(i, ("d", "major")) for i in range(5)]
