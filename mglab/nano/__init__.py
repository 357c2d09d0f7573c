"""The synthetic world of the trained nano model. Everything here is synthetic.

Imports ``networks``, ``audio`` and ``core``. ::

    synth.py    SynthCodec: a synthesizer with EnCodec's interface, the nano model's codec
    corpus.py   (prompt, codes) pairs drawn from the attribute grammar of :mod:`mglab.audio.vocabulary`

The training code is ``scripts/train_nano.py``.
"""
