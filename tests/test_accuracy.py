"""matmul_accuracy: the load-time rewrite of MatMulNBits' accuracy_level (q4 files)."""

import numpy as np
import onnx
import pytest
from helpers import PROMPTS, TINY

import mglab
from mglab.onnx.accuracy import subgraphs

Q4 = {"decoder_model_merged": "q4"}


def levels(path) -> list:
    model = onnx.load(path)
    return [next((a.i for a in n.attribute if a.name == "accuracy_level"), 0)
            for g in subgraphs(model.graph) for n in g.node if n.op_type == "MatMulNBits"]


def test_every_matmulnbits_node_is_rewritten_in_both_branches():
    plain = mglab.load(TINY, dtype=Q4)
    fast = mglab.load(TINY, dtype=Q4, matmul_accuracy=4)
    before, after = levels(plain.paths["decoder_model_merged"]), levels(fast.paths["decoder_model_merged"])
    assert len(before) == len(after) > 0 and set(before) == {0} and set(after) == {4}
    assert fast.paths["text_encoder"] == plain.paths["text_encoder"]          # fp32: untouched
    assert fast.spec.matmul_accuracy == 4 and mglab.load(fast.spec).paths == fast.paths


def test_int8_activations_change_the_logits_a_little():
    """Level 4 rounds activations to 8 bits: the logits move (the rewrite is live), but stay near level 0's."""
    names = ["guidance.hook_cond_logits"]
    _, a = mglab.load(TINY, dtype=Q4).run_with_cache(PROMPTS, names_filter=names, max_new_tokens=12, seed=0)
    _, b = mglab.load(TINY, dtype=Q4, matmul_accuracy=4).run_with_cache(PROMPTS, names_filter=names,
                                                                        max_new_tokens=12, seed=0)
    step0 = np.abs(a[names[0]][0] - b[names[0]][0]).max()                       # same inputs at step 0
    assert 0 < step0 < 0.05, step0


@pytest.mark.parametrize("value", [5, -1, True, "4", 2.5])
def test_a_bad_level_is_refused_before_loading(value):
    with pytest.raises(ValueError, match=r"matmul_accuracy=.* is not allowed: matmul_accuracy must be None"):
        mglab.load(TINY, dtype=Q4, matmul_accuracy=value)
