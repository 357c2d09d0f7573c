"""``python -m mglab export`` of a MusicGen-Melody checkpoint (``MusicgenMelodyForConditionalGeneration``).

optimum cannot export it (its issue #2095): the melody model has no cross-attention, its condition is
PREPENDED to the decoder's input embeddings. Every graph here is torch.onnx's (TorchScript exporter, opset 17,
eager attention)::

    OUT/onnx/text_encoder.onnx            input_ids, attention_mask [b, n] -> last_hidden_state [b, n, d_text]
    OUT/onnx/melody_condition.onnx        encoder_hidden_states [b, n, d_text], encoder_attention_mask [b, n],
                                          input_features [b, chroma_length, 12]
                                          -> prefix_embeds [b, chroma_length + n, d]
                                          = cat([audio_enc_to_dec_proj(chroma), enc_to_dec_proj(text) * mask])
    OUT/onnx/decoder_model.onnx           input_ids [b*K, 1], prefix_embeds [b, P, d]
                                          -> logits [b*K, 1, V], present.{i}.decoder.key/value [b, h, P + 1, hd]
    OUT/onnx/decoder_with_past_model.onnx input_ids [b*K, 1], past_key_values.{i}.decoder.key/value
                                          -> logits, present.* (one position longer)
    OUT/onnx/encodec_decode.onnx          audio_codes [1, b, K/channels, frames] -> audio_values [b, 1, samples]
    OUT/onnx/encodec_encode.onnx          (as for MusicGen: :func:`mglab.onnx.export.export_encoder`)
    OUT/onnx/*_quantized.onnx             q8 (and any other dtype) by :func:`mglab.onnx.quantize.make`

The chroma is repeated and cut to ``chroma_length`` frames on the host (transformers repeats after the
projection; the projection is per frame, so the order does not matter). ``config.json`` is the checkpoint's
(``model_type: musicgen_melody``) with ``"mglab_conditioning": "prepend_melody"`` added: that is how
:func:`mglab.load` knows the layout. No merged decoder: the split pair runs, the in-place KV cache on the
with-past graph.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

GRAPHS = ("text_encoder", "melody_condition", "decoder_model", "decoder_with_past_model", "encodec_decode")
CONDITIONING = "prepend_melody"                # config.json's "mglab_conditioning" for this layout
OPSET = 17


def load_torch(path: Path):
    """The checkpoint with eager attention (plain MatMul/Softmax graphs, what the in-place KV rewrite reads)."""
    from transformers import MusicgenMelodyForConditionalGeneration

    return MusicgenMelodyForConditionalGeneration.from_pretrained(str(path), attn_implementation="eager").eval()


def _export(module, args: tuple, path: Path, inputs: list[str], outputs: list[str], axes: dict) -> Path:
    import torch

    with torch.no_grad():
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, opset_version=OPSET,
                          dynamo=False, dynamic_axes=axes)
    return path


def export_text_encoder(model, path: Path) -> Path:
    """The T5 text encoder of ``model`` as ``text_encoder.onnx``: ``input_ids``, ``attention_mask [B, n]`` ->
    ``last_hidden_state [B, n, d]`` (the melody conditioning graph projects and masks it)."""
    import torch

    class Text(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):                         # [b, n] each
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.tensor([[5, 6, 7, 1], [8, 1, 0, 0]])
    axes = {"input_ids": {0: "batch_size", 1: "text_length"}, "attention_mask": {0: "batch_size", 1: "text_length"},
            "last_hidden_state": {0: "batch_size", 1: "text_length"}}
    return _export(Text(model.text_encoder), (ids, (ids > 0).long()), path, ["input_ids", "attention_mask"],
                   ["last_hidden_state"], axes)


def export_condition(model, path: Path) -> Path:
    """Text states (masked) and chroma projected to the decoder's width and concatenated: chroma first."""
    import torch

    class Condition(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.text = getattr(m, "enc_to_dec_proj", None)
            self.chroma = getattr(m, "audio_enc_to_dec_proj", None)

        def forward(self, encoder_hidden_states, encoder_attention_mask, input_features):
            text = self.text(encoder_hidden_states) if self.text is not None else encoder_hidden_states
            text = text * encoder_attention_mask[..., None].to(text.dtype)     # [b, n, d]
            chroma = self.chroma(input_features) if self.chroma is not None else input_features   # [b, L, d]
            return torch.cat([chroma, text], dim=1)                            # [b, L + n, d]

    c = model.config
    hidden = torch.randn(2, 4, c.text_encoder.hidden_size)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    chroma = torch.zeros(2, c.chroma_length, c.num_chroma)
    chroma[..., 0] = 1
    axes = {"encoder_hidden_states": {0: "batch_size", 1: "text_length"},
            "encoder_attention_mask": {0: "batch_size", 1: "text_length"}, "input_features": {0: "batch_size"},
            "prefix_embeds": {0: "batch_size", 1: "prefix_length"}}
    return _export(Condition(model), (hidden, mask, chroma), path,
                   ["encoder_hidden_states", "encoder_attention_mask", "input_features"], ["prefix_embeds"], axes)


def _present(cache, layers: int) -> list:
    self_cache = getattr(cache, "self_attention_cache", cache)
    return [t for i in range(layers) for t in (self_cache.layers[i].keys, self_cache.layers[i].values)]


def _kv_names(prefix: str, layers: int) -> list[str]:
    return [f"{prefix}.{i}.decoder.{kind}" for i in range(layers) for kind in ("key", "value")]


def export_decoders(model, first_path: Path, past_path: Path) -> None:
    """The decoder's first step (the prefix and the start tokens) and its later steps (one token, the past)."""
    import torch
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    lm, c = model.decoder, model.config.decoder
    layers, k = c.num_hidden_layers, c.num_codebooks

    class First(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lm = lm

        def forward(self, input_ids, prefix_embeds):                          # [b*K, 1], [b, P, d]
            out = self.lm(input_ids=input_ids, encoder_hidden_states=prefix_embeds, use_cache=True, return_dict=True)
            return (out.logits[:, -1:], *_present(out.past_key_values, layers))   # [b*K, 1, V], [b, h, P+1, hd]..

    class WithPast(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lm = lm

        def forward(self, input_ids, *past):                                  # [b*K, 1], 2 per layer
            cache = EncoderDecoderCache(DynamicCache(config=c), DynamicCache(config=c))
            for i in range(layers):
                cache.self_attention_cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.lm(input_ids=input_ids, past_key_values=cache, use_cache=True, return_dict=True)
            return (out.logits, *_present(out.past_key_values, layers))

    ids = torch.full((2 * k, 1), c.pad_token_id)
    prefix = torch.randn(2, model.config.chroma_length + 3, c.hidden_size)
    present = _kv_names("present", layers)
    rows = {0: "batch_codebooks"}
    kv_axes = {n: {0: "batch_size", 2: "total_length"} for n in present}
    _export(First(), (ids, prefix), first_path, ["input_ids", "prefix_embeds"], ["logits", *present],
            {"input_ids": rows, "prefix_embeds": {0: "batch_size", 1: "prefix_length"}, "logits": rows, **kv_axes})
    head = c.hidden_size // c.num_attention_heads
    past = [torch.randn(2, c.num_attention_heads, prefix.shape[1] + 2, head) for _ in range(2 * layers)]
    past_names = _kv_names("past_key_values", layers)
    _export(WithPast(), (ids, *past), past_path, ["input_ids", *past_names], ["logits", *present],
            {"input_ids": rows, "logits": rows, **kv_axes,
             **{n: {0: "batch_size", 2: "past_length"} for n in past_names}})


def export_codec(model, path: Path) -> Path:
    """EnCodec's decode (one channel's codebooks): ``audio_codes [1, b, K/channels, frames]`` -> audio."""
    import torch

    class Decode(torch.nn.Module):
        def __init__(self, codec):
            super().__init__()
            self.codec = codec

        def forward(self, audio_codes):
            return self.codec.decode(audio_codes, [None]).audio_values          # [b, 1, samples]

    k = model.config.decoder.num_codebooks // model.config.decoder.audio_channels
    codes = torch.randint(0, model.config.audio_encoder.codebook_size, (1, 2, k, 9))
    return _export(Decode(model.audio_encoder), (codes,), path, ["audio_codes"], ["audio_values"],
                   {"audio_codes": {1: "batch_size", 3: "frames"}, "audio_values": {0: "batch_size", 2: "samples"}})


def export_graphs(model, onnx_dir: Path) -> None:
    """The fp32 graphs of :data:`GRAPHS` of a ``MusicgenMelodyForConditionalGeneration`` into ``onnx_dir``."""
    export_text_encoder(model, onnx_dir / "text_encoder.onnx")
    export_condition(model, onnx_dir / "melody_condition.onnx")
    export_decoders(model, onnx_dir / "decoder_model.onnx", onnx_dir / "decoder_with_past_model.onnx")
    export_codec(model, onnx_dir / "encodec_decode.onnx")


def write_config(src: Path, dst: Path) -> None:
    """The checkpoint's ``config.json`` marked as this layout; ``generation_config.json`` as it is."""
    config = json.loads((src / "config.json").read_text())
    config["mglab_conditioning"] = CONDITIONING
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    if (src / "generation_config.json").is_file():
        shutil.copy(src / "generation_config.json", dst / "generation_config.json")


def export_to(path: Path, stage: Path, dtypes: tuple[str, ...], say):
    """Export the melody checkpoint ``path`` into the folder ``stage`` (``onnx/`` made), in ``dtypes``, with its
    config; returns the torch model (the caller adds ``encodec_encode.onnx`` and the tokenizer files)."""
    from .quantize import make as make_variant

    say(f"exporting {path} with torch.onnx (melody: text encoder, condition, decoders, codec)")
    model = load_torch(path)
    export_graphs(model, stage / "onnx")
    for dtype in dtypes[1:]:
        for name in GRAPHS:
            say(f"{name}: {dtype}")
            make_variant(stage / "onnx" / f"{name}.onnx", dtype)
    write_config(path, stage)
    return model
