"""mglab: a notebook-first research workbench for MusicGen on ONNX Runtime."""

from .generation import Generation
from .model import MusicGen, load
from .sweeps import sweep, sweep_cache
from .version import __version__

__all__ = ["Generation", "MusicGen", "load", "sweep", "sweep_cache", "__version__"]
