"""A masked (MAGNeT) model end to end: ``python -m mglab export`` of an audiocraft checkpoint pair, ``mglab.load``,
``generate`` and ``vamp``, against audiocraft 1.3.0 running the very checkpoint committed under
``data/models/tiny-magnet/audiocraft`` (text condition within 1e-4, tokens equal under shared draws), and
transformers' EnCodec for the codec graphs."""

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from audiocraft_ref import shared_draws

import mglab
from mglab.decoding.sampling import make_rngs
from mglab.onnx import magnet_checkpoint

TINY = Path(__file__).resolve().parents[1] / "data" / "models" / "tiny-magnet"
CKPT = TINY / "audiocraft"
STEPS = [4, 3, 2, 2]


@pytest.fixture(scope="module")
def model():
    return mglab.load(TINY)


@pytest.fixture(scope="module")
def reference():
    """audiocraft's LM from the committed checkpoint; its stage masks made for 48 frames (its custom attention
    runs only at that length), the weights the same."""
    pkg, _ = magnet_checkpoint.read(CKPT)
    lm, _ = magnet_checkpoint.build_lm(CKPT, pkg, frame_rate=48)
    return lm, pkg


def _attrs(prompts):
    from audiocraft.modules.conditioners import ConditioningAttributes

    return [ConditioningAttributes(text={"description": p}) for p in prompts]


def test_the_export_is_the_committed_layout_and_uses_every_tensor(tmp_path, reference):
    """``python -m mglab export`` of the committed checkpoint rewrites the committed graphs bit for bit (the one
    path from checkpoint to ONNX), and every tensor of the checkpoint is an initializer of a graph (the VampNet
    port's failure: weights never transferred)."""
    import onnx
    from onnx import numpy_helper

    from mglab.cli import main

    out = tmp_path / "out"
    assert main(["export", str(CKPT), str(out)]) == 0                      # fp32 and q8, as committed
    written = sorted(p.name for p in (out / "onnx").iterdir())
    assert written == sorted(p.name for p in (TINY / "onnx").iterdir()) and len(written) == 7
    for name in written:                                                   # graphs and weights, every variant
        assert (out / "onnx" / name).read_bytes() == (TINY / "onnx" / name).read_bytes(), name
    assert (out / "config.json").read_text() == (TINY / "config.json").read_text()
    inits = [numpy_helper.to_array(t) for n in ("masked_lm", "text_encoder")
             for t in onnx.load(TINY / "onnx" / f"{n}.onnx").graph.initializer]

    def held(value):                                   # as it is, or transposed for a MatMul
        return any(a.shape == v.shape and np.array_equal(a, v) for a in inits for v in (value, value.T))

    _, pkg = reference
    for name, tensor in pkg["best_state"].items():
        value = tensor.numpy()
        assert held(value) or any(all(held(b) for b in np.split(value, k)) for k in (2, 3)
                                  if value.ndim == 2 and value.shape[0] % k == 0), name
    conditioner = reference[0].condition_provider.conditioners["description"]
    for name, p in conditioner.t5.named_parameters():            # the frozen T5 (not in best_state)
        assert held(p.detach().numpy()), name


def test_config_says_masked_with_magnets_defaults(model):
    c = model.config
    assert c["decoding"] == "masked" and c["card"] == 128 and c["num_codebooks"] == 4 and c["span_len"] == 3
    assert c["generation"] == {"decoding_steps": [20, 10, 10, 10], "temperature": 3.0, "top_k": 0, "top_p": 0.9,
                               "max_cfg_coef": 10.0, "min_cfg_coef": 1.0}
    assert isinstance(model, mglab.MaskedMusicGen) and "masked.hook_logits" in model.hook_names()


def test_text_condition_equals_audiocraft(model, reference):
    """The text graph (T5, output_proj, times the mask) against audiocraft's T5Conditioner on the same prompts."""
    import torch

    lm, _ = reference
    prompts = ["lofi piano with rain", "rock"]
    cond = lm.condition_provider.conditioners["description"]
    with torch.no_grad():
        inputs = cond.tokenize(prompts)
        ref, ref_mask = cond(inputs)
    ids, mask = model.text.tokenize(prompts)
    np.testing.assert_array_equal(ids, inputs["input_ids"].numpy())
    np.testing.assert_array_equal(mask, ref_mask.numpy())
    assert np.abs(model.text.encode(ids, mask) - ref.numpy()).max() <= 1e-4


@pytest.mark.parametrize("rule", [dict(top_p=0.9, top_k=0), dict(top_p=0.0, top_k=0)], ids=["top-p", "plain"])
def test_generate_equals_audiocraft_token_for_token(model, reference, rule, monkeypatch):
    """``model.generate`` against audiocraft's ``lm.generate`` on the committed checkpoint, both sampling from the
    same uniforms: text condition, guidance and null rows, the schedule, sampling, all of it. Two prompts of one
    token length (audiocraft attends to padding; mglab masks it: equal for prompts that need none)."""
    import torch

    lm, _ = reference
    prompts = ["lofi piano", "rock drums"]
    ids, _ = model.text.tokenize(prompts)
    assert (ids != 0).all()                                       # no padding: audiocraft's attention is ours
    shared_draws(monkeypatch, make_rngs([3, 4], 2))
    with torch.no_grad():
        ref = lm.generate(conditions=_attrs(prompts), num_samples=2, max_gen_len=50, use_sampling=True, temp=3.0,
                          max_cfg_coef=10.0, min_cfg_coef=1.0, decoding_steps=STEPS, **rule).numpy()
    gen = model.generate(prompts, duration=1.0, decoding_steps=STEPS, seed=[3, 4], temperature=3.0, **rule)
    assert gen.codes.shape == ref.shape == (2, 4, 48)
    np.testing.assert_array_equal(gen.codes, ref)
    assert len(np.unique(gen.codes)) > 20


def test_a_padded_prompt_decodes_as_it_does_alone(model, reference):
    """mglab masks a prompt's padding in cross-attention, so a prompt gives the same tokens alone and beside a
    longer one; the padded row's logits equal audiocraft's for the prompt alone (no padding there)."""
    import torch

    lm, _ = reference
    short, long = "rock", "lofi piano with rain and a slow beat"
    pair = model.generate([short, long], seed=[1, 2], decoding_steps=STEPS)
    alone = model.generate(short, seed=1, decoding_steps=STEPS)
    np.testing.assert_array_equal(pair.codes[:1], alone.codes)
    hidden, mask, _ = model._condition([short, long], 2, mglab.masked_model.masked.no_hooks)
    codes = np.random.default_rng(0).integers(0, 129, (4, 4, 48))
    ours = model.lm.logits(codes, hidden, mask, stage=1)
    tensors = lm.condition_provider(lm.condition_provider.tokenize(_attrs([short])))
    with torch.no_grad():
        ref = lm(torch.from_numpy(codes[:1]), [], tensors, stage=1).numpy()
    assert mask[0].sum() < mask.shape[1] and np.abs(ours[:1] - ref).max() <= 1e-4


def test_codec_graphs_equal_transformers_encodec(model):
    """encodec_decode / encodec_encode against transformers' EncodecModel at two lengths and a batch of two."""
    import torch
    from transformers import EncodecModel

    encodec = EncodecModel.from_pretrained(str(CKPT / "encodec")).eval()
    for frames in (7, 31):
        codes = np.random.default_rng(frames).integers(0, 128, (2, 4, frames))
        with torch.no_grad():
            ref = encodec.decode(torch.from_numpy(codes)[None], [None]).audio_values.numpy()
        audio = model.codec.decode(codes)
        assert audio.shape == ref.shape and np.abs(audio - ref).max() <= 1e-4
        with torch.no_grad():
            ref_codes = encodec.encode(torch.from_numpy(ref)).audio_codes[0].numpy()
        np.testing.assert_array_equal(model.codec.encode(ref), ref_codes)


def test_same_seed_same_tokens_with_hooks_pickled_and_in_q8(model):
    a = model.generate("lofi piano", seed=5, decoding_steps=STEPS)
    gen, cache = model.run_with_cache("lofi piano", seed=5, decoding_steps=STEPS)
    np.testing.assert_array_equal(a.codes, gen.codes)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).generate("lofi piano", seed=5,
                                                                            decoding_steps=STEPS).codes, a.codes)
    assert (model.generate("lofi piano", seed=6, decoding_steps=STEPS).codes != a.codes).any()
    q8 = mglab.load(TINY, dtype="q8")
    assert q8.paths["masked_lm"].name == "masked_lm_quantized.onnx"
    assert q8.generate("lofi piano", seed=5, decoding_steps=STEPS).codes.shape == (1, 4, 48)


def test_hooks_see_each_iteration_and_edits_count(model):
    """``masked.hook_mask`` shows MAGNeT's schedule: at iteration i of a stage of n over 16 spans,
    max(1, int(cos(pi/2 * i/(n-1)) * 16)) spans of the stage's codebook are masked, the higher codebooks all;
    an edit to ``masked.hook_logits`` (a token banned) is obeyed."""
    _, cache = model.run_with_cache("lofi piano", seed=0, decoding_steps=STEPS)
    seen = cache["masked.hook_mask"]                                                   # [iterations, B, K, T]
    assert seen.shape == (sum(STEPS), 1, 4, 48) and cache["masked.hook_logits"].shape == (sum(STEPS), 1, 4, 48, 128)
    i = 0
    for stage, n in enumerate(STEPS):
        for it in range(n):
            share = np.cos(np.pi / 2 * it / (n - 1)) if n > 1 else 1.0
            assert seen[i, 0, stage].sum() == 3 * max(1, int(share * 16 + 1e-6)), (stage, it)
            assert seen[i, 0, stage + 1:].all() and not seen[i, 0, :stage].any()
            i += 1

    calls = []
    with model.hooks([("masked.hook_mask", lambda v, hook: calls.append((hook.step, hook.layer)))]):
        model.generate("lofi piano", seed=0, decoding_steps=STEPS)
    assert calls == [(i, stage) for i, stage in enumerate(np.repeat(np.arange(4), STEPS))]

    def ban(logits, hook):
        logits[..., 7] = -np.inf

    with model.hooks([("masked.hook_logits", ban)]):
        banned = model.generate("lofi piano", seed=0, decoding_steps=STEPS)
    assert not (banned.codes == 7).any()
    assert (model.generate("lofi piano", seed=0, decoding_steps=STEPS).codes == 7).any()

    def force(codes, hook):                                # after stage 0's last iteration: codebook 0 set
        if hook.step == STEPS[0] - 1:
            codes[:, 0] = 5
    with model.hooks([("masked.hook_tokens", force)]):
        forced = model.generate("lofi piano", seed=0, decoding_steps=STEPS)
    assert (forced.codes[:, 0] == 5).all() and (forced.codes[:, 1:] != 5).any()


def test_vamp_keeps_what_the_mask_keeps_from_codes_audio_and_generations(model):
    source = model.generate(["lofi piano", "rock"], seed=[0, 1], decoding_steps=STEPS)
    for mask in (mglab.masks.inpaint(0.2, 0.2), mglab.masks.periodic(8, 2) | mglab.masks.codebooks(2)):
        keep = ~mask.resolve(4, 48, 50)
        out = model.vamp(source, mask, decoding_steps=STEPS, seed=[2, 3])
        assert out.prompts == source.prompts
        np.testing.assert_array_equal(out.codes[:, keep], source.codes[:, keep])
        assert (out.codes[:, ~keep] != source.codes[:, ~keep]).any()
    codes = model.codec.encode(source.audio)                                           # audio: encoded first
    out = model.vamp(source.audio, mglab.masks.inpaint(0.2, 0.2), decoding_steps=STEPS)
    keep = ~mglab.masks.inpaint(0.2, 0.2).resolve(4, codes.shape[-1], 50)
    np.testing.assert_array_equal(out.codes[:, keep], codes[:, keep])
    assert out.prompts == ["", ""]                                                     # no prompt: unconditional
    with pytest.warns(UserWarning, match="regenerates nothing"):
        same = model.vamp(source, np.zeros((4, 48), dtype=bool))
    assert same is source


@pytest.mark.parametrize("call, message", [
    (lambda m: m.generate("x", duration=1.5), "duration"),
    (lambda m: m.generate("x", decoding_steps=[2, 2]), "decoding_steps"),
    (lambda m: m.generate("x", decoding_steps=[2, 0, 2, 2]), "decoding_steps"),
    (lambda m: m.generate("x", span_len=0), "span_len"),
    (lambda m: m.generate("x", duration=0.02, span_len=3), "span_len"),
    (lambda m: m.generate("x", min_cfg_coef=5, max_cfg_coef=2), "min_cfg_coef"),
    (lambda m: m.generate("x", guidance_scale=3.0), "autoregressive"),
    (lambda m: m.generate("x", top_k=129), "top_k"),
    (lambda m: m.vamp(np.zeros((4, 48), dtype=np.int64), np.ones((4, 47), dtype=bool)), "does not fit"),
    (lambda m: m.vamp(np.zeros((4, 48), dtype=np.int64), np.ones((4, 48))), "bool"),
    (lambda m: m.vamp(np.full((4, 48), 128), np.ones((4, 48), dtype=bool)), "outside"),
    (lambda m: m.vamp(np.zeros((4, 48), dtype=np.int64), np.ones((4, 48), dtype=bool), duration=1.0), "duration"),
    (lambda m: mglab.load(TINY, kv_cache="concat"), "kv_cache"),
    (lambda m: m.generate("x", duration=0.01), "duration"),
    (lambda m: m.generate("x", mask_temperature=-1.0), "mask_temperature"),
    (lambda m: m.generate("x", mask_temperature=float("inf")), "mask_temperature"),
    (lambda m: m.generate("x", span_scoring="min"), "span_scoring='min' is not allowed: span_scoring must be 'max'"),
    (lambda m: m.generate("x", span_arrangement="stride"), "span_arrangement='stride' is not allowed"),
    (lambda m: m.vamp(np.zeros((4, 51), dtype=np.int64), np.ones((4, 51), dtype=bool)), "segment"),
    (lambda m: m.vamp(np.zeros(32000, np.float32), np.ones((4, 47), dtype=bool)), "does not fit"),
    (lambda m: m.vamp(np.zeros(32000, np.float32), mglab.masks.inpaint(0.2, 0.2), decoding_steps=[1, 0, 1, 1]),
     "decoding_steps"),
    (lambda m: m.vamp(np.zeros(40000, np.float32), mglab.masks.inpaint(0.2, 0.2)), "segment"),
    (lambda m: m.vamp(mglab.Generation(audio=np.zeros((1, 1, 640)), sample_rate=32000, tokens=None, prompts=["x"],
                                       codes=np.full((1, 4, 48), 200)), mglab.masks.inpaint(0.2, 0.2)), "outside"),
    (lambda m: m.vamp(mglab.Generation(audio=np.zeros((1, 1, 640)), sample_rate=32000, tokens=None, prompts=["x"],
                                       codes=np.zeros((1, 3, 48), np.int64)), mglab.masks.inpaint(0.2, 0.2)), "shape"),
])
def test_bad_input_is_refused_before_any_model_call(model, call, message, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the model ran")

    for part, name in ((model.lm, "logits"), (model.text, "encode"), (model.codec, "encode")):
        monkeypatch.setattr(part, name, never)
    with pytest.raises((TypeError, ValueError), match=message):
        call(model)


def test_vamp_on_an_autoregressive_model_says_what_to_do():
    musicgen = mglab.load(TINY.parent / "tiny-musicgen")
    with pytest.raises(TypeError, match="masked"):
        musicgen.vamp(np.zeros((4, 10), dtype=np.int64), mglab.masks.inpaint(0.1, 0.1))


def test_a_mask_over_the_last_partial_span_warns(model):
    source = np.random.default_rng(0).integers(0, 128, (1, 4, 50))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = model.vamp(source, np.ones((4, 50), dtype=bool), decoding_steps=STEPS)
    assert any("whole span" in str(w.message) for w in caught)
    np.testing.assert_array_equal(out.codes[..., 48:], source[..., 48:])


def test_residual_stream_points_equal_pytorch_hooks_and_edits_act(model, reference):
    """The masked LM's residual points (the MusicGen rewrite applies to it: pre-norm layers, 3 norms each) read
    what PyTorch forward hooks on audiocraft's layers read, and an edit there (a vector added to layer 0's
    output, in both) gives the same guided logits."""
    import torch

    lm, _ = reference
    prompt, vector = "lofi piano", np.random.default_rng(1).normal(size=32).astype(np.float32)
    _, cache = model.run_with_cache(prompt, seed=0, decoding_steps=STEPS, steps=[0],
                                    names_filter=["decoder.layers.1.hook_resid_post", "masked.hook_logits"])
    tensors = lm.condition_provider(lm.condition_provider.tokenize(_attrs([prompt]) + _attrs([None])))
    codes = torch.full((2, 4, 48), 128)                                     # iteration 0: everything masked
    seen = {}
    hook = lm.transformer.layers[1].register_forward_hook(lambda m, i, o: seen.setdefault("post", o.detach()))
    with torch.no_grad():
        plain = lm(codes, [], tensors, stage=0).numpy()                      # [2, K, T, card]
    hook.remove()
    assert np.abs(cache["decoder.layers.1.hook_resid_post"][0] - seen["post"].numpy()).max() <= 1e-4
    guided = lambda x: x[1] + (x[0] - x[1]) * 10.0                          # noqa: E731  share 1: max_cfg_coef
    assert np.abs(cache["masked.hook_logits"][0, 0] - guided(plain)).max() <= 1e-3

    add = lm.transformer.layers[0].register_forward_hook(lambda m, i, o: o + torch.from_numpy(vector))
    with torch.no_grad():
        edited = lm(codes, [], tensors, stage=0).numpy()
    add.remove()
    _, steered = model.run_with_cache(prompt, seed=0, decoding_steps=STEPS, steps=[0],
                                      names_filter=["masked.hook_logits"],
                                      hooks=[("decoder.layers.0.hook_resid_post", lambda v, h: v + vector)])
    assert np.abs(steered["masked.hook_logits"][0, 0] - guided(edited)).max() <= 1e-3
    assert np.abs(guided(edited) - guided(plain)).max() > 1e-2                # the edit matters


def test_no_text_is_the_null_condition_however_it_comes(model):
    """audiocraft's empty text is no text: an unconditional vamp, a re-vamp of its result (prompts [""]) and a
    prompt whose mask a hook zeroes all decode as the null condition alone (unguided), token for token."""
    everything = np.ones((4, 48), dtype=bool)
    start = np.zeros((1, 4, 48), dtype=np.int64)
    alone = model.vamp(start, everything, seed=3, decoding_steps=STEPS)                  # no prompt at all
    assert alone.prompts == [""]
    again = model.vamp(alone, everything, seed=3, decoding_steps=STEPS)                  # prompts [""]: no text
    np.testing.assert_array_equal(again.codes, alone.codes)
    with model.hooks([("text_encoder.hook_mask", lambda m, hook: np.zeros_like(m))]):
        muted = model.generate("lofi piano", seed=3, decoding_steps=STEPS)
    np.testing.assert_array_equal(muted.codes, alone.codes)
    assert (model.generate("lofi piano", seed=3, decoding_steps=STEPS).codes != alone.codes).any()


def test_duration_counts_frames_as_audiocraft():
    """``int(duration * frame_rate)`` frames (audiocraft's genmodel), cut to whole spans: 0.35 s = 17 -> 15."""
    model = mglab.load(TINY)
    assert model.generate("x", duration=0.35, decoding_steps=[2, 1, 1, 1], seed=0).codes.shape == (1, 4, 15)


@pytest.mark.parametrize("scoring", ["max", "prod"])
def test_mask_temperature_perturbs_confidences_as_gumbel_noise_does(scoring):
    """Gumbel noise of scale tau on two log-confidences ``c1, c2``: span 2 is redrawn before span 1 (its noisy
    confidence lower) with probability ``sigmoid((c1 - c2) / tau)`` (the difference of two Gumbels is logistic),
    the oracle here; rows draw from their own generators; spans not drawn keep their score. A span's
    log-confidence is its surest token's log p (``"max"``: the score is 1 - p) or the sum of its tokens' log p
    (``"prod"``: here two tokens of p each, the score -2 log p)."""
    from mglab.decoding.masked import noisy_scores

    rows, p1, p2, tau = 20000, 0.9, 0.5, 0.7
    n = 1 if scoring == "max" else 2
    score = (lambda p: 1 - p) if scoring == "max" else (lambda p: -2 * np.log(p))     # noqa: E731
    scores = np.tile(np.float32([score(p1), score(p2), 0.3]), (rows, 1))       # [rows, 3]
    drawn = np.tile([True, True, False], (rows, 1))
    noisy = noisy_scores(scores, drawn, tau, make_rngs(list(range(rows)), rows), scoring)
    share = float((noisy[:, 1] > noisy[:, 0]).mean())
    oracle = 1 / (1 + np.exp(-n * (np.log(p1) - np.log(p2)) / tau))
    assert share == pytest.approx(oracle, abs=0.015)
    assert np.all(noisy[:, 2] == np.float32(0.3))
    one = noisy_scores(scores[3:4], drawn[3:4], tau, make_rngs([3], 1), scoring)   # row 3 alone: the same draw
    assert np.array_equal(one[0], noisy[3])


@pytest.mark.parametrize("scoring", ["max", "prod", "stride1"])
def test_span_scores_are_the_tempered_draws_probabilities(model, scoring):
    """``masked.hook_scores`` after each iteration, recomputed from what the hooks saw: the guided logits over the
    annealed temperature ``3 * (n - 1 - i) / n`` (floor 0.01), softmax, the probability of each drawn token, and
    per drawn span ``1 - max p`` ("max") or ``sum -log p`` ("prod"), per drawn frame ``-log p``
    (``span_arrangement="stride1"``); KEEP for a span or frame not drawn."""
    from mglab.decoding.masked import KEEP

    rule = dict(span_arrangement="stride1") if scoring == "stride1" else dict(span_scoring=scoring)
    unit = 1 if scoring == "stride1" else 3
    _, cache = model.run_with_cache(["lofi piano"], seed=4, decoding_steps=STEPS, temperature=3.0,
                                    mask_temperature=0.0, **rule)
    step = 0
    for stage, n in enumerate(STEPS):
        for i in range(n):
            temp = max(3.0 * (n - 1 - i) / n, 0.01)
            logits = cache["masked.hook_logits"][step, 0, stage].astype(np.float64) / temp    # [T, V]
            p = np.exp(logits - logits.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            tokens = cache["masked.hook_tokens"][step, 0, stage]                            # [T]
            picked = np.take_along_axis(p, tokens[:, None], axis=-1)[:, 0].reshape(-1, unit)  # [spans, unit]
            want = 1 - picked.max(-1) if scoring == "max" else -np.log(picked).sum(-1)
            drawn = cache["masked.hook_mask"][step, 0, stage].reshape(-1, unit).all(-1)    # [spans]
            want = np.where(drawn, want, KEEP)
            np.testing.assert_allclose(cache["masked.hook_scores"][step, 0], want, rtol=1e-4, atol=1e-5)
            step += 1


def test_the_mask_noise_is_given_the_span_rule(model, monkeypatch):
    """The noise on which spans are redrawn reads each span's confidence by the rule its score was made with."""
    from mglab.decoding import masked

    seen, noisy = [], masked.noisy_scores

    def spy(scores, drawn, tau, rngs, span_scoring="max"):
        seen.append(span_scoring)
        return noisy(scores, drawn, tau, rngs, span_scoring)

    monkeypatch.setattr(masked, "noisy_scores", spy)
    model.generate("a", seed=1, decoding_steps=STEPS, mask_temperature=2.0, span_scoring="prod")
    assert seen and set(seen) == {"prod"}
    seen.clear()                                            # stride1 scores frames by -log p whatever the rule
    model.generate("a", seed=1, decoding_steps=STEPS, mask_temperature=2.0, span_scoring="max",
                   span_arrangement="stride1")
    assert seen and set(seen) == {"prod"}


@pytest.mark.parametrize("name, default, other", [("span_scoring", "max", "prod"),
                                                  ("span_arrangement", "nonoverlap", "stride1")])
def test_span_rules_default_from_the_config(model, monkeypatch, name, default, other):
    """``generation.span_scoring`` / ``span_arrangement`` is the default (MAGNeT's where the config names none);
    the other choice decodes other tokens, and a config that names it decodes as the argument does."""
    assert name not in model.config["generation"]
    plain = model.generate(["a", "b"], seed=[1, 2], decoding_steps=STEPS)
    changed = model.generate(["a", "b"], seed=[1, 2], decoding_steps=STEPS, **{name: other})
    assert plain.settings[name] == default and changed.settings[name] == other
    assert not np.array_equal(plain.codes, changed.codes)
    monkeypatch.setitem(model.config["generation"], name, other)
    again = model.generate(["a", "b"], seed=[1, 2], decoding_steps=STEPS)
    assert again.settings[name] == other and np.array_equal(again.codes, changed.codes)


def test_mask_temperature_default_comes_from_the_config_and_keeps_seeds(model, monkeypatch):
    """The model's ``generation.mask_temperature`` is the default (0 where the config names none: audiocraft's
    MAGNeT, whose parity tests run without it); a seed gives the same tokens alone and in a batch with it on."""
    assert "mask_temperature" not in model.config["generation"]
    plain = model.generate(["a", "b"], seed=[1, 2], decoding_steps=STEPS)
    noisy = model.generate(["a", "b"], seed=[1, 2], decoding_steps=STEPS, mask_temperature=5.0)
    assert plain.settings["mask_temperature"] == 0.0 and noisy.settings["mask_temperature"] == 5.0
    assert not np.array_equal(plain.codes, noisy.codes)
    alone = model.generate(["b"], seed=[2], decoding_steps=STEPS, mask_temperature=5.0)
    assert np.array_equal(alone.codes[0], noisy.codes[1])
    monkeypatch.setitem(model.config["generation"], "mask_temperature", 5.0)
    assert np.array_equal(model.generate(["a", "b"], seed=[1, 2], decoding_steps=STEPS).codes, noisy.codes)


def test_a_vamp_takes_the_configs_vamp_defaults_over_generation(model, monkeypatch):
    """``config["vamp"]`` is the vamp's defaults over ``config["generation"]``: a vamp without a temperature
    decodes as one given that temperature, generation from nothing keeps the generation block's, a given argument
    wins, and a block naming an argument masked models do not take, or an illegal value, is refused."""
    source = np.random.default_rng(0).integers(0, model.config["card"], (1, 4, 24))
    regenerate = np.zeros((4, 24), dtype=bool)
    regenerate[:, 6:18] = True
    kw = dict(seed=3, decoding_steps=STEPS)
    plain = model.vamp(source, regenerate, "a", **kw)
    cold = model.vamp(source, regenerate, "a", temperature=0.5, **kw)
    assert plain.settings["temperature"] == model.config["generation"]["temperature"] != 0.5
    assert not np.array_equal(plain.codes, cold.codes)
    monkeypatch.setitem(model.config, "vamp", {"temperature": 0.5})
    now = model.vamp(source, regenerate, "a", **kw)
    assert now.settings["temperature"] == 0.5 and np.array_equal(now.codes, cold.codes)
    assert model.vamp(source, regenerate, "a", temperature=3.0, **kw).settings["temperature"] == 3.0
    assert model.generate("a", **kw).settings["temperature"] == model.config["generation"]["temperature"]
    assert plain.settings["upper_codebooks"] == "masked"
    assert model.vamp(source, regenerate, "a", upper_codebooks="given", **kw).settings["upper_codebooks"] == "given"
    for bad in ("Masked", "", 1):
        with pytest.raises(ValueError, match="upper_codebooks"):
            model.vamp(source, regenerate, "a", upper_codebooks=bad, **kw)
    generation = json.dumps(model.config["generation"])
    model.vamp(source, regenerate, "a", **kw)
    assert json.dumps(model.config["generation"]) == generation                # the block is not written into it
    monkeypatch.setitem(model.config, "vamp", {"upper_codebooks": "given"})
    given = model.vamp(source, regenerate, "a", **kw)
    assert given.settings["upper_codebooks"] == "given"
    assert np.array_equal(given.codes, model.vamp(source, regenerate, "a", upper_codebooks="given", **kw).codes)
    monkeypatch.setitem(model.config, "vamp", {"guidance_scale": 3.0})
    with pytest.raises(TypeError, match="guidance_scale"):
        model.vamp(source, regenerate, "a", **kw)
    for fixed in ({"duration": 1.0}, {"span_len": 2}, {"seed": 4}):
        monkeypatch.setitem(model.config, "vamp", fixed)
        with pytest.raises(ValueError, match=next(iter(fixed))):
            model.vamp(source, regenerate, "a", **kw)
    for bad, error in (({"temperature": -1.0}, ValueError), ({"guidance_scale": 3.0}, TypeError),
                       ({"seed": 4}, ValueError)):                                 # refused at load too
        with pytest.raises(error, match=next(iter(bad))):
            type(model)({**model.config, "vamp": bad}, model.text, model.lm, model.codec)
    block = {**model.config, "vamp": {"temperature": 0.5}}
    assert type(model)(block, model.text, model.lm, model.codec).info()["vamp"] == {"temperature": 0.5}
    monkeypatch.setitem(model.config, "vamp", {"temperature": -1.0})
    with pytest.raises(ValueError, match="temperature"):
        model.vamp(source, regenerate, "a", **kw)


class _Draws:
    """A row's generator with uniforms 0 (plain sampling draws token 0) and given Gumbel values."""

    def __init__(self, g):
        self.g = np.asarray(g, dtype=float)

    def random(self, size):
        return np.zeros(size)

    def gumbel(self, size):
        return self.g[:size].copy()


@pytest.mark.parametrize("mask_temperature, redrawn", [(0.0, 0), (2.0, 1), (100.0, 2)])
def test_mask_temperature_is_annealed_with_the_iterations_left(mask_temperature, redrawn):
    """Worked by hand: 3 one-frame spans whose token 0 (always drawn) has log-probability c = (-1.1, -0.7, -0.1),
    Gumbel draws g = (1, 0, -0.5), a stage of n = 2 iterations. After iteration 0 the one span masked again is the
    lowest c + tau g, tau = mask_temperature * (n - 1 - 0) / n: tau 0 -> span 0; tau 1 -> (-0.1, -0.7, -0.6),
    span 1 (with tau 2, unannealed, it would be span 2); tau 50 -> span 2."""
    from mglab.decoding import masked

    c = np.array([-1.1, -0.7, -0.1])
    probs = np.stack([np.exp(c), *[(1 - np.exp(c)) / 3] * 3], axis=-1)          # [3, 4]: token 0 at exp(c)
    logits = np.log(probs).astype(np.float32)[None, None]                      # [1, 1, 3, 4]
    seen = []

    def hooks(name, value, step=None, layer=None):
        if name == "masked.hook_mask":
            seen.append(value[0, 0].copy())                                    # [T]
        return value

    hooks.wants = lambda name: False
    masked.generate(lambda codes, stage, step: logits, 1, 3, [_Draws([1.0, 0.0, -0.5])], num_codebooks=1, card=4,
                    span_len=1, decoding_steps=[2], temperature=2.0, top_k=0, top_p=0.0, max_cfg_coef=1.0,
                    min_cfg_coef=1.0, mask_temperature=mask_temperature, guided=False, hooks=hooks)
    assert seen[0].all() and np.flatnonzero(seen[1]).tolist() == [redrawn]


@pytest.mark.parametrize("mask_temperature", [4.5, 1e5])
@pytest.mark.parametrize("arrangement", ["nonoverlap", "stride1"])
def test_kept_and_decided_spans_stay_whatever_the_mask_temperature(model, mask_temperature, arrangement):
    """A vamp's kept frames are never masked, and stage 0's masks nest (a span decided stays decided), even where
    the noise dwarfs every score (stride1: a span with one decided frame never outranks one of drawn frames)."""
    source = np.random.default_rng(0).integers(0, model.config["card"], (1, 4, 48))
    regenerate = np.zeros((4, 48), dtype=bool)
    regenerate[:, 9:39] = True
    masks = []
    model.vamp(source, regenerate, "a", seed=3, decoding_steps=[10, 3, 3, 3], mask_temperature=mask_temperature,
               span_arrangement=arrangement,
               hooks=[("masked.hook_mask", lambda v, h: masks.append(v[0].copy()))])   # [K, T] each
    stages = [0] * 10 + [1] * 3 + [2] * 3 + [3] * 3                            # the stage of each iteration
    assert not any(m[:s + 1, ~regenerate[0]].any() for s, m in zip(stages, masks))   # the stage and below: kept
    for before, after in zip(masks[:9], masks[1:10]):                          # stage 0's iterations
        assert not (after[0] & ~before[0]).any()


@pytest.mark.parametrize("value", [-1.0, float("inf"), float("nan")])
def test_masked_generate_refuses_a_bad_mask_temperature(value):
    from mglab.decoding import masked

    def never(*args):
        raise AssertionError("the model ran")

    with pytest.raises(ValueError, match="mask_temperature"):
        masked.generate(never, 1, 48, [np.random.default_rng(0)], num_codebooks=4, card=64, span_len=3,
                        decoding_steps=[2, 2, 2, 2], mask_temperature=value)


def test_the_command_line_passes_a_choice_equal_to_mglabs_default_over_the_models(tmp_path):
    """``--span-scoring max`` on a model whose config says "prod" decodes with "max" (a flag given is passed,
    whatever its value); without the flag the config's "prod" holds."""
    from mglab import cli

    folder = tmp_path / "model"
    folder.mkdir()
    for f in TINY.iterdir():
        (folder / f.name).symlink_to(f)
    config = json.loads((TINY / "config.json").read_text())
    config["generation"]["span_scoring"] = "prod"
    (folder / "config.json").unlink()
    (folder / "config.json").write_text(json.dumps(config))
    common = ["generate", "a", "--model", str(folder), "--decoding-steps", "2", "1", "1", "1", "--seed", "1",
              "--no-progress"]
    for flag, want in ((["--span-scoring", "max"], "max"), ([], "prod")):
        out = tmp_path / f"{want}.wav"
        assert cli.main([*common, "--out", str(out), *flag]) == 0
        assert mglab.Generation.load(out).settings["span_scoring"] == want
