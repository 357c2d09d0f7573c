"""The stage benchmark's code measures (benchmarks/magnet_stages.py) against the corpus's ground truth: the strikes
a second are the notes the grammar wrote, and the corpus's one instrument a clip has no timbre switch while a
stretch of another instrument has two."""

import json
import sys

import numpy as np
import pytest
from helpers import ROOT

from mglab.nano import corpus, synth

sys.path.insert(0, str(ROOT / "benchmarks"))
import magnet_stages as ms  # noqa: E402


def _clips(n=12, seconds=4.0):
    rng = np.random.default_rng(17)
    return [corpus.example(rng, seconds) for _ in range(n)]


def test_strikes_a_second_are_the_notes_the_grammar_wrote():
    for clip in _clips():
        seconds = clip.codes.shape[-1] / 50
        assert ms.strikes_per_second(clip.codes) * seconds == len(clip.notes), clip.prompt


def test_a_held_note_without_its_strike_is_not_counted():
    clip = _clips(1)[0]
    codes = clip.codes.copy()
    start = clip.notes[1][1]
    codes[1, start] = 2 * 8 + codes[1, start] % 8                                   # the strike -> age stage 2
    assert ms.strikes_per_second(codes) * 4 == len(clip.notes) - 1


def test_a_strike_at_a_rest_is_not_a_note():
    clip = _clips(1)[0]
    codes = clip.codes.copy()
    codes[:, -5:] = 0                                                              # a rest at the end
    before = ms.strikes_per_second(codes)
    codes[1, -3] = synth.STRIKE * 8                                                # a strike token in the rest
    assert ms.strikes_per_second(codes) == before


def test_timbre_switches_read_the_instrument_modulo_six():
    clip = _clips(1)[0]
    codes = clip.codes.copy()
    codes[2, ::2] = codes[2, 0] % len(synth.INSTRUMENTS)                          # tokens i and i + 6: one
    codes[2, 1::2] = codes[2, 0] % len(synth.INSTRUMENTS) + len(synth.INSTRUMENTS)  # instrument
    assert ms.timbre_switches(codes) == 0


def test_timbre_switches_count_a_stretch_of_another_instrument_twice():
    for clip in _clips():
        assert ms.timbre_switches(clip.codes) == 0
        codes = clip.codes.copy()
        sounding = np.flatnonzero(codes[0] > 0)
        stretch = sounding[len(sounding) // 3: len(sounding) // 2]
        codes[2, stretch] = (codes[2, stretch] + 1) % synth.VOCAB                 # the next instrument
        assert ms.timbre_switches(codes) == 2


def test_the_cards_attention_words_follow_subcodes_context():
    import eval_magnet

    assert eval_magnet.attention(-1).startswith("full self-attention at every stage")
    assert eval_magnet.attention(0) == "local attention |i - j| <= 0 after the first stage"
    assert eval_magnet.attention(5) == "local attention |i - j| <= 5 after the first stage"
    assert eval_magnet._where(0) == "within 0 frames" and eval_magnet._where(-1) == "full"


def test_the_bundled_cards_attention_paragraph_is_its_experiment():
    """The card's paragraph on the attention of stages > 0 is what its context_experiment.json says (the card is
    written from the evidence beside it, not by hand)."""
    import json

    import eval_magnet

    folder = ROOT / "data" / "models" / "nano-magnet"
    cfg = json.loads((folder / "config.json").read_text())
    log = json.loads((folder / "training.json").read_text())
    note = eval_magnet.context_note(cfg, folder, log)
    runs = json.loads((folder / "context_experiment.json").read_text())["runs"]
    probes = note[note.index("Teacher-forced"):]
    said = [f"{eval_magnet._where(r['context'])}: " + ", ".join(f"{100 * r['probe'][f'acc_stage{k}']:.0f}%"
                                                                 for k in range(4)) for r in runs]
    assert all(s in probes for s in said) and probes.index(said[0]) < probes.index(said[1])
    ending = ", then the guided stage below" if log.get("guided") else "."
    assert f"The bundle is the run '{eval_magnet._where(cfg['subcodes_context'])}'{ending}" in note
    card = (folder / "README.md").read_text()
    assert eval_magnet.warm(log, folder) + "\n" + note + "\n`" + eval_magnet.rerun(log) in card
    with pytest.raises(ValueError, match="exactly one"):
        eval_magnet._bundled(runs + runs, cfg)


def test_model_at_reads_the_folder_git_holds_and_refuses_options(tmp_path, monkeypatch):
    """``common.model_at``: the files of data/models/nano-musicgen exactly as ``git show`` gives them at a13b50d
    (not today's retrained weights), cached by the full sha; a commit that reads as an option writes nothing."""
    import subprocess

    import common

    monkeypatch.setenv("MGLAB_CACHE", str(tmp_path))
    folder = common.model_at("a13b50d")
    assert "a13b50d050440b2cad7584c5f1709953bc539e6d" in str(folder)
    theirs = subprocess.run(["git", "-C", str(ROOT), "show", "a13b50d:data/models/nano-musicgen/onnx/"
                             "decoder_model_merged.onnx"], capture_output=True, check=True).stdout
    assert (folder / "onnx" / "decoder_model_merged.onnx").read_bytes() == theirs
    assert (folder / "pytorch" / "model.safetensors").read_bytes() != (
        ROOT / "data" / "models" / "nano-musicgen" / "pytorch" / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="git cannot give"):
        common.model_at(f"--output={tmp_path / 'x.tar'}")
    assert not (tmp_path / "x.tar").exists()


def test_the_card_says_the_guided_stage_and_the_defaults_from_the_bundle():
    """The card's paragraph on the guided stage and its decoding defaults come from training.json and config.json."""
    import eval_magnet

    folder = ROOT / "data" / "models" / "nano-magnet"
    log = json.loads((folder / "training.json").read_text())
    cfg = json.loads((folder / "config.json").read_text())
    card = (folder / "README.md").read_text()
    g = log["guided"]
    note = eval_magnet.guided_note(log)
    assert note.strip() in card and f"Last, {g['steps']} steps" in note and f"lr {g['lr']:g}" in note
    assert f"{100 * g['probe']['acc_stage0']:.0f}%, {100 * g['probe']['acc_stage1']:.0f}%" in note
    assert eval_magnet.defaults_note(cfg) in card
    assert f"mask temperature {cfg['generation']['mask_temperature']:g}" in eval_magnet.defaults_note(cfg)
    assert eval_magnet.guided_note({k: v for k, v in log.items() if k != "guided"}) == ""
