"""Measure musical attributes from audio, and how well a clip follows its prompt.

Register from the median ``pyin`` pitch, tempo from the onset rate (and the beat tempo), key and mode from the
chroma against Krumhansl-Schmuckler profiles (with the first and last notes as tonic evidence), dynamics from
the RMS level. The instrument is a nearest-neighbour classifier over spectral features (harmonic amplitudes,
inharmonic bar modes, attack, decay; scikit-learn's ``KNeighborsClassifier``) fitted on the nano model's
synthesizer (:func:`fit_instruments`; ``mglab/audio/instruments.json``): it knows only those timbres. Tested
on tones, clicks, noise, the random tiny model's output and the synthesizer's renderings (no real MusicGen
checkpoint runs here).

A measurement the audio does not support is not made: its value is None and ``measured["abstained"]`` says
why, and :func:`adherence` counts it as neither a hit nor a miss. The thresholds, measured on 40 corpus
renderings (4 s), 2 s of silence, white noise, a click train, DC, a sine, a clipped sine and the random tiny
model's output (EnCodec noise)::

    everything     shorter than MIN_SECONDS (0.25 s), or silent: 95th-percentile RMS below SILENCE_DB
                   (-60 dBFS; renderings -35 to -15; DC is removed first, so DC alone is silence)
    register,      fewer than VOICED_MIN (30%) of the frames voiced (renderings >= 96%, noise 17%, clicks,
    key, mode,     DC and the tiny model 0%)
    instrument
    tempo          fewer than MIN_ONSETS (3) onsets, or too few voiced frames (renderings >= 3; a sine 1)
    key, mode      fewer than MIN_PITCH_CLASSES (2) pitch classes with >= 5% of the voiced frames (a sine,
                   one repeated note: 4 of the 40 renderings)
    instrument     fewer than MIN_ONSETS onsets (attack and decay are medians over notes; the tiny model's
                   hums have 0 or 1), or a mean distance to the 7 nearest fitted examples above
                   INSTRUMENT_MAX_DISTANCE (3.0: noise 3.9, a clipped sine 5.2, a melody of sines 5.4, a sine 5.8;
                   of 40 renderings 38 lie below 2.95 and the 2 above, at 7.2 and 8.1, were classified wrong)

Examples
--------
>>> import mglab.audio.evaluate as ev                                     # doctest: +SKIP
>>> m = ev.measure(gen.audio[0, 0], gen.sample_rate)                # doctest: +SKIP
>>> ev.adherence("a slow low organ melody in d minor", gen.audio[0, 0], gen.sample_rate)   # doctest: +SKIP
{'tempo': True, 'register': True, 'instrument': True, 'figure': None, 'key': True, 'mode': True}
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from ..core.fileio import atomic_write
from . import vocabulary

SR = 16000                                   # analysis rate
HOP = 256
# Krumhansl-Kessler key profiles (Krumhansl 1990), tonic first
MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
ONSET_RISE_DB = 2.0                          # a re-strike: the level rises this much after a dip
ONSET_PITCH_STEP = 0.7                       # semitones: a new note (vibrato stays below)
SOFT_LOUD_DB = -24.0                         # 95th percentile frame RMS, dBFS: below is soft
MIN_SECONDS = 0.25                           # abstention thresholds: see the module docstring
SILENCE_DB = -60.0
VOICED_MIN = 0.3
MIN_ONSETS = 3
MIN_PITCH_CLASSES = 2
PITCH_CLASS_SHARE = 0.05
INSTRUMENT_MAX_DISTANCE = 3.0
ALL = ("register", "tempo", "key", "mode", "dynamics", "instrument")
INSTRUMENT_MODEL = Path(__file__).with_name("instruments.json")


def attributes(prompt: str) -> tuple[dict, list[str]]:
    """What a prompt asks for, and the words not understood (see :func:`mglab.audio.vocabulary.attributes`)."""
    return vocabulary.attributes(prompt)


def tempo_word(rate: float) -> str:
    """The tempo word whose range (:data:`~mglab.audio.vocabulary.TEMPO_LIMITS`) holds ``rate`` onsets a second;
    between two ranges, ``"between slow and moderate"`` or ``"between moderate and fast"``: measured, and no
    word's tempo (a miss for either)."""
    limits = list(vocabulary.TEMPO_LIMITS.items())
    for word, (lo, hi) in limits:
        if lo <= rate <= hi:
            return word
    for (a, (_, hi)), (b, (lo, _)) in zip(limits, limits[1:]):
        if hi < rate < lo:
            return f"between {a} and {b}"
    raise ValueError(f"rate={rate!r} is outside every tempo range")


def check_audio(audio, sr) -> np.ndarray:
    """``audio`` as float32 ``[samples]`` or ``[channels, samples]``, checked with ``sr``: errors name the argument."""
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)):
        raise TypeError(f"sr={sr!r} is not allowed: sr must be an integer sample rate in Hz (>= 1000)")
    if sr < 1000:
        raise ValueError(f"sr={sr!r} is not allowed: sr must be an integer sample rate in Hz (>= 1000)")
    try:
        y = np.asarray(audio, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError(f"audio of type {type(audio).__name__} is not allowed: give a float array "
                        "[samples] or [channels, samples]") from None
    if y.ndim not in (1, 2) or y.shape[-1] == 0:
        raise ValueError(f"audio of shape {np.shape(audio)} is not allowed: give [samples] or [channels, samples], "
                         "at least one sample")
    if y.ndim == 2 and y.shape[0] > y.shape[1]:
        raise ValueError(f"audio of shape {y.shape} has more channels than samples: give [channels, samples] "
                         "(soundfile reads [samples, channels]: pass audio.T)")
    if not np.isfinite(y).all():
        raise ValueError(f"audio holds {int(np.isnan(y).sum())} NaN and {int(np.isinf(y).sum())} infinite values: "
                         "audio must be finite")
    return y


def _mono(audio, sr):
    import librosa

    y = check_audio(audio, sr)
    y = y.mean(axis=0) if y.ndim == 2 else y                                   # [samples]
    y = y - y.mean()                                                          # DC carries no music
    return librosa.resample(y, orig_sr=sr, target_sr=SR) if sr != SR else y


def pitch_track(y: np.ndarray) -> np.ndarray:
    """``pyin`` fundamental in MIDI per frame (NaN where unvoiced), ``[frames]``."""
    import librosa

    f0, voiced, _ = librosa.pyin(y, fmin=60.0, fmax=2200.0, sr=SR, frame_length=1024, hop_length=HOP)
    midi = librosa.hz_to_midi(np.where(voiced, f0, np.nan))
    return midi


def scale_share(audio, sr: int, key: str, mode: str, shift: int = 0) -> float | None:
    """Share of the voiced frames of ``audio`` (``[samples]`` or ``[channels, samples]`` at ``sr``; pitch tracked,
    rounded to semitones, plus ``shift``) whose pitch class is in ``key`` ``mode``'s scale: how a melody the
    corpus writes stays in its key. None when fewer than :data:`VOICED_MIN` of the frames are voiced.

    Examples
    --------
    >>> sr = 22050
    >>> a4 = np.sin(2 * np.pi * 440 * np.arange(sr) / sr)
    >>> scale_share(a4, sr, "c", "major"), scale_share(a4, sr, "c", "major", shift=1)
    (1.0, 0.0)
    """
    midi = pitch_track(_mono(audio, sr))                                       # [frames], NaN unvoiced
    voiced = midi[np.isfinite(midi)]
    if voiced.size < VOICED_MIN * midi.size:
        return None
    pcs = (np.round(voiced).astype(int) + shift - vocabulary.KEYS[key]) % 12   # [voiced] relative to the tonic
    return float(np.isin(pcs, vocabulary.MODES[mode]).mean())


def onset_times(y: np.ndarray, midi: np.ndarray | None = None) -> np.ndarray:
    """Onsets (s) of a monophonic line: candidates from spectral flux on a log-mel spectrogram of short (32 ms)
    frames, so a re-struck note's brief dip is seen, with a maximum filter across frequency (SuperFlux's
    vibrato suppression); a candidate is kept only where the level rises by :data:`ONSET_RISE_DB` (a new
    strike), or the pitch moves by at least :data:`ONSET_PITCH_STEP` semitones, or a note follows silence,
    so vibrato (frequency modulation) is not heard as new notes. ``midi``: the :func:`pitch_track` of ``y``
    (computed when not given)."""
    import librosa

    env = librosa.onset.onset_strength(y=y, sr=SR, hop_length=HOP, lag=2, max_size=5, n_fft=512)
    frames = librosa.onset.onset_detect(onset_envelope=env, sr=SR, hop_length=HOP, backtrack=False, delta=0.1,
                                        wait=4)                                # 64 ms apart at least
    midi = pitch_track(y) if midi is None else midi
    db = 20 * np.log10(np.maximum(librosa.feature.rms(y=y, frame_length=512, hop_length=HOP)[0], 1e-9))
    loud = db > db.max() - 50
    keep = []
    for i in frames:
        lo = max(0, i - 4) + int(np.argmin(db[max(0, i - 4): i + 3]))          # the dip before the onset
        rise = db[lo: lo + 9].max() - db[lo]                                   # ... and the level after it
        before, after = midi[max(0, lo - 5): lo], midi[i + 1: i + 6]
        voiced_after = np.isfinite(after).sum() >= 2
        step = (abs(np.nanmedian(after) - np.nanmedian(before))
                if voiced_after and np.isfinite(before).sum() >= 2 else 0.0)
        new_note = voiced_after and np.isfinite(before).sum() < 2
        if loud[min(i + 2, loud.size - 1)] and (rise >= ONSET_RISE_DB or step >= ONSET_PITCH_STEP or new_note):
            keep.append(i)
    return librosa.frames_to_time(np.array(keep, dtype=int), sr=SR, hop_length=HOP)


def key_mode(y: np.ndarray, midi: np.ndarray) -> tuple[str, str, float]:
    """Best of the 24 keys: chroma correlation with the profiles, plus tonic evidence from the first and last
    voiced notes. Returns ``(tonic name, mode, score)``."""
    import librosa

    chroma = librosa.feature.chroma_cqt(y=y, sr=SR, hop_length=512).sum(axis=1)   # [12]
    voiced = midi[np.isfinite(midi)]
    sung = np.bincount(np.round(voiced).astype(int) % 12, minlength=12) if voiced.size else np.zeros(12)
    # the predominant pitch's classes weigh twice the chroma (whose harmonics leak into other classes)
    chroma = chroma / max(chroma.sum(), 1e-9) + 2 * sung / max(sung.sum(), 1)
    ends = [int(round(voiced[:8].mean())) % 12, int(round(voiced[-8:].mean())) % 12] if voiced.size >= 8 else []
    best = ("c", "major", -np.inf)
    for tonic in range(12):
        for mode, profile in (("major", MAJOR), ("minor", MINOR)):
            score = float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1])
            score += 0.15 * sum(pc == tonic for pc in ends)
            if score > best[2]:
                best = (vocabulary.PITCH_NAMES[tonic], mode, score)
    return best


def instrument_features(y: np.ndarray, midi: np.ndarray, onsets: np.ndarray, full=None, sr: int = SR) -> np.ndarray:
    """Spectral features: the first 8 harmonics and 2 bar modes (dB re the fundamental, median over the frames
    inside notes, at least 32 ms from an onset, so fast notes are not smeared together; from ``full``, the
    audio at its own rate ``sr``, when given, so high notes keep their harmonics), attack and decay (until the
    next onset), vibrato."""
    import librosa

    full, rate = (y, SR) if full is None else (full, sr)
    n_fft, hop = 2048 * rate // SR, HOP * rate // SR                            # 128 ms windows
    spec = np.abs(librosa.stft(full, n_fft=n_fft, hop_length=hop))              # [bins, frames]
    freqs = librosa.fft_frequencies(sr=rate, n_fft=n_fft)
    onset_frames = np.round(np.asarray(onsets) * SR / HOP).astype(int)
    clear = np.ones(spec.shape[1], dtype=bool)                                 # no onset within 32 ms
    for i in onset_frames:
        clear[max(0, i - 2): i + 3] = False
    rows = []
    for t in np.flatnonzero(np.isfinite(midi[: spec.shape[1]]) & clear[: midi.size]):
        f0 = librosa.midi_to_hz(midi[t])
        ratios = [1, 2, 3, 4, 5, 6, 7, 8, 3.93, 9.21]
        mags = [spec[np.argmin(np.abs(freqs - r * f0)), t] if r * f0 < rate / 2 - 200 else np.nan for r in ratios]
        rows.append(20 * np.log10(np.maximum(mags, 1e-9) / max(mags[0], 1e-9)))
    harm = np.nanmedian(rows, axis=0) if rows else np.full(10, np.nan)
    harm = np.where(np.isfinite(harm), harm, -60.0)                             # above Nyquist: "weak"
    rms = librosa.feature.rms(y=y, frame_length=1024, hop_length=HOP)[0]
    db = 20 * np.log10(np.maximum(rms, 1e-9))
    attack, decay = [], []
    for i, nxt in zip(onset_frames, [*onset_frames[1:], db.size]):
        seg = db[i: min(i + 40, nxt)]                                          # to 640 ms or the next onset
        if seg.size < 8:
            continue
        peak = int(np.argmax(seg[:20]))
        attack.append(peak * HOP / SR)
        tail = seg[peak: peak + 12]
        decay.append(float(np.polyfit(np.arange(tail.size) * HOP / SR, tail, 1)[0]) if tail.size > 3 else 0.0)
    extra = [np.median(attack) if attack else 0.0, np.median(decay) if decay else 0.0, vibrato_cents(midi)]
    return np.clip(np.concatenate([harm, extra]), -90, 90)


def vibrato_cents(midi: np.ndarray) -> float:
    """How far the pitch wobbles around its own running median (cents; median absolute deviation)."""
    from scipy.ndimage import median_filter

    voiced = np.isfinite(midi)
    if voiced.sum() < 16:
        return 0.0
    track = np.where(voiced, midi, 0.0)
    smooth = median_filter(track, size=15, mode="nearest")
    steady = voiced & np.isfinite(smooth) & (np.abs(track - smooth) < 0.5)     # not at a note change
    return float(np.median(np.abs(track - smooth)[steady]) * 100) if steady.any() else 0.0


def measure(audio, sr: int) -> dict:
    """Every attribute measured from ``audio`` (``[samples]`` or ``[channels, samples]``, finite) at ``sr``.

    Returns ``{"median_midi", "onset_rate", "onsets", "beat_bpm", "key", "mode", "rms_db", "dynamics",
    "register", "tempo", "instrument", "abstained"}``; a value the audio does not support is None and
    ``abstained[attribute]`` says why (thresholds in the module docstring).
    """
    import librosa

    y = _mono(audio, sr)
    duration = y.size / SR
    out = {"median_midi": None, "onset_rate": None, "onsets": 0, "beat_bpm": None, "key": None, "mode": None,
           "rms_db": None, "dynamics": None, "register": None, "tempo": None, "instrument": None, "abstained": {}}
    if duration < MIN_SECONDS:
        out["abstained"] = dict.fromkeys(ALL, f"the audio is {duration:.3f} s, shorter than {MIN_SECONDS} s")
        return out
    rms = librosa.feature.rms(y=y, frame_length=1024, hop_length=HOP)[0]
    level = float(20 * np.log10(max(np.percentile(rms, 95), 1e-9)))
    out["rms_db"] = level
    if level < SILENCE_DB:
        out["abstained"] = dict.fromkeys(ALL, f"silent: {level:.0f} dBFS, below {SILENCE_DB:g}")
        return out
    out["dynamics"] = "soft" if level < SOFT_LOUD_DB else "loud"
    midi = pitch_track(y)
    onsets = onset_times(y, midi)
    out["onsets"] = int(len(onsets))
    out["beat_bpm"] = float(np.atleast_1d(librosa.beat.beat_track(y=y, sr=SR, hop_length=HOP)[0])[0])
    voiced = midi[np.isfinite(midi)]
    share = voiced.size / max(midi.size, 1)
    abstain = out["abstained"]
    if share < VOICED_MIN:
        why = f"{share:.0%} of the frames voiced, fewer than {VOICED_MIN:.0%}"
        abstain.update(dict.fromkeys(("register", "tempo", "key", "mode", "instrument"), why))
        return out
    median = float(np.round(np.median(voiced)))                              # the nearest semitone
    out["median_midi"] = median
    out["register"] = [r for r, (lo, hi) in vocabulary.REGISTERS.items() if lo <= median <= hi]
    if len(onsets) < MIN_ONSETS:
        abstain["tempo"] = f"{len(onsets)} onsets, fewer than {MIN_ONSETS}"
    else:
        rate = float(1 / np.median(np.diff(onsets)))
        out["onset_rate"] = rate
        out["tempo"] = tempo_word(rate)
    classes = np.bincount(np.round(voiced).astype(int) % 12, minlength=12) / voiced.size      # [12]
    heard = int((classes >= PITCH_CLASS_SHARE).sum())
    if heard < MIN_PITCH_CLASSES:
        abstain["key"] = abstain["mode"] = f"{heard} pitch class heard, fewer than {MIN_PITCH_CLASSES}"
    else:
        out["key"], out["mode"], _ = key_mode(y, midi)
    full = np.asarray(audio, dtype=np.float32)
    full = full.mean(axis=0) if full.ndim == 2 else full
    name, distance = classify_instrument(instrument_features(y, midi, onsets, full, sr), with_distance=True)
    if len(onsets) < MIN_ONSETS:
        abstain["instrument"] = f"{len(onsets)} onsets, fewer than {MIN_ONSETS}: too few notes to read attack and decay"
    elif distance is not None and distance > INSTRUMENT_MAX_DISTANCE:
        abstain["instrument"] = (f"unlike every fitted timbre: distance {distance:.1f} to the nearest examples, "
                                 f"above {INSTRUMENT_MAX_DISTANCE}")
    else:
        out["instrument"] = name
    return out


class Adherence(dict):
    """``{attribute: True / False / None}``; ``.abstained`` holds the attributes the audio could not be
    measured for, with the reason (None in the dict: neither a hit nor a miss)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.abstained: dict = {}


def adherence(prompt_or_attributes, audio, sr: int, measured: dict | None = None) -> Adherence:
    """Per asked attribute, whether the audio has it: ``{attribute: True/False}`` (``figure`` is not measured:
    None; an attribute the audio does not support is None too, listed with its reason in ``.abstained``).
    ``prompt_or_attributes``: a prompt (read with :func:`attributes`) or a dict of attributes."""
    asked = attributes(prompt_or_attributes)[0] if isinstance(prompt_or_attributes, str) else prompt_or_attributes
    m = measured or measure(audio, sr)
    hits = Adherence()
    for name, value in asked.items():
        if name in m.get("abstained", {}):
            hits[name] = None
            hits.abstained[name] = m["abstained"][name]
        elif name == "register":
            hits[name] = value in m["register"]
        elif name == "tempo" and value == "bpm":
            hits[name] = abs(m["onset_rate"] * 60 - asked["bpm"]) <= 0.1 * asked["bpm"]
        elif name in ("tempo", "key", "mode", "dynamics", "instrument"):
            hits[name] = m[name] == value
        elif name == "figure":
            hits[name] = None
    return hits


def classify_instrument(features: np.ndarray, k: int = 7, with_distance: bool = False):
    """The majority of the ``k`` nearest standardized examples of :data:`INSTRUMENT_MODEL` (scikit-learn's
    ``KNeighborsClassifier``, Euclidean; a tie goes to the name first in alphabetical order); None if it has
    not been fitted. ``with_distance``: ``(name, mean distance to those k)``, what abstention is judged on."""
    if not INSTRUMENT_MODEL.is_file():
        return (None, None) if with_distance else None
    knn, mean, std = _instrument_knn(INSTRUMENT_MODEL, INSTRUMENT_MODEL.stat().st_mtime_ns, k)
    x = ((np.asarray(features, dtype=np.float64) - mean) / std)[None]          # [1, features]
    name = str(knn.predict(x)[0])
    distance = float(knn.kneighbors(x)[0].mean())
    return (name, distance) if with_distance else name


@functools.lru_cache(maxsize=4)
def _instrument_knn(path: Path, mtime: int, k: int):
    """The fitted classifier of ``path`` (read again when the file changes) and its standardization."""
    from sklearn.neighbors import KNeighborsClassifier

    model = json.loads(Path(path).read_text())
    knn = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(np.array(model["examples"]), model["labels"])
    return knn, np.array(model["mean"]), np.array(model["std"])


def fit_instruments(examples: list[tuple[np.ndarray, str]], path: Path = INSTRUMENT_MODEL) -> dict:
    """Fit the instrument classifier on ``[(features, instrument), ...]`` and write it to ``path``: the
    standardization and the standardized examples (k nearest neighbours)."""
    x = np.stack([f for f, _ in examples])
    mean, std = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-2)
    model = {"features": "harmonics 1-8, bar modes 3.93 and 9.21 (dB re fundamental), attack (s), decay (dB/s), "
                         "vibrato (cents)",
             "mean": mean.round(4).tolist(), "std": std.round(4).tolist(),
             "examples": ((x - mean) / std).round(3).tolist(), "labels": [n for _, n in examples]}
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(model)))
    return model


from .chroma import chroma_cosine  # noqa: E402, F401  melody adherence (audiocraft's metric), beside the others
