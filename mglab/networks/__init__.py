"""The three networks of MusicGen as Python objects over their ONNX sessions.

Imports ``onnx`` and ``core``. ::

    text.py      stage 1: TextEncoder, prompts -> T5 hidden states
    decoder.py   stage 3: Decoder, one token per codebook per step, merged or split graphs
    kvcache.py   the decoder's KV cache, in-place buffers or concatenated arrays
    codec.py     stage 7: the Codec interface and EncodecCodec, codes <-> audio
    melody.py    MusicGen-Melody: the condition graph (text + chroma -> prefix), the prefix-reading decoder
    masked_lm.py MAGNeT's masked LM: codes, text and a stage -> logits for every position at once
"""
