"""The stages a decoding step passes through, and the loops that drive them.

Imports ``networks``, ``onnx`` and ``core``. ::

    conditioning.py   stage 2: the rows the decoder runs (conditional and null halves for guidance)
    melody.py         stage 2 for MusicGen-Melody: text and chroma -> the decoder's prefix rows
    guidance.py       stage 4: classifier-free guidance
    sampling.py       stage 5: temperature, top-k, top-p, greedy or sampling
    patterns.py       stage 6: codebook patterns (audiocraft's providers) and the delay mask as transformers
                      writes it
    loop.py           one window of autoregressive decoding, top to bottom
    residual_step.py  one step with the residual stream's hooks (read, edit, run again)
    longform.py       runs longer than the window, window after window
    streaming.py      audio chunks handed out while decoding goes on
    continuation.py   an audio prompt becomes the first frames
    masked.py         masked iterative decoding (MAGNeT): stage by stage, spans masked again by confidence
    masks.py          which codes a vamp regenerates: inpaint, periodic, codebooks, random, & | ~
"""
