"""The corpus grammar: every clip is what its attributes say, every prompt says what the parser reads."""

import itertools
from collections import defaultdict
from fractions import Fraction

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


def test_say_sets_how_often_each_attribute_is_named_and_draws_the_same_attributes():
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


# What a prompt leaves out (uninformative_keep): the rule nano-musicgen is trained with (scripts/train_nano.py).
ATTRS = ("register", "mode", "instrument", "figure", "tempo")        # the attributes HELD_OUT names


def _named(k):
    return "key" if k == "mode" else k


def _training_clips():
    """Every training-draw value of ATTRS (held-out combinations excluded) with its probability (uniform draws,
    tempo 'bpm' 1/5)."""
    tempo = {**{t: Fraction(4, 15) for t in corpus.TEMPI}, "bpm": Fraction(1, 5)}
    for r, m, i, f, t in itertools.product(corpus.REGISTERS, corpus.MODES, corpus.INSTRUMENTS, corpus.FIGURES,
                                           tempo):
        a = {"register": r, "mode": m, "instrument": i, "figure": f, "tempo": t, "key": "c", "dynamics": "soft"}
        if not corpus.is_held_out(a):
            yield a, tempo[t]


def _keeps():
    for bits in itertools.product((False, True), repeat=len(corpus.SAY)):
        p = Fraction(1)
        for k, b in zip(corpus.SAY, bits):
            s = Fraction(corpus.SAY[k]).limit_denominator(1000)
            p *= s if b else 1 - s
        yield dict(zip(corpus.SAY, bits)), p


def test_uninformative_keep_completes_every_partly_named_combination_and_nothing_else():
    for a, _ in _training_clips():
        for keep, _ in _keeps():
            k2 = corpus.uninformative_keep(a, keep)
            assert all(k2[k] for k in keep if keep[k])                                  # only adds names
            for combo in corpus.HELD_OUT:                                               # a fixed point
                said = [k for k in combo if k2[_named(k)]]
                assert not (said and len(said) < len(combo) and all(a[k] == combo[k] for k in said)), (a, keep)
            # nothing outside a combination that some named value matched is added
            added = {k for k in k2 if k2[k] and not keep[k]}
            reach = {_named(k) for c in corpus.HELD_OUT if any(k2[_named(k)] and a[k] == c[k] for k in c)
                     for k in c}
            assert added <= reach, (a, keep, added)


def test_what_a_prompt_leaves_out_does_not_depend_on_the_values_it_names():
    """Exactly, over every training draw and every keep pattern: given which attributes are named, the
    distribution of the unnamed ones is the same whatever values the named ones have ("a marimba melody" and "a
    piano melody" say the same about the register). Without the rule this fails ("flute" alone: never minor
    and high), and so does naming the rest only when one part is missing."""
    joint = defaultdict(lambda: defaultdict(Fraction))
    for a, pa in _training_clips():
        for keep, pk in _keeps():
            k2 = corpus.uninformative_keep(a, keep)
            named = tuple(k for k in ATTRS if k2[_named(k)])
            joint[named, tuple(a[k] for k in named)][tuple(a[k] for k in ATTRS if k not in named)] += pa * pk
    by_named = defaultdict(list)
    for (named, _), dist in joint.items():
        total = sum(dist.values())
        by_named[named].append({u: p / total for u, p in dist.items()})
    for named, dists in by_named.items():
        assert all(d == dists[0] for d in dists), named
    assert len(by_named) > 1                                    # prompts still leave attributes out


@pytest.mark.parametrize("a, keep, expect", [
    ({"instrument": "flute", "mode": "major", "register": "mid"}, {"instrument"}, {"instrument", "key", "register"}),
    ({"instrument": "flute", "mode": "minor", "register": "mid"}, {"instrument", "key"},
     {"instrument", "key", "register"}),
    ({"instrument": "flute", "mode": "major", "register": "high"}, {"instrument", "key"}, {"instrument", "key"}),
    ({"instrument": "flute", "mode": "minor", "register": "high"}, set(), set()),   # nothing said: nothing added
    ({"instrument": "piano", "mode": "minor", "register": "high"}, {"register", "key"},
     {"register", "key", "instrument"}),
    ({"instrument": "piano", "mode": "major", "register": "high"}, {"register", "key"}, {"register", "key"}),
    ({"instrument": "organ", "mode": "major", "register": "high"}, {"register"},     # a cascade
     {"register", "key", "instrument", "tempo"}),
    ({"instrument": "clarinet", "mode": "minor", "register": "low"}, {"dynamics"}, {"dynamics"}),
])
def test_uninformative_keep_cases(a, keep, expect):
    a = {"tempo": "slow", "figure": "scale", "key": "c", "dynamics": "soft", **a}
    got = corpus.uninformative_keep(a, {k: k in keep for k in corpus.SAY})
    assert {k for k, v in got.items() if v} == expect


def test_uninformative_prompts_change_only_the_keep_draws_and_still_leave_attributes_out():
    """With the same rng, ``uninformative=True`` names what ``uninformative_keep`` of the SAY draws names and
    otherwise draws what the plain prompt with those names fixed draws; the parser reads it; the rule changes
    some prompts, and most prompts still leave something out."""
    changed = partial = 0
    for seed in range(300):
        clip = corpus.example(np.random.default_rng(seed), 1.0, uninformative=True)
        rng = np.random.default_rng(seed)
        a = corpus.draw_attributes(rng)
        assert a == clip.attributes
        notes = corpus.melody(a, clip.codes.shape[-1], rng)
        corpus.render_codes(a, notes, clip.codes.shape[-1], rng)
        state = rng.bit_generator.state
        u = rng.random(len(corpus.SAY))
        keep = {k: bool(x < corpus.SAY[k]) for k, x in zip(corpus.SAY, u)}
        final = corpus.uninformative_keep(a, keep)
        rng.bit_generator.state = state
        fixed = corpus.prompt_for(a, rng, say={k: float(v) for k, v in final.items()})
        assert (clip.prompt, clip.said) == fixed
        assert corpus.attributes(clip.prompt)[0] == clip.said
        changed += final != keep
        partial += not all(final.values())
    assert changed > 10 and partial > 200


def test_the_keep_draws_are_made_whatever_the_probabilities():
    """say 1.0 (or 0.0) draws as say 1 - 1e-12 (or 1e-12) does: variants of the prompts see the same draws."""
    for seed in range(50):
        a = corpus.draw_attributes(np.random.default_rng(seed))
        for p, q in ((1.0, 1 - 1e-12), (0.0, 1e-12)):
            x = corpus.prompt_for(a, np.random.default_rng(seed), say=dict.fromkeys(corpus.SAY, p))
            y = corpus.prompt_for(a, np.random.default_rng(seed), say=dict.fromkeys(corpus.SAY, q))
            assert x == y
