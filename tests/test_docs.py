"""The runnable Examples in the docstrings run (librosa style), and what they print is what they give."""

import doctest
import importlib

import pytest

MODULES = ["mglab.nano.corpus", "mglab.core.fileio", "mglab.core.numeric", "mglab.decoding.longform",
           "mglab.decoding.patterns", "mglab.inspect.distributions", "mglab.decoding.sampling",
           "mglab.decoding.continuation", "mglab.onnx.accuracy", "mglab.inspect.reports", "mglab.audio.vocabulary",
           "mglab.decoding.masks", "mglab.masked_model", "mglab.networks.masked_lm", "mglab.inspect.activations",
           "mglab.inspect.probe", "mglab.inspect.sae", "mglab.inspect.features"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
