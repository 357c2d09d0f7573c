"""The steering benchmark's control (benchmarks/probe_nano.py: the same prompt asking for the clamped value in
words), read back by the evaluator's own prompt parser: the one attribute changed, every other word kept."""

import sys

import numpy as np
import pytest
from helpers import ROOT

from mglab.audio import vocabulary
from mglab.nano import corpus

sys.path.insert(0, str(ROOT / "benchmarks"))
import probe_nano as pn  # noqa: E402


def _clips(n=200):
    rng = np.random.default_rng(24680)
    clips = [corpus.example(rng, 1.0) for _ in range(n)]
    return [c for c in clips if "instrument" in c.said and "register" in c.said]


@pytest.mark.parametrize("attribute, values", [("instrument", corpus.INSTRUMENTS),
                                               ("register", tuple(corpus.REGISTERS))])
def test_asking_changes_the_one_attribute_the_parser_reads(attribute, values):
    clips = _clips()
    assert len(clips) > 20
    for clip in clips:
        before, unknown = vocabulary.attributes(clip.prompt)
        assert not unknown and before[attribute] == clip.said[attribute]
        for value in values:
            if value == clip.said[attribute]:
                continue
            after, unknown = vocabulary.attributes(pn.asking(clip.prompt, attribute, clip.said[attribute], value))
            assert not unknown
            assert after == {**before, attribute: value}


def test_asking_refuses_a_prompt_without_the_word():
    with pytest.raises(ValueError, match="register='low'"):
        pn.asking("a high piano melody", "register", "low", "mid")


def test_most_fallen_names_the_largest_drop():
    row = {"per_attribute": {"tempo": {"measured": 7, "before": 1.0, "after": 0.43},
                             "key": {"measured": 4, "before": 0.75, "after": 0.5}}}
    assert pn.most_fallen(row) == "tempo 100% -> 43% of 7"
    assert pn.most_fallen({}) == "-"
