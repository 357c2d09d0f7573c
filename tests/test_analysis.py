"""Metrics, decoding-order patterns, plots, the explorer widget and negative prompts."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mglab.inspect import distributions as metrics  # noqa: E402
from mglab.inspect import plot  # noqa: E402


def test_entropy_kl_agreement():
    uniform = np.zeros((2, 8))
    assert np.allclose(metrics.entropy(uniform), np.log(8))
    peaked = np.array([0.0, -np.inf, -np.inf, -np.inf])
    assert metrics.entropy(peaked) == 0.0
    p, q = np.log([0.5, 0.5]), np.log([0.9, 0.1])
    assert np.isclose(metrics.kl_divergence(p, q), 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1))
    assert metrics.kl_divergence(p, p) == 0.0
    assert metrics.top1_agreement(np.array([[1.0, 2.0], [3.0, 1.0]]), np.array([[0.0, 5.0], [0.0, 1.0]])).tolist() \
        == [1.0, 0.0]
    filtered = np.array([1.0, -np.inf, 0.5])
    assert metrics.tokens_kept(filtered) == 2
    assert np.isclose(metrics.mass_kept(filtered, np.array([1.0, 1.0, 0.5])),
                      (np.e + np.e ** 0.5) / (2 * np.e + np.e ** 0.5))
    usage = metrics.codebook_usage(np.array([[[0, 1, 1], [2, 2, 2]]]), 4)
    assert usage.tolist() == [[1, 2, 0, 0], [0, 0, 3, 0]]


def test_plots_return_axes_and_accept_ax(merged_model):
    import matplotlib.pyplot as plt
    gen, cache = merged_model.run_with_cache("lofi", max_new_tokens=12, seed=0)
    fig, axes = plt.subplots(3, 2)
    drawn = [plot.plot_waveform(gen.audio[0], sr=32000, ax=axes[0, 0]),
             plot.plot_spectrogram(gen.audio[0, 0], sr=32000, ax=axes[0, 1]),
             plot.plot_codes(gen.codes[0], frame_rate=50, ax=axes[1, 0]),
             plot.plot_delay_pattern(gen.tokens[0], pad_token_id=128, step=5, ax=axes[1, 1]),
             plot.plot_logits(cache["guidance.hook_logits"][0, 0], ax=axes[2, 0]),
             plot.plot_attention(cache["decoder.layers.0.hook_cross_attn"][:, 0, 0, 0], ax=axes[2, 1])]
    assert drawn == [axes[0, 0], axes[0, 1], axes[1, 0], axes[1, 1], axes[2, 0], axes[2, 1]]
    ax = plot.plot_entropy(metrics.entropy(cache["guidance.hook_logits"][:, 0]))
    assert len(ax.lines) == 4                                      # one line per codebook
    plt.close("all")


def test_explorer_regenerates_on_release(merged_model):
    from mglab.inspect.explore import explore
    e = explore(merged_model, "lofi piano", max_new_tokens=16)
    assert e.step.max == 15 and e.generation.settings["guidance_scale"] == 3.0
    before = e.generation.tokens.copy()
    e.seed.value = 7
    assert e.generation.settings["seed"] == 7 and not np.array_equal(before, e.generation.tokens)
    e.guidance.value = 1.0
    assert "guidance.hook_uncond_logits" not in e.cache
    assert e.status.value.startswith("generated: guidance 1, temperature 1, seed 7")
    e.step.value = 9
    top = e.top_tokens(9)                       # recomputed here from the guided logits of step 9
    logits = e.cache["guidance.hook_logits"][9, 0]                                  # [K, vocab]
    assert [t for t, _ in top[0]] == list(np.argsort(-logits[0])[:3])
    assert 'data-step="9"' in e.table.value and f"{top[1][0][0]} ({top[1][0][1]:.2f})" in e.table.value
    assert e.audio_so_far(9).shape == (1, (9 - 3 + 1) * 640)
    assert e.audio_so_far(1).shape[-1] == 0


def test_negative_prompt_replaces_the_null_condition(merged_model):
    names = ["guidance.hook_uncond_logits", "text_encoder.hook_hidden"]
    _, plain = merged_model.run_with_cache("lofi piano", names_filter=names, max_new_tokens=10, seed=0)
    _, neg = merged_model.run_with_cache("lofi piano", names_filter=names, max_new_tokens=10, seed=0,
                                         negative_prompt="rock")
    _, rock = merged_model.run_with_cache("rock", names_filter=["guidance.hook_cond_logits"], guidance_scale=1.0,
                                          max_new_tokens=10, seed=0, do_sample=False)
    assert not np.allclose(plain["guidance.hook_uncond_logits"], neg["guidance.hook_uncond_logits"])
    # step 0 sees the same start tokens: the unconditional branch is now the model conditioned on "rock"
    np.testing.assert_allclose(neg["guidance.hook_uncond_logits"][0], rock["guidance.hook_cond_logits"][0],
                               atol=1e-5)
    with pytest.raises(ValueError, match="negative_prompt needs guidance"):
        merged_model.generate("a", negative_prompt="b", guidance_scale=1.0)
    with pytest.raises(ValueError, match="negative_prompt has 3 entries"):
        merged_model.generate(["a", "b"], negative_prompt=["x", "y", "z"])
