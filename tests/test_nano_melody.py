"""The bundled nano-melody: its graphs are ``python -m mglab export`` of its PyTorch checkpoint (the synthesizer in
EnCodec's place), its greedy tokens are transformers' on the same weights, and it plays the melody it is given
(chroma cosine measured from the audio) on the instrument the text asks for."""

import json
import sys

import numpy as np
import pytest
from helpers import ROOT

import mglab
from mglab.audio import evaluate
from mglab.audio.chroma import chroma, chroma_cosine
from mglab.nano import corpus

NANO_MELODY = ROOT / "data" / "models" / "nano-melody"
SR = 32000
sys.path.insert(0, str(ROOT / "tests"))


@pytest.fixture(scope="module")
def model():
    return mglab.load(NANO_MELODY)


def line(midis, note_seconds=0.5):
    t = np.arange(int(note_seconds * SR)) / SR
    env = np.minimum(1.0, t / 0.01) * np.exp(-2.0 * t)
    return np.concatenate([np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * t) * env for m in midis]).astype(np.float32)


def test_the_bundle_is_the_export_of_its_checkpoint(tmp_path):
    from mglab.cli import main

    out = tmp_path / "out"
    assert main(["export", str(NANO_MELODY / "pytorch"), str(out)]) == 0
    ours = sorted(f.name for f in (NANO_MELODY / "onnx").iterdir())
    for name in ours:
        if not name.startswith("encodec_"):                                      # the synthesizer replaces EnCodec
            assert (out / "onnx" / name).read_bytes() == (NANO_MELODY / "onnx" / name).read_bytes(), name
    config = json.loads((NANO_MELODY / "config.json").read_text())
    assert config.pop("mglab_codec") == "synth" and config == json.loads((out / "config.json").read_text())
    assert config["model_type"] == "musicgen_melody" and config["chroma_length"] == 32
    size = sum(p.stat().st_size for p in NANO_MELODY.rglob("*") if p.is_file())
    assert size <= 25_000_000                                                   # the limit
    card = (NANO_MELODY / "README.md").read_text()
    for heading in ("## What it is", "## Data", "## Training", "## Scores", "## Limits"):
        assert heading in card
    assert "synthetic" in card.lower()


def test_greedy_tokens_equal_transformers_on_the_same_weights(model):
    import torch
    from test_melody import fixed, reference
    from transformers import MusicgenMelodyForConditionalGeneration

    tm = fixed(MusicgenMelodyForConditionalGeneration.from_pretrained(NANO_MELODY / "pytorch").eval())
    prompts = ["a slow low organ melody in d minor", "flute"]                   # padded
    melodies = [line([60, 64, 67, 72]), line([69, 65, 62, 57, 55, 57])]
    kw = dict(max_new_tokens=120, do_sample=False, guidance_scale=3.0)
    ours = model.generate(prompts, melody=melodies, **kw)
    with torch.no_grad():
        _, tokens = reference(tm, model, prompts, melodies, **kw)
    np.testing.assert_array_equal(ours.tokens, tokens)


def test_it_plays_the_melody_on_the_asked_instrument(model):
    """Two melodies (a synthesized line, a corpus clip the training never drew) on three instruments, guidance 3,
    against the same prompts with no melody (chance is 1/12)."""
    clip = corpus.example(np.random.default_rng(424242), 4.0)
    melodies = [line([60, 62, 64, 65, 67, 65, 64, 62]), model.codec.decode(clip.codes[None])[0, 0]]
    instruments = ["piano", "flute", "marimba"]
    prompts = [f"a {i} melody" for i in instruments for _ in melodies]
    given = [m for _ in instruments for m in melodies]
    kw = dict(duration=4.0, seed=0, guidance_scale=3.0)
    with_melody = model.generate(prompts, melody=given, **kw)
    free = model.generate(prompts, **kw)
    on = [chroma_cosine(m, a[0], SR) for m, a in zip(given, with_melody.audio)]
    off = [chroma_cosine(m, a[0], SR) for m, a in zip(given, free.audio)]
    # measured 0.47 and 0.10 (the card's benchmark over 192 clips: 0.54 and 0.07; the 0.8 is not met)
    assert np.mean(on) >= 0.35 and np.mean(off) <= 0.2 and min(on) > 0.15, (on, off)
    heard = [evaluate.adherence({"instrument": p.split()[1]}, a[0], SR)["instrument"]
             for p, a in zip(prompts, with_melody.audio)]
    assert sum(bool(h) for h in heard) >= 5, heard
    assert chroma(with_melody.audio[0, 0], SR).shape == (1, 32, 12)


def test_a_fixed_text_length_makes_a_prompt_independent_of_its_batch(tmp_path):
    """Padded to the batch's longest prompt (as nano-melody trained), a prompt's codes sit further from its
    chroma beside a longer prompt, so its greedy tokens differ alone and in a batch (measured: 47% of them).
    With tokenizer.json's padding fixed (``train_nano_melody.py --text-length``), mglab pads to that length
    (transformers: ``padding="max_length"``), alone equals in a batch, and a longer prompt is refused before
    anything runs."""
    import shutil

    from transformers import AutoTokenizer

    prompts = ["flute", "a slow low organ melody in d minor with a flute"]
    melodies = [line([60, 64, 67, 72]), line([69, 65, 62, 57])]
    kw = dict(max_new_tokens=60, do_sample=False, guidance_scale=3.0)

    def alone_and_batched(m):
        return m.generate(prompts[:1], melody=melodies[:1], **kw).tokens[0], m.generate(prompts, melody=melodies,
                                                                                         **kw).tokens[0]
    a, b = alone_and_batched(mglab.load(NANO_MELODY))
    assert (a != b).mean() > 0.2
    fixed = tmp_path / "nano-melody"
    shutil.copytree(NANO_MELODY, fixed)
    from tokenizers import Tokenizer

    for path in (fixed / "tokenizer.json", fixed / "pytorch" / "tokenizer.json"):
        tok = Tokenizer.from_file(str(path))
        tok.enable_padding(pad_id=0, pad_token="<pad>", length=32)                # as --text-length 32 saves it
        tok.save(str(path))
    m = mglab.load(fixed)
    ids, mask = m.text.tokenize(prompts)
    theirs = AutoTokenizer.from_pretrained(fixed / "pytorch")(prompts, padding="max_length", max_length=32,
                                                               return_tensors="np")
    assert ids.shape == (2, 32) and mask.sum(1).tolist() == [2, 12]
    np.testing.assert_array_equal(ids, theirs["input_ids"])
    a, b = alone_and_batched(m)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="prompt must be at most 32 tokens"):
        m.generate(" ".join(["flute"] * 32), melody=melodies[0], **kw)
    with pytest.raises(ValueError, match="negative_prompt has 33 tokens"):
        m.generate("flute", negative_prompt=" ".join(["organ"] * 32), melody=melodies[0], **kw)
