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


def _m(register, tempo=None, key=None, abstained=None):
    return {"register": register, "tempo": tempo, "key": key, "mode": "major", "dynamics": None,
            "instrument": None, "onset_rate": None, "abstained": abstained or {}}


def test_compare_pairs_counts_a_lost_verdict_as_a_miss_and_reads_register_as_a_list(monkeypatch):
    """The evaluator stubbed with hand-made measurements (after the reviewer's probe): register verdicts are lists
    (ranges overlap), a verdict the change made impossible is a miss, in the turned share as in the others."""
    from types import SimpleNamespace

    from mglab.audio import evaluate

    clips = [SimpleNamespace(said={"register": "high", "tempo": "fast", "key": "c"}),
             SimpleNamespace(said={"register": "mid", "tempo": "slow", "key": "d"}),
             SimpleNamespace(said={"register": "mid", "tempo": "slow", "key": "d"})]
    before = [_m(["high"], "fast", "c"), _m(["mid"], "slow", "d"), _m(["mid"], "slow", "d")]
    after = [_m(["low", "mid"], "slow", None, {"key": "1 pitch class"}), _m(["low"], "slow", "e"),
             _m(None, "slow", "d")]
    monkeypatch.setattr(evaluate, "measure", lambda audio, sr: after[int(audio[0])])
    monkeypatch.setattr(evaluate, "adherence", lambda asked, a, sr, measured: {
        k: (None if k in measured["abstained"] else measured[k] == v) for k, v in asked.items()})
    gen = SimpleNamespace(audio=np.arange(3, dtype=float)[:, None, None] * np.ones((3, 1, 4)), sample_rate=1)
    hits, per = pn._compare(clips, [0, 1, 2], before, gen, "register", "low")
    assert hits == [True, True, None]
    assert per["key"] == [(True, False, True), (True, False, False), (True, True, False)]
    assert per["tempo"] == [(True, False, False), (True, True, False), (True, True, False)]
    s = pn._summary(hits, per)
    assert abs(s["changed"] - 2 / 3) < 1e-9 and s["unmeasured"] == 1
    assert s["per_attribute"]["key"] == {"measured": 3, "before": 1.0, "after": 1 / 3, "lost": 1}
    assert s["others_before"] == 1.0 and abs(s["others_after"] - 0.5) < 1e-9
    assert pn.most_fallen(s) == "key 100% -> 33% of 3 (1 unmeasured)"
    assert pn._asked({"asked": {"changed": 0.5, "others_before": 1.0, "others_after": 0.25}}) == ["50%", "25%"]


def test_most_fallen_names_nothing_when_nothing_fell():
    row = {"per_attribute": {"tempo": {"measured": 7, "before": 0.3, "after": 0.7}}}
    assert pn.most_fallen(row) == "-"


@pytest.mark.parametrize("text, steps, words", [("0:8", slice(0, 8), " at decoding steps 0 to 7"),
                                               ("25:", slice(25, None), " at decoding steps 25 to the end"),
                                               (":8", slice(0, 8), " at decoding steps 0 to 7")])
def test_steer_steps_parse_and_read_back_on_the_card(text, steps, words):
    """``--steer-steps`` as the parser gives it, then as the card reads it back from the JSON's text."""
    assert pn.step_range(text) == steps
    assert pn.step_range(pn.steps_text(steps)) == steps                       # the JSON's text parses back
    assert pn.clamped_steps({"steer_steps": pn.steps_text(steps)}) == words
    assert pn.clamped_steps({"steer_steps": "None"}) == pn.clamped_steps({}) == ""


def test_the_json_records_steer_steps_as_the_text_the_parser_reads():
    import argparse

    args = argparse.Namespace(steer_steps=slice(25, None), gain=2.0, steer_sae=None)
    recorded = pn.recorded_args(args)
    assert recorded == {"steer_steps": "25:", "gain": "2.0", "steer_sae": "None"}
    assert pn.clamped_steps(recorded) == " at decoding steps 25 to the end"
    assert pn.recorded_args(argparse.Namespace(steer_steps=None))["steer_steps"] == "None"


@pytest.mark.parametrize("text", ["8", "-1:3", "5:5", "9:2", "a:", "1:2:3"])
def test_steer_steps_refuse_what_is_not_a_range(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="START:STOP"):
        pn.step_range(text)
