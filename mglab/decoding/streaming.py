"""Streaming: audio chunks handed out while decoding goes on.

Each chunk decodes the frames finished so far with ``context`` frames before it and ``lookahead`` frames
held back after it (a codec's output near the end still depends on frames to come), and hands out only the
settled part::

    frames:   ... [context][===== chunk =====][lookahead] <- still decoding
    audio:                 [===== yield =====]

Joined, the chunks equal a one-shot decode of the same codes within ``STREAM_TOLERANCE``. How much context
a codec needs is its own to say (``codec.stream_start``): EnCodec's convolutions and LSTM settle within
``STREAM_CONTEXT`` frames; the synthesizer needs the start of the note that is sounding.

The codec hooks fire here too: each frame passes ``codec.hook_codes`` once, when it first enters the codec's
buffer (``[B, K, new frames]``), and every chunk passes ``codec.hook_audio`` (``[B, channels, chunk
samples]``); ``codec.hook_latent`` sees each chunk's decode window (the chunk and its context).
"""

from __future__ import annotations

import numpy as np

from ..networks import codec as codecs
from ..networks.codec import STREAM_CONTEXT  # noqa: F401  (re-exported: the default context)

STREAM_LOOKAHEAD = 4     # frames held back after a chunk: their audio still depends on frames to come
STREAM_TOLERANCE = 1e-4  # |joined chunks - one-shot decode| allowed (1.2e-7 seen on the bundled model)


def chunks(frames, codec, hooks, chunk: int, lookahead: int = STREAM_LOOKAHEAD):
    """Yield audio ``[B, channels, samples]`` every ``chunk`` settled frames from ``frames`` (an iterator of
    finished frames ``[B, K, 1]``), then the rest when it ends."""
    hop = codec.hop_length
    buffer, pending, emitted = [], [], 0     # codes through the hook; frames not yet through it

    def decode():
        if pending:
            buffer.append(hooks("codec.hook_codes", np.concatenate(pending, axis=-1)))   # [B, K, n]
            pending.clear()
        codes = np.concatenate(buffer, axis=-1)                               # [B, K, frames so far]
        start = codec.stream_start(codes, emitted)
        return start, codecs.decode(codec, codes[..., start:], hooks)         # [B, C, samples]

    for frame, *_ in frames:
        pending.append(frame)
        done = sum(b.shape[-1] for b in buffer) + len(pending)
        settled = done - lookahead
        if settled - emitted >= chunk:
            start, audio = decode()
            yield hooks("codec.hook_audio", audio[..., (emitted - start) * hop: (settled - start) * hop])
            emitted = settled
    start, audio = decode()
    yield hooks("codec.hook_audio", audio[..., (emitted - start) * hop:])
