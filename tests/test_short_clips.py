"""Very short generations (1 to 6 frames) and codecs that cannot decode so few frames."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mglab.networks.codec import EncodecCodec


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 5, 6])
def test_one_to_six_frames(merged_model, frames):
    c = merged_model.config
    g = merged_model.generate("a", max_new_tokens=frames + max(c.delays), seed=0)
    assert g.codes.shape == (1, c.num_codebooks, frames)
    assert g.audio.shape == (1, 1, frames * merged_model.codec.hop_length)
    assert np.isfinite(g.audio).all()


def test_duration_of_one_frame(merged_model):
    g = merged_model.generate("a", duration=0.02, seed=0)
    assert g.codes.shape[-1] == 1


def reflect_codec(path, pad: int = 3):
    """A codec graph whose reflect ``Pad`` (as in EnCodec's convolutions) fails below ``pad + 1`` frames;
    its audio is the sum of the codes over codebooks, one sample per frame: ``[B, 1, frames]``."""
    nodes = [
        helper.make_node("Squeeze", ["audio_codes", "axis0"], ["codes"]),                # [B, K, T]
        helper.make_node("Cast", ["codes"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["x", "axis1"], ["summed"], keepdims=1),           # [B, 1, T]
        helper.make_node("Pad", ["summed", "pads"], ["padded"], mode="reflect"),        # [B, 1, T + 2 pad]
        helper.make_node("Slice", ["padded", "start", "end", "axis2"], ["audio_values"]),  # [B, 1, T]
    ]
    inits = [helper.make_tensor("axis0", TensorProto.INT64, [1], [0]),
             helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
             helper.make_tensor("axis2", TensorProto.INT64, [1], [2]),
             helper.make_tensor("pads", TensorProto.INT64, [6], [0, 0, pad, 0, 0, pad]),
             helper.make_tensor("start", TensorProto.INT64, [1], [pad]),
             helper.make_tensor("end", TensorProto.INT64, [1], [-pad])]
    graph = helper.make_graph(
        nodes, "reflect_codec",
        [helper.make_tensor_value_info("audio_codes", TensorProto.INT64, [1, "batch", 4, "frames"])],
        [helper.make_tensor_value_info("audio_values", TensorProto.FLOAT, ["batch", 1, "samples"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return EncodecCodec(path, sample_rate=50, hop_length=1)


def test_codec_too_short_for_its_padding_is_padded_then_trimmed(tmp_path):
    codec = reflect_codec(tmp_path / "encodec_decode.onnx")
    assert codec.min_frames == 4                          # reflect padding of 3 needs 4 frames
    codes = np.random.default_rng(0).integers(0, 64, size=(2, 4, 6))
    for frames in range(1, 7):
        audio = codec.decode(codes[..., :frames])          # [B, 1, frames]
        np.testing.assert_array_equal(audio, codes[:, None, :, :frames].sum(axis=2).astype(np.float32))


def test_real_codec_min_frames(merged_model):
    codec = merged_model.codec
    assert 1 <= codec.min_frames <= 4
    codes = np.zeros((1, 4, codec.min_frames), np.int64)
    assert codec.decode(codes).shape == (1, 1, codec.min_frames * codec.hop_length)
