"""A synthesizer codec with EnCodec's interface: the codec of the trained nano model (not EnCodec).

It decodes ``audio_codes [1, B, K=4, frames]`` into ``audio_values [B, 1, frames * 640]`` at 32 kHz, 50 frames a
second, like RVQ decoding: each codebook's token selects a row of that codebook's table (a plain ``Gather``),
the rows are summed into a latent ``[B, D=16, frames]``, and a synthesizer turns the latent into sound. The
codebooks mean, coarse to fine as in a real codec::

    codebook 0  pitch        0 = rest, 1..61 = MIDI 36..96 (C2..C7)
    codebook 1  dynamics     level l = t % 8 (RMS -36 + 3 l dBFS), stage s = t // 8: 1 = strike (the note
                             starts anew), 0 = held, 2..7 = held, the note's age (frames since its strike)
                             1-4, 5-7, 8-11, 12-17, 18-24, 25+ (:data:`AGE_EDGES`)
    codebook 2  timbre       instrument t % 6: piano, organ, flute, violin, marimba, clarinet
    codebook 3  fine pitch   vibrato depth 8 * (t % 8) cents at 5.5 Hz, detune 6 * ((t // 8) % 8 - 4) cents

    latent row:  0 log2(f0 / 440)   1 note on   2 level dB / 10   3 strike   4..9 instrument one-hot
                 10 vibrato depth (cents / 100)   11 detune (cents / 100)   12..15 zero

The age stages sound as held notes do: like the envelope tokens of a real codec, they say where in its note
a frame is (the synthesizer computes its envelope from the strike). A note starts (its envelope and phase
restart) where the strike flag is set, after a rest, or where the instrument changes; a pitch change without a
strike is legato (the phase runs on, the vibrato's with it). Everything a frame sounds is a function of the
frames since its note started, the frame before and the frame after: no phase is accumulated from the start of
the clip, so a stream decoded from the note's start (:meth:`SynthCodec.stream_start`) equals the one-shot
decode. Notes attack from silence and fade to silence over 20 ms before the next note or a rest, so there are no
clicks at frame or note boundaries.

The graph is built by :func:`build` (PyTorch, at build time only) and run by ONNX Runtime like any codec.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..audio import vocabulary
from ..networks.codec import EncodecCodec

SAMPLE_RATE, HOP, K, VOCAB, DIM = 32000, 640, 4, 64, 16
LOWEST_MIDI, PITCHES = 36, 61
INSTRUMENTS = vocabulary.INSTRUMENTS
VIBRATO_HZ, FADE_S, PARTIALS = 5.5, 0.02, 10
STRIKE = 1                                  # codebook 1's stage that starts a note
AGE_EDGES = (1, 5, 8, 12, 18, 25)           # first age (frames since the strike) of stages 2..7


def midi_to_token(midi: int) -> int:
    """MIDI note -> codebook-0 token (0 is a rest)."""
    if not LOWEST_MIDI <= midi < LOWEST_MIDI + PITCHES:
        raise ValueError(f"midi={midi} is not allowed: midi must be in [{LOWEST_MIDI}, {LOWEST_MIDI + PITCHES - 1}]")
    return midi - LOWEST_MIDI + 1


def token_to_midi(token: int) -> int | None:
    """The MIDI pitch of a codebook-0 token, or None for a rest."""
    return token + LOWEST_MIDI - 1 if 1 <= token <= PITCHES else None


def level_db(level: int) -> float:
    """The loudness in dB of a dynamics level."""
    return -36.0 + 3.0 * level


def dynamics_token(level: int, age: int | None = None) -> int:
    """Codebook-1 token of a frame ``age`` frames after its note's strike (0: the strike; None: held, no age).

    Examples
    --------
    >>> [dynamics_token(5, a) for a in (0, 1, 4, 5, 30)], dynamics_token(5)
    ([13, 21, 21, 29, 61], 5)
    """
    if age is None:
        return level
    stage = STRIKE if age == 0 else 1 + int(np.searchsorted(AGE_EDGES, age, side="right"))
    return 8 * stage + level


def is_strike(token):
    """Codebook-1 tokens (an int or an array) that start a note anew."""
    return np.asarray(token) // 8 == STRIKE


def tables() -> np.ndarray:
    """The four codebook tables ``[K, VOCAB, DIM]`` (what ``codebooks()`` reads back from the graph)."""
    t = np.zeros((K, VOCAB, DIM), dtype=np.float32)
    for tok in range(1, PITCHES + 1):                                  # pitch
        t[0, tok, 0] = (token_to_midi(tok) - 69) / 12.0
        t[0, tok, 1] = 1.0
    for tok in range(VOCAB):
        t[1, tok, 2] = level_db(tok % 8) / 10.0                        # dynamics
        t[1, tok, 3] = float(tok // 8 == STRIKE)
        t[2, tok, 4 + tok % len(INSTRUMENTS)] = 1.0                    # timbre
        t[3, tok, 10] = 8.0 * (tok % 8) / 100.0                        # vibrato, detune
        t[3, tok, 11] = 6.0 * ((tok // 8) % 8 - 4) / 100.0
    return t


def instrument_partials() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per instrument: partial frequency ratios, amplitudes, decay rates (1/s) ``[6, PARTIALS]`` and attack
    times (s) ``[6]``: different harmonic spectra and envelopes."""
    h = np.arange(1, PARTIALS + 1, dtype=np.float64)
    ratio = np.tile(h, (6, 1))
    amp = np.zeros((6, PARTIALS))
    decay = np.zeros((6, PARTIALS))
    ratio[0] = h * np.sqrt(1 + 0.0004 * h ** 2)                         # piano: stiff strings
    amp[0], decay[0] = h ** -1.3, 1.0 + 0.5 * h
    amp[1, [0, 1, 2, 3, 5, 7]] = [1.0, 0.9, 0.55, 0.5, 0.35, 0.3]      # organ: drawbars, no decay
    amp[2, :4], decay[2] = [1.0, 0.22, 0.08, 0.03], 0.15                # flute: nearly a sine
    amp[3], decay[3] = 1.0 / h, 0.05                                    # violin: a bowed sawtooth
    ratio[4, :3], amp[4, :3] = [1.0, 3.93, 9.21], [1.0, 0.45, 0.15]     # marimba: inharmonic bar modes
    decay[4, :3] = [2.5, 8.0, 18.0]
    amp[5] = np.where(h % 2 == 1, 1.0 / h, 0.03 / h)                    # clarinet: odd harmonics
    decay[5] = 0.05
    attack = np.array([0.003, 0.012, 0.05, 0.07, 0.002, 0.03])
    amp /= np.sqrt((amp ** 2).sum(axis=1, keepdims=True) / 2)          # every timbre: RMS 1 at level 0 dB
    return ratio, amp, decay, attack


def onsets(codes: np.ndarray) -> np.ndarray:
    """``codes [..., K, frames]`` -> bool ``[..., frames]``: where a note starts (as the graph decides it)."""
    pitch, dyn, timbre = codes[..., 0, :], codes[..., 1, :], codes[..., 2, :] % len(INSTRUMENTS)
    note = (pitch >= 1) & (pitch <= PITCHES)
    prev_note = np.concatenate([np.zeros_like(note[..., :1]), note[..., :-1]], axis=-1)
    prev_timbre = np.concatenate([timbre[..., :1], timbre[..., :-1]], axis=-1)
    return note & (is_strike(dyn) | ~prev_note | (timbre != prev_timbre))


class SynthCodec(EncodecCodec):
    """The synthesizer graph, run by ONNX Runtime; a stream decodes each chunk from the start of the note
    sounding at its first frame."""

    def stream_start(self, codes: np.ndarray, first: int) -> int:
        """The earliest frame a decode must include for frames ``>= first`` to sound as in a one-shot decode:
        the start of the note sounding at ``first`` (``codes [B, K, frames]``)."""
        if first <= 0:
            return 0
        on = onsets(codes[..., :first + 1])                                    # [B, first + 1]
        note = (codes[:, 0, first] >= 1) & (codes[:, 0, first] <= PITCHES)     # [B]
        starts = [int(np.flatnonzero(o)[-1]) if n and o.any() else first for o, n in zip(on, note)]
        return max(0, min(starts) - 1)


def build(path: Path) -> Path:
    """Write the synthesizer as ``encodec_decode.onnx`` (needs PyTorch, at build time only)."""
    import torch

    module = _Synth()
    codes = torch.zeros((1, 2, K, 30), dtype=torch.int64)
    path = Path(path)
    torch.onnx.export(module, (codes,), str(path), input_names=["audio_codes"], output_names=["audio_values"],
                      dynamic_axes={"audio_codes": {1: "batch", 3: "frames"},
                                    "audio_values": {0: "batch", 2: "samples"}},
                      opset_version=17, dynamo=False)
    return path


def build_for_export(path: Path) -> dict:
    """:func:`build`, and the codec's description for a masked export's ``config.json`` (``python -m mglab
    export`` of a checkpoint whose codec is ``mglab:nano-synth``: :mod:`mglab.onnx.magnet_checkpoint`)."""
    build(path)
    return {"mglab_codec": "synth", "sample_rate": SAMPLE_RATE, "hop_length": HOP, "audio_channels": 1,
            "codebook_size": VOCAB, "num_codebooks": K}


def _module_class():
    import torch

    class Synth(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for k, table in enumerate(tables()):
                self.register_buffer(f"codebook_{k}", torch.from_numpy(table))          # [VOCAB, DIM]
            ratio, amp, decay, attack = instrument_partials()
            self.register_buffer("ratio", torch.from_numpy(ratio))                      # [6, P] float64
            self.register_buffer("amp", torch.from_numpy(amp).float())
            self.register_buffer("decay", torch.from_numpy(decay).float())
            self.register_buffer("attack", torch.from_numpy(attack).float())

        def forward(self, audio_codes):                                  # [1, B, K, F]
            codes = audio_codes[0]                                       # [B, K, F]
            latent = sum(torch.nn.functional.embedding(codes[:, k], getattr(self, f"codebook_{k}"))
                         for k in range(K))                              # [B, F, DIM]
            return self.synthesize(latent.transpose(1, 2))               # [B, 1, F * HOP]

        def synthesize(self, latent):                                    # [B, DIM, F]
            b, f = latent.shape[0], latent.shape[2]
            note = latent[:, 1] > 0.5                                    # [B, F]
            strike = latent[:, 3] > 0.5
            inst = latent[:, 4:10].argmax(dim=1)                         # [B, F]
            first = torch.ones_like(note[:, :1])
            prev_note = torch.cat([~first, note[:, :-1]], dim=1)
            prev_inst = torch.cat([inst[:, :1], inst[:, :-1]], dim=1)
            onset = note & (strike | ~prev_note | (inst != prev_inst))   # [B, F]
            nxt_onset = torch.cat([onset[:, 1:], first], dim=1)
            nxt_note = torch.cat([note[:, 1:], ~first], dim=1)
            ends = note & (nxt_onset | ~nxt_note)                        # the note's last frame: fade out

            frames = torch.arange(f, device=latent.device)               # [F]
            pos = torch.where(onset, frames[None], torch.full_like(onset, -1, dtype=torch.int64))   # [B, F]
            upto = frames[None, :] <= frames[:, None]                    # [F, F]: j <= f
            start = torch.where(upto[None], pos[:, None, :], torch.full_like(pos[:, None, :], -1)).amax(-1)
            start = torch.clamp(start, min=0)                            # [B, F]: frame its note started

            detune = latent[:, 11] / 12.0                                # octaves
            f0 = 440.0 * torch.pow(2.0, latent[:, 0] + detune)           # [B, F] Hz
            f0 = torch.where(note, f0, torch.zeros_like(f0))
            cycles = (f0.double() * HOP / SAMPLE_RATE)                   # [B, F] cycles per frame
            cycles = cycles - torch.floor(cycles)
            run = torch.cumsum(cycles, dim=1)                            # [B, F], float64
            before = torch.cat([torch.zeros_like(run[:, :1]), run[:, :-1]], dim=1)   # sum over j < f
            at_start = torch.gather(before, 1, start)                    # sum over j < start
            phase0 = before - at_start                                   # cycles from the note start

            n = torch.arange(HOP, device=latent.device).double() / SAMPLE_RATE       # [HOP] s
            t = ((frames[None] - start).double() * HOP / SAMPLE_RATE)[..., None] + n   # [B, F, HOP] since onset
            depth = (latent[:, 10].double() / 12.0 * math.log(2.0))      # relative frequency depth
            g = f0.double() * depth / (2 * math.pi * VIBRATO_HZ)          # [B, F] cycles: the vibrato's reach
            vib = g[..., None] * (1.0 - torch.cos(2 * math.pi * VIBRATO_HZ * t))   # [B, F, HOP] cycles
            # where g changes within a note (a legato pitch change, a new depth) the vibrato's phase runs on:
            # frame f's offset is the sum, over the note's frames j <= f, of (g[j-1] - g[j]) (1 - cos) at j's
            # start; 0 at a strike (t = 0) and wherever g holds, so a note of one g sounds as it always did
            t0 = (frames[None] - start).double() * HOP / SAMPLE_RATE     # [B, F] s since onset
            g_prev = torch.cat([g[:, :1], g[:, :-1]], dim=1)
            step = (g_prev - g) * (1.0 - torch.cos(2 * math.pi * VIBRATO_HZ * t0))  # [B, F]
            carried = torch.cumsum(step, dim=1)
            carried = carried - torch.gather(carried, 1, start)          # [B, F]: over the note's frames only
            phase = phase0[..., None] + f0.double()[..., None] * n + vib + carried[..., None]   # [B, F, HOP]
            phase = phase - torch.floor(phase)

            ratio = self.ratio[inst]                                     # [B, F, P] float64
            partial = phase[..., None] * ratio[:, :, None, :]            # [B, F, HOP, P]
            partial = torch.sin(2 * math.pi * (partial - torch.floor(partial))).float()
            audible = (f0[..., None] * ratio.float() < 15000.0).float()  # [B, F, P]: no aliasing
            tf = t.float()[..., None]                                    # [B, F, HOP, 1]
            env = torch.exp(-self.decay[inst][:, :, None, :] * tf)       # [B, F, HOP, P]
            wave = (partial * env * (self.amp[inst] * audible)[:, :, None, :]).sum(-1)   # [B, F, HOP]

            attack = torch.clamp(t.float() / self.attack[inst][..., None], max=1.0)     # from silence
            nf = torch.arange(HOP, device=latent.device).float()
            fade = torch.clamp((HOP - nf) / (FADE_S * SAMPLE_RATE), max=1.0)          # [HOP]
            fade = torch.where(ends[..., None], fade[None, None], torch.ones_like(fade)[None, None])
            level = latent[:, 2] * 10.0                                  # [B, F] dB
            prev_level = torch.cat([level[:, :1], level[:, :-1]], dim=1)
            prev_level = torch.where(onset, level, prev_level)
            ramp = torch.clamp(nf / (FADE_S * SAMPLE_RATE), max=1.0)     # level moves over 20 ms
            db = prev_level[..., None] + (level - prev_level)[..., None] * ramp        # [B, F, HOP]
            gain = torch.pow(10.0, db / 20.0) * note[..., None].float()
            audio = wave * attack * fade * gain                          # [B, F, HOP]
            return audio.reshape(b, 1, f * HOP)

    return Synth


def _Synth():
    return _module_class()()
