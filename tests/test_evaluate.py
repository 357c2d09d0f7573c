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
    """The ceiling on a small draw (the benchmark measures it on 96): nearly every attribute found."""
    rng = np.random.default_rng(4321)
    hits = {a: [] for a in ("register", "tempo", "key", "mode", "dynamics", "instrument")}
    for _ in range(18):
        clip = corpus.example(rng, 4.0)
        asked = {k: v for k, v in clip.attributes.items() if k != "figure"}
        for name, hit in evaluate.adherence(asked, codec.decode(clip.codes[None])[0, 0], SR).items():
            if name in hits:
                hits[name].append(hit)
    for name, values in hits.items():
        assert np.mean(values) >= 0.85, (name, values)


def test_what_a_prompt_asks_and_the_words_not_understood():
    found, unknown = evaluate.attributes("a gentle quick marimba scale in db major with kazoo")
    assert found == {"dynamics": "soft", "tempo": "fast", "instrument": "marimba", "figure": "scale", "key": "c#",
                     "mode": "major"}
    assert unknown == ["kazoo"]
    hits = evaluate.adherence({"figure": "scale"}, np.zeros(SR), SR)
    assert hits == {"figure": None}                          # figures are not measured


def test_bad_audio_is_a_clear_error():
    with pytest.raises(ValueError, match=r"audio of shape \(2, 2, 10\)"):
        evaluate.measure(np.zeros((2, 2, 10)), SR)


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
