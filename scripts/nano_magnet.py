"""nano-magnet's model: audiocraft's ``MagnetLMModel`` at nano sizes, text-conditioned by nano-musicgen's T5.

What the training (``scripts/train_nano_magnet.py``), the tests and whoever loads the checkpoint share:

- :func:`config`: the checkpoint's ``xp.cfg`` (a plain dict, as ``builders.get_lm_model(OmegaConf.create(cfg))``
  reads it): 4 codebooks of 64 tokens, 50 frames/s, a non-causal transformer, cross-attention on the text.
- :func:`nano_t5`: audiocraft's ``T5Conditioner`` accepts hub names and a sentencepiece tokenizer only; inside this
  context it also accepts :data:`T5_NAME`, read from a local folder (nano-musicgen's trained T5 encoder, frozen,
  and its word-level ``tokenizer.json``). The conditioner stays audiocraft's: its state is ``output_proj`` only.
- :func:`mask_padded_text`: audiocraft's cross-attention attends to padded (zeroed) text positions, so a prompt's
  result depends on the batch it is padded in. The patch adds -inf to those keys. A row whose text mask is all 0
  (the null condition: condition dropout, guidance's unconditional rows) becomes one zero vector with mask 1.
- :func:`forward`: the logits under a per-example stage (self-attention mask per row, :func:`stage_masks`).
- :func:`load`: a checkpoint folder (``state_dict.bin`` + ``nano-t5/``) back through audiocraft's builders.
"""

from __future__ import annotations

from pathlib import Path

from mglab.nano import synth
from mglab.onnx.audiocraft_env import install, local_t5

T5_NAME = "nano-t5"               # the conditioner's name in xp.cfg; the checkpoint folder holds <name>/
FRAME_RATE = 50
SIZES = dict(dim=128, num_heads=4, num_layers=4, hidden_scale=3)


def config(segment_duration: int = 6, dropout: float = 0.2, context: int = 5, **sizes) -> dict:
    """The ``xp.cfg`` of nano-magnet (a plain dict; ``sizes`` override :data:`SIZES`).

    GELU, as audiocraft's MAGNeT and MusicGen configs (and nano-musicgen, whose weights :func:`warm_start` copies).
    Without a warm start, weights start at torch's defaults (audiocraft's ``lm/default``), not MusicGen's
    ``gaussian`` init: that one draws the token embeddings at std 1/sqrt(dim), 8x below the sinusoidal positions,
    and codebooks 0-1 (which must be read off the neighbours) learned visibly slower (masked cross-entropy 3.0
    against 2.4 after 200 steps of stages 0-1, same data)."""
    if isinstance(context, bool) or not isinstance(context, int) or context < -1:
        raise ValueError(f"context={context!r} is not allowed: context must be -1 (no limit) or frames >= 0")
    lm = dict(n_q=4, card=synth.VOCAB, **{**SIZES, **sizes}, causal=False, cross_attention=True, custom=True,
              memory_efficient=False, norm_first=True, norm="layer_norm", positional_embedding="sin",
              bias_proj=False, bias_ff=False, bias_attn=False, activation="gelu", weight_init=None,
              depthwise_init=None, zero_bias_init=False, subcodes_context=context,
              compression_model_framerate=FRAME_RATE, segment_duration=segment_duration, span_len=3)
    return {
        "lm_model": "transformer_lm_magnet", "device": "cpu", "dtype": "float32", "solver": "magnet",
        "sample_rate": synth.SAMPLE_RATE, "channels": 1, "compression_model_checkpoint": "mglab:nano-synth",
        "dataset": {"segment_duration": segment_duration}, "masking": {"span_len": 3},
        "transformer_lm": lm,
        "codebooks_pattern": {"modeling": "parallel", "parallel": {"empty_initial": -1}},
        "attribute_dropout": {}, "classifier_free_guidance": {"training_dropout": dropout, "inference_coef": 3.0},
        "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1, "sum": [], "prepend": [],
                  "cross": ["description"], "input_interpolate": []},
        "conditioners": {"description": {"model": "t5", "t5": {"name": T5_NAME, "finetune": False,
                                                                "word_dropout": 0.0, "normalize_text": False}}},
    }


def write_t5(musicgen_pytorch: Path, folder: Path) -> Path:
    """``folder`` = nano-musicgen's text encoder (``T5EncoderModel.save_pretrained``) and its ``tokenizer.json``."""
    import shutil

    from transformers import MusicgenForConditionalGeneration

    encoder = MusicgenForConditionalGeneration.from_pretrained(musicgen_pytorch).text_encoder
    folder = Path(folder)
    encoder.save_pretrained(folder)
    shutil.copy(Path(musicgen_pytorch) / "tokenizer.json", folder / "tokenizer.json")
    return folder


def nano_t5(folder: Path, name: str = T5_NAME):
    """Inside: audiocraft's ``T5Conditioner(name=name)`` loads the T5 encoder and tokenizer from ``folder``
    (which is named ``name``): :func:`mglab.onnx.audiocraft_env.local_t5` over the folder holding it, the very
    loading the export uses."""
    folder = Path(folder)
    if folder.name != name:
        raise ValueError(f"the T5 folder {folder} must be named {name!r}, as the checkpoint's config names it")
    install()
    return local_t5(folder.parent)


def build(cfg: dict, t5_folder: Path, seed: int = 0):
    """audiocraft's ``builders.get_lm_model`` of ``cfg`` (initialized under ``seed``), :func:`mask_padded_text`."""
    install()
    import omegaconf
    import torch
    from audiocraft.models import builders

    with nano_t5(t5_folder, cfg["conditioners"]["description"]["t5"]["name"]):
        torch.manual_seed(seed)
        lm = builders.get_lm_model(omegaconf.OmegaConf.create(cfg))
    return mask_padded_text(lm)


def text_mask(mask):
    """The text mask ``[B, n]`` cross-attention uses: rows with no position (the null condition) get position 0."""
    mask = mask.bool().clone()                                                  # [B, n]
    mask[:, 0] |= ~mask.any(-1)
    return mask


def mask_padded_text(lm):
    """Patch ``lm`` (in place, returned): cross-attention adds -inf on text positions whose mask is 0; the text
    vectors are multiplied by the mask (:func:`text_mask`), so the null condition is one zero vector."""
    import torch

    if getattr(lm, "_mglab_text_mask", False):
        return lm
    state = {}
    fuse = lm.fuser.forward

    def fuser_forward(x, conditions):
        assert list(conditions) == ["description"], "one cross-attention condition, the text"
        embeds, mask = conditions["description"]                                # [B, n, d], [B, n]
        mask = text_mask(mask)                                                  # [B, n]
        state["bias"] = torch.where(mask, 0.0, float("-inf"))[:, None, None, :].to(embeds)   # [B, 1, 1, n]
        return fuse(x, {"description": (embeds * mask[..., None].to(embeds), mask)})

    def cross_block(layer):
        def block(src, cross_src):
            x = layer.cross_attention(src, cross_src, cross_src, need_weights=False, attn_mask=state["bias"])[0]
            return layer.dropout_cross(x)
        return block

    lm.fuser.forward = fuser_forward
    for layer in lm.transformer.layers:
        layer._cross_attention_block = cross_block(layer)
    lm._mglab_text_mask = True
    return lm


def conditions(lm, prompts: list):
    """The text condition ``(embeds [B, n, dim], mask [B, n])`` of ``prompts``; ``None`` (or "") is the null
    condition (audiocraft's T5Conditioner: mask 0 and a zero vector; :func:`text_mask` keeps one position)."""
    t5 = lm.condition_provider.conditioners["description"]
    return t5(t5.tokenize(list(prompts)))


def stage_masks(stages, frames: int, context: int):
    """Additive self-attention masks ``[B, 1, T, T]``: full for stage 0, ``|i - j| <= context`` above (as
    audiocraft's ``restricted_context_attn_mask``; ``context`` -1: full)."""
    import torch

    pos = torch.arange(frames)                                                  # [T]
    near = (pos[:, None] - pos[None, :]).abs() <= (context if context >= 0 else frames)   # [T, T]
    allowed = near[None] | (torch.as_tensor(stages) == 0)[:, None, None]        # [B, T, T]
    return torch.where(allowed, 0.0, float("-inf"))[:, None]                    # [B, 1, T, T]


def forward(lm, codes, condition, stages):
    """Logits ``[B, K, T, card]`` of ``codes`` ``[B, K, T]`` (the mask token is ``card``) under ``condition``
    (:func:`conditions`), each row at its own stage ``stages`` ``[B]``."""
    import torch

    x = sum(lm.emb[k](codes[:, k]) for k in range(lm.num_codebooks))             # [B, T, dim]
    x, cross = lm.fuser(x, {"description": condition})                          # cross: [B, n, dim]
    out = lm.transformer(x, cross_attention_src=cross,
                         src_mask=stage_masks(stages, codes.shape[-1], lm.subcodes_context))   # [B, T, dim]
    if lm.out_norm:
        out = lm.out_norm(out)
    return torch.stack([lm.linears[k](out) for k in range(lm.num_codebooks)], dim=1)   # [B, K, T, card]


def save(lm, cfg: dict, folder: Path) -> Path:
    """audiocraft's checkpoint layout in ``folder``: ``state_dict.bin`` ``{'xp.cfg', 'best_state'}`` and
    ``compression_state_dict.bin`` (the synthesizer codec, by name). ``folder/<T5_NAME>`` is written apart."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"xp.cfg": cfg, "best_state": lm.state_dict()}, folder / "state_dict.bin")
    torch.save({"pretrained": "mglab:nano-synth"}, folder / "compression_state_dict.bin")
    return folder


def load(folder: Path):
    """The LM of a checkpoint folder, as audiocraft's ``load_lm_model_magnet`` builds it (with :func:`nano_t5`
    over ``folder/<name>``), patched by :func:`mask_padded_text`, in eval mode."""
    install()
    import omegaconf
    import torch
    from audiocraft.models import builders

    folder = Path(folder)
    pkg = torch.load(folder / "state_dict.bin", map_location="cpu")
    cfg = omegaconf.OmegaConf.create(pkg["xp.cfg"])
    name = cfg.conditioners.description.t5.name
    with nano_t5(folder / name, name):
        lm = builders.get_lm_model(cfg)
    lm.load_state_dict(pkg["best_state"])
    return mask_padded_text(lm).eval()


def warm_start(lm, musicgen_pytorch: Path):
    """Copy nano-musicgen's trained decoder into ``lm`` (in place, returned): the two are the same transformer at
    the same sizes (pre-norm layers without linear biases, sinusoidal positions, a summed embedding per codebook
    whose extra row is MusicGen's BOS/pad and MAGNeT's mask token), so every tensor maps one to one; audiocraft's
    attention keeps ``q, k, v`` in one ``in_proj_weight``. The text projection ``enc_to_dec_proj`` becomes the
    conditioner's ``output_proj``. What differs is what the weights were trained to do (causal, delay pattern):
    a start, not the answer."""
    import torch
    from transformers import MusicgenForConditionalGeneration

    src = MusicgenForConditionalGeneration.from_pretrained(musicgen_pytorch).state_dict()
    dec = "decoder.model.decoder."
    out = {"condition_provider.conditioners.description.output_proj.weight": src["enc_to_dec_proj.weight"],
           "condition_provider.conditioners.description.output_proj.bias": src["enc_to_dec_proj.bias"],
           "out_norm.weight": src[dec + "layer_norm.weight"], "out_norm.bias": src[dec + "layer_norm.bias"]}
    for k in range(lm.num_codebooks):
        out[f"emb.{k}.weight"] = src[f"{dec}embed_tokens.{k}.weight"]
        out[f"linears.{k}.weight"] = src[f"decoder.lm_heads.{k}.weight"]
    pairs = {"self_attn": "self_attn", "cross_attention": "encoder_attn"}
    norms = {"norm1": "self_attn_layer_norm", "norm_cross": "encoder_attn_layer_norm", "norm2": "final_layer_norm"}
    for i in range(len(lm.transformer.layers)):
        a, m = f"transformer.layers.{i}.", f"{dec}layers.{i}."
        for ours, theirs in pairs.items():
            out[a + ours + ".in_proj_weight"] = torch.cat([src[f"{m}{theirs}.{p}_proj.weight"] for p in "qkv"])
            out[a + ours + ".out_proj.weight"] = src[f"{m}{theirs}.out_proj.weight"]
        for ours, theirs in norms.items():
            out[a + ours + ".weight"], out[a + ours + ".bias"] = src[m + theirs + ".weight"], src[m + theirs + ".bias"]
        out[a + "linear1.weight"], out[a + "linear2.weight"] = src[m + "fc1.weight"], src[m + "fc2.weight"]
    own = lm.state_dict()
    missing = sorted(set(own) - set(out))
    if missing:
        raise ValueError(f"warm_start: no nano-musicgen tensor for {missing}")
    with torch.no_grad():
        for name, t in out.items():
            own[name].copy_(t)
    return lm
