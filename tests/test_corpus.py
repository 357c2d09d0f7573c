"""The corpus grammar: every clip is what its attributes say, every prompt says what the parser reads."""

import numpy as np
import pytest

from mglab.nano import corpus, synth


@pytest.fixture(scope="module")
def clips():
    rng = np.random.default_rng(7)
    return [corpus.example(rng, 5.0) for _ in range(300)]


def test_notes_lie_in_the_register_and_the_key_and_start_and_end_on_the_tonic(clips):
    for c in clips:
        a = c.attributes
        lo, hi = corpus.REGISTERS[a["register"]]
        midis = [m for m, _, _ in c.notes]
        assert lo <= min(midis) and max(midis) <= hi, (c.prompt, midis)
        tonic = corpus.KEYS[a["key"]]
        scale = corpus.MODES[a["mode"]]
        assert all((m - tonic) % 12 in scale for m in midis)
        assert (midis[0] - tonic) % 12 == 0 and (midis[-1] - tonic) % 12 == 0


def test_onset_rates_fall_in_the_tempo_word(clips):
    for c in clips:
        a = c.attributes
        starts = [s for _, s, _ in c.notes]
        rate = synth.SAMPLE_RATE / synth.HOP / np.median(np.diff(starts))      # notes per second
        if a["tempo"] == "bpm":
            assert abs(rate * 60 - a["bpm"]) <= 0.06 * a["bpm"]
        else:
            lo, hi = corpus.TEMPO_LIMITS[a["tempo"]]
            assert lo <= rate <= hi, (a["tempo"], rate)


def test_codes_carry_the_attributes(clips):
    for c in clips[:50]:
        a = c.attributes
        assert (c.codes[2] == synth.INSTRUMENTS.index(a["instrument"])).all()
        levels = c.codes[1] % 8
        lo, hi = corpus.DYNAMICS[a["dynamics"]]
        assert ((lo <= levels) & (levels <= hi)).all()
        strikes = np.flatnonzero(synth.is_strike(c.codes[1]))
        assert strikes.tolist() == [s for _, s, _ in c.notes]                 # one strike per note
        for _, start, length in c.notes:                                      # then the note's age, stage by stage
            stages = c.codes[1, start:start + length] // 8                    # [length]
            assert stages[0] == synth.STRIKE and (np.diff(stages) >= 0).all()
            ages = np.arange(length)
            assert (stages[1:] == 2 + np.searchsorted(synth.AGE_EDGES[1:], ages[1:], side="right")).all()


def test_the_parser_reads_what_the_prompt_says(clips):
    for c in clips:
        found, unknown = corpus.attributes(c.prompt)
        assert found == c.said, c.prompt
        assert unknown == []


def test_unknown_words_are_reported_and_nothing_is_an_error():
    found, unknown = corpus.attributes("a slow low organ melody in d minor with kazoo and cowbell")
    assert found == {"tempo": "slow", "register": "low", "instrument": "organ", "figure": "melody", "key": "d",
                     "mode": "minor"}
    assert unknown == ["kazoo", "and", "cowbell"]
    assert corpus.attributes("") == ({}, [])


def test_held_out_combinations_never_appear_in_training_draws():
    rng = np.random.default_rng(0)
    assert not any(corpus.is_held_out(corpus.draw_attributes(rng)) for _ in range(3000))
    assert all(corpus.is_held_out(corpus.draw_attributes(rng, held_out=True)) for _ in range(50))


def test_the_same_seed_gives_the_same_corpus():
    a = [corpus.example(np.random.default_rng(3)) for _ in range(2)]
    assert a[0].prompt == a[1].prompt and np.array_equal(a[0].codes, a[1].codes)


def test_every_prompt_word_is_in_the_vocabulary(clips):
    vocab = set(corpus.vocabulary())
    assert all(w in vocab for c in clips for w in c.prompt.split())


def test_say_sets_how_often_each_attribute_is_named_without_moving_the_draws():
    """``say`` changes the prompt only: the same seed draws the same attributes, and at 1.0 every one is named,
    at 0.0 none (the parser reads what the prompt says)."""
    for seed in range(20):
        plain = corpus.example(np.random.default_rng(seed), 1.0)
        every = corpus.example(np.random.default_rng(seed), 1.0, say=dict.fromkeys(corpus.SAY, 1.0))
        none = corpus.example(np.random.default_rng(seed), 1.0, say=dict.fromkeys(corpus.SAY, 0.0))
        assert plain.attributes == every.attributes == none.attributes
        named = {"register", "key", "mode", "instrument", "dynamics", "figure", "tempo"}
        assert set(every.said) - {"bpm"} == named and corpus.attributes(every.prompt)[0] == every.said
        assert none.said == {}
    assert corpus.example(np.random.default_rng(3)).prompt == corpus.example(np.random.default_rng(3), say={}).prompt
