"""nano-melody's training (scripts/train_nano_melody.py) against independent oracles: the prefix it builds is what
transformers' own forward builds (with a melody, and as the null condition), the melody it gives is the chroma of
each clip's notes, the condition dropout draws its four cases at their rates, the warm start copies nano-
musicgen's weights, and training is deterministic for a seed."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import train_nano_melody as tm  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

from mglab.nano import corpus, synth  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return tm.build_model(seed=0).eval()


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.from_file(str(tm.PARENT / "tokenizer.json"))


def prompts(tok, clips):
    """The clips' prompts as the training tokenizes them: ``ids``, ``mask`` ``[B, n]`` tensors."""
    ids, mask = tm.nano.batch(clips, tok, 0)[:2]
    return torch.from_numpy(ids), torch.from_numpy(mask)


@pytest.fixture(scope="module")
def clips():
    rng = np.random.default_rng(5)
    return [corpus.example(rng, 2.0) for _ in range(3)]


def test_warm_start_copies_every_shared_weight():
    from transformers import MusicgenForConditionalGeneration

    parent = MusicgenForConditionalGeneration.from_pretrained(str(tm.PARENT)).state_dict()
    child = tm.build_model(seed=1).state_dict()
    shared = set(parent) & set(child)
    assert len(shared) == len(child) - 2                       # all but the chroma projection's weight and bias
    for name in shared:
        torch.testing.assert_close(child[name], parent[name], rtol=0, atol=0, msg=name)


def test_prefix_and_logits_are_what_transformers_forward_builds(model, tok, clips):
    dec_in = torch.from_numpy(tm.nano.batch(clips, tok, model.config.decoder.bos_token_id)[2])
    ids, mask = prompts(tok, clips)
    chroma = torch.from_numpy(tm.melody_of(clips))                               # [B, 16, 12]: 2 s, repeated
    with torch.no_grad():
        hidden = model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        ours = tm.decode(model, tm.prefix(model, hidden, mask, chroma), dec_in)
        theirs = model(input_ids=ids, attention_mask=mask, input_features=chroma, decoder_input_ids=dec_in).logits
        null_ours = tm.decode(model, tm.prefix(model, hidden * 0, mask * 0, tm.null_chroma(len(clips))), dec_in)
        null_theirs = model(input_ids=ids, attention_mask=mask * 0, decoder_input_ids=dec_in).logits   # no melody
    assert theirs.shape[1] == dec_in.shape[1] + model.config.chroma_length + ids.shape[1]
    torch.testing.assert_close(ours, theirs[:, -dec_in.shape[1]:], rtol=0, atol=1e-5)
    torch.testing.assert_close(null_ours, null_theirs[:, -dec_in.shape[1]:], rtol=0, atol=1e-5)
    assert (ours - null_ours).abs().max() > 0.1                                  # the condition changes them


def test_conditions_are_transformers_forward_with_each_clips_own_melody(model, tok, clips):
    """Without dropout: the conditional rows are transformers' forward given the clips' prompts and each clip's
    own melody (the chroma of that clip alone), the null rows its forward with the text masked out and no
    melody."""
    from mglab.audio.chroma import chroma

    dec_in = torch.from_numpy(tm.nano.batch(clips, tok, model.config.decoder.bos_token_id)[2])
    ids, mask = prompts(tok, clips)
    own = torch.from_numpy(np.concatenate([chroma(tm.render(c.codes[None])[0, 0], synth.SAMPLE_RATE)
                                           for c in clips]))                    # [B, F, 12], clip by clip
    with torch.no_grad():
        cond, uncond = tm.conditions(model, *prompts(tok, clips), clips, np.random.default_rng(0), drop=False)
        theirs = model(input_ids=ids, attention_mask=mask, input_features=own, decoder_input_ids=dec_in).logits
        null = model(input_ids=ids, attention_mask=mask * 0, decoder_input_ids=dec_in).logits
        torch.testing.assert_close(tm.decode(model, cond, dec_in), theirs[:, -dec_in.shape[1]:], rtol=0, atol=1e-5)
        torch.testing.assert_close(tm.decode(model, uncond, dec_in), null[:, -dec_in.shape[1]:], rtol=0, atol=1e-5)


def test_chroma_length_is_a_whole_clip():
    from mglab.audio.chroma import chroma

    assert tm.CHROMA_LENGTH == chroma(np.zeros(int(tm.SECONDS * synth.SAMPLE_RATE)), synth.SAMPLE_RATE).shape[1] == 32


def test_guided_loss_is_the_objective_of_cond_uncond_and_their_mix(model, tok, clips):
    """Against the three objectives computed from two separate decoder calls."""
    start = model.config.decoder.bos_token_id
    _, _, dec_in, targets, weights, first_end = (torch.from_numpy(np.ascontiguousarray(a))
                                                 for a in tm.nano.batch(clips, tok, start))
    with torch.no_grad():
        cond, uncond = tm.conditions(model, *prompts(tok, clips), clips, np.random.default_rng(0), drop=False)
        logits, loss = tm.guided_loss(model, cond, uncond, dec_in, targets, weights, first_end)
        c, u = tm.decode(model, cond, dec_in), tm.decode(model, uncond, dec_in)
        parts = [tm.nano.objective(x, dec_in, targets, weights, first_end) for x in (c, u, u + 3.0 * (c - u))]
    torch.testing.assert_close(logits, c, rtol=0, atol=1e-5)
    torch.testing.assert_close(loss, sum(parts), rtol=1e-5, atol=1e-6)
    assert abs(float(parts[2] - parts[0])) > 1e-4                               # the mix is not the conditional


def test_the_guided_stage_drops_no_condition(model, tok, monkeypatch):
    seen = []
    real = tm.conditions

    def spy(model, ids, mask, clips, rng, drop, keep=None):
        seen.append(drop)
        return real(model, ids, mask, clips, rng, drop, keep)

    monkeypatch.setattr(tm, "SECONDS", 0.5)
    monkeypatch.setattr(tm, "conditions", spy)
    monkeypatch.setattr(tm, "melody_accuracy", lambda model, tok: {})
    m = tm.build_model(seed=0)
    tm.train(m, tok, steps=1, batch_size=4, seed=0, lr=1e-4, guided=True, log_every=10**9)
    tm.train(m, tok, steps=1, batch_size=4, seed=0, lr=1e-4, log_every=10**9)
    assert seen == [False, True]


def test_melody_is_the_pitch_class_of_the_sounding_note(clips):
    """Each chroma frame's strongest bin against the ground truth: the pitch class of the note the corpus wrote
    at the frame's centre (4096-sample frames, centred), on frames a note sounds in throughout."""
    chroma = tm.melody_of(clips)                                                 # [B, F, 12]
    hits = []
    for c, frames in zip(clips, chroma):
        pitch = c.codes[0]                                                       # [T] pitch tokens
        for f in range(1, len(frames) - 1):
            lo, hi = (f * 4096 - 2048) // synth.HOP, (f * 4096 + 2048) // synth.HOP
            sounding = set(pitch[lo:hi + 1].tolist())
            if len(sounding) == 1 and pitch[lo] > 0:                              # one note, not a rest
                hits.append(frames[f].argmax() == synth.token_to_midi(int(pitch[lo])) % 12)
    assert len(hits) > 20 and np.mean(hits) >= 0.95, (len(hits), np.mean(hits))


def test_condition_dropout_draws_each_case_at_its_rate(model, tok):
    """Over many draws of distinct clips: each row keeps its own text (its prefix's text rows equal that clip's
    undropped ones) or has none (zeros), and its own melody or the null chroma; the four cases at their rates."""
    rng = np.random.default_rng(0)
    # clips whose melody is not all C (one-hot bin 0 throughout: the null chroma itself), 20 of them
    clips = [c for c in (corpus.example(np.random.default_rng(20 + i), 1.0) for i in range(40))
             if tm.melody_of([c])[0].argmax(-1).any()][:20]
    assert len(clips) == 20
    L = model.config.chroma_length
    counts = {"both": 0, "text": 0, "melody": 0, "none": 0}
    with torch.no_grad():
        ref, null = tm.conditions(model, *prompts(tok, clips), clips, rng, drop=False)          # [B, P, d] each
        for _ in range(60):
            cond, _ = tm.conditions(model, *prompts(tok, clips), clips, rng, drop=True)
            text_kept = (cond[:, L:] - ref[:, L:]).abs().amax((1, 2)) < 1e-6     # [B]
            text_gone = cond[:, L:].abs().amax((1, 2)) == 0
            melody_kept = (cond[:, :L] - ref[:, :L]).abs().amax((1, 2)) < 1e-6
            melody_null = (cond[:, :L] - null[:, :L]).abs().amax((1, 2)) < 1e-6
            assert (text_kept ^ text_gone).all() and (melody_kept ^ melody_null).all()
            for t, m in zip(text_kept.tolist(), melody_kept.tolist()):
                counts[{(True, True): "both", (False, True): "text", (True, False): "melody",
                        (False, False): "none"}[(t, m)]] += 1
    given = {"text": tm.DROP["text"], "melody": tm.DROP["melody"], "none": tm.DROP["both"]}
    given["both"] = 1 - sum(given.values())
    for case, rate in given.items():
        assert abs(counts[case] / 1200 - rate) < 0.04, (case, counts)


def test_warp_keeps_the_pitches_in_order_and_re_times_each_note():
    """Against the corpus's own notes: the warped clip plays the same pitches in the same order (those that fit),
    back to back, each note's length its own within WARP_RANGE of the original (the last rings to the end), and
    its codes say so (codebook 0 the note's pitch throughout, codebook 1 a strike at each start); within a clip
    the factors differ (an irregular rhythm, not another tempo)."""
    rng = np.random.default_rng(11)
    ratios, spreads = [], []
    for _ in range(30):
        c = corpus.example(rng, 4.0)
        w = tm.warp(c, rng)
        frames = c.codes.shape[1]
        assert w.codes.shape == c.codes.shape and w.prompt == c.prompt and w.attributes == c.attributes
        assert [n[0] for n in w.notes] == [n[0] for n in c.notes][:len(w.notes)]
        assert w.notes[0][1] == 0 and w.notes[-1][1] + w.notes[-1][2] == frames
        for (midi, start, length), nxt in zip(w.notes, w.notes[1:] + [None]):
            assert nxt is None or nxt[1] == start + length                       # back to back
            assert (w.codes[0, start:start + length] == synth.midi_to_token(midi)).all()
            assert w.codes[1, start] // 8 == 1                                   # the strike
        clip = [new / old for (_, _, new), (_, _, old) in zip(w.notes[:-1], c.notes[:-1])]
        for (_, _, new), (_, _, old) in zip(w.notes[:-1], c.notes[:-1]):
            lo, hi = (max(2, int(round(old * r))) for r in tm.WARP_RANGE)
            assert lo <= new <= hi
        ratios += clip
        if len(clip) >= 4:
            spreads.append(np.std(clip))
    assert 0.9 < np.mean(ratios) < 1.1                                          # the tempo kept on average
    assert len(spreads) > 10 and min(spreads) > 0.1, spreads                    # each clip's rhythm irregular


def test_conditions_follow_the_keep_they_are_given(model, tok, clips):
    """``keep`` decides alone: the melody dropped where it says so even with dropout on, and nothing drawn."""
    n = len(clips)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        ref, null = tm.conditions(model, *prompts(tok, clips), clips, rng, drop=False)           # [B, P, d] each
        state = rng.bit_generator.state
        cond, _ = tm.conditions(model, *prompts(tok, clips), clips, rng, drop=True,
                                keep=(np.ones(n, bool), np.zeros(n, bool)))
    L = model.config.chroma_length
    torch.testing.assert_close(cond[:, :L], null[:, :L])                         # the null chroma's rows
    torch.testing.assert_close(cond[:, L:], ref[:, L:])                          # the text kept
    assert rng.bit_generator.state == state


def test_without_warp_a_step_draws_what_it_drew_before_warping_existed(tok, monkeypatch):
    """At ``warped=0`` a plain step draws its clips and one dropout uniform per clip, nothing more: the random
    stream the bundles before warping were trained on."""
    monkeypatch.setattr(tm, "SECONDS", 0.5)
    monkeypatch.setattr(tm, "melody_accuracy", lambda model, tok: {})
    streams = []
    real = tm.keeps
    monkeypatch.setattr(tm, "keeps", lambda rng, count, drop: (streams.append(rng), real(rng, count, drop))[1])
    tm.train(tm.build_model(seed=0), tok, steps=1, batch_size=4, seed=5, lr=1e-4, log_every=10**9, warped=0.0)
    expected = np.random.default_rng(5)
    [corpus.example(expected, 0.5) for _ in range(4)]
    expected.random(4)
    assert streams[0].bit_generator.state == expected.bit_generator.state


def test_only_clips_given_their_melody_are_warped(tok, monkeypatch):
    """With every such clip warped (``warped=1``): in the plain stage a clip is re-timed exactly when its melody
    is kept, so no text-only or null-condition example plays an irregular rhythm; with ``warped=0`` nothing is."""
    seen = []
    monkeypatch.setattr(tm, "SECONDS", 0.5)
    monkeypatch.setattr(tm, "melody_accuracy", lambda model, tok: {})
    monkeypatch.setattr(tm, "warp", lambda clip, rng: corpus.Clip("warped " + clip.prompt, clip.attributes,
                                                                   clip.said, clip.codes, clip.notes))
    real = tm.conditions

    def spy(model, ids, mask, clips, rng, drop, keep=None):
        seen.append(([c.prompt.startswith("warped ") for c in clips], keep[1].tolist()))
        return real(model, ids, mask, clips, rng, drop, keep)

    monkeypatch.setattr(tm, "conditions", spy)
    m = tm.build_model(seed=0)
    tm.train(m, tok, steps=3, batch_size=16, seed=0, lr=1e-4, log_every=10**9, warped=1.0)
    warped, kept = (sum((s[i] for s in seen), []) for i in (0, 1))
    assert warped == kept and 0 < sum(kept) < len(kept)
    seen.clear()
    tm.train(m, tok, steps=1, batch_size=16, seed=0, lr=1e-4, log_every=10**9, warped=0.0)
    assert not any(seen[0][0])


def test_text_length_pads_every_prompt_to_it(tok, clips):
    """``--text-length 32`` pads every prompt of a batch to 32 tokens (a code frame's distance from its chroma frame
    then does not move with the prompt); the default pads to the batch's longest; no corpus prompt is longer."""
    assert tm.TEXT_LENGTH is None
    fixed = Tokenizer.from_str(tok.to_str())
    fixed.enable_padding(pad_id=0, pad_token="<pad>", length=32)                 # as main() sets it
    ids, mask = tm.nano.batch(clips, fixed, 0)[:2]
    lengths = [len(tok.encode(c.prompt).ids) for c in clips]
    assert ids.shape == (len(clips), 32) and mask.sum(1).tolist() == lengths
    assert tm.nano.batch(clips, tok, 0)[0].shape[1] == max(lengths) < 32
    rng = np.random.default_rng(0)
    longest = max(len(tok.encode(corpus.prompt_for(corpus.draw_attributes(rng), rng)[0]).ids) for _ in range(3000))
    assert 15 <= longest <= 32
    fixed.enable_padding(pad_id=0, pad_token="<pad>", length=4)                  # shorter than a prompt: refused
    with pytest.raises(ValueError, match="more than the fixed text length 4"):
        tm.nano.batch(clips, fixed, 0)


def test_training_is_deterministic_for_a_seed(tok, monkeypatch):
    monkeypatch.setattr(tm, "SECONDS", 0.5)
    monkeypatch.setattr(tm, "melody_accuracy", lambda model, tok: {})
    runs = []
    for _ in range(2):
        m = tm.build_model(seed=0)
        log = tm.train(m, tok, steps=2, batch_size=4, seed=3, lr=1e-3, log_every=10**9)
        log["guided"] = tm.guided_stage(m, tok, steps=1, batch_size=4, seed=3)["loss_every_100"]
        runs.append((log["loss_every_100"], m.state_dict()["audio_enc_to_dec_proj.weight"].clone(), log["guided"]))
    assert runs[0][0] == runs[1][0] and runs[0][2] == runs[1][2]
    torch.testing.assert_close(runs[0][1], runs[1][1], rtol=0, atol=0)
    start = tm.build_model(seed=0).state_dict()["audio_enc_to_dec_proj.weight"]
    assert not torch.equal(runs[0][1], start)                                    # it did train
