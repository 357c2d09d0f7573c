"""mglab against transformers' own ``generate`` and forward pass, on the same weights."""

import numpy as np
import pytest
import torch
from helpers import PROMPTS, as_torch, transformers_streamed


def transformers_generate(torch_model, ids, mask, **kwargs):
    """Audio and the delayed token matrix [B, K, L] transformers produces (pads forced as it forces them)."""
    audio, seq = transformers_streamed(torch_model, ids, mask, **kwargs)    # [B*K, L]
    dec = torch_model.decoder
    _, pattern = dec.build_delay_pattern_mask(seq[:, :1], pad_token_id=dec.config.bos_token_id,
                                              max_length=seq.shape[-1])
    seq = dec.apply_delay_pattern_mask(seq, pattern)
    k = dec.num_codebooks
    return audio, seq.reshape(-1, k, seq.shape[-1]).numpy()


@pytest.mark.parametrize("guidance_scale", [3.0, 1.0])
def test_greedy_generation_matches_transformers(model, torch_model, guidance_scale):
    ids, mask = model.text.tokenize(PROMPTS)
    assert mask.min() == 0, "the two prompts must have different lengths so that padding is exercised"
    ours = model.generate(PROMPTS, max_new_tokens=48, do_sample=False, guidance_scale=guidance_scale)
    audio, tokens = transformers_generate(torch_model, ids, mask, max_new_tokens=48, do_sample=False,
                                          guidance_scale=guidance_scale)
    assert ours.tokens.shape == tokens.shape == (2, 4, 49)
    np.testing.assert_array_equal(ours.tokens, tokens)
    assert ours.audio.shape == audio.shape
    assert np.abs(ours.audio - audio).max() <= 1e-4
    assert np.abs(audio).max() > 1e-3      # audio that depends on the codes, not silence


def test_codes_change_the_audio(merged_model):
    """The bundled codec's codebooks are random, so different codes give different audio."""
    a = merged_model.generate("lofi piano", max_new_tokens=20, do_sample=True, seed=1)
    b = merged_model.generate("lofi piano", max_new_tokens=20, do_sample=True, seed=2)
    assert not np.array_equal(a.codes, b.codes)
    assert np.abs(a.audio - b.audio).max() > 1e-3


def test_teacher_forced_logits_match_transformers(model, torch_model):
    """Feed one fixed delayed sequence step by step; every step's cond and uncond logits match."""
    from mglab.decoding import guidance

    steps = 24
    ref = model.generate(PROMPTS, max_new_tokens=steps, do_sample=True, seed=3, guidance_scale=3.0)
    ids, mask = model.text.tokenize(PROMPTS)
    hidden = model.text.encode(ids, mask)
    hidden2, mask2 = guidance.null_condition(hidden, mask)                  # [2B, n, d], [2B, n]
    b, k, length = ref.tokens.shape
    cache, ours = None, []
    for t in range(steps):
        x = np.tile(ref.tokens[:, :, t].reshape(-1, 1), (2, 1))            # [2B*K, 1]
        logits, cache, _ = model.decoder.step(x, hidden2, mask2, cache)    # [2B*K, V]
        ours.append(logits)
    ours = np.stack(ours, axis=1)                                           # [2B*K, steps, V]

    dec_ids = np.tile(ref.tokens.reshape(b * k, length)[:, :steps], (2, 1))   # [2B*K, steps]
    with torch.no_grad():
        enc = torch_model.text_encoder(*as_torch(ids, mask)).last_hidden_state
        enc2 = torch.cat([enc, torch.zeros_like(enc)])
        out = torch_model(encoder_outputs=(enc2,), attention_mask=as_torch(mask2)[0],
                          decoder_input_ids=as_torch(dec_ids)[0]).logits.numpy()   # [2B*K, steps, V]
    cond, uncond = ours[: b * k], ours[b * k:]
    for t in range(steps):
        assert np.abs(cond[:, t] - out[: b * k, t]).max() <= 1e-4, f"conditional logits differ at step {t}"
        assert np.abs(uncond[:, t] - out[b * k:, t]).max() <= 1e-4, f"unconditional logits differ at step {t}"
    assert np.abs(cond - uncond).max() > 1e-3     # the two branches really differ


def test_tokenizer_matches_transformers_fast_tokenizer(tiny_path):
    from transformers import PreTrainedTokenizerFast

    import mglab
    hf = PreTrainedTokenizerFast(tokenizer_file=str(tiny_path / "tokenizer.json"), pad_token="<pad>")
    ours_ids, ours_mask = mglab.load(tiny_path).text.tokenize(PROMPTS)
    theirs = hf(PROMPTS, padding=True, return_tensors="np")
    np.testing.assert_array_equal(ours_ids, theirs["input_ids"])
    np.testing.assert_array_equal(ours_mask, theirs["attention_mask"])
