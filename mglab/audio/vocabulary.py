"""The words of musical attributes and what each means: the grammar the evaluator scores and the corpus speaks.

::

    register    low (MIDI 36-59), mid (55-76), high (72-96)
    tempo       slow (<= 2 onsets/s), moderate (2.5-4), fast (>= 5), or "N bpm" (one note a beat)
    key, mode   c, c#, db, ... b; major or minor
    instrument  piano, organ, flute, violin, marimba, clarinet
    dynamics    soft, loud
    figure      arpeggio, scale, melody, repeated notes

:func:`attributes` reads a prompt with it; :mod:`mglab.audio.evaluate` measures the same attributes from
audio; the nano model's corpus (:mod:`mglab.nano.corpus`) draws clips and writes prompts in it.
"""

from __future__ import annotations

REGISTERS = {"low": (36, 59), "mid": (55, 76), "high": (72, 96)}                # MIDI
TEMPO_LIMITS = {"slow": (0.0, 2.0), "moderate": (2.5, 4.0), "fast": (5.0, 99.0)}   # onsets per second
BPMS = (60, 72, 80, 90, 100, 112, 120, 132, 144, 160, 180)
KEYS = {"c": 0, "c#": 1, "db": 1, "d": 2, "d#": 3, "eb": 3, "e": 4, "f": 5, "f#": 6, "gb": 6, "g": 7,
        "g#": 8, "ab": 8, "a": 9, "a#": 10, "bb": 10, "b": 11}
PITCH_NAMES = ("c", "c#", "d", "eb", "e", "f", "f#", "g", "ab", "a", "bb", "b")
MODES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
INSTRUMENTS = ("piano", "organ", "flute", "violin", "marimba", "clarinet")
DYNAMICS = ("soft", "loud")
FIGURES = ("arpeggio", "scale", "melody", "repeated notes")
SYNONYMS = {"fast": ("fast", "quick", "rapid", "lively"), "slow": ("slow", "calm", "unhurried"),
            "moderate": ("moderate", "medium tempo", "walking pace"), "soft": ("soft", "gentle", "quiet"),
            "loud": ("loud", "strong", "forceful"), "low": ("low", "deep", "bass"), "mid": ("mid", "middle"),
            "high": ("high", "bright", "treble")}
FILLERS = ("music", "track", "piece", "tune")


def vocabulary() -> list[str]:
    """Every word a prompt can use (the word-level tokenizer's vocabulary)."""
    words = {"a", "in", "the", "key", "of", "register", "played", "on", "with", "at", "bpm", *FILLERS,
             *KEYS, *MODES, *INSTRUMENTS, *(str(b) for b in BPMS)}
    for figure in FIGURES:
        words.update(figure.split())
    for names in SYNONYMS.values():
        for name in names:
            words.update(name.split())
    return sorted(words)


def attributes(prompt: str) -> tuple[dict, list[str]]:
    """What a prompt asks for, read with the corpus's grammar: ``({attribute: value}, unknown_words)``.

    Examples
    --------
    >>> found, unknown = attributes("a slow low organ melody in d minor with kazoo")
    >>> found["key"], found["mode"], found["register"], unknown
    ('d', 'minor', 'low', ['kazoo'])
    """
    words = prompt.lower().replace(",", " ").split()
    known = set(vocabulary())
    found, unknown = {}, [w for w in words if w not in known]
    synonym = {s: k for k, names in SYNONYMS.items() for s in names if " " not in s}
    for i, w in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        prev = words[i - 1] if i else ""
        if w in MODES and prev in KEYS:
            found["key"], found["mode"] = PITCH_NAMES[KEYS[prev]], w
        elif w == "bpm" and prev.isdigit():
            found["tempo"], found["bpm"] = "bpm", int(prev)
        elif w in synonym and w not in KEYS:
            kind = "tempo" if synonym[w] in TEMPO_LIMITS else "dynamics" if synonym[w] in DYNAMICS else "register"
            found[kind] = synonym[w]
        elif w in INSTRUMENTS:
            found["instrument"] = w
        elif w in ("arpeggio", "scale", "melody"):
            found["figure"] = w
        elif w == "repeated" and nxt == "notes":
            found["figure"] = "repeated notes"
    for phrase, value in (("medium tempo", "moderate"), ("walking pace", "moderate")):
        if phrase in " ".join(words):
            found["tempo"] = value
    return found, unknown
