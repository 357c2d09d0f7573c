"""MAGNeT's masked language model as ONNX: audiocraft's ``MagnetLMModel`` -> ``masked_lm.onnx``.

MAGNeT (audiocraft, ``models/lm_magnet.py``) decodes the codes of a clip codebook by codebook (a *stage* per
codebook), each in a few parallel iterations: every position of the stage's codebook that is still masked
(token ``card``) is predicted at once, the least confident are masked again. One non-causal transformer serves
every stage; only its self-attention mask changes with the stage::

    stage 0: full attention                stage > 0: local, |i - j| <= subcodes_context (here 2)
        j 0 1 2 3 4 5 6 7                      j 0 1 2 3 4 5 6 7
    i 0   . . . . . . . .                  i 0   . . . x x x x x
      1   . . . . . . . .                    1   . . . . x x x x
      2   . . . . . . . .                    2   . . . . . x x x
      3   . . . . . . . .                    3   x . . . . . x x
     ...                                    ...                        (x: -inf before the softmax)

``subcodes_context`` -1 leaves stages > 0 unrestricted too (audiocraft builds no stage mask then).

The graph: ``input_ids [R, K, T]`` int64 (the mask token is ``card``; R rows: with guidance the conditional
rows, then the null ones), ``encoder_hidden_states [R, n, d]`` (the condition as the LM's cross-attention
reads it, after audiocraft's fuser), ``encoder_attention_mask [R, n]`` int64 (0: a padded text position, kept
out of cross-attention), ``stage`` int64 ``[]`` -> ``logits [R, K, T, card]``.

audiocraft defect, and what mglab does instead: audiocraft's cross-attention has no mask, so a prompt's padded
(zeroed) text positions take part in the softmax and its result depends on the longest prompt of its batch.
The graph masks them (an additive -inf on those keys); for a prompt alone, or prompts of one length, that is
audiocraft's attention exactly. The null condition is one zero vector with mask 1 (what audiocraft's empty
text attends to, at any length). T is dynamic: the
local mask is built from T in the graph (audiocraft precomputes it, padded to a multiple of 8, for the training
segment's length only; its non-memory-efficient path then needs T equal to that length).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

OPSET = 17


def masked_lm_module(lm):
    """A ``torch.nn.Module`` over audiocraft's ``MagnetLMModel`` ``lm`` with the graph's inputs and output."""
    import torch

    class MaskedLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lm = lm

        def forward(self, input_ids, encoder_hidden_states, encoder_attention_mask, stage):
            x = sum(lm.emb[k](input_ids[:, k]) for k in range(lm.num_codebooks))             # [R, T, dim]
            pos = torch.arange(input_ids.shape[-1], device=input_ids.device)                 # [T]
            context = lm.subcodes_context if lm.subcodes_context >= 0 else 1 << 30
            near = (pos[:, None] - pos[None, :]).abs() <= context                            # [T, T]
            allowed = torch.logical_or(near, stage <= 0)                                     # stage 0: full
            mask = torch.where(allowed, 0.0, float("-inf"))[None, None]                      # [1, 1, T, T]
            padded = torch.where(encoder_attention_mask > 0, 0.0, float("-inf"))[:, None, None]   # [R, 1, 1, n]
            with cross_attention_mask(lm, padded):
                out = lm.transformer(x, cross_attention_src=encoder_hidden_states, src_mask=mask)   # [R, T, dim]
            if lm.out_norm:
                out = lm.out_norm(out)
            return torch.stack([lm.linears[k](out) for k in range(lm.num_codebooks)], dim=1)  # [R, K, T, card]

    return MaskedLM().eval()


@contextmanager
def cross_attention_mask(lm, mask):
    """For the block, every layer's cross-attention of audiocraft's ``lm`` adds ``mask`` (``[R, 1, 1, n]``, 0 or
    -inf) to its pre-softmax weights (audiocraft's custom attention path takes ``attn_mask``; its layers pass
    none). The nano-magnet training uses it too, so training and the graph attend alike."""
    layers = list(lm.transformer.layers)

    def block(layer):
        def masked(src, cross_attention_src):
            x = layer.cross_attention(src, cross_attention_src, cross_attention_src, need_weights=False,
                                      attn_mask=mask)[0]
            return layer.dropout_cross(x)
        return masked

    for layer in layers:
        layer._cross_attention_block = block(layer)
    try:
        yield
    finally:
        for layer in layers:
            del layer._cross_attention_block


def export_masked_lm(lm, path: Path, frames: int = 24, text_len: int = 3) -> Path:
    """Write ``masked_lm.onnx`` for audiocraft's ``MagnetLMModel`` ``lm`` (traced once at ``frames`` and
    ``text_len``; rows, frames and text length stay dynamic).

    MAGNeT's checkpoints ask for memory-efficient attention (xformers). audiocraft's torch fallback for it calls
    ``scaled_dot_product_attention(is_causal=True)`` and drops the stage mask, so the export traces the plain
    attention path (the same attention, with the mask) whatever the checkpoint asks for.
    """

    attentions = [m for m in lm.modules() if hasattr(m, "memory_efficient") and hasattr(m, "custom")]
    if any(not m.custom for m in attentions):
        raise ValueError("the LM's attention is not audiocraft's custom one (custom=False): export needs custom=True")
    saved = [m.memory_efficient for m in attentions]
    for m in attentions:
        m.memory_efficient = False
    try:
        return _export(lm, path, frames, text_len)
    finally:
        for m, flag in zip(attentions, saved):
            m.memory_efficient = flag


def _export(lm, path: Path, frames: int, text_len: int) -> Path:
    import torch

    module = masked_lm_module(lm)
    dim = lm.emb[0].embedding_dim
    codes = torch.randint(0, lm.card + 1, (2, lm.num_codebooks, frames))                     # [R, K, T]
    hidden = torch.randn(2, text_len, dim)                                                    # [R, n, d]
    text_mask = torch.ones(2, text_len, dtype=torch.int64)                                    # [R, n]
    text_mask[1, -1] = 0
    with torch.no_grad():
        torch.onnx.export(module, (codes, hidden, text_mask, torch.tensor(1)), str(path), opset_version=OPSET,
                          dynamo=False, output_names=["logits"],
                          input_names=["input_ids", "encoder_hidden_states", "encoder_attention_mask", "stage"],
                          dynamic_axes={"input_ids": {0: "rows", 2: "frames"},
                                        "encoder_hidden_states": {0: "rows", 1: "text_len"},
                                        "encoder_attention_mask": {0: "rows", 1: "text_len"},
                                        "logits": {0: "rows", 2: "frames"}})
    return Path(path)
