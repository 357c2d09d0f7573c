"""The in-place KV cache (mglab.onnx.inplace_kv): the tokens of the exported concatenating graph, one buffer written in
place, hook edits that land, and graphs it does not know left alone."""

import shutil
import warnings
from collections import Counter

import numpy as np
import onnx
import pytest
from helpers import ROOT, TINY

import mglab
from mglab.onnx import inplace_kv as inplace

PROMPTS = ["lofi piano with soft drums", "rock"]
GREEDY = dict(max_new_tokens=30, do_sample=False, guidance_scale=3.0)
SAMPLED = dict(max_new_tokens=30, do_sample=True, guidance_scale=3.0, seed=5, top_k=50)


XENOVA = ("fp32", "fp16", "q8", "int8", "uint8", "bnb4", "q4", "q4f16")     # scripts/quantize.py's recipe


@pytest.mark.parametrize("decoder, dtype", [("split", {"decoder": t}) for t in ("fp32", "q8", "fp16")]
                         + [("merged", {"decoder_model_merged": t}) for t in XENOVA])
def test_inplace_gives_the_tokens_of_the_concatenating_graph(tiny_path, decoder, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)              # no fallback to the concatenating cache
        fast = mglab.load(tiny_path, decoder=decoder, dtype=dtype)
    slow = mglab.load(tiny_path, decoder=decoder, dtype=dtype, kv_cache="concat")
    assert fast.decoder.inplace is not None and slow.decoder.inplace is None
    for kw in (GREEDY, SAMPLED):
        a, b = fast.generate(PROMPTS, **kw), slow.generate(PROMPTS, **kw)
        np.testing.assert_array_equal(a.tokens, b.tokens)
        np.testing.assert_allclose(a.audio, b.audio, atol=1e-5)


def test_each_layer_is_one_attention_op_writing_the_cache(model):
    g = onnx.load(str(model.decoder.inplace.path), load_external_data=False).graph
    ops = Counter(n.op_type for n in g.node)
    assert ops["GroupQueryAttention"] == model.config.num_layers
    writers = {n.op_type for n in g.node for o in n.output if o.startswith("present.")}
    assert writers == {"GroupQueryAttention"}
    assert {"seqlens_k", "total_sequence_length"} <= {i.name for i in g.input}


def test_each_residual_add_and_norm_is_one_kernel_in_float32(model, tiny_path):
    """mglab.onnx.fuse on the in-place graph: every layer norm of an fp32 decoder takes its residual add in
    (the tokens test above checks the result against the exported graph); an fp16 graph keeps its norms."""
    ops = Counter(n.op_type for n in onnx.load(str(model.decoder.inplace.path), load_external_data=False).graph.node)
    assert ops["LayerNormalization"] == 0 and ops["SkipLayerNormalization"] == 3 * model.config.num_layers + 1, ops
    half = mglab.load(tiny_path, decoder="split", dtype={"decoder": "fp16"})
    ops = Counter(n.op_type for n in onnx.load(str(half.decoder.inplace.path), load_external_data=False).graph.node)
    assert ops["SkipLayerNormalization"] == 0 and ops["LayerNormalization"] > 0, ops


@pytest.mark.parametrize("epsilon", [{"epsilon": 1e-3}, {}])
def test_skip_layer_norm_keeps_the_sum_that_is_read_again(epsilon):
    """y = LayerNorm(x + r) and z = (x + r) + y: the fused graph gives ONNX Runtime's plain result for both,
    the sum coming back from the fused kernel's fourth output; the norm's epsilon (or ONNX's default, 1e-5,
    where the two ops' defaults differ) is kept: inputs of variance ~1e-6 make it count."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from mglab.onnx import fuse

    rng = np.random.default_rng(0)
    d = 8
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "r"], ["s"]),
         helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], axis=-1, **epsilon),
         helper.make_node("Add", ["s", "y"], ["z"])],
        "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3, d]) for n in ("x", "r")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3, d]) for n in ("y", "z")],
        [numpy_helper.from_array(rng.normal(size=d).astype(np.float32), n) for n in ("gamma", "beta")])
    plain = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    fused = onnx.ModelProto()
    fused.CopyFrom(plain)
    assert fuse.skip_layer_norm(fused.graph) == 1
    fused.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    assert [n.op_type for n in fused.graph.node] == ["SkipLayerNormalization", "Add"]
    feeds = {n: 1e-3 * rng.normal(size=(2, 3, d)).astype(np.float32) for n in ("x", "r")}
    want, got = (ort.InferenceSession(m.SerializeToString()).run(None, feeds) for m in (plain, fused))
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, atol=1e-5)


def test_single_input_concats_are_removed_and_change_nothing():
    """A Concat of one input (and a copy of that copy) is a copy: its readers read the input, the outputs are
    ONNX Runtime's plain ones; one that is a graph output stays."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from mglab.onnx import fuse

    g = helper.make_graph(
        [helper.make_node("Concat", ["x"], ["c1"], axis=0), helper.make_node("Concat", ["c1"], ["c2"], axis=0),
         helper.make_node("Mul", ["c2", "c1"], ["y"]), helper.make_node("Concat", ["x", "c2"], ["both"], axis=0),
         helper.make_node("Concat", ["y"], ["z"], axis=0)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "both", "z")])
    plain = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    lean = onnx.ModelProto()
    lean.CopyFrom(plain)
    assert fuse.single_input_concats(lean.graph) == 2
    assert [n.op_type for n in lean.graph.node] == ["Mul", "Concat", "Concat"]     # z is a graph output: kept
    assert list(lean.graph.node[0].input) == ["x", "x"]
    x = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    want, got = (ort.InferenceSession(m.SerializeToString()).run(None, {"x": x}) for m in (plain, lean))
    for a, b in zip(want, got):
        np.testing.assert_array_equal(b, a)


def test_a_single_input_concat_read_inside_a_branch_is_rewired_there():
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from mglab.onnx import fuse

    branch = lambda name, op: helper.make_graph(                                   # noqa: E731
        [helper.make_node(op, ["c", "c"], [name])], name, [],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2])])
    g = helper.make_graph(
        [helper.make_node("Concat", ["x"], ["c"], axis=0),
         helper.make_node("If", ["flag"], ["y"], then_branch=branch("t", "Add"), else_branch=branch("e", "Mul"))],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
              helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    assert fuse.single_input_concats(model.graph) == 1
    onnx.checker.check_model(model)
    x = np.array([1.5, -2.0], np.float32)
    for flag, want in ((True, x + x), (False, x * x)):
        got = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x, "flag": np.array(flag)})[0]
        np.testing.assert_array_equal(got, want)


def test_the_in_place_graph_copies_nothing_by_concat(model):
    g = onnx.load(str(model.decoder.inplace.path), load_external_data=False).graph
    assert not [n.name for n in g.node if n.op_type == "Concat" and len(n.input) == 1]


def test_the_cache_is_one_buffer_written_in_place(model):
    seen = []                                    # the live cache each step: views, not copies
    with model.hooks([("decoder.layers.0.hook_key", lambda v, hook: seen.append((v, v.copy())))]):
        model.generate(PROMPTS, **GREEDY)
    assert [v.shape[2] for v, _ in seen] == list(range(1, len(seen) + 1))
    assert all(np.shares_memory(seen[1][0], v) for v, _ in seen[2:])
    last = seen[-1][0]
    for t, (_, copy) in enumerate(seen):        # positions already written never change
        np.testing.assert_array_equal(last[:, :, :t + 1], copy)


@pytest.mark.parametrize("name, edited_from", [("decoder.layers.0.hook_value", 6), ("decoder.layers.1.hook_key", 6),
                                               ("decoder.layers.0.hook_cross_value", 1)])
def test_kv_edits_land_the_same_in_both_caches(tiny_path, name, edited_from):
    def scramble(value, hook):                  # the cache replaced by loud noise at step 5 (cross: once, step 0)
        if hook.step in (5, None):
            return np.random.default_rng(0).standard_normal(value.shape) * 50

    def logits(kv_cache, hooks):
        m, seen = mglab.load(tiny_path, decoder="split", kv_cache=kv_cache), []
        with m.hooks(hooks + [("guidance.hook_logits", lambda v, hook: seen.append(v.copy()))]):
            m.generate(PROMPTS, **GREEDY)
        return np.stack(seen)                                                # [steps, B, K, V]

    edited = {kv: logits(kv, [(name, scramble)]) for kv in ("inplace", "concat")}
    plain = logits("inplace", [])
    np.testing.assert_allclose(edited["inplace"], edited["concat"], atol=1e-5)
    np.testing.assert_array_equal(edited["inplace"][:edited_from], plain[:edited_from])
    assert np.abs(edited["inplace"][edited_from] - plain[edited_from]).max() > 1e-3


def _add_zero_before_a_softmax(path):
    """An attention that is still correct but not the shape the rewrite knows: scores + 0 before softmax."""
    model = onnx.load(str(path))
    g = model.graph
    softmax = next(n for n in g.node if n.op_type == "Softmax" and "self_attn" in n.name)
    g.initializer.append(onnx.numpy_helper.from_array(np.zeros(1, np.float32), "zero"))
    g.node.append(onnx.helper.make_node("Add", [softmax.input[0], "zero"], ["scores_plus_zero"]))
    softmax.input[0] = "scores_plus_zero"
    onnx.save(model, str(path))


def test_an_unknown_graph_keeps_the_concatenating_cache(tmp_path, tiny_path):
    folder = tmp_path / "odd"
    shutil.copytree(tiny_path, folder, ignore=shutil.ignore_patterns("pytorch", "*fp16*", "*q4*", "*quantized*"))
    _add_zero_before_a_softmax(folder / "onnx" / "decoder_with_past_model.onnx")
    for _ in range(2):                           # the second load remembers the mismatch
        with pytest.warns(RuntimeWarning, match="stays concatenating.*Add"):
            odd = mglab.load(folder, decoder="split")
        assert odd.decoder.inplace is None
    reference = mglab.load(tiny_path, decoder="split").generate(PROMPTS, **GREEDY)
    np.testing.assert_array_equal(odd.generate(PROMPTS, **GREEDY).tokens, reference.tokens)


def test_a_full_cache_is_an_error_not_a_silent_overwrite(model):
    c = model.config
    ids, mask = model.text.tokenize(["rock"])
    hidden = model.text.encode(ids, mask)                                   # [1, n, d]
    x = np.full((c.num_codebooks, 1), c.decoder_start_token_id)             # [K, 1]
    _, cache, _ = model.decoder.step(x, hidden, mask, None, capacity=2)
    _, cache, _ = model.decoder.step(x, hidden, mask, cache)
    with pytest.raises(ValueError, match="capacity=2"):
        model.decoder.step(x, hidden, mask, cache)


def test_matcher_reasons_name_the_node():
    g = onnx.helper.make_graph([], "empty", [], [onnx.helper.make_tensor_value_info("logits", 1, None)])
    with pytest.raises(inplace.Unmatched, match="present.0.decoder.key"):
        inplace.rewrite(g, num_layers=1, num_heads=2)


def test_top_level_nodes_outside_the_if_come_along(tmp_path):
    """Xenova's q8 of a large merged decoder quantizes a shared input at the top level, outside the If; the
    in-place rewrite takes such nodes along with the cached branch."""
    keep = {"text_encoder.onnx", "decoder_model_merged.onnx", "encodec_decode.onnx", "build_delay_pattern_mask.onnx"}
    shutil.copytree(TINY, tmp_path / "m", ignore=lambda d, names: [
        n for n in names if n == "pytorch" or (n.endswith(".onnx") and n not in keep)])
    path = tmp_path / "m" / "onnx" / "decoder_model_merged.onnx"
    model = onnx.load(path)
    g = model.graph
    outer = "encoder_attention_mask"
    for node in g.node:
        for attr in node.attribute:
            for inner in attr.g.node:
                inner.input[:] = [f"{outer}/outside" if x == outer else x for x in inner.input]
    nodes = [onnx.helper.make_node("Identity", [outer], [f"{outer}/outside"], name="/outside/Identity"), *g.node]
    del g.node[:]
    g.node.extend(nodes)
    onnx.save(model, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        changed = mglab.load(tmp_path / "m", decoder="merged")
    assert changed.decoder.inplace is not None
    plain = mglab.load(TINY, decoder="merged")
    a, b = changed.generate(PROMPTS, **GREEDY), plain.generate(PROMPTS, **GREEDY)
    np.testing.assert_array_equal(a.tokens, b.tokens)


@pytest.mark.parametrize("graph, variant", [("decoder_model_merged", "fp16"), ("decoder_model", "fp16"),
                                            ("decoder_model_merged", "q8")])
def test_the_recipe_rebuilds_the_committed_variants(tmp_path, graph, variant):
    """scripts/quantize.py, run again on the fp32 graph, gives a file that decodes as the committed one (the
    fp16 ones load only with the two casts the converter misses)."""
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from quantize import make

    from mglab.onnx.modelfiles import SUFFIXES

    shutil.copytree(TINY, tmp_path / "m", ignore=shutil.ignore_patterns("pytorch"))
    rebuilt = tmp_path / "m" / "onnx" / f"{graph}{SUFFIXES[variant]}.onnx"
    rebuilt.unlink()
    make(tmp_path / "m" / "onnx" / f"{graph}.onnx", variant)
    key, decoder = ("decoder", "split") if graph == "decoder_model" else (graph, "merged")
    a = mglab.load(tmp_path / "m", dtype={key: variant}, decoder=decoder).generate(PROMPTS, **GREEDY)
    b = mglab.load(TINY, dtype={key: variant}, decoder=decoder).generate(PROMPTS, **GREEDY)
    np.testing.assert_array_equal(a.tokens, b.tokens)
