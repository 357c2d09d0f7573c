"""mglab: a notebook-first research workbench for MusicGen on ONNX Runtime.

The public API is flat (``mglab.load``, ``mglab.MusicGen``, ``mglab.Generation``, ``mglab.sweep``,
``mglab.steer``, ...); the code lives in rooms whose names are the architecture. Imports run downward only
(``tests/test_layout.py`` checks it)::

    mglab/              model.py (load, MusicGen), masked_model.py (MaskedMusicGen: MAGNeT), melody_model.py
                        (MelodyMusicGen: MusicGen-Melody), generation.py,
                        sweeps.py, cli.py: the facade
      inspect/          looking inside: activation cache, interventions, logit lens, plots, explorer, reports
      nano/             the synthetic world of the nano model: synthesizer codec, corpus
      decoding/         the stages a step passes through and the loops that drive them
      networks/         the three networks as Python objects: text encoder, decoder (+ KV cache), codec
      audio/            what works on any audio: the attribute vocabulary, measuring attributes
      onnx/             files and graphs: finding files, the Hub, sessions, rewrites, quantize, export
      core/             the ground floor: config, generation parameters, hook registry, atomic writes

What each room may import (``tests/test_layout.py``'s table), never a room above it or beside it::

    inspect   -> decoding, networks, onnx, audio, core
    nano      -> networks, audio, core
    decoding  -> networks, onnx, core
    networks  -> onnx, core
    audio     -> core
    onnx      -> core
    core      -> (nothing)
"""

from .core.hooks import Hook, HookRegistry
from .decoding import masks
from .generation import Generation
from .inspect import probe, sae
from .inspect.activation_cache import ActivationCache
from .inspect.interventions import logit_lens, mean_residual, patch, patching_map, steer, steering_vector
from .masked_model import MaskedMusicGen
from .melody_model import MelodyMusicGen
from .model import MusicGen, load
from .networks.codec import Codec
from .onnx.spec import LoadSpec
from .sweeps import sweep, sweep_cache
from .version import __version__

__all__ = ["ActivationCache", "Codec", "Generation", "Hook", "HookRegistry", "LoadSpec", "MaskedMusicGen",
           "MelodyMusicGen", "MusicGen", "load", "masks", "probe", "sae",
           "logit_lens", "mean_residual", "patch", "patching_map", "steer", "steering_vector", "sweep",
           "sweep_cache", "__version__"]
