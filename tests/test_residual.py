"""The residual stream's hook points against PyTorch forward hooks on transformers' modules, same weights."""

import numpy as np
import pytest
import torch
from helpers import PROMPTS, as_torch
from test_parity import transformers_generate

from mglab.decoding import guidance, residual_step
from mglab.onnx import residual_graph as residual

POINTS = ["resid_pre", "attn_out", "cross_attn_out", "mlp_out", "resid_post", "resid_final"]


def vector(d: int) -> np.ndarray:
    return np.random.default_rng(7).normal(scale=0.7, size=d).astype(np.float32)        # [d]


def hook_name(what: str, layer: int) -> str:
    return "decoder.hook_resid_final" if what == "resid_final" else f"decoder.layers.{layer}.hook_{what}"


def add_to_output(v):
    def fn(module, args, output):
        return (output[0] + v, *output[1:]) if isinstance(output, tuple) else output + v
    return fn


def register(torch_model, what: str, layer: int, vec: np.ndarray):
    """The PyTorch forward hook that adds ``vec`` where ``what`` is: a handle to remove."""
    dec = torch_model.decoder.model.decoder
    v = torch.from_numpy(vec)
    if what == "resid_pre":
        return dec.layers[layer].register_forward_pre_hook(lambda m, args: (args[0] + v, *args[1:]))
    module = {"attn_out": lambda: dec.layers[layer].self_attn, "cross_attn_out": lambda: dec.layers[layer].encoder_attn,
              "mlp_out": lambda: dec.layers[layer].fc2, "resid_post": lambda: dec.layers[layer],
              "resid_final": lambda: dec.layer_norm}[what]()
    return module.register_forward_hook(add_to_output(v))


@pytest.mark.parametrize("guidance_scale", [3.0, 1.0])
@pytest.mark.parametrize("what", POINTS)
def test_an_added_vector_matches_a_forward_hook(model, torch_model, what, guidance_scale):
    """Greedy tokens and audio through the whole pipeline (in-place cache included) equal transformers'
    with a forward hook that adds the same vector to the same module."""
    layer = 1 if what != "resid_pre" else 0
    vec = vector(model.config.hidden_size)
    ids, mask = model.text.tokenize(PROMPTS)
    kw = dict(max_new_tokens=24, do_sample=False, guidance_scale=guidance_scale)
    plain = model.generate(PROMPTS, **kw)
    ours = model.generate(PROMPTS, hooks=[(hook_name(what, layer), lambda x, hook: x + vec)], **kw)
    handle = register(torch_model, what, layer, vec)
    try:
        audio, tokens = transformers_generate(torch_model, ids, mask, **kw)
    finally:
        handle.remove()
    assert not np.array_equal(plain.tokens, tokens)                    # the edit changes the music
    np.testing.assert_array_equal(ours.tokens, tokens)
    assert np.abs(ours.audio - audio).max() <= 1e-4


@pytest.mark.parametrize("what", POINTS)
def test_edited_logits_match_a_forward_hook(model, torch_model, what):
    """Teacher-forced, every step's conditional and unconditional logits within 1e-4."""
    layer = 1 if what != "resid_pre" else 0
    vec = vector(model.config.hidden_size)
    steps = 12
    ref = model.generate(PROMPTS, max_new_tokens=steps, do_sample=True, seed=3, guidance_scale=3.0)
    ids, mask = model.text.tokenize(PROMPTS)
    hidden2, mask2 = guidance.null_condition(model.text.encode(ids, mask), mask)     # [2B, n, d], [2B, n]
    b, k, length = ref.tokens.shape
    hooks = model._hooks.call([(hook_name(what, layer), lambda x, hook: x + vec)])
    cache, ours = None, []
    for t in range(steps):
        x = np.tile(ref.tokens[:, :, t].reshape(-1, 1), (2, 1))                     # [2B*K, 1]
        stepper = residual_step.stepper(hooks, t, model.config.num_layers)
        logits, cache, _ = model.decoder.step(x, hidden2, mask2, cache, resid=stepper)   # [2B*K, V]
        ours.append(logits)
    ours = np.stack(ours, axis=1)                                                    # [2B*K, steps, V]
    dec_ids = np.tile(ref.tokens.reshape(b * k, length)[:, :steps], (2, 1))          # [2B*K, steps]
    handle = register(torch_model, what, layer, vec)
    try:
        with torch.no_grad():
            enc = torch_model.text_encoder(*as_torch(ids, mask)).last_hidden_state
            enc2 = torch.cat([enc, torch.zeros_like(enc)])
            out = torch_model(encoder_outputs=(enc2,), attention_mask=as_torch(mask2)[0],
                              decoder_input_ids=as_torch(dec_ids)[0]).logits.numpy()    # [2B*K, steps, V]
    finally:
        handle.remove()
    assert np.abs(ours - out).max() <= 1e-4


def test_reading_every_point_changes_nothing(model):
    """Read-only hooks on every residual point: the same tokens as no hooks, and the values are the
    stream's (resid_post of layer i is resid_pre of layer i + 1; blocks add up)."""
    seen = {}

    def keep(x, hook):
        seen[hook.name, hook.step] = x.copy()

    kw = dict(max_new_tokens=10, do_sample=True, seed=4, guidance_scale=3.0)
    plain = model.generate(PROMPTS, **kw)
    read = model.generate(PROMPTS, hooks=[(lambda n: n.startswith("decoder.") and "resid" in n or n.endswith("_out"),
                                           keep)], **kw)
    np.testing.assert_array_equal(plain.tokens, read.tokens)
    s = lambda name: seen[name, 5]                                                   # noqa: E731
    np.testing.assert_array_equal(s("decoder.layers.0.hook_resid_post"), s("decoder.layers.1.hook_resid_pre"))
    total = sum(s(f"decoder.layers.1.hook_{b}") for b in ("resid_pre", "attn_out", "cross_attn_out", "mlp_out"))
    np.testing.assert_allclose(total, s("decoder.layers.1.hook_resid_post"), atol=1e-5)
    assert s("decoder.hook_resid_final").shape == (4, 1, model.config.hidden_size)


def test_an_in_place_edit_counts(merged_model):
    vec = vector(merged_model.config.hidden_size)

    def in_place(x, hook):
        x += vec

    kw = dict(max_new_tokens=16, do_sample=False)
    a = merged_model.generate(PROMPTS, hooks=[("decoder.layers.1.hook_mlp_out", in_place)], **kw)
    b = merged_model.generate(PROMPTS, hooks=[("decoder.layers.1.hook_mlp_out", lambda x, h: x + vec)], **kw)
    np.testing.assert_array_equal(a.tokens, b.tokens)


def test_every_variant_has_the_points(tiny_path):
    """The rewrite finds the points in every published variant of the merged decoder (fp16 computes in fp16,
    quantized graphs keep float LayerNorms)."""
    import onnxruntime as ort

    for path in sorted((tiny_path / "onnx").glob("decoder_model_merged*.onnx")):
        for branch in ("then_branch", "else_branch"):
            s = ort.InferenceSession(str(residual.with_residual(path, 2, branch)))
            outputs = {o.name for o in s.get_outputs()}
            assert set(residual.graph_points(2)) <= outputs, (path.name, branch)


def test_the_codec_latent_is_the_sum_of_codebook_vectors(merged_model):
    """codec.hook_latent [B, D, frames] equals codebooks()[k][codes[:, k]] summed over k (read from the graph)."""
    seen = {}
    g = merged_model.generate(PROMPTS, max_new_tokens=20, do_sample=True, seed=2,
                              hooks=[("codec.hook_latent", lambda z, hook: seen.setdefault("z", z.copy()))])
    books = merged_model.codec.codebooks()                                           # [K, size, D]
    expected = sum(books[k][g.codes[:, k]] for k in range(books.shape[0])).transpose(0, 2, 1)   # [B, D, frames]
    np.testing.assert_allclose(seen["z"], expected, atol=1e-6)


def test_an_edited_latent_matches_a_hook_on_the_codec_network(merged_model, torch_model):
    """Adding a vector to the latent equals a forward pre-hook on transformers' EnCodec decoder network."""
    codes = merged_model.generate(PROMPTS, max_new_tokens=20, do_sample=True, seed=2).codes   # [B, K, frames]
    d = merged_model.codec.codebooks().shape[-1]
    vec = np.random.default_rng(1).normal(scale=5.0, size=d).astype(np.float32)   # [D]
    plain = merged_model.codec.decode(codes)
    ours = merged_model.codec.decode(codes, latent_hook=lambda z, channel: z + vec[:, None])
    v = torch.from_numpy(vec)[None, :, None]
    handle = torch_model.audio_encoder.decoder.register_forward_pre_hook(lambda m, args: (args[0] + v,))
    try:
        with torch.no_grad():
            ref = torch_model.audio_encoder.decode(torch.from_numpy(codes)[None], [None]).audio_values.numpy()
    finally:
        handle.remove()
    assert np.abs(ours - plain).max() > 1e-3
    assert np.abs(ours - ref).max() <= 1e-4
