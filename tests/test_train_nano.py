"""The nano model's training objective (``scripts/train_nano.py``): targets, weights and the tempo term."""

import sys

import numpy as np
import pytest
import torch
from helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

import train_nano  # noqa: E402

from mglab.nano import corpus, synth  # noqa: E402

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


def test_the_guided_stage_trains_the_logits_guidance_samples_from(clips):
    """``guided_loss`` runs each clip with its condition and with the null one (zero states, zero mask: what
    ``mglab.decoding.guidance`` feeds) and adds the objective of ``u + GUIDANCE * (c - u)``; checked against the two
    conditions run one at a time."""
    tok = train_nano.build_tokenizer()
    model = train_nano.build_torch_model(tok.get_vocab_size(), 0, train_nano.SIZES).eval()
    model.config.decoder._attn_implementation = "eager"
    ids, mask, dec_in, targets, weights, end = (torch.from_numpy(np.ascontiguousarray(a))
                                                for a in train_nano.batch(clips[:2], tok, START))
    with torch.no_grad():
        hidden = model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state   # [B, L, D]
        cond, loss = train_nano.guided_loss(model, hidden, mask, dec_in, targets, weights, end)
        c = model(encoder_outputs=(hidden,), attention_mask=mask, decoder_input_ids=dec_in).logits  # [B*K, S-1, V]
        u = model(encoder_outputs=(torch.zeros_like(hidden),), attention_mask=torch.zeros_like(mask),
                  decoder_input_ids=dec_in).logits                                   # [B*K, S-1, V]
    assert not torch.allclose(c, u, atol=1e-3)                      # the condition matters: three distinct terms
    torch.testing.assert_close(cond, c, atol=1e-5, rtol=0)
    terms = [(1.0, c), (1.0, u), (train_nano.GUIDED_WEIGHT, u + train_nano.GUIDANCE * (c - u))]
    expected = sum(w * float(train_nano.objective(x, dec_in, targets, weights, end)) for w, x in terms)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_the_unconditional_branch_can_be_smoothed_on_its_own(clips):
    """``uncond_smoothing`` changes only the unconditional term's cross-entropy: by (eps_u - eps) times the
    weighted mean of (uniform cross-entropy - target NLL), computed here from log-softmax."""
    tok = train_nano.build_tokenizer()
    model = train_nano.build_torch_model(tok.get_vocab_size(), 0, train_nano.SIZES).eval()
    model.config.decoder._attn_implementation = "eager"
    ids, mask, dec_in, targets, weights, end = (torch.from_numpy(np.ascontiguousarray(a))
                                                for a in train_nano.batch(clips[:2], tok, START))
    with torch.no_grad():
        hidden = model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state   # [B, L, D]
        _, base = train_nano.guided_loss(model, hidden, mask, dec_in, targets, weights, end)
        _, smooth = train_nano.guided_loss(model, hidden, mask, dec_in, targets, weights, end, uncond_smoothing=0.05)
        u = model(encoder_outputs=(torch.zeros_like(hidden),), attention_mask=torch.zeros_like(mask),
                  decoder_input_ids=dec_in).logits                                   # [B*K, S-1, V]
    logp = torch.log_softmax(u, -1)                                                  # [B*K, S-1, V]
    ok = targets >= 0
    nll = -logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]                  # [B*K, S-1]
    uniform = -logp.mean(-1)                                                         # [B*K, S-1]
    w = weights * ok
    shift = (0.05 - train_nano.LABEL_SMOOTHING) * float(((uniform - nll) * w).sum() / w.sum())
    assert abs(shift) > 1e-4
    assert float(smooth - base) == pytest.approx(shift, rel=1e-4, abs=1e-7)


def test_training_draws_uninformative_prompts_in_both_stages(monkeypatch):
    """train() asks corpus.example for UNINFORMATIVE prompts, and the guided stage passes its ``say``."""
    import train_nano

    tok = train_nano.build_tokenizer()
    model = train_nano.build_torch_model(tok.get_vocab_size(), 0, train_nano.SIZES)
    calls = []

    class Stop(Exception):
        pass

    def spy(rng, seconds, **kw):
        calls.append(kw)
        raise Stop

    monkeypatch.setattr(train_nano.corpus, "example", spy)
    with pytest.raises(Stop):
        train_nano.train(model, tok, 10, 4, 0, 1e-3, 0, 0)
    with pytest.raises(Stop):
        train_nano.guided_stage(model, tok, 10, 4, 0, say={"register": 1.0})
    assert train_nano.UNINFORMATIVE is True
    assert calls == [{"say": None, "uninformative": True}, {"say": {"register": 1.0}, "uninformative": True}]
