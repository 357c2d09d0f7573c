"""The nano model's training objective (``scripts/train_nano.py``): targets, weights and the tempo term."""

import sys

import numpy as np
import pytest
import torch
from helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

import train_nano  # noqa: E402

from mglab import corpus, synth  # noqa: E402

START = synth.VOCAB                              # the decoder's start/pad id


@pytest.fixture(scope="module")
def clips():
    rng = np.random.default_rng(3)
    return [corpus.example(rng, 2.0) for _ in range(12)]


def test_the_first_note_ends_at_the_second_strike(clips):
    """Repeated notes keep codebook 0 and strike again: the end is read from codebook 1's strikes."""
    ends = train_nano.first_note_end(np.stack([c.codes for c in clips]))
    assert ends.tolist() == [c.notes[1][1] if len(c.notes) > 1 else c.codes.shape[-1] for c in clips]
    assert any(c.attributes["figure"] == "repeated notes" for c in clips)


def test_targets_are_the_delayed_codes_and_frame_zero_weighs_most(clips):
    tok = train_nano.build_tokenizer()
    _, _, dec_in, targets, weights, _ = train_nano.batch(clips[:2], tok, START)
    t = targets.reshape(2, 4, -1)                                               # [B, K, S-1]
    for k in range(4):                                                          # codebook k predicts frame s - k
        np.testing.assert_array_equal(t[:, k, k:k + 100], np.stack([c.codes[k] for c in clips[:2]]))
        assert (t[:, k, :k] == -100).all()
    w = weights.reshape(2, 4, -1)
    assert w[0, 0, 0] == train_nano.FIRST_FRAME_WEIGHT and w[0, 3, 3] == train_nano.FIRST_FRAME_WEIGHT
    assert (w[t == -100] == 0).all()
    np.testing.assert_array_equal(dec_in.reshape(2, 4, -1)[:, :, 1:], np.where(t[:, :, :-1] == -100, START,
                                                                                t[:, :, :-1]))


def test_the_first_note_weighs_more_in_the_tempo_term(clips):
    """The gradient of the tempo term at a frame of the first note is FIRST_NOTE_WEIGHT times the gradient at
    a later frame with the same logits and the same event (the note stays)."""
    clip = next(c for c in clips if len(c.notes) > 2 and c.notes[1][1] > 4)
    tok = train_nano.build_tokenizer()
    _, _, dec_in, targets, _, end = (torch.from_numpy(a) for a in train_nano.batch([clip], tok, START))
    logits = torch.zeros(4, targets.shape[-1], synth.VOCAB, requires_grad=True)     # [K, S-1, V]: uniform
    train_nano.when_loss(logits, dec_in, targets, end).backward()
    early, late = 2, int(end) + 3                                               # codebook 0 stays at both
    codes0 = clip.codes[0]
    assert codes0[early] == codes0[early - 1] and codes0[late] == codes0[late - 1]
    ratio = logits.grad[0, early].norm() / logits.grad[0, late].norm()
    assert ratio == pytest.approx(train_nano.FIRST_NOTE_WEIGHT, rel=1e-5)
