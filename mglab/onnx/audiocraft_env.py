"""audiocraft 1.3.0 (MAGNeT) importable on torch 2.13's CPU build, for the MAGNeT export and the tests.

audiocraft pins torch 2.1 and imports, at package import, modules its LM never calls (xformers, torchaudio,
spacy, demucs, dora, ...); it is installed ``--no-deps`` (Makefile) and those modules are stood in for here:
``xformers.ops.unbind`` is ``torch.unbind`` (the one function the custom attention path reaches), the
others are empty modules whose attributes are inert placeholders. Real modules already imported stay.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
from contextlib import contextmanager
from pathlib import Path

STOOD_IN = ("torchaudio", "torchaudio.functional", "torchaudio.transforms", "torchaudio.compliance",
            "torchaudio.compliance.kaldi", "spacy", "demucs", "demucs.apply", "demucs.audio", "demucs.pretrained",
            "gradio", "pesq", "pystoi", "treetable", "torchtext", "torchvision", "torchvision.transforms",
            "torchvision.models", "laion_clap")


class _Placeholder:
    """Stands for any name imported from a stood-in module; never called by the LM."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Placeholder()

    def __getattr__(self, name):
        return _Placeholder()


def _module(name: str, **attrs) -> types.ModuleType:
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    m.__path__ = []
    m.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)

    def missing(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Placeholder

    m.__getattr__ = missing
    sys.modules[name] = m
    parent, _, leaf = name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], leaf, m)
    return m


def _real(name: str) -> bool:
    """A module that is installed and imports (then it is used, not stood in for: transformers' melody feature
    extractor needs the real torchaudio, and a stand-in left in ``sys.modules`` would break it)."""
    import importlib
    import importlib.util

    root = name.split(".")[0]
    if root in ("xformers", "dora") or importlib.util.find_spec(root) is None:
        return False
    try:
        importlib.import_module(name)
        return True
    except Exception:                                     # noqa: BLE001 - a broken install: stand in for it
        return False


def install() -> None:
    """Stand in for what audiocraft imports but the LM never uses; real modules already imported stay."""
    import torch

    wanted = {"xformers": {}, "xformers.ops": dict(unbind=torch.unbind, LowerTriangularMask=_Placeholder),
              "dora": dict(hydra_main=lambda *a, **k: (lambda f: f)),
              "dora.distrib": dict(rank=lambda: 0, world_size=lambda: 1, init=lambda *a, **k: None),
              "dora.log": {}, **{name: {} for name in STOOD_IN}}
    for name, attrs in wanted.items():
        if name not in sys.modules and not _real(name):
            _module(name, **attrs)


@contextmanager
def local_t5(root):
    """For the block, audiocraft's ``T5Conditioner`` also takes a T5 saved in a folder ``root/<name>`` (a
    transformers ``T5EncoderModel`` and its ``tokenizer.json``): it knows only Hub names (t5-base, ...) and a
    sentencepiece tokenizer. A name with no such folder goes to the Hub as before."""
    import json

    import transformers
    from audiocraft.modules import conditioners as c

    root = Path(root)
    cls = c.T5Conditioner
    saved = (cls.MODELS, cls.MODELS_DIMS, c.T5Tokenizer, c.T5EncoderModel)
    local = {p.name: p for p in root.iterdir() if (p / "config.json").is_file() and (p / "tokenizer.json").is_file()} \
        if root.is_dir() else {}

    class Tokenizer:
        @staticmethod
        def from_pretrained(name, *args, **kwargs):
            if name not in local:
                return saved[2].from_pretrained(name, *args, **kwargs)
            return transformers.PreTrainedTokenizerFast(tokenizer_file=str(local[name] / "tokenizer.json"),
                                                        pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                                        model_input_names=["input_ids", "attention_mask"])

    class Encoder:
        @staticmethod
        def from_pretrained(name, *args, **kwargs):
            return saved[3].from_pretrained(str(local.get(name, name)), *args, **kwargs)

    cls.MODELS = list(cls.MODELS) + list(local)
    cls.MODELS_DIMS = {**cls.MODELS_DIMS, **{n: json.loads((p / "config.json").read_text())["d_model"]
                                              for n, p in local.items()}}
    c.T5Tokenizer, c.T5EncoderModel = Tokenizer, Encoder
    try:
        yield
    finally:
        cls.MODELS, cls.MODELS_DIMS, c.T5Tokenizer, c.T5EncoderModel = saved
