"""The runnable Examples in the docstrings run (librosa style), and what they print is what they give."""

import doctest
import importlib

import pytest

MODULES = ["mglab.corpus", "mglab.patterns", "mglab.fileio", "mglab.numeric", "mglab.longform", "mglab.delay",
           "mglab.metrics", "mglab.sampling", "mglab.continuation", "mglab.accuracy", "mglab.reports"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
