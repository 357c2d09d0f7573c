"""MAGNeT's masked LM on ONNX (mglab.onnx.export_magnet) against audiocraft 1.3.0's ``MagnetLMModel``: logits
within 1e-4 at every stage, for any number of frames, and every weight of the LM in the graph."""

import math

import numpy as np
import pytest
from audiocraft_ref import conditions, shared_draws, tiny_magnet

from mglab.onnx.export_magnet import export_masked_lm

PROMPTS = ["lofi piano", "rock"]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    import onnxruntime as ort

    lm = tiny_magnet()
    path = export_masked_lm(lm, tmp_path_factory.mktemp("magnet") / "masked_lm.onnx")
    return lm, ort.InferenceSession(str(path)), path


def _unpadded(cross):
    """Every text position attended (audiocraft's cross-attention has no mask)."""
    return {"encoder_attention_mask": np.ones(cross.shape[:2], dtype=np.int64)}


def _runner(session, cross):
    """``run(codes, stage) -> logits`` over the graph, for the masked loop."""
    feed = {"encoder_hidden_states": cross.numpy(), **_unpadded(cross)}
    return lambda codes, stage, *_: session.run(None, {"input_ids": codes, "stage": np.array(stage, dtype=np.int64),
                                                   **feed})[0]


def _both(lm, session, stage, frames, seed=0):
    import torch

    tensors, cross = conditions(lm, PROMPTS)
    codes = torch.from_numpy(np.random.default_rng(seed).integers(0, lm.card + 1, (4, lm.num_codebooks, frames)))
    with torch.no_grad():
        ref = lm(codes, [], tensors, stage=stage).numpy()                                      # [2B, K, T, card]
    ours = session.run(None, {"input_ids": codes.numpy(), "encoder_hidden_states": cross.numpy(), **_unpadded(cross),
                              "stage": np.array(stage, dtype=np.int64)})[0]
    return ours, ref


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_logits_equal_audiocraft_at_every_stage(graph, stage):
    """Masked tokens (card) among the codes, conditional and null rows: the stage's mask (full at 0, local
    after) as audiocraft applies it."""
    lm, session, _ = graph
    ours, ref = _both(lm, session, stage, 48)
    assert ours.shape == ref.shape == (4, 4, 48, 64)
    assert np.abs(ours - ref).max() <= 1e-4
    if stage:
        full, _ = _both(lm, session, 0, 48)
        assert np.abs(full - ours).max() > 1e-3                # the local mask changes the logits


def test_the_number_of_frames_is_free(graph):
    """audiocraft's stage masks are made for one length; a model with the same weights made for 24 frames is
    the reference at 24, where the graph traced at another length must agree."""
    lm, session, _ = graph
    short = tiny_magnet(frames=24)
    short.load_state_dict(lm.state_dict())
    for stage in (0, 2):
        ours, ref = _both(short, session, stage, 24, seed=1)
        assert np.abs(ours - ref).max() <= 1e-4


def test_every_weight_of_the_lm_is_in_the_graph(graph):
    """The VampNet port's failure was random embeddings and heads: here every parameter of the LM (its
    conditioner aside, which the text side exports) is an initializer of the graph, value for value."""
    import onnx
    from onnx import numpy_helper

    lm, _, path = graph
    inits = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer]

    def held(value):                                   # as it is, or transposed for a MatMul
        return any(a.shape == v.shape and np.array_equal(a, v) for a in inits for v in (value, value.T))

    for name, p in lm.named_parameters():
        if name.startswith("condition_provider."):
            continue
        value = p.detach().numpy()
        # cross-attention's packed in_proj: the query rows read the codes, the key/value rows the condition
        assert held(value) or any(all(held(b) for b in np.split(value, k)) for k in (2, 3)
                                  if value.ndim == 2 and value.shape[0] % k == 0), (name, value.shape)


@pytest.mark.parametrize("scoring", ["max", "prod"])
@pytest.mark.parametrize("rule", [dict(top_p=0.9, top_k=0), dict(top_p=0.0, top_k=0)], ids=["top-p", "plain"])
@pytest.mark.parametrize("steps", [[4, 3, 2, 2], [6, 1, 3, 2]])
def test_masked_decoding_equals_audiocraft_token_for_token(graph, steps, rule, scoring, monkeypatch):
    """mglab's schedule (mglab.decoding.masked) over the ONNX graph against audiocraft's ``generate`` on the same
    weights, both sampling from the same uniforms (audiocraft's multinomial fed mglab's draws): the spans masked
    again by score (``span_scoring`` 'max' and 'prod'), the guidance and temperature annealing and the sampling
    rule decide the tokens."""
    import torch
    from audiocraft.modules.conditioners import ConditioningAttributes

    from mglab.decoding import masked
    from mglab.decoding.sampling import make_rngs

    lm, session, _ = graph
    attrs = [ConditioningAttributes(text={"description": p}) for p in PROMPTS]
    shared_draws(monkeypatch, make_rngs(7, 2))
    with torch.no_grad():
        ref = lm.generate(conditions=attrs, num_samples=2, max_gen_len=48, use_sampling=True, temp=3.0,
                          max_cfg_coef=10.0, min_cfg_coef=1.0, decoding_steps=steps, span_scoring=scoring,
                          **rule).numpy()
    _, cross = conditions(lm, PROMPTS)
    run = _runner(session, cross)
    ours = masked.generate(run, 2, 48, make_rngs(7, 2), num_codebooks=4, card=64, span_len=3, decoding_steps=steps,
                           temperature=3.0, max_cfg_coef=10.0, min_cfg_coef=1.0, span_scoring=scoring, **rule)
    assert ours.shape == ref.shape == (2, 4, 48)
    np.testing.assert_array_equal(ours, ref)
    assert len(np.unique(ours)) > 8                       # not a degenerate run: many tokens


def use_torch_shares(monkeypatch):
    """mglab's masked shares replaced by torch's float32 ``linspace`` ones (its CPU kernel rounds some of a 10-step
    schedule's differently from the halfway formula mglab uses: the module docstring)."""
    import torch

    from mglab.decoding import masked

    shares = lambda n: [float(x) for x in torch.cos(torch.linspace(0, 1, n) * math.pi * 0.5)]  # noqa: E731
    monkeypatch.setattr(masked, "mask_shares", shares)


@pytest.mark.parametrize("rule", [dict(top_p=0.9, top_k=0), dict(top_p=0.0, top_k=0)], ids=["top-p", "plain"])
@pytest.mark.parametrize("steps", [[4, 3, 2, 2], [6, 1, 3, 2], [10, 5, 5, 5]])
def test_overlapping_spans_equal_audiocraft_token_for_token(graph, steps, rule, monkeypatch):
    """``span_arrangement="stride1"``: frames scored by -log p, the overlapping spans with the highest sums masked
    again by audiocraft's binary search (``_least_probable_span_masking``, its own function the oracle here):
    tokens equal audiocraft's ``generate`` with the same draws (and the same masked shares: torch's linspace
    rounds some of a 10-step schedule's differently, as the default schedule's test says)."""
    import torch
    from audiocraft.modules.conditioners import ConditioningAttributes

    from mglab.decoding import masked
    from mglab.decoding.sampling import make_rngs

    use_torch_shares(monkeypatch)
    lm, session, _ = graph
    attrs = [ConditioningAttributes(text={"description": p}) for p in PROMPTS]
    shared_draws(monkeypatch, make_rngs(3, 2))
    with torch.no_grad():
        ref = lm.generate(conditions=attrs, num_samples=2, max_gen_len=48, use_sampling=True, temp=3.0,
                          max_cfg_coef=10.0, min_cfg_coef=1.0, decoding_steps=steps, span_arrangement="stride1",
                          **rule).numpy()
    _, cross = conditions(lm, PROMPTS)
    ours = masked.generate(_runner(session, cross), 2, 48, make_rngs(3, 2), num_codebooks=4, card=64, span_len=3,
                           decoding_steps=steps, temperature=3.0, max_cfg_coef=10.0, min_cfg_coef=1.0,
                           span_arrangement="stride1", **rule)
    np.testing.assert_array_equal(ours, ref)
    plain = masked.generate(_runner(session, cross), 2, 48, make_rngs(3, 2), num_codebooks=4, card=64, span_len=3,
                            decoding_steps=steps, temperature=3.0, max_cfg_coef=10.0, min_cfg_coef=1.0, **rule)
    assert not np.array_equal(ours, plain)                  # the arrangement decides tokens here


def test_least_probable_spans_is_audiocrafts_search(graph):
    """mglab's cover against audiocraft's ``_least_probable_span_masking`` itself on random frame scores (no
    ties), every target count."""
    import torch

    from mglab.decoding.masked import least_probable_spans

    search = type(graph[0])._least_probable_span_masking

    rng = np.random.default_rng(0)
    for t, span in ((48, 3), (20, 3), (31, 4), (12, 2)):
        holder = type("Holder", (), {"span_len": span, "_construct_spans_mask": type(graph[0])._construct_spans_mask})()
        for count in range(1, t + 1):
            scores = rng.random(t).astype(np.float32) * 10                        # [T]: sums without ties
            ref = search(holder, torch.from_numpy(scores)[None, None], count)
            np.testing.assert_array_equal(least_probable_spans(scores, count, span), ref[0, 0].numpy(),
                                          err_msg=f"T={t} span={span} count={count}")


@pytest.mark.parametrize("arrangement", ["nonoverlap", "stride1"])
@pytest.mark.parametrize("prompt_frames", [12, 13])
def test_a_prompt_continues_as_audiocraft_continues_it(graph, prompt_frames, arrangement, monkeypatch):
    """audiocraft's ``generate(prompt=codes[..., :P])`` is a vamp that keeps the first P frames of every codebook:
    the same tokens, P a multiple of ``span_len`` or not (a span across the prompt's end is drawn, its prompt
    frames put back every iteration). audiocraft shows each stage the prompt's codes above it:
    ``upper_codebooks="given"``."""
    import torch
    from audiocraft.modules.conditioners import ConditioningAttributes

    from mglab.decoding import masked
    from mglab.decoding.sampling import make_rngs

    lm, session, _ = graph
    source = np.random.default_rng(3).integers(0, 64, (2, 4, 48))
    attrs = [ConditioningAttributes(text={"description": p}) for p in PROMPTS]
    shared_draws(monkeypatch, make_rngs(5, 2))
    with torch.no_grad():
        ref = lm.generate(prompt=torch.from_numpy(source[..., :prompt_frames]), conditions=attrs, max_gen_len=48,
                          use_sampling=True, temp=3.0, top_p=0.9, top_k=0, max_cfg_coef=10.0, min_cfg_coef=1.0,
                          decoding_steps=[4, 3, 2, 2], span_arrangement=arrangement).numpy()
    _, cross = conditions(lm, PROMPTS)
    run = _runner(session, cross)
    regenerate = np.broadcast_to(np.arange(48) >= prompt_frames, (2, 4, 48))
    ours = masked.generate(run, 2, 48, make_rngs(5, 2), num_codebooks=4, card=64, span_len=3,
                           decoding_steps=[4, 3, 2, 2], temperature=3.0, top_p=0.9, source=source,
                           regenerate=regenerate, upper_codebooks="given", span_arrangement=arrangement)
    np.testing.assert_array_equal(ours[..., :prompt_frames], source[..., :prompt_frames])
    np.testing.assert_array_equal(ours, ref)


def test_a_vamp_keeps_every_code_it_does_not_regenerate(graph):
    """VampNet's masks on a source: every code outside the mask comes back exactly, the masked ones are drawn
    (not all equal to the source's), and an all-False mask returns the source untouched without a model call."""
    from mglab.decoding import masked, masks
    from mglab.decoding.sampling import make_rngs

    lm, session, _ = graph
    _, cross = conditions(lm, PROMPTS)
    calls = []

    def run(codes, stage, step):
        calls.append(stage)
        return session.run(None, {"input_ids": codes, "encoder_hidden_states": cross.numpy(), **_unpadded(cross),
                                  "stage": np.array(stage, dtype=np.int64)})[0]

    source = np.random.default_rng(4).integers(0, 64, (2, 4, 48))
    kw = dict(num_codebooks=4, card=64, span_len=3, decoding_steps=[3, 2, 2, 2], temperature=3.0, top_p=0.9)
    for mask in (masks.inpaint(0.25, 0.25), masks.periodic(6, 2), masks.codebooks(2),
                 masks.inpaint(0.25, 0.25) & masks.periodic(6, 2), masks.random(0.5, seed=1)):
        regenerate = np.broadcast_to(mask.resolve(4, 48, 48), (2, 4, 48))
        out = masked.generate(run, 2, 48, make_rngs(0, 2), source=source, regenerate=regenerate, **kw)
        np.testing.assert_array_equal(out[~regenerate], source[~regenerate], err_msg=repr(mask))
        assert (out[regenerate] != source[regenerate]).any() and (out < 64).all(), mask
    calls.clear()
    none = np.zeros((2, 4, 48), dtype=bool)
    np.testing.assert_array_equal(masked.generate(run, 2, 48, make_rngs(0, 2), source=source, regenerate=none,
                                                  **kw), source)
    assert calls == []
    only_three = masked.generate(run, 2, 48, make_rngs(0, 2), source=source,
                                 regenerate=np.broadcast_to(masks.codebooks(3).resolve(4, 48, 48), (2, 4, 48)), **kw)
    assert set(calls) == {3} and (only_three[:, :3] == source[:, :3]).all()   # stages with nothing to do: skipped


def test_audiocraft_default_schedule_with_its_own_shares(graph, monkeypatch):
    """audiocraft's default schedule (20, 10, 10, 10) over 50 frames (cut to 48: a multiple of span_len), top-p.
    The masked shares are taken from torch's linspace here: its CPU kernel rounds some of them differently from
    the halfway formula mglab uses (module docstring), which changes a span count where share x spans is an
    integer. With the same shares, every other part of the loop gives audiocraft's tokens."""
    import torch
    from audiocraft.modules.conditioners import ConditioningAttributes

    from mglab.decoding import masked
    from mglab.decoding.sampling import make_rngs

    use_torch_shares(monkeypatch)
    lm, session, _ = graph
    attrs = [ConditioningAttributes(text={"description": p}) for p in PROMPTS]
    shared_draws(monkeypatch, make_rngs(11, 2))
    with torch.no_grad():
        ref = lm.generate(conditions=attrs, num_samples=2, max_gen_len=50, use_sampling=True, temp=3.0, top_p=0.9,
                          top_k=0, max_cfg_coef=10.0, min_cfg_coef=1.0, decoding_steps=[20, 10, 10, 10]).numpy()
    _, cross = conditions(lm, PROMPTS)
    run = _runner(session, cross)
    ours = masked.generate(run, 2, 50, make_rngs(11, 2), num_codebooks=4, card=64, span_len=3,
                           decoding_steps=[20, 10, 10, 10], temperature=3.0, top_p=0.9)
    assert ours.shape == ref.shape == (2, 4, 48)
    np.testing.assert_array_equal(ours, ref)


def test_memory_efficient_checkpoints_export_with_their_stage_mask(graph, tmp_path):
    """MAGNeT's checkpoints ask for memory-efficient attention, whose torch fallback in audiocraft drops the stage
    mask (is_causal=True). The export traces the plain path: the same logits as the model built without it."""
    import onnxruntime as ort
    from audiocraft_ref import TINY

    lm, session, _ = graph
    cfg = {**TINY, "transformer_lm": {**TINY["transformer_lm"], "memory_efficient": True}}
    efficient = tiny_magnet(config=cfg)
    efficient.load_state_dict(lm.state_dict())
    path = export_masked_lm(efficient, tmp_path / "m.onnx")
    assert all(m.memory_efficient for m in efficient.modules() if hasattr(m, "memory_efficient"))   # restored
    for stage in (0, 2):
        ours, ref = _both(lm, ort.InferenceSession(str(path)), stage, 48)
        assert np.abs(ours - ref).max() <= 1e-4


@pytest.mark.parametrize("frames", [48, 300])
def test_unrestricted_subcodes_context_exports_full_attention(graph, tmp_path, frames):
    """subcodes_context -1 (audiocraft: no stage mask at all): every stage's logits are audiocraft's, and those of
    stages > 0 equal stage 0's (the same weights, the same unmasked attention)."""
    import onnxruntime as ort
    from audiocraft_ref import TINY

    lm, _, _ = graph
    cfg = {**TINY, "transformer_lm": {**TINY["transformer_lm"], "subcodes_context": -1}}
    full = tiny_magnet(config=cfg, frames=frames)
    full.load_state_dict(lm.state_dict())
    assert all(m is None for m in full.attn_mask_per_stage)                  # audiocraft's own reading of -1
    session = ort.InferenceSession(str(export_masked_lm(full, tmp_path / "m.onnx")))
    first, _ = _both(full, session, 0, frames)
    for stage in (1, 3):
        ours, ref = _both(full, session, stage, frames)
        assert np.abs(ours - ref).max() <= 1e-4
        assert np.abs(ours - first).max() <= 1e-5


def test_draw_is_the_inverse_cdf():
    """``draw`` (the uniforms both sides share in the parity tests) against a hand-made inverse CDF: weights
    1, 2, 1 split [0, 1) at 1/4 and 3/4."""
    from mglab.decoding import sampling

    class Fixed:
        def __init__(self, u):
            self.u = np.array(u)

        def random(self, n):
            return self.u[:n]

    w = np.tile(np.array([1.0, 2.0, 1.0]), (1, 4, 1))                                 # [1, 4, 3]
    np.testing.assert_array_equal(sampling.draw(w, [Fixed([0.1, 0.3, 0.74, 0.9])]), [[0, 1, 1, 2]])
    np.testing.assert_array_equal(sampling.draw(w * np.array([1, 0, 1]), [Fixed([0.1, 0.49, 0.51, 0.99])]),
                                  [[0, 0, 2, 2]])


@pytest.mark.parametrize("kwargs,message", [
    (dict(decoding_steps=[4, 3, 2]), "decoding_steps=.*one per codebook"),
    (dict(decoding_steps=[4, 0, 2, 2]), "decoding_steps=0 is not allowed"),
    (dict(top_k=65), "top_k=65 is not allowed"),
    (dict(frames=2), "frames=2 is not allowed"),
    (dict(min_cfg_coef=11.0), "min_cfg_coef=11.0 > max_cfg_coef=10.0"),
    (dict(rngs=1), "rngs holds 1 generators for a batch of 2"),
    (dict(span_scoring="mean"), "span_scoring='mean' is not allowed: span_scoring must be 'max' or 'prod'"),
    (dict(span_arrangement="stride2"), "span_arrangement='stride2' is not allowed: span_arrangement must be"),
    (dict(source=np.zeros((2, 4, 30), np.int64), regenerate=np.ones((4, 30), bool)), "source of shape"),
    (dict(source=np.zeros((2, 4, 48), np.int64), regenerate=np.ones((4, 40), bool)), "regenerate of shape"),
    (dict(source=np.full((2, 4, 48), 64), regenerate=np.ones((4, 48), bool)), "source holds codes outside"),
    (dict(source=np.zeros((2, 4, 48), np.int64)), "without regenerate"),
])
def test_bad_masked_arguments_are_refused_before_any_model_call(kwargs, message):
    from mglab.decoding import masked
    from mglab.decoding.sampling import make_rngs

    def run(codes, stage, step):
        raise AssertionError("the model ran")

    kw = dict(num_codebooks=4, card=64, span_len=3, decoding_steps=[4, 3, 2, 2], top_p=0.9)
    kw.update({k: v for k, v in kwargs.items() if k not in ("frames", "rngs")})
    with pytest.raises(ValueError, match=message):
        masked.generate(run, 2, kwargs.get("frames", 48), make_rngs(0, kwargs.get("rngs", 2)), **kw)


def test_mask_builders_check_and_round_as_said():
    from mglab.decoding import masks

    with pytest.raises(ValueError, match=r"period=2.5 is not allowed: period must be an integer >= 1"):
        masks.periodic(2.5)
    with pytest.raises(ValueError, match=r"p=1.5 is not allowed"):
        masks.random(1.5)
    assert masks.inpaint(0.25, 0.25).picture(1, 10, 10) == "0001111000"        # 2.5 frames kept: 3, not 2
    # VampNet's periodic_mask (vampnet/mask.py): width // 2 frames kept either side of each multiple of period
    assert masks.periodic(8, 1).picture(1, 20, 50) == "01111111011111110111"
    assert masks.periodic(8, 2).picture(1, 20, 50) == "00111110001111100011"
    assert masks.periodic(8, 3).picture(1, 20, 50) == masks.periodic(8, 2).picture(1, 20, 50)
    assert masks.periodic(8, 0).picture(1, 20, 50) == masks.periodic(8, 1).picture(1, 20, 50)
    assert (masks.random(0.5, seed=1) & masks.random(0.5, seed=2)).resolve(4, 48, 48).mean() < 0.4


def test_a_mask_draws_itself():
    """In Jupyter a mask shows as a [K, T] picture: one dark cell per regenerated code, in its row and column."""
    import re

    from mglab.decoding import masks

    mask = masks.inpaint(2, 2) & masks.periodic(8, 1)
    svg = mask.svg(4, 300, 50)
    cells = {(int(x) // 2, int(y) // 8) for x, y in re.findall(r'<rect x="(\d+)" y="(\d+)"', svg)}
    assert cells == {(t, k) for k, t in zip(*np.nonzero(mask.resolve(4, 300, 50)))}
    assert "inpaint(2, 2)" in mask._repr_html_() and svg in mask._repr_html_()


def test_the_sampling_rule_is_audiocrafts():
    """audiocraft's ``_generate_stage``: top-p when top_p > 0 (whatever top_k is), else top-k, else plain
    sampling; top-k keeps the k most likely (k = 1: the argmax), top-p the smallest set passing top_p."""
    from mglab.decoding import masked
    from mglab.decoding.sampling import make_rngs

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(16, 0.3), size=(2, 400))                  # [B, T, V]
    order = np.argsort(-probs, axis=-1)
    rank = np.argsort(order, axis=-1)                                         # the rank of each token
    drawn = lambda **kw: masked._sample(probs, rngs=make_rngs(1, 2), **kw)    # noqa: E731
    np.testing.assert_array_equal(drawn(top_k=1, top_p=0.0), probs.argmax(-1))
    top3 = drawn(top_k=3, top_p=0.0)
    assert (np.take_along_axis(rank, top3[..., None], -1) < 3).all()
    assert len(np.unique(np.take_along_axis(rank, top3[..., None], -1))) == 3
    both = drawn(top_k=1, top_p=0.5)                                          # top-p first
    np.testing.assert_array_equal(both, drawn(top_k=0, top_p=0.5))
    sorted_p = np.take_along_axis(probs, order, -1)
    allowed = (np.cumsum(sorted_p, -1) - sorted_p) <= 0.5                    # [B, T, V] by rank
    assert np.take_along_axis(allowed, np.take_along_axis(rank, both[..., None], -1), -1).all()
    assert (both != probs.argmax(-1)).any()


@pytest.mark.parametrize("mask_temperature", [0.0, 4.5])
def test_a_row_with_nothing_to_make_draws_nothing(mask_temperature):
    """A row whose stage is wholly kept (a per-row vamp mask) draws no uniforms and no Gumbels while another row
    decodes that stage: its tokens are the ones it gets alone, whatever its batch."""
    from mglab.decoding import masked
    from mglab.decoding.sampling import make_rngs

    table = np.random.default_rng(0).normal(size=(65, 64)).astype(np.float32)   # [card + 1, card]

    def run(codes, stage, step):                                               # rows independent of each other
        return table[codes] + np.float32(0.1 * step)                           # [R, K, T, card]

    source = np.random.default_rng(1).integers(0, 64, (2, 4, 24))
    regenerate = np.zeros((2, 4, 24), dtype=bool)
    regenerate[0, :, 6:18] = True                                              # row 0: every codebook's middle
    regenerate[1, 3, 6:18] = True                                              # row 1: codebook 3's only
    kw = dict(num_codebooks=4, card=64, span_len=3, decoding_steps=[3, 2, 2, 2], temperature=3.0, top_p=0.9,
              mask_temperature=mask_temperature)
    for order in ([0, 1], [1, 0]):                                             # the idle row after, then before
        both = masked.generate(run, 2, 24, make_rngs([[7, 8][i] for i in order], 2), source=source[order],
                               regenerate=regenerate[order], **kw)
        alone = masked.generate(run, 1, 24, make_rngs([8], 1), source=source[1:], regenerate=regenerate[1:], **kw)
        np.testing.assert_array_equal(both[order.index(1)], alone[0])
        first = masked.generate(run, 1, 24, make_rngs([7], 1), source=source[:1], regenerate=regenerate[:1], **kw)
        np.testing.assert_array_equal(both[order.index(0)], first[0])
        assert (alone[0, 3, 6:18] != source[1, 3, 6:18]).any()                 # it did decode its codebook 3


@pytest.mark.parametrize("upper", ["masked", "given"])
def test_a_stage_sees_the_codebooks_above_it_as_asked(upper):
    """``upper_codebooks="masked"``: every row the model gets holds mask tokens in the codebooks above the stage
    (as MAGNeT's training shows them), the kept codes of the stage and below as the source's; ``"given"``: the
    source's kept codes above the stage too (audiocraft's prompt). ``masked.hook_mask`` shows what the model saw."""
    from mglab.decoding import masked, masks
    from mglab.decoding.sampling import make_rngs

    table = np.random.default_rng(0).normal(size=(65, 64)).astype(np.float32)   # [card + 1, card]
    seen, hooked = [], []

    def run(codes, stage, step):
        seen.append((stage, codes.copy()))
        return table[codes]                                                    # [R, K, T, card]

    def hooks(name, value, step=None, layer=None):
        if name == "masked.hook_mask":
            hooked.append(value.copy())
        return value
    hooks.wants = lambda name: name == "masked.hook_mask"

    source = np.random.default_rng(1).integers(0, 64, (1, 4, 24))
    regenerate = masks.inpaint(0.125, 0.125).resolve(4, 24, 24)[None]          # [1, K, T]: 3 frames kept each side
    masked.generate(run, 1, 24, make_rngs(3, 1), num_codebooks=4, card=64, span_len=3,
                    decoding_steps=[2, 2, 2, 2], source=source, regenerate=regenerate, upper_codebooks=upper,
                    hooks=hooks)
    kept = ~regenerate[0]                                                      # [K, T]
    assert len(seen) == len(hooked) == 8 and all(rows.shape[0] == 2 for _, rows in seen)   # cond + null
    for (stage, rows), mask in zip(seen, hooked):
        np.testing.assert_array_equal(mask[0], rows[0] == 64)
        for k in range(4):
            if k > stage and upper == "masked":
                assert (rows[:, k] == 64).all()
            else:
                np.testing.assert_array_equal(rows[:, k][:, kept[k]], np.repeat(source[:, k][:, kept[k]], 2, axis=0))


@pytest.mark.parametrize("bad", ["Masked", "", "given ", 1, None])
def test_upper_codebooks_is_checked_before_any_work(bad):
    from mglab.decoding import masked
    from mglab.decoding.sampling import make_rngs

    calls = []
    with pytest.raises(ValueError, match="upper_codebooks"):
        masked.generate(lambda *a: calls.append(a), 1, 24, make_rngs(3, 1), num_codebooks=4, card=64, span_len=3,
                        decoding_steps=[2, 2, 2, 2], upper_codebooks=bad)
    assert not calls


def test_upper_codebooks_is_masked_unless_asked():
    """The decoder's default shows a vamp's stage the codebooks above it masked."""
    from mglab.decoding import masked
    from mglab.decoding.sampling import make_rngs

    table = np.random.default_rng(0).normal(size=(65, 64)).astype(np.float32)
    seen = []

    def run(codes, stage, step):
        seen.append((stage, codes.copy()))
        return table[codes]

    source = np.random.default_rng(1).integers(0, 64, (1, 4, 24))
    regenerate = np.zeros((1, 4, 24), dtype=bool)
    regenerate[..., 6:18] = True
    masked.generate(run, 1, 24, make_rngs(3, 1), num_codebooks=4, card=64, span_len=3, decoding_steps=[2, 2, 2, 2],
                    source=source, regenerate=regenerate)
    assert len(seen) == 8 and all((rows[:, stage + 1:] == 64).all() for stage, rows in seen)
