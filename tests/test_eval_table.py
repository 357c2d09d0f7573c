"""benchmarks/eval_nano.py's scoring: abstentions are neither hits nor misses, and the card says what moved."""

import sys

import pytest
from helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import eval_nano  # noqa: E402


def test_an_abstention_is_neither_a_hit_nor_a_miss():
    rows = [{"hits": {"tempo": True, "key": True, "mode": False}, "abstained": {}},
            {"hits": {"tempo": None, "key": None, "mode": None},
             "abstained": {"tempo": "2 onsets", "key": "1 pitch class", "mode": "1 pitch class"}},
            {"hits": {"tempo": False, "figure": None}, "abstained": {}}]
    table = eval_nano.score(rows)
    assert table["tempo"] == (0.5, 2)                          # one hit, one miss; the abstention left out
    assert table["key"] == (1.0, 1) and table["mode"] == (0.0, 1) and table["key+mode"] == (0.0, 1)
    assert table["abstained"] == pytest.approx((3 / 7, 3))    # 3 of the 7 asked attributes (figure is not asked)


def test_the_card_says_which_numbers_moved():
    old = "## Scores\n\n| run | register | tempo |\n|---|---|---|\n| guidance 3 (all) | 97% | 93% |\n"
    rows = [["guidance 3 (all)", "97%", "92%", *["-"] * 6]]
    said = eval_nano.moved(old, rows)
    assert "1 of 2 numbers moved, by at most 1 point:" in said and "guidance 3 (all) tempo 93% -> 92%" in said
    assert eval_nano.moved(old, [["guidance 3 (all)", "97%", "93%"]]).endswith("no number moved.")
