"""The nano model's corpus: (prompt, codes) pairs from a documented grammar of musical attributes.

Everything here is synthetic. A clip is drawn from its attributes, its melody is written as synthesizer codes
(:mod:`mglab.nano.synth`), and its prompt says some of the attributes in varied words::

    register    low (MIDI 36-59), mid (55-76), high (72-96)
    tempo       slow (<= 2 onsets/s), moderate (2.5-4), fast (>= 5), or "N bpm" (one note a beat)
    key, mode   c, c#, db, ... b; major or minor. Melodies start and end on the tonic, lean on the tonic
                triad and sound its third, so the key and the mode can be heard.
    instrument  piano, organ, flute, violin, marimba, clarinet
    dynamics    soft, loud
    figure      arpeggio, scale, melody, repeated notes

    "a slow low organ melody in d minor"   ->   codes [4, frames]: pitch, dynamics (with the note's age),
                                                                   timbre, vibrato

Prompts vary the word order, add filler words ("a", "with", "played on the", "in the ... register",
"track", "music"), use synonyms (quick for fast, gentle for soft, ...) and leave attributes out (the clip
then has a random value for them). :data:`HELD_OUT` combinations never appear in training.

Examples
--------
>>> clip = example(np.random.default_rng(0))
>>> clip.prompt, clip.codes.shape
('organ piece at 72 bpm', (4, 250))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..audio.vocabulary import (  # noqa: F401  (the grammar, re-exported)
    BPMS,
    FIGURES,
    FILLERS,
    INSTRUMENTS,
    KEYS,
    MODES,
    PITCH_NAMES,
    REGISTERS,
    SYNONYMS,
    TEMPO_LIMITS,
    attributes,
    vocabulary,
)
from . import synth

TEMPI = {"slow": (1.25, 1.8), "moderate": (2.7, 3.7), "fast": (5.3, 6.5)}   # onsets per second drawn
DYNAMICS = {"soft": (1, 3), "loud": (5, 7)}                  # synth levels drawn
HELD_OUT = ({"instrument": "marimba", "register": "low"}, {"instrument": "organ", "tempo": "fast"},
            {"instrument": "violin", "figure": "arpeggio"}, {"instrument": "flute", "mode": "minor",
                                                              "register": "high"})
FRAME_RATE = synth.SAMPLE_RATE / synth.HOP


@dataclass
class Clip:
    """One corpus item: its prompt, every attribute it was drawn with, the ones the prompt says, its codes."""

    prompt: str
    attributes: dict                      # all of them (the ground truth of the codes)
    said: dict                            # those the prompt names
    codes: np.ndarray                     # [4, frames] int64
    notes: list = field(default_factory=list)   # [(midi, start_frame, frames), ...]


def draw_attributes(rng: np.random.Generator, held_out: bool = False) -> dict:
    """Every attribute of a clip; combinations in :data:`HELD_OUT` only when ``held_out`` (then always one)."""
    while True:
        a = {"register": rng.choice(list(REGISTERS)), "key": PITCH_NAMES[rng.integers(12)],
             "mode": rng.choice(list(MODES)), "instrument": rng.choice(INSTRUMENTS),
             "dynamics": rng.choice(list(DYNAMICS)), "figure": rng.choice(FIGURES)}
        if rng.random() < 0.2:
            a["tempo"], a["bpm"] = "bpm", int(rng.choice(BPMS))
        else:
            a["tempo"] = rng.choice(list(TEMPI))
        a = {k: (v.item() if hasattr(v, "item") else v) for k, v in a.items()}
        if is_held_out(a) == held_out:
            return a


def is_held_out(a: dict) -> bool:
    """Whether the attributes ``a`` hold one of the :data:`HELD_OUT` combinations (never trained on)."""
    return any(all(a.get(k) == v for k, v in combo.items()) for combo in HELD_OUT)


def onset_rate(a: dict, rng: np.random.Generator) -> float:
    """Notes a second for the tempo in ``a`` (its bpm, or drawn from the tempo word's range)."""
    if a["tempo"] == "bpm":
        return a["bpm"] / 60.0
    lo, hi = TEMPI[a["tempo"]]
    return float(rng.uniform(lo, hi))


def melody(a: dict, frames: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """``[(midi, start_frame, length), ...]``: a figure in the key, within the register, starting and ending on
    the tonic."""
    lo, hi = REGISTERS[a["register"]]
    tonic_pc = KEYS[a["key"]]
    scale = [p for p in range(lo, hi + 1) if (p - tonic_pc) % 12 in MODES[a["mode"]]]
    tonics = [p for p in scale if (p - tonic_pc) % 12 == 0]
    tonic = tonics[len(tonics) // 2] if len(tonics) > 1 else tonics[0]
    step = max(2, round(FRAME_RATE / onset_rate(a, rng)))                    # frames per note
    count = max(2, frames // step)
    i = scale.index(tonic)
    if a["figure"] == "scale":
        direction = 1 if rng.random() < 0.5 else -1
        idx = [i + direction * k for k in range(count)]
        idx = [_reflect(j, len(scale)) for j in idx]
    elif a["figure"] == "arpeggio":
        chord = [p for p in scale if (p - tonic_pc) % 12 in (0, MODES[a["mode"]][2], 7)]
        c0 = chord.index(tonic)
        pattern = [0, 1, 2, 3, 2, 1]
        idx = [scale.index(chord[_reflect(c0 + pattern[k % 6], len(chord))]) for k in range(count)]
    elif a["figure"] == "repeated notes":                                 # each chord tone 4 times: 1 3 5 3
        third = scale.index(min((p for p in scale if (p - tonic_pc) % 12 == MODES[a["mode"]][2]),
                                key=lambda p: abs(p - tonic)))
        fifth = scale.index(min((p for p in scale if (p - tonic_pc) % 12 == 7), key=lambda p: abs(p - tonic)))
        idx = [[i, third, fifth, third][(k // 4) % 4] for k in range(count)]
    else:                                                                  # melody: a walk leaning on the triad
        triad = (0, MODES[a["mode"]][2], 7)
        idx, cur = [], i
        for _ in range(count):
            idx.append(cur)
            degree = (scale[cur] - tonic_pc) % 12
            move = rng.choice([-2, -1, 1, 2], p=[0.2, 0.3, 0.3, 0.2])
            if degree not in triad and rng.random() < 0.35:                # back to a triad tone
                targets = [j for j, p in enumerate(scale) if (p - tonic_pc) % 12 in triad]
                cur = min(targets, key=lambda j: abs(j - cur))
            else:
                cur = _reflect(cur + int(move), len(scale))
        thirds = [j for j, p in enumerate(scale) if (p - tonic_pc) % 12 == triad[1]]
        if count >= 3 and not any(j in thirds for j in idx):               # the third says the mode
            idx[1] = min(thirds, key=lambda j: abs(j - i))
    idx[0] = idx[-1] = i                                                   # start and end on the tonic
    notes = [(scale[j], k * step, step) for k, j in enumerate(idx)]
    last_midi, last_start, _ = notes[-1]
    notes[-1] = (last_midi, last_start, frames - last_start)               # the tonic rings to the end
    return [n for n in notes if n[1] < frames]


def _reflect(j: int, n: int) -> int:
    period = 2 * (n - 1) if n > 1 else 1
    j = j % period
    return j if j < n else period - j


def render_codes(a: dict, notes, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Synthesizer codes ``[4, frames]`` for ``notes``."""
    codes = np.zeros((4, frames), dtype=np.int64)
    lo, hi = DYNAMICS[a["dynamics"]]
    level = int(rng.integers(lo, hi + 1))
    instrument = INSTRUMENTS.index(a["instrument"])
    vibrato = 3 if a["instrument"] in ("violin", "flute") else 0
    codes[2] = instrument
    codes[3] = 4 * 8 + vibrato                                             # no detune
    for midi, start, length in notes:
        codes[0, start:start + length] = synth.midi_to_token(midi)
        age = np.arange(min(length, frames - start))                       # frames since the strike
        codes[1, start:start + age.size] = [synth.dynamics_token(level, a) for a in age]
    return codes


SAY = {"register": 0.8, "tempo": 0.8, "key": 0.7, "instrument": 0.85, "dynamics": 0.6, "figure": 0.7}


def prompt_for(a: dict, rng: np.random.Generator, say: dict | None = None,
               uninformative: bool = False) -> tuple[str, dict]:
    """A prompt naming some of ``a`` in varied words, and the attributes it names: each attribute with its
    probability in ``say`` (default :data:`SAY`; one keep draw per attribute whatever the probabilities, but the
    words drawn after them depend on what is kept, so a later clip from the same ``rng`` can differ).
    ``uninformative``: what the prompt leaves out is also independent of what it says (:func:`uninformative_keep`)."""
    say = {**SAY, **(say or {})}
    keep = {k: rng.random() < say[k] for k in SAY}
    if uninformative:
        keep = uninformative_keep(a, keep)
    said = {}
    adjectives = []
    if keep["tempo"] and a["tempo"] != "bpm":
        adjectives.append(str(rng.choice(SYNONYMS[a["tempo"]])))
        said["tempo"] = a["tempo"]
    if keep["dynamics"]:
        adjectives.append(str(rng.choice(SYNONYMS[a["dynamics"]])))
        said["dynamics"] = a["dynamics"]
    register_phrase = None
    if keep["register"]:
        said["register"] = a["register"]
        if rng.random() < 0.5:
            adjectives.append(str(rng.choice(SYNONYMS[a["register"]])))
        else:
            register_phrase = f"in the {rng.choice(SYNONYMS[a['register']])} register"
    rng.shuffle(adjectives)
    noun = a["figure"] if keep["figure"] else str(rng.choice(FILLERS))
    if keep["figure"]:
        said["figure"] = a["figure"]
    parts = ["a"] if rng.random() < 0.6 else []
    parts += adjectives
    instrument_phrase = None
    if keep["instrument"]:
        said["instrument"] = a["instrument"]
        if rng.random() < 0.5:
            parts.append(a["instrument"])
        else:
            instrument_phrase = f"{rng.choice(['played on the', 'on', 'with'])} {a['instrument']}"
    parts.append(noun)
    extras = []
    if instrument_phrase:
        extras.append(instrument_phrase)
    if register_phrase:
        extras.append(register_phrase)
    if keep["key"]:
        said["key"], said["mode"] = a["key"], a["mode"]
        extras.append(f"{rng.choice(['in', 'in the key of'])} {_key_name(a['key'], rng)} {a['mode']}")
    if keep["tempo"] and a["tempo"] == "bpm":
        said["tempo"], said["bpm"] = "bpm", a["bpm"]
        extras.append(f"at {a['bpm']} bpm")
    rng.shuffle(extras)
    words = " ".join(parts + extras)
    return words, said


def _named(attribute: str) -> str:
    """The prompt part that names ``attribute`` (the key's part names the mode too)."""
    return "key" if attribute == "mode" else attribute


def uninformative_keep(a: dict, keep: dict) -> dict:
    """``keep`` (attribute -> named), with more named so that the words said carry nothing about the attributes
    left out. :data:`HELD_OUT` makes attributes dependent: a marimba clip is never low, so "a marimba melody"
    (register unsaid) would teach that the word marimba means "not low". Where a clip has the said part of a
    held-out combination and leaves the rest out, the rest is named too.

    >>> a = {"instrument": "marimba", "register": "mid", "tempo": "slow", "figure": "scale", "mode": "major"}
    >>> uninformative_keep(a, {"instrument": True, "register": False, "tempo": False, "figure": True, "key": False})
    {'instrument': True, 'register': True, 'tempo': False, 'figure': True, 'key': False}
    >>> uninformative_keep({**a, "instrument": "piano", "register": "low"},
    ...                    {"instrument": False, "register": True, "tempo": False, "figure": True, "key": False})
    {'instrument': True, 'register': True, 'tempo': False, 'figure': True, 'key': False}
    """
    keep = dict(keep)
    changed = True
    while changed:                                          # naming one part can start another combination
        changed = False
        for combo in HELD_OUT:
            said = [k for k in combo if keep[_named(k)]]
            if said and len(said) < len(combo) and all(a[k] == combo[k] for k in said):
                for k in combo:
                    changed |= not keep[_named(k)]
                    keep[_named(k)] = True
    return keep


def _key_name(pitch_name: str, rng: np.random.Generator) -> str:
    """A spelling of the key: enharmonic names are synonyms (c# or db)."""
    spellings = [k for k, v in KEYS.items() if v == KEYS[pitch_name]]
    return str(rng.choice(spellings))


def example(rng: np.random.Generator, seconds: float = 5.0, held_out: bool = False, say: dict | None = None,
            uninformative: bool = False) -> Clip:
    """One (prompt, codes) pair of ``seconds`` seconds; ``say`` and ``uninformative``: :func:`prompt_for`'s."""
    frames = int(round(seconds * FRAME_RATE))
    a = draw_attributes(rng, held_out)
    notes = melody(a, frames, rng)
    codes = render_codes(a, notes, frames, rng)
    prompt, said = prompt_for(a, rng, say, uninformative)
    return Clip(prompt, a, said, codes, notes)
