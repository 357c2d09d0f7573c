"""Hooks across long-form windows, and the self-attention key/value hooks against transformers' cache.

Every window recomputes the cross-attention K/V (audiocraft's extend calls the LM per chunk), so an edit of
them applies in every window; the activation cache's key/value history is the cache the decoder had, its own
window's positions."""

import numpy as np
import pytest
from helpers import PROMPTS, as_torch

LONG = dict(max_new_tokens=60, window=0.3, extend_stride=0.2, do_sample=True, seed=4)   # 3+ windows


def test_a_cross_value_edit_applies_in_every_window(merged_model):
    """Zeroing layer 0's cross-attention values makes its cross-attention output zero (the projections have no
    bias): the same run as zeroing ``hook_cross_attn_out`` at every step but a window's first (which computes
    the cross-attention cache itself, before the hook sees it). The oracle runs through the residual graph,
    another path; with the edit dropped after window 0 (the defect) the tokens part from window 1 on."""
    zero = lambda v, h: np.zeros_like(v)                                           # noqa: E731
    seen = []

    def zero_but_first(x, hook):
        if seen and seen[-1] == hook.window:
            return np.zeros_like(x)
        seen.append(hook.window)
        return None

    fired = []
    edited = merged_model.generate(PROMPTS, hooks=[("decoder.layers.0.hook_cross_value", zero),
                                                   ("decoder.layers.0.hook_cross_key",
                                                    lambda v, h: fired.append(h.window))], **LONG)
    oracle = merged_model.generate(PROMPTS, hooks=[("decoder.layers.0.hook_cross_attn_out", zero_but_first)], **LONG)
    plain = merged_model.generate(PROMPTS, **LONG)
    assert len(set(seen)) >= 3 and fired == sorted(set(seen))                   # once a window, every window
    np.testing.assert_array_equal(edited.codes, oracle.codes)
    window0 = 15 - 3                                                              # frames of window 0 (0.3 s)
    assert (edited.codes[..., window0:] != plain.codes[..., window0:]).any()


def _live_cache_recorder(store):
    def keep(value, hook):
        store[hook.step] = np.array(value, copy=True)
    return keep


@pytest.mark.parametrize("edit", [False, True])
def test_the_cached_key_history_is_the_live_cache_in_every_window(merged_model, edit):
    """``cache.kv(name, step)`` equals the cache the decoder held after ``step`` (read by a plain hook), across
    windows, also with another hook editing earlier positions of the same point (the defect: positions
    concatenated across windows, and an IndexError comparing a new window's cache with the last one's)."""
    name = "decoder.layers.1.hook_key"
    live = {}

    def bump(value, hook):                            # rewrite position 0 every 7th step
        if hook.step % 7 == 3:
            value[:, :, 0] += 1.0
        return value

    hooks = ([(name, bump)] if edit else []) + [(name, _live_cache_recorder(live))]
    gen, cache = merged_model.run_with_cache(PROMPTS, names_filter=[name], hooks=hooks, **LONG)
    steps = cache.steps(name)
    assert steps == sorted(live) and len(steps) > 40
    sizes = [live[s].shape[2] for s in steps]
    assert max(sizes) < len(steps)                                    # several windows: the cache restarted
    for s in steps:
        np.testing.assert_array_equal(cache.kv(name, s), live[s])
    np.testing.assert_array_equal(cache[name], live[steps[-1]])


def test_self_attention_key_value_hooks_are_transformers_cache(merged_model, torch_model):
    """The last step's keys and values of every layer against transformers' ``past_key_values`` after the same
    tokens (teacher-forced, no guidance): 1e-5 apart. Keys and values swapped, or a wrong layer, is far off."""
    import torch

    gen, cache = merged_model.run_with_cache(PROMPTS, names_filter=lambda n: n.endswith(("hook_key", "hook_value"))
                                             and ".cross" not in n, max_new_tokens=10, guidance_scale=1.0,
                                             do_sample=True, seed=1)
    ids, mask = merged_model.text.tokenize(PROMPTS)
    b, k, length = gen.tokens.shape
    steps = len(cache.steps("decoder.layers.0.hook_key"))
    fed = gen.tokens.reshape(b * k, length)[:, :steps]                               # [B*K, steps]
    ids_t, mask_t, fed_t = as_torch(ids.astype(np.int64), mask.astype(np.int64), fed)
    with torch.no_grad():
        out = torch_model(input_ids=ids_t, attention_mask=mask_t, decoder_input_ids=fed_t, use_cache=True)
    past = out.past_key_values
    for i in range(torch_model.decoder.config.num_hidden_layers):
        key, value = _layer_kv(past, i)                                              # [B, heads, steps, hd]
        ours_k = cache[f"decoder.layers.{i}.hook_key"]
        ours_v = cache[f"decoder.layers.{i}.hook_value"]
        np.testing.assert_allclose(ours_k, key, atol=1e-5)
        np.testing.assert_allclose(ours_v, value, atol=1e-5)
        assert np.abs(ours_k - value).max() > 1e-2                                   # swapped would be far off


def _layer_kv(past, i):
    """Layer ``i``'s self-attention key and value from transformers' cache object (any of its forms)."""
    self_cache = getattr(past, "self_attention_cache", past)
    if hasattr(self_cache, "layers"):
        layer = self_cache.layers[i]
        return layer.keys.numpy(), layer.values.numpy()
    if hasattr(self_cache, "key_cache"):
        return self_cache.key_cache[i].numpy(), self_cache.value_cache[i].numpy()
    return past[i][0].numpy(), past[i][1].numpy()
