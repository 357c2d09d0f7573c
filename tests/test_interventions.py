"""Steering, patching and the logit lens (mglab.inspect.interventions) on the tiny model."""

import numpy as np
import pytest
from helpers import PROMPTS

from mglab.inspect import interventions as iv

KW = dict(max_new_tokens=12, do_sample=True, seed=5)


@pytest.mark.parametrize("point", [None, "cross_attn_out", "mlp_out"])
def test_a_steering_vector_is_the_difference_of_mean_residuals(merged_model, point):
    m = merged_model
    name = f"decoder.layers.1.hook_{point or 'resid_post'}"
    kw = KW if point is None else dict(KW, point=point)
    vec = iv.steering_vector(m, ["lofi piano", "jazz"], ["rock guitar"], layer=1, **kw)
    _, a = m.run_with_cache(["lofi piano", "jazz"], names_filter=name, **KW)
    _, b = m.run_with_cache(["rock guitar"], names_filter=name, **KW)
    expected = a[name][:, :2, 0].mean((0, 1)) - b[name][:, :1, 0].mean((0, 1))
    assert vec.shape == (m.config.hidden_size,)
    np.testing.assert_allclose(vec, expected, atol=1e-6)


@pytest.mark.parametrize("rows", ["cond", "both"])
def test_steering_edits_the_rows_asked_and_leaves_nothing_attached(merged_model, rows):
    m = merged_model
    vec = np.random.default_rng(0).normal(size=m.config.hidden_size).astype(np.float32)
    names = ["guidance.hook_cond_logits", "guidance.hook_uncond_logits"]
    _, plain = m.run_with_cache(PROMPTS, names_filter=names, guidance_scale=3.0, **KW)
    with m.steer(vec, layer=1, scale=3.0, rows=rows):
        _, steered = m.run_with_cache(PROMPTS, names_filter=names, guidance_scale=3.0, **KW)
    cond = np.abs(steered[names[0]][0] - plain[names[0]][0]).max()
    uncond = np.abs(steered[names[1]][0] - plain[names[1]][0]).max()
    assert cond > 1e-3
    assert (uncond > 1e-3) if rows == "both" else (uncond == 0)
    _, after = m.run_with_cache(PROMPTS, names_filter=names, guidance_scale=3.0, **KW)
    np.testing.assert_array_equal(after[names[0]], plain[names[0]])           # the block attached nothing


def test_steering_a_block_output_adds_to_the_stream_after_it(merged_model):
    """The vector added to layer 0's cross-attention output arrives in resid_pre of layer 1 at step 0 only
    through the residual add and layer 0's MLP: with the MLP output subtracted, it is exactly the vector."""
    m = merged_model
    vec = np.random.default_rng(1).normal(size=m.config.hidden_size).astype(np.float32)
    names = ["decoder.layers.1.hook_resid_pre", "decoder.layers.0.hook_mlp_out"]
    _, plain = m.run_with_cache(PROMPTS, names_filter=names, guidance_scale=3.0, **KW)
    with m.steer(vec, 0, 0.5, point="cross_attn_out"):
        _, steered = m.run_with_cache(PROMPTS, names_filter=names, guidance_scale=3.0, **KW)
    moved = (steered[names[0]][0] - steered[names[1]][0]) - (plain[names[0]][0] - plain[names[1]][0])
    np.testing.assert_allclose(moved[:len(PROMPTS), 0], np.tile(0.5 * vec, (len(PROMPTS), 1)), atol=1e-4)
    np.testing.assert_allclose(moved[len(PROMPTS):], 0, atol=1e-6)                  # rows="cond"


def test_steering_scale_zero_changes_nothing(merged_model):
    vec = np.ones(merged_model.config.hidden_size, dtype=np.float32)
    plain = merged_model.generate(PROMPTS, **KW)
    with merged_model.steer(vec, 0, 0.0):
        same = merged_model.generate(PROMPTS, **KW)
    np.testing.assert_array_equal(plain.tokens, same.tokens)


def test_patching_the_final_residual_everywhere_gives_the_source_run(model):
    """The heads read only resid_final: replayed at every step, the target decodes the source's tokens."""
    source, target = ["lofi piano", "jazz"], ["rock guitar", "a b"]
    src = model.generate(source, **KW)
    patched = iv.patch(model, source, target, ["decoder.hook_resid_final"], **KW)
    np.testing.assert_array_equal(patched.tokens, src.tokens)
    partial = iv.patch(model, source, target, ["decoder.hook_resid_final"], steps=slice(0, 3), **KW)
    np.testing.assert_array_equal(partial.tokens[:, :, :4], src.tokens[:, :, :4])


def test_a_patching_map_has_a_cell_per_layer_and_window(merged_model):
    metric = lambda g: float(g.codes[:, 0].mean())                                # noqa: E731
    table = iv.patching_map(merged_model, "lofi piano", "rock guitar", metric, layers=[0, 1],
                            steps=[slice(0, 6), slice(6, None)], **KW)
    assert table.shape == (2, 2) and np.isfinite(table).all()
    full = iv.patching_map(merged_model, "lofi piano", "rock guitar", metric, layers=[1], point="resid_post", **KW)
    src, tgt = (metric(merged_model.generate(p, **KW)) for p in ("lofi piano", "rock guitar"))
    assert full[0, 0] == pytest.approx(src - tgt)            # the last layer's output, every step: the source


def test_patching_map_windows_have_their_known_effects(merged_model):
    """Each window is patched on its own (defect planted: every window patched at every step went unseen).
    Patching the last layer's resid_post at every step reproduces the source run (the heads read only it, after
    the final norm); a window after the last step patches nothing (exactly 0, every layer); the first two steps
    move the metric as ``patch`` with those steps does."""
    metric = lambda g: float(g.codes.mean())                                      # noqa: E731
    src, tgt = (metric(merged_model.generate(p, **KW)) for p in ("lofi piano", "rock guitar"))
    assert src != tgt
    table = iv.patching_map(merged_model, "lofi piano", "rock guitar", metric, layers=[0, 1],
                            steps=[slice(None), slice(1000, None), slice(0, 2)], **KW)
    assert table[1, 0] == pytest.approx(src - tgt)
    np.testing.assert_array_equal(table[:, 1], [0.0, 0.0])
    early = metric(iv.patch(merged_model, "lofi piano", "rock guitar", ["decoder.layers.1.hook_resid_post"],
                            steps=slice(0, 2), **KW))
    assert table[1, 2] == pytest.approx(early - tgt)


def test_patching_a_run_into_itself_changes_nothing_without_a_seed(merged_model):
    """Defect: with sampling and no seed, the clean and patched runs drew their own random streams, so a run
    patched with its own activations moved the metric (TransformerLens semantics: exactly 0). One seed is drawn
    and shared."""
    kw = dict(max_new_tokens=12, do_sample=True)
    metric = lambda g: float(g.codes.mean())                                      # noqa: E731
    table = iv.patching_map(merged_model, ["lofi piano", "rock"], ["lofi piano", "rock"], metric, layers=[0, 1],
                            steps=[slice(None), slice(0, 4)], **kw)
    np.testing.assert_array_equal(table, np.zeros((2, 2)))
    patched = iv.patch(merged_model, "jazz", "jazz", ["decoder.layers.0.hook_resid_post"], **kw)
    again = merged_model.generate("jazz", seed=patched.settings["seed"], **kw)
    np.testing.assert_array_equal(patched.tokens, again.tokens)


def test_the_logit_lens_at_the_last_layer_is_the_models_logits(model):
    names = ["decoder.layers.1.hook_resid_post", "decoder.layers.0.hook_resid_post", "decoder.hook_input_ids",
             "guidance.hook_cond_logits"]
    gen, cache = model.run_with_cache(PROMPTS, guidance_scale=3.0, names_filter=names, **KW)
    lens = iv.logit_lens(model, cache, layer=1)                                     # [steps, B, K, V]
    assert lens.shape == cache["guidance.hook_cond_logits"].shape
    assert np.abs(lens - cache["guidance.hook_cond_logits"]).max() <= 1e-4
    early = iv.logit_lens(model, cache, layer=0)
    assert np.abs(early - lens).max() > 1e-3


@pytest.mark.parametrize("call, message", [
    (lambda m: m.steer(np.zeros(3), 0), r"vector has shape \(3,\)"),
    (lambda m: m.steer(np.zeros(32), 7), r"layer=7 is not allowed: layer must be an integer in \[0, 1\]"),
    (lambda m: m.steer(np.zeros(32), 0, rows="uncond"), r"rows='uncond' is not allowed"),
    (lambda m: m.steer(np.zeros(32), 0, point="key"), r"point='key' is not allowed: point must be one of"),
    (lambda m: iv.steering_vector(m, "a", "b", 0, point="attn"), r"point='attn' is not allowed"),
    (lambda m: iv.patch(m, ["a", "b"], ["c"], ["decoder.hook_resid_final"]), "source has 2 prompts and target 1"),
    (lambda m: iv.patch(m, "a", "b", ["decoder.hook_resid_final"], source_kwargs={"max_new_tokens": 20},
                        max_new_tokens=12), "a patch needs runs of the same length"),
    (lambda m: iv.steering_vector(m, "a", "b", layer=-1), r"layer=-1 is not allowed"),
    (lambda m: iv.patch(m, "a", "b", ["decoder.layers.0.hook_key"]), "cannot be patched"),   # the whole cache
])
def test_bad_input_is_refused_before_any_run(merged_model, call, message):
    ran = []
    with merged_model.hooks([("decoder.hook_input_ids", lambda x, h: ran.append(1))]):
        with pytest.raises((ValueError, KeyError), match=message):
            out = call(merged_model)
            with out:                                      # steer checks when the block is entered
                pass
    assert not ran
