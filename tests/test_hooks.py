"""Hook points and the activation cache: they see what the pipeline computes, and edits take effect."""

import numpy as np
import pytest
import torch

import mglab
from mglab.decoding import patterns
from mglab.inspect.activation_cache import ActivationCache

PROMPTS = ["lofi piano with soft drums", "rock"]
KW = dict(max_new_tokens=24, seed=0, do_sample=True, top_k=20)


@pytest.fixture(scope="module")
def cached(model):
    return model.run_with_cache(PROMPTS, guidance_scale=3.0, **KW)


def test_every_hook_point_is_recorded_with_its_shape(model, cached):
    gen, cache = cached
    names = model.hook_names()
    assert set(cache.keys()) == set(names)
    b, k, v, steps = 2, 4, model.config.vocab_size, KW["max_new_tokens"]
    c = model.config
    n = cache["text_encoder.hook_mask"].shape[1]
    assert cache["text_encoder.hook_hidden"].shape == (b, n, c.text_hidden_size)
    assert cache["decoder.hook_input_ids"].shape == (steps, b, k)
    assert cache["guidance.hook_logits"].shape == (steps, b, k, v)
    assert cache["decoder.layers.1.hook_key"].shape == (2 * b, c.num_heads, steps, c.head_dim)
    assert cache["decoder.layers.0.hook_cross_value"].shape == (2 * b, c.num_heads, n, c.head_dim)
    assert cache["decoder.layers.0.hook_self_attn"].shape == (steps, 2 * b, c.num_heads, 1, steps)
    assert cache["decoder.layers.1.hook_cross_attn"].shape == (steps, 2 * b, c.num_heads, 1, n)



def test_hook_values_are_what_the_pipeline_computed(model, cached, torch_model):
    """Each recorded point against an expectation built outside mglab: the fed ids from the sampled tokens and
    transformers' delay pattern, the codes read off by hand, the audio from transformers' EnCodec."""
    gen, cache = cached
    steps, start = KW["max_new_tokens"], model.config.decoder_start_token_id
    sampled = cache["sampler.hook_tokens"].transpose(1, 2, 0)                          # [B, K, steps]
    seq = torch.from_numpy(np.concatenate([np.full((2, 4, 1), start), sampled], -1).reshape(8, -1))
    dec = torch_model.decoder
    _, pattern = dec.build_delay_pattern_mask(seq[:, :1], pad_token_id=start, max_length=steps + 1)
    fed = dec.apply_delay_pattern_mask(seq, pattern).numpy().reshape(2, 4, steps + 1)  # [B, K, steps + 1]
    np.testing.assert_array_equal(cache["decoder.hook_input_ids"], fed[:, :, :-1].transpose(2, 0, 1))
    codes = np.stack([fed[:, k, k + 1: k + 1 + steps - 3] for k in range(4)], axis=1)  # frame f at f + k + 1
    np.testing.assert_array_equal(cache["codec.hook_codes"], codes)
    with torch.no_grad():
        audio = torch_model.audio_encoder.decode(torch.from_numpy(codes)[None], [None]).audio_values.numpy()
    assert np.abs(cache["codec.hook_audio"] - audio).max() <= 1e-4


def test_guided_logits_from_transformers_cond_and_uncond(model, cached, torch_model):
    """The guidance points against transformers' teacher-forced logits on the same sequence, combined by the
    formula of the CFG paper (not read back from mglab)."""
    gen, cache = cached
    ids, mask = model.text.tokenize(PROMPTS)
    steps = KW["max_new_tokens"]
    with torch.no_grad():
        enc = torch_model.text_encoder(torch.from_numpy(ids), torch.from_numpy(mask)).last_hidden_state
        out = torch_model(encoder_outputs=(torch.cat([enc, torch.zeros_like(enc)]),),
                          attention_mask=torch.from_numpy(np.concatenate([mask, 0 * mask])),
                          decoder_input_ids=torch.from_numpy(np.tile(gen.tokens[:, :, :steps].reshape(8, -1), (2, 1))))
    logits = out.logits.numpy().reshape(2, 2, 4, steps, -1).transpose(0, 3, 1, 2, 4)    # [H, steps, B, K, V]
    cond, uncond = logits
    assert np.abs(cache["guidance.hook_cond_logits"] - cond).max() <= 1e-4
    assert np.abs(cache["guidance.hook_uncond_logits"] - uncond).max() <= 1e-4
    assert np.abs(cache["guidance.hook_logits"] - (uncond + 3.0 * (cond - uncond))).max() <= 4e-4
    assert np.abs(cond - uncond).max() > 1e-3


def test_sampled_tokens_are_finite_under_the_sampler_logits(cached):
    _, cache = cached
    logits, tokens = cache["sampler.hook_logits"], cache["sampler.hook_tokens"]   # [T,B,K,V], [T,B,K]
    chosen = np.take_along_axis(logits, tokens[..., None], axis=-1)
    assert np.isfinite(chosen).all()
    assert (~np.isfinite(logits)).sum(axis=-1).min() == logits.shape[-1] - 20     # top_k=20 removed the rest


def test_delay_tokens_are_pad_exactly_where_the_pattern_says(model, cached):
    _, cache = cached
    c = model.config
    pattern = patterns.build_delay_pattern(4, KW["max_new_tokens"] + 1, c.decoder_start_token_id)
    after = cache["delay.hook_tokens"]                                                   # [T, B, K]
    forced = (pattern[:, 1:] != patterns.PREDICT).T                                        # [T, K]
    assert (after.transpose(1, 0, 2)[:, forced] == c.decoder_start_token_id).all()
    assert (after.transpose(1, 0, 2)[:, ~forced] < c.vocab_size).all()


def test_cached_kv_equals_the_present_tensors_at_every_step(model):
    presents = []

    def keep(value, hook):                       # what the decoder returned at that step
        presents.append(value.copy())

    _, cache = model.run_with_cache(PROMPTS, names_filter="decoder.layers.1.hook_value",
                                    hooks=[("decoder.layers.1.hook_value", keep)], **KW)
    assert len(presents) == KW["max_new_tokens"]
    for t, present in enumerate(presents):
        assert present.shape[2] == t + 1
        np.testing.assert_array_equal(cache.kv("decoder.layers.1.hook_value", t), present)


def test_cross_attention_rows_sum_to_one_over_unmasked_text(model, cached):
    _, cache = cached
    mask = cache["text_encoder.hook_mask"]                                               # [B, n]
    for layer in range(model.config.num_layers):
        attn = cache[f"decoder.layers.{layer}.hook_cross_attn"]                       # [T, 2B, h, 1, n]
        cond = attn[:, : len(PROMPTS)]
        np.testing.assert_allclose((cond * mask[None, :, None, None, :]).sum(-1), 1.0, atol=1e-5)
        assert np.abs(cond * (1 - mask[None, :, None, None, :])).max() < 1e-6
        self_attn = cache[f"decoder.layers.{layer}.hook_self_attn"]                   # [T, 2B, h, 1, T]
        np.testing.assert_allclose(self_attn.sum(-1), 1.0, atol=1e-5)


def test_read_only_hooks_change_no_token(model):
    plain = model.generate(PROMPTS, **KW)
    gen, _ = model.run_with_cache(PROMPTS, **KW)
    np.testing.assert_array_equal(plain.tokens, gen.tokens)
    again = model.generate(PROMPTS, **KW)
    np.testing.assert_array_equal(plain.tokens, again.tokens)


def test_banning_a_token_in_the_guided_logits(model):
    banned = int(np.bincount(model.generate(PROMPTS, **KW).codes.ravel()).argmax())

    def ban(logits, hook):
        logits[..., banned] = -np.inf

    gen = model.generate(PROMPTS, hooks=[("guidance.hook_logits", ban)], **KW)
    assert banned not in gen.codes


def test_forcing_sampled_tokens_puts_them_in_the_codes(model):
    def force(tokens, hook):
        return np.full_like(tokens, 7 + hook.step % 3)

    gen = model.generate(PROMPTS, hooks=[("sampler.hook_tokens", force)], **KW)
    frames = gen.codes.shape[-1]
    for kb, d in enumerate(model.config.delays):
        # frame f of codebook k was sampled at step f + d
        np.testing.assert_array_equal(gen.codes[:, kb], np.broadcast_to(7 + (np.arange(frames) + d) % 3,
                                                                        (2, frames)))


def test_zeroed_text_gives_the_unconditional_logits(model):
    def zero(hidden, hook):
        return np.zeros_like(hidden)

    _, cache = model.run_with_cache(PROMPTS, names_filter=["guidance.hook_cond_logits",
                                                           "guidance.hook_uncond_logits"],
                                    hooks=[("text_encoder.hook_hidden", zero)], **KW)
    np.testing.assert_allclose(cache["guidance.hook_cond_logits"], cache["guidance.hook_uncond_logits"],
                               atol=1e-5)


def test_context_manager_removes_hooks_even_when_the_block_raises(model):
    calls = []
    with pytest.raises(ZeroDivisionError):
        with model.hooks([("decoder.hook_input_ids", lambda v, h: calls.append(h.step))]):
            model.generate("a", max_new_tokens=8)
            raise ZeroDivisionError("the block fails")
    assert len(calls) == 8
    model.generate("a", max_new_tokens=8)
    assert len(calls) == 8 and not model._hooks


def test_hook_context(model):
    seen = []
    model.generate("a", max_new_tokens=8, hooks=[
        (lambda n: n.endswith("hook_cross_key") or n == "sampler.hook_tokens",
         lambda v, h: seen.append((h.name, h.step, h.layer)))])
    assert ("decoder.layers.1.hook_cross_key", None, 1) in seen
    assert ("sampler.hook_tokens", 7, None) in seen


def test_steps_filter(model):
    _, cache = model.run_with_cache("a", names_filter=["guidance.hook_logits", "decoder.layers.0.hook_key"],
                                    steps=slice(2, 10, 3), **KW)
    assert cache.steps("guidance.hook_logits") == [2, 5, 8]
    assert cache["guidance.hook_logits"].shape[0] == 3
    assert cache["decoder.layers.0.hook_key"].shape[2] == KW["max_new_tokens"]   # KV keeps every position
    _, cache = model.run_with_cache("a", names_filter="sampler.hook_tokens", steps=[0, 23], **KW)
    assert cache.steps("sampler.hook_tokens") == [0, 23]


def test_unknown_hook_names_suggest_close_ones(model):
    with pytest.raises(KeyError, match="guidance.hook_logits"):
        model.run_with_cache("a", names_filter="guidance.hook_logit", **KW)
    with pytest.raises(KeyError, match="decoder.layers.0.hook_key"):
        model.generate("a", hooks=[("decoder.layer.0.hook_key", print)], **KW)


def test_wrong_shape_or_raising_hook_is_named(model):
    with pytest.raises(ValueError, match=r"sampler.hook_tokens.*step 0.*\(3,\).*\(2, 4\)"):
        model.generate(PROMPTS, hooks=[("sampler.hook_tokens", lambda v, h: np.zeros(3, dtype=np.int64))], **KW)

    def broken(value, hook):
        raise KeyError("oops")

    with pytest.raises(RuntimeError, match="broken.*guidance.hook_logits.*step 0"):
        model.generate(PROMPTS, hooks=[("guidance.hook_logits", broken)], **KW)
    with pytest.raises(ValueError, match="read-only"):
        model.generate("a", hooks=[("decoder.layers.0.hook_self_attn", lambda v, h: v)], **KW)
    assert not model._hooks


def test_cache_saves_and_loads(cached, tmp_path):
    _, cache = cached
    path = cache.save(tmp_path / "cache.npz")
    back = ActivationCache.load(path)
    assert back.keys() == cache.keys()
    for name in ["text_encoder.hook_hidden", "guidance.hook_logits", "decoder.layers.0.hook_key",
                 "decoder.layers.0.hook_self_attn"]:
        np.testing.assert_array_equal(back[name], cache[name])
    np.testing.assert_array_equal(back.kv("decoder.layers.0.hook_key", 5),
                                  cache.kv("decoder.layers.0.hook_key", 5))
    assert cache.nbytes > 0 and "MiB" in repr(cache)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.npz"]


def test_attention_graphs_work_for_q8(tiny_path):
    m = mglab.load(tiny_path, dtype="q8")
    _, cache = m.run_with_cache("a", names_filter=lambda n: n.endswith("_attn"), **KW)
    np.testing.assert_allclose(cache["decoder.layers.1.hook_self_attn"].sum(-1), 1.0, atol=1e-5)
