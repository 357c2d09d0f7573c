"""mglab.audio.evaluate on audio whose answer is known: plain tones and clicks (generic audio), and the
synthesizer's renderings of the corpus (ground truth)."""

import numpy as np
import pytest

from mglab.audio import evaluate
from mglab.nano import corpus, synth

SR = 32000


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    path = synth.build(tmp_path_factory.mktemp("synth") / "encodec_decode.onnx")
    return synth.SynthCodec(path, sample_rate=SR, hop_length=synth.HOP, channels=1)


def test_a_sine_is_pitched_and_placed_in_its_register():
    t = np.arange(3 * SR) / SR
    m = evaluate.measure(0.3 * np.sin(2 * np.pi * 440 * t), SR)
    assert m["median_midi"] == 69 and m["register"] == ["mid"]
    assert m["dynamics"] == "loud" and m["rms_db"] == pytest.approx(20 * np.log10(0.3 / np.sqrt(2)), abs=0.3)


def test_tone_bursts_at_180_bpm_have_that_tempo():
    t = np.arange(int(SR / 3) - 1) / SR
    burst = np.sin(2 * np.pi * 330 * t) * np.exp(-t * 25)         # decays to silence before the next
    y = np.zeros(4 * SR)
    for k in range(12):                                      # one every 1/3 s
        start = int(k * SR / 3)
        y[start:start + burst.size] += 0.3 * burst
    m = evaluate.measure(y, SR)
    assert m["onset_rate"] == pytest.approx(3.0, rel=0.05) and m["tempo"] == "moderate"
    assert evaluate.adherence("a music at 180 bpm", y, SR, measured=m) == {"tempo": True}
    assert evaluate.adherence("fast", y, SR, measured=m) == {"tempo": False}


@pytest.mark.parametrize("key,mode", [("c", "major"), ("a", "minor"), ("f#", "major"), ("eb", "minor")])
def test_the_key_of_a_rendered_melody(codec, key, mode):
    a = {"register": "mid", "key": key, "mode": mode, "instrument": "piano", "dynamics": "loud",
         "figure": "melody", "tempo": "moderate"}
    rng = np.random.default_rng(1)
    codes = corpus.render_codes(a, corpus.melody(a, 200, rng), 200, rng)
    m = evaluate.measure(codec.decode(codes[None])[0, 0], SR)
    assert (m["key"], m["mode"]) == (key, mode)


def test_ground_truth_renderings_measure_as_their_attributes(codec):
    """The ceiling on a small draw, as the card states it (98-100% on 96 clips; abstentions are neither hits nor
    misses): at most one miss in 18 per attribute, and only key and mode abstain (a clip of one repeated note)."""
    rng = np.random.default_rng(4321)
    hits = {a: [] for a in ("register", "tempo", "key", "mode", "dynamics", "instrument")}
    for _ in range(18):
        clip = corpus.example(rng, 4.0)
        asked = {k: v for k, v in clip.attributes.items() if k != "figure"}
        for name, hit in evaluate.adherence(asked, codec.decode(clip.codes[None])[0, 0], SR).items():
            if name in hits:
                hits[name].append(hit)
    for name, values in hits.items():
        measured = [v for v in values if v is not None]
        assert len(measured) == len(values) or name in ("key", "mode"), (name, values)
        assert len(measured) >= 14 and sum(measured) >= len(measured) - 1, (name, values)


def test_what_a_prompt_asks_and_the_words_not_understood():
    found, unknown = evaluate.attributes("a gentle quick marimba scale in db major with kazoo")
    assert found == {"dynamics": "soft", "tempo": "fast", "instrument": "marimba", "figure": "scale", "key": "c#",
                     "mode": "major"}
    assert unknown == ["kazoo"]
    hits = evaluate.adherence({"figure": "scale"}, np.zeros(SR), SR)
    assert hits == {"figure": None}                          # figures are not measured


@pytest.mark.parametrize("instrument,figure,tempo", [("violin", "repeated notes", "slow"),
                                                     ("flute", "scale", "moderate"),
                                                     ("organ", "repeated notes", "moderate")])
def test_vibrato_is_not_heard_as_onsets_and_restrikes_are(codec, instrument, figure, tempo):
    """The failures the ceiling showed: a violin's or flute's vibrato counted as new notes (5 onsets/s for a
    slow line), and an organ's re-struck note at the same pitch missed."""
    a = {"register": "high" if instrument != "organ" else "low", "key": "d", "mode": "major",
         "instrument": instrument, "dynamics": "loud", "figure": figure, "tempo": tempo}
    rng = np.random.default_rng(0)
    notes = corpus.melody(a, 200, rng)
    y = evaluate._mono(codec.decode(corpus.render_codes(a, notes, 200, rng)[None])[0, 0], SR)
    onsets = evaluate.onset_times(y)
    assert abs(len(onsets) - len(notes)) <= 1, (len(onsets), len(notes))


# abstention: audio that does not support a measurement gets None and a reason, never a guess -----------------
PITCHED = ("register", "tempo", "key", "mode", "instrument")


def _signal(kind: str, seconds: float = 2.0, sr: int = 32000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(0)
    if kind == "silence":
        return np.zeros_like(t, dtype=np.float32)
    if kind == "noise":
        return (0.3 * rng.normal(size=t.size)).astype(np.float32)
    if kind == "clicks":
        y = np.zeros(t.size, np.float32)
        y[:: sr // 4] = 0.9
        return y
    if kind == "dc":
        return np.full(t.size, 0.4, np.float32)
    if kind == "sine":
        return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    if kind == "clipped":
        return np.clip(3 * np.sin(2 * np.pi * 220 * t), -1, 1).astype(np.float32)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["silence", "dc"])
def test_silence_and_dc_measure_nothing(kind):
    """1 s of silence used to be c major, slow, soft piano; DC is silence once its offset is removed."""
    m = evaluate.measure(_signal(kind), 32000)
    assert set(m["abstained"]) == set(evaluate.ALL) and all("silent" in why for why in m["abstained"].values())
    assert all(m[a] is None for a in evaluate.ALL)
    hits = evaluate.adherence("a slow low piano melody in c major", _signal(kind), 32000, measured=m)
    assert set(hits.values()) == {None} and set(hits.abstained) == {"tempo", "register", "instrument", "key", "mode"}


@pytest.mark.parametrize("kind", ["noise", "clicks"])
def test_unpitched_audio_has_loudness_and_nothing_pitched(kind):
    """White noise used to be b major, violin, fast; a click train has no pitch either. Dynamics is measured."""
    m = evaluate.measure(_signal(kind), 32000)
    assert set(m["abstained"]) == set(PITCHED), m["abstained"]
    assert all("voiced" in why for why in m["abstained"].values())
    assert all(m[a] is None for a in PITCHED) and m["dynamics"] in ("soft", "loud")


def test_random_musicgen_output_is_not_scored_as_music(merged_model):
    """The random tiny model through EnCodec: MusicGen-like noise. No tempo, key, mode or instrument (a clip that
    hums may have a pitch, and so a register)."""
    gen = merged_model.generate(["lofi piano", "rock", "jazz"], duration=2.0, seed=0)
    for y in gen.audio:
        m = evaluate.measure(y, gen.sample_rate)
        assert {"tempo", "key", "mode", "instrument"} <= set(m["abstained"]), m["abstained"]


@pytest.mark.parametrize("kind,midi,register", [("sine", 69.0, ["mid"]), ("clipped", 57.0, ["low", "mid"])])
def test_one_held_note_has_a_pitch_and_nothing_else(kind, midi, register):
    """A single sine (and a heavily clipped one): its pitch and register, but one note has no tempo, no key or
    mode and is no fitted instrument."""
    m = evaluate.measure(_signal(kind), 32000)
    assert m["median_midi"] == midi and m["register"] == register
    assert set(m["abstained"]) == {"tempo", "key", "mode", "instrument"}, m["abstained"]
    hits = evaluate.adherence({"register": register[0], "tempo": "slow", "key": "a"}, _signal(kind), 32000,
                              measured=m)
    assert hits == {"register": True, "tempo": None, "key": None} and set(hits.abstained) == {"tempo", "key"}


def test_very_short_audio_measures_nothing():
    m = evaluate.measure(_signal("sine", seconds=0.1), 32000)
    assert set(m["abstained"]) == set(evaluate.ALL) and "shorter than 0.25 s" in m["abstained"]["key"]


@pytest.mark.parametrize("bad,error,message", [
    (np.array([0.0, np.nan, 0.1], np.float32), ValueError, "audio holds 1 NaN"),
    (np.array([0.0, np.inf] * 4000, np.float32), ValueError, "infinite values: audio must be finite"),
    (np.zeros((2, 2, 100), np.float32), ValueError, "audio of shape"),
    (np.zeros(0, np.float32), ValueError, "audio of shape"),
    ("not audio", TypeError, "audio of type str"),
])
def test_bad_audio_is_a_clear_error(bad, error, message):
    with pytest.raises(error, match=message):
        evaluate.measure(bad, 32000)


@pytest.mark.parametrize("sr,error", [(0, ValueError), (-5, ValueError), (32000.0, TypeError), (True, TypeError)])
def test_bad_sample_rate_is_a_clear_error(sr, error):
    with pytest.raises(error, match=f"sr={sr!r} is not allowed"):
        evaluate.measure(np.zeros(8000, np.float32), sr)


def test_the_onset_and_timbre_thresholds_are_where_they_are_stated(codec):
    """Pins MIN_ONSETS and INSTRUMENT_MAX_DISTANCE from both sides: two heard onsets are too few for a tempo; a
    melody of sines (5 onsets) is unlike every fitted timbre (distance 5.4 > 3.0); a corpus organ at distance 2.8
    is still an organ."""
    t = np.arange(32000) / 32000
    gap = np.zeros(6400, np.float32)
    three = np.concatenate([part for f in (440, 523.25, 659.25)
                            for part in (0.4 * np.sin(2 * np.pi * f * t).astype(np.float32), gap)])
    m = evaluate.measure(three, 32000)
    assert m["onsets"] == 2 and m["abstained"]["tempo"] == "2 onsets, fewer than 3", m["abstained"]
    half = t[:16000]
    melody = np.concatenate([0.4 * np.sin(2 * np.pi * 440 * 2 ** ((n - 69) / 12) * half) * np.hanning(16000) ** 0.1
                             for n in (60, 64, 67, 72, 67, 64)]).astype(np.float32)
    m = evaluate.measure(melody, 32000)
    assert m["tempo"] is not None and m["instrument"] is None
    assert m["abstained"]["instrument"].startswith("unlike every fitted timbre: distance 5."), m["abstained"]
    organ = corpus.example(np.random.default_rng(10), 4.0)
    assert organ.attributes["instrument"] == "organ"
    assert evaluate.measure(codec.decode(organ.codes[None])[0, 0], SR)["instrument"] == "organ"


def test_a_rate_between_the_tempo_words_is_measured_not_abstained():
    """The tempo words leave gaps (2-2.5 and 4-5 onsets a second): a rate there is a measurement that is no
    word's (a miss), never None without a reason."""
    assert [evaluate.tempo_word(r) for r in (1.0, 2.2, 3.0, 4.5, 6.0)] == [
        "slow", "between slow and moderate", "moderate", "between moderate and fast", "fast"]


def test_samples_by_channels_is_a_clear_error():
    with pytest.raises(ValueError, match=r"pass audio.T"):
        evaluate.measure(np.zeros((32000, 2), np.float32), 32000)


def test_instrument_classifier_on_scikit_learn_gives_the_hand_written_knn_answers():
    """The classifier moved onto scikit-learn's KNeighborsClassifier: against the former hand-written k nearest
    neighbours (the oracle, written out here), the same name and mean distance on every fitted example and on
    noisy copies of them."""
    import json

    from mglab.audio import evaluate as ev

    model = json.loads(ev.INSTRUMENT_MODEL.read_text())
    mean, std = np.array(model["mean"]), np.array(model["std"])
    x, labels = np.array(model["examples"]), model["labels"]

    def knn(features, k=7):
        dist = np.linalg.norm(x - (features - mean) / std, axis=1)
        order = np.argsort(dist)[:k]
        nearest = [labels[i] for i in order]
        return max(sorted(set(nearest)), key=nearest.count), float(dist[order].mean())

    rng = np.random.default_rng(0)
    for i in range(0, len(x), 3):
        for scale in (0.0, 1.0, 3.0):
            f = (x[i] + scale * rng.normal(size=x.shape[1])) * std + mean
            name, distance = ev.classify_instrument(f, with_distance=True)
            want = knn(f)
            assert name == want[0] and abs(distance - want[1]) < 1e-6


@pytest.mark.parametrize("midi, sr", [(41, 32000), (45, 32000), (70, 24000), (70, 48000), (57, 22050)])
def test_scale_share_reads_a_tone_at_any_rate(midi, sr):
    """A sine of a known pitch lies in a scale holding its pitch class and not in one a semitone away, whatever
    the sample rate (the pitch tracker runs at the evaluator's rate: the audio is resampled first)."""
    t = np.arange(2 * sr) / sr
    y = 0.5 * np.sin(2 * np.pi * 440 * 2 ** ((midi - 69) / 12) * t)
    key = ["c", "c#", "d", "d#", "e", "f", "f#", "g", "g#", "a", "a#", "b"][midi % 12]
    assert evaluate.scale_share(y, sr, key, "major") == 1.0
    assert evaluate.scale_share(y, sr, key, "major", shift=1) == 0.0


def test_scale_share_abstains_below_the_voiced_minimum():
    sr = 32000
    y = np.zeros(2 * sr)
    n = int(0.2 * y.size)                                                       # voiced for a fifth of the clip
    y[:n] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / sr)
    assert evaluate.VOICED_MIN > 0.2 and evaluate.scale_share(y, sr, "a", "minor") is None
