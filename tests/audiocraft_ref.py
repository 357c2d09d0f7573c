"""audiocraft 1.3.0 (MAGNeT) as a test reference, on torch 2.13's CPU build.

The stand-ins for what audiocraft imports but its LM never uses live in :mod:`mglab.onnx.audiocraft_env` (the
MAGNeT export needs them too). A tiny random ``MagnetLMModel`` is built from a config as audiocraft's own
checkpoints carry it (``xp.cfg``), with a ``LUTConditioner`` (no T5 download).
"""

from __future__ import annotations

from mglab.onnx.audiocraft_env import install

TINY = {
    "lm_model": "transformer_lm_magnet", "device": "cpu", "dtype": "float32",
    "dataset": {"segment_duration": 1}, "masking": {"span_len": 3},
    "transformer_lm": {"n_q": 4, "card": 64, "dim": 32, "num_heads": 4, "num_layers": 2, "hidden_scale": 4,
                       "causal": False, "cross_attention": True, "custom": True, "memory_efficient": False,
                       "norm_first": True, "norm": "layer_norm", "positional_embedding": "sin", "bias_proj": False,
                       "bias_ff": False, "bias_attn": False, "subcodes_context": 5,
                       "compression_model_framerate": 48, "segment_duration": 1, "span_len": 3},
    "codebooks_pattern": {"modeling": "parallel", "parallel": {"empty_initial": 0}},
    "attribute_dropout": {}, "classifier_free_guidance": {"training_dropout": 0.0, "inference_coef": 3.0},
    "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1, "sum": [], "prepend": [],
              "cross": ["description"], "input_interpolate": []},
    "conditioners": {"description": {"model": "lut", "lut": {"n_bins": 32, "dim": 16, "tokenizer": "noop"}}},
}


def tiny_magnet(seed: int = 0, frames: int = 48, config: dict | None = None):
    """A random ``MagnetLMModel`` built by audiocraft's builders from ``config`` (default :data:`TINY`); its
    stage masks are made for ``frames`` frames (audiocraft's custom attention path runs that length only)."""
    install()
    import omegaconf
    import torch
    from audiocraft.models import builders

    cfg = omegaconf.OmegaConf.create(config or TINY)
    cfg.transformer_lm.compression_model_framerate = frames
    torch.manual_seed(seed)
    return builders.get_lm_model(cfg).eval()


def conditions(lm, prompts: list[str]):
    """audiocraft's condition tensors for ``prompts`` and their null conditions (what its CFG batches), and the
    cross-attention input the LM's transformer reads ``[2B, n, d]``."""
    import torch
    from audiocraft.modules.conditioners import ClassifierFreeGuidanceDropout, ConditioningAttributes

    attrs = [ConditioningAttributes(text={"description": p}) for p in prompts]
    null = ClassifierFreeGuidanceDropout(p=1.0)(attrs)
    with torch.no_grad():
        tensors = lm.condition_provider(lm.condition_provider.tokenize(attrs + null))
        _, cross = lm.fuser(torch.zeros(2 * len(prompts), 1, lm.emb[0].embedding_dim), tensors)
    return tensors, cross


def shared_draws(monkeypatch, rngs):
    """audiocraft's torch.multinomial replaced by the draws mglab makes: per position one uniform from the row's
    generator (``mglab.decoding.masked.draw``), so both sample the same tokens from the same probabilities."""
    import torch
    from audiocraft.utils import utils

    from mglab.decoding import sampling

    def multinomial(probs, num_samples, replacement=False, *, generator=None):
        p = probs.reshape(len(rngs), -1, probs.shape[-1]).double().numpy()                    # [B, T, V]
        tokens = sampling.draw(p, rngs)                                                         # [B, T]
        return torch.from_numpy(tokens).reshape(*probs.shape[:-1], 1)

    monkeypatch.setattr(utils, "multinomial", multinomial)
