"""mglab: a notebook-first research workbench for MusicGen on ONNX Runtime."""

from .generation import Generation
from .model import MusicGen, load

__version__ = "0.1.0"
__all__ = ["Generation", "MusicGen", "load", "__version__"]
