"""MusicGen-Melody (``scripts/build_tiny_model.py --melody``, exported by ``mglab export``'s torch.onnx route)
against transformers' ``MusicgenMelodyForConditionalGeneration`` on the same weights.

transformers 4.57's ``generate`` drops the condition: it hands the first step an empty cache, and its
``prepare_inputs_for_generation`` discards ``encoder_hidden_states`` whenever a cache is given
(``test_transformers_generate_ignores_its_condition``). The reference here is that ``generate`` with one fix:
the condition is kept while the cache is still empty (:func:`fixed`)."""

import sys

import numpy as np
import pytest
import torch
from helpers import PROMPTS, ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from build_tiny_model import build  # noqa: E402
from test_parity import transformers_generate  # noqa: E402

SR = 32000


def tones(freqs, seconds=0.4):
    return np.concatenate([np.sin(2 * np.pi * f * np.arange(int(seconds * SR)) / SR) for f in freqs]).astype(np.float32)


MELODIES = [tones([262, 330, 392, 523]), tones([440, 349, 294, 220, 196])]       # two lengths, two lines


def fixed(torch_model):
    """transformers' model whose ``generate`` keeps the condition on the first step (the cache still empty)."""
    original = torch_model.prepare_inputs_for_generation

    def prepare(decoder_input_ids, encoder_hidden_states=None, past_key_values=None, **kwargs):
        empty = past_key_values is not None and past_key_values.get_seq_length() == 0
        out = original(decoder_input_ids, encoder_hidden_states=encoder_hidden_states,
                       past_key_values=None if empty else past_key_values, **kwargs)
        out["past_key_values"] = past_key_values
        return out

    torch_model.prepare_inputs_for_generation = prepare
    return torch_model


@pytest.fixture(scope="module")
def melody(tmp_path_factory):
    """``(mglab model, fixed transformers model, export folder)``, fp32 and q8."""
    from transformers import MusicgenMelodyForConditionalGeneration

    import mglab

    out = tmp_path_factory.mktemp("melody") / "tiny-melody"
    build(out, melody=True, variants=(("q8",), ()))
    torch_model = MusicgenMelodyForConditionalGeneration.from_pretrained(out / "pytorch").eval()
    return mglab.load(out), fixed(torch_model), out


def reference(tm, model, prompts, melodies, **kwargs):
    from mglab.audio.chroma import chroma

    ids, mask = model.text.tokenize(prompts)
    extra = {"input_features": torch.from_numpy(chroma(melodies, SR))} if melodies is not None else {}
    return transformers_generate(tm, ids, mask, **extra, **kwargs)


@pytest.mark.parametrize("guidance_scale", [3.0, 1.0])
@pytest.mark.parametrize("with_melody", [True, False])
def test_greedy_tokens_and_audio_equal_transformers(melody, guidance_scale, with_melody):
    m, tm, _ = melody
    melodies = MELODIES if with_melody else None
    ours = m.generate(PROMPTS, melody=melodies, max_new_tokens=24, do_sample=False, guidance_scale=guidance_scale)
    audio, tokens = reference(tm, m, PROMPTS, melodies, max_new_tokens=24, do_sample=False,
                              guidance_scale=guidance_scale)
    assert ours.tokens.shape == tokens.shape == (2, 4, 25)
    np.testing.assert_array_equal(ours.tokens, tokens)
    assert ours.audio.shape == audio.shape and np.abs(ours.audio - audio).max() <= 1e-4
    assert np.abs(audio).max() > 1e-3


def test_the_melody_changes_the_tokens(melody):
    m, _, _ = melody
    kw = dict(max_new_tokens=24, do_sample=False, guidance_scale=3.0)
    a, b = m.generate(PROMPTS, melody=MELODIES, **kw), m.generate(PROMPTS, **kw)
    swapped = m.generate(PROMPTS, melody=MELODIES[::-1], **kw)
    assert (a.tokens != b.tokens).mean() > 0.3 and (a.tokens != swapped.tokens).mean() > 0.3


def test_one_melody_for_all_prompts_equals_transformers(melody):
    m, tm, _ = melody
    ours = m.generate(PROMPTS, melody=MELODIES[1], max_new_tokens=16, do_sample=False, guidance_scale=3.0)
    _, tokens = reference(tm, m, PROMPTS, [MELODIES[1]] * 2, max_new_tokens=16, do_sample=False, guidance_scale=3.0)
    np.testing.assert_array_equal(ours.tokens, tokens)


def test_transformers_generate_ignores_its_condition(melody):
    """The defect the reference works around: unfixed, transformers 4.57's output does not depend on the melody."""
    from transformers import MusicgenMelodyForConditionalGeneration

    _, _, out = melody
    m = melody[0]
    stock = MusicgenMelodyForConditionalGeneration.from_pretrained(out / "pytorch").eval()
    kw = dict(max_new_tokens=12, do_sample=False, guidance_scale=3.0)
    _, with_melody = reference(stock, m, PROMPTS, MELODIES, **kw)
    _, without = reference(stock, m, PROMPTS, None, **kw)
    np.testing.assert_array_equal(with_melody, without)


def test_teacher_forced_logits_equal_transformers(melody):
    """Every step's conditional and unconditional logits (in-place KV cache after the prefix) within 1e-4."""
    from mglab.audio.chroma import chroma
    from mglab.decoding import melody as conditioning

    m, tm, _ = melody
    steps = 12
    ref = m.generate(PROMPTS, melody=MELODIES, max_new_tokens=steps, do_sample=True, seed=3, guidance_scale=3.0)
    cond = conditioning.condition(m.text, m.conditioner, PROMPTS, chroma(MELODIES, SR), None, True,
                                  m._hooks.call(None, None))
    b, k, _ = ref.tokens.shape
    cache, ours = None, []
    for t in range(steps):
        x = np.tile(ref.tokens[:, :, t].reshape(-1, 1), (2, 1))                 # [2B*K, 1]
        logits, cache, _ = m.decoder.step(x, cond.hidden, None, cache, capacity=steps)
        ours.append(logits)
    assert cache.bound is not None                                             # the in-place graph ran
    ours = np.stack(ours, axis=1)                                              # [2B*K, steps, V]
    ids, mask = m.text.tokenize(PROMPTS)
    with torch.no_grad():
        kw = tm._prepare_encoder_hidden_states_kwargs_for_generation(
            torch.from_numpy(ids), {"attention_mask": torch.from_numpy(mask),
                                    "input_features": torch.from_numpy(chroma(MELODIES, SR))}, "input_ids",
            tm.generation_config.__class__(guidance_scale=3.0))
        prefix = kw["encoder_hidden_states"]                                   # [2B, P, d]
        dec_ids = torch.from_numpy(np.tile(ref.tokens.reshape(b * k, -1)[:, :steps], (2, 1)))
        theirs = tm.decoder(input_ids=dec_ids, encoder_hidden_states=prefix).logits[:, -steps:].numpy()
    assert np.abs(prefix.numpy() - cond.hidden).max() <= 1e-5
    assert np.abs(ours - theirs).max() <= 1e-4
    assert np.abs(ours[: b * k] - ours[b * k:]).max() > 1e-2                   # the two halves really differ


def test_q8_export_loads_and_follows_fp32(melody):
    import mglab

    m, _, out = melody
    q8 = mglab.load(out, dtype="q8")
    assert type(q8).__name__ == "MelodyMusicGen" and q8.dtype == "q8"
    assert q8.decoder.inplace is not None
    a = q8.generate(PROMPTS, melody=MELODIES, max_new_tokens=12, do_sample=False)
    b = m.generate(PROMPTS, melody=MELODIES, max_new_tokens=12, do_sample=False)
    assert a.tokens.shape == b.tokens.shape and np.isfinite(a.audio).all()


def test_hook_chroma_is_editable(melody):
    """The null chroma written by a hook gives what no melody gives."""
    from mglab.decoding.melody import null_chroma

    m, _, _ = melody
    kw = dict(max_new_tokens=12, do_sample=False, guidance_scale=3.0)
    seen = []

    def to_null(chroma, hook):
        seen.append(chroma.shape)
        return null_chroma(*chroma.shape[:2])

    hooked = m.generate(PROMPTS, melody=MELODIES, hooks=[("conditioning.hook_chroma", to_null)], **kw)
    np.testing.assert_array_equal(hooked.tokens, m.generate(PROMPTS, **kw).tokens)
    assert seen[0][0] == 2 and seen[0][2] == 12


def test_key_hooks_see_the_prefix_positions(melody):
    m, _, _ = melody
    _, cache = m.run_with_cache("rock", melody=MELODIES[0], names_filter=["decoder.layers.0.hook_key"],
                                max_new_tokens=6, do_sample=False)
    keys = cache["decoder.layers.0.hook_key"]
    prefix = m.conditioner.chroma_length + m.text.tokenize(["rock"])[0].shape[1]
    assert keys.shape[-2] == prefix + 6


def test_prompt_none_and_streaming(melody):
    m, _, _ = melody
    gen = m.generate(None, melody=MELODIES, max_new_tokens=12, do_sample=False)
    assert gen.codes.shape[0] == 2
    whole = m.generate(PROMPTS, melody=MELODIES, max_new_tokens=16, do_sample=False)
    chunks = list(m.stream(PROMPTS, melody=MELODIES, max_new_tokens=16, do_sample=False, chunk_duration=0.1))
    assert np.abs(np.concatenate(chunks, axis=-1) - whole.audio).max() <= 1e-4


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_new_tokens=1900, window=40.0), "max_position_embeddings=2048"),
    (dict(melody=MELODIES * 2), "4 clips for 2 prompts"),
    (dict(melody_sample_rate=16000), "without a melody"),
    (dict(melody=np.zeros((1, 1, 1, 5))), "shape"),
    (dict(audio=np.zeros(6400)), "continuation is not supported"),
    (dict(duration=8.0, window=4.0), "long form is not available"),
])
def test_bad_input_is_a_clear_error_before_any_model_runs(melody, kwargs, match):
    m, _, _ = melody
    calls = []
    m.decoder.first.run = lambda *a, **k: calls.append(1)
    try:
        with pytest.raises(ValueError, match=match):
            m.generate(PROMPTS, **kwargs)
    finally:
        del m.decoder.first.run
    assert not calls


def test_stereo_melody_equals_transformers(tmp_path):
    """``--stereo --melody``: 8 codebooks interleaved, two channels; tokens and audio as transformers."""
    from transformers import MusicgenMelodyForConditionalGeneration

    import mglab

    out = tmp_path / "tiny-stereo-melody"
    build(out, melody=True, stereo=True, variants=((), ()))
    m = mglab.load(out)
    tm = fixed(MusicgenMelodyForConditionalGeneration.from_pretrained(out / "pytorch").eval())
    ours = m.generate(PROMPTS, melody=MELODIES, max_new_tokens=16, do_sample=False, guidance_scale=3.0)
    audio, tokens = reference(tm, m, PROMPTS, MELODIES, max_new_tokens=16, do_sample=False, guidance_scale=3.0)
    assert ours.tokens.shape == tokens.shape and tokens.shape[1] == 8
    np.testing.assert_array_equal(ours.tokens, tokens)
    assert ours.audio.shape == audio.shape == (2, 2, ours.codes.shape[-1] * 640)
    assert np.abs(ours.audio - audio).max() <= 1e-4
