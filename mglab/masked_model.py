"""``MaskedMusicGen``: a masked (MAGNeT) export loaded by :func:`mglab.load`, its ``generate`` and ``vamp``::

    prompts --networks/text.py--> hidden [B, n, d]; the null rows: one zero vector each     -> [2B, n, d]
    stage k = 0 .. K-1 (codebook k), n_k iterations each (decoding/masked.py):
        codes [2B, K, T] --networks/masked_lm.py--> logits [2B, K, T, card]
        --guidance, annealed max_cfg_coef -> min_cfg_coef--> [B, K, T, card]
        --sample codebook k's masked positions, mask again its least sure spans--> codes [B, K, T]
    codes [B, K, T] --networks/codec.py--> audio [B, channels, samples]

Unlike MusicGen's delay pattern (one decoder step per frame, every codebook at once, offset), every frame of a
codebook is predicted in each pass: ``sum(decoding_steps)`` passes (50 by default) for a whole clip. Hook points:
:func:`mglab.core.hooks.masked_hook_points`.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np

from .core.config import read_json
from .core.hooks import RESID, HookRegistry, check_steps, masked_hook_points, match, selected
from .core.masked_settings import MASKED_PARAMS, resolve
from .core.masked_settings import docstring as params_docstring
from .core.progress import progress_bar
from .core.settings import check_prompts
from .decoding import continuation, masked, sampling
from .decoding.masks import Mask
from .decoding.residual_step import stepper
from .generation import Generation
from .inspect.activation_cache import ActivationCache
from .nano.synth import SynthCodec
from .networks.codec import EncodecCodec, decode
from .networks.masked_lm import MaskedLM
from .networks.text import TextEncoder
from .onnx import modelfiles as files
from .onnx.session import resolve_providers
from .onnx.spec import LoadSpec
from .version import __version__

COMPONENTS = ("text_encoder", "masked_lm", "encodec_decode")


def is_masked(path) -> bool:
    """A local folder whose ``config.json`` says ``"decoding": "masked"``."""
    config = Path(path) / "config.json"
    return config.is_file() and read_json(config).get("decoding") == "masked"


def load_masked(spec: LoadSpec) -> "MaskedMusicGen":
    """:func:`mglab.load` for a masked export: its three graphs in ``spec.dtype``, on ``spec``'s providers."""
    unused = {k: getattr(spec, k) for k in ("size", "revision", "matmul_accuracy") if getattr(spec, k) is not None}
    unused.update({k: v for k, v in (("decoder", spec.decoder), ("kv_cache", spec.kv_cache))
                   if v != LoadSpec.__dataclass_fields__[k].default})
    if unused:
        raise ValueError(f"{', '.join(unused)} cannot be given for a masked (MAGNeT) model: they choose how "
                         "MusicGen's autoregressive decoder runs")
    dtypes = files.component_dtypes(spec.dtype)
    providers = resolve_providers(spec.providers, spec.device)
    found = files.ModelFiles(Path(spec.path).expanduser())
    config = read_json(found.config_dir / "config.json")
    paths = {c: found.find(c, dtypes[c]) for c in COMPONENTS}
    text = TextEncoder(found.config_dir / "tokenizer.json", paths["text_encoder"], providers,
                       output="encoder_hidden_states")
    rates = dict(sample_rate=config["sample_rate"], hop_length=config["hop_length"],
                 channels=config["audio_channels"], providers=providers)
    if config.get("mglab_codec") == "synth":
        codec = SynthCodec(paths["encodec_decode"], **rates)
    else:
        encoder = found.path("encodec_encode", "fp32")
        codec = EncodecCodec(paths["encodec_decode"], **rates, **({"encoder_path": encoder} if encoder.is_file()
                                                                  else {}))
    lm = MaskedLM(paths["masked_lm"], providers, num_layers=config["num_layers"])
    model = MaskedMusicGen(config, text, lm, codec, spec=spec, files=found,
                           paths=paths, dtypes=dtypes)
    model.provenance()
    return model


class MaskedMusicGen:
    """A masked (MAGNeT) model: text encoder, masked LM and codec, with MAGNeT's generation defaults
    (``config["generation"]``).

    Examples
    --------
    >>> import mglab
    >>> model = mglab.load("data/models/tiny-magnet")
    >>> gen = model.generate("lofi piano", duration=0.5, decoding_steps=[3, 2, 2, 2], seed=0)
    >>> gen.codes.shape                                     # 25 frames cut to a multiple of span_len = 3
    (1, 4, 24)
    >>> again = model.vamp(gen, mglab.masks.inpaint(0.2, 0.2), decoding_steps=[3, 2, 2, 2], seed=1)
    >>> bool((again.codes[..., :9] == gen.codes[..., :9]).all())   # the first 0.2 s kept
    True
    """

    decoding = "masked"

    def __init__(self, config: dict, text: TextEncoder, lm: MaskedLM, codec, *, spec: LoadSpec | None = None,
                 files=None, paths=None, dtypes=None):
        self.config, self.text, self.lm, self.codec = dict(config), text, lm, codec
        self.spec, self.files = spec, files
        self.paths, self.dtypes = dict(paths or {}), dict(dtypes or {})
        self.source = spec.path if spec else type(self).__name__
        self._provenance = None
        self._hooks = HookRegistry(masked_hook_points(config["num_layers"]))
        if self.config.get("vamp"):                          # a malformed vamp block: said at load, not at a vamp
            resolve(self.config, 1, frames=self.config["span_len"])

    @property
    def num_codebooks(self) -> int:
        """K, the codebooks of a frame."""
        return self.config["num_codebooks"]

    @property
    def frame_rate(self) -> float:
        """Frames per second (the codec's)."""
        return self.codec.sample_rate / self.codec.hop_length

    def __reduce__(self):
        """Pickles as its load spec (a Dask worker loads its own copy)."""
        if self.spec is None:
            raise TypeError("this MaskedMusicGen was assembled from components, not loaded: it cannot be pickled")
        return (load_masked, (self.spec,))

    # hooks ----------------------------------------------------------------------------------------------
    def hook_names(self) -> dict:
        """Every hook point: ``{name: HookPoint(shape, when, kind, editable)}``, in pipeline order."""
        return dict(self._hooks.points)

    def hooks(self, hooks, steps=None):
        """``with model.hooks([(name_or_filter, fn), ...], steps=None):`` hooks for the block only; ``steps``
        selects iterations (counted over all stages)."""
        return self._hooks.scope(hooks, steps)

    def run_with_cache(self, prompt, *, names_filter=None, steps=None, source=None, mask=None, **kwargs):
        """Generate (or vamp ``source`` under ``mask``) and record hook values: ``(Generation, ActivationCache)``;
        per-iteration values are stacked on a leading iteration axis."""
        names = match(names_filter, self._hooks.points)
        check_steps(steps)
        hooks = self._hooks.call(kwargs.pop("hooks", None), steps)
        cache = ActivationCache()

        def record(value, hook):
            if selected(hook.step, steps):
                cache.record(value, hook)

        for name in names:
            hooks.table.setdefault(name, []).append((record, None))
        progress = kwargs.pop("progress", False)
        if source is not None:
            start = self._vamp_start(source, mask, prompt, kwargs.pop("sample_rate", None), kwargs)[:4]
        else:
            start = self._start(prompt, kwargs)
        return self._run(*start, hooks, progress), cache

    # generating -----------------------------------------------------------------------------------------
    def generate(self, prompt, *, hooks=None, hook_steps=None, progress: bool = False, **params) -> Generation:
        return self._run(*self._start(prompt, params), self._hooks.call(hooks, hook_steps, "hook_steps"), progress)

    def vamp(self, source, mask, prompt=None, *, sample_rate: int | None = None, hooks=None, hook_steps=None,
             progress: bool = False, **params) -> Generation:
        """Regenerate the codes of ``source`` where ``mask`` is True and keep every other code exactly
        (VampNet's vamping; a kept prefix with ``upper_codebooks="given"`` is audiocraft's prompt).

        Parameters
        ----------
        source : Generation, int array [B, K, T] or [K, T], float audio [samples], [C, samples] or
            [B, C, samples], or an audio file path
            Audio is encoded first (``encodec_encode.onnx``; at ``sample_rate``, resampled if needed).
        mask : Mask or bool array [K, T] or [B, K, T]
            True = regenerate. A builder of :mod:`mglab.decoding.masks` (``inpaint``, ``periodic``,
            ``codebooks``, ``random``, combined with ``&``, ``|``, ``~``) is resolved for the source.
        prompt : str or list of str, optional
            The text; default the Generation's prompts, else unconditional (the null condition, no guidance).
        sample_rate : int, optional
            The rate of ``source`` audio given as an array (default the model's).
        {params}
        hooks, hook_steps, progress :
            As in :meth:`generate`.

        Returns
        -------
        Generation
            An all-False mask returns the source unchanged, with a warning (a Generation source itself; codes or
            audio in a Generation that holds them as given).
        """
        prompts, s, regenerate, codes, audio = self._vamp_start(source, mask, prompt, sample_rate, params)
        if not regenerate.any():
            warnings.warn("the mask regenerates nothing: the source is returned unchanged", stacklevel=2)
            if isinstance(source, Generation):
                return source
            return self._finish(codes, prompts, s, self._hooks.call(), audio=audio)   # a Generation holding it
        return self._run(prompts, s, regenerate, codes, self._hooks.call(hooks, hook_steps, "hook_steps"), progress)

    def _start(self, prompt, params):
        prompts = check_prompts(prompt)
        return prompts, resolve(self.config, len(prompts), **params), None, None

    def _vamp_start(self, source, mask, prompt, sample_rate, params):
        """The prompts, settings, mask ``[B, K, T]``, source codes ``[B, K, T]`` and the audio given (or None):
        every argument checked before any network runs (audio is encoded last)."""
        codes, shape, given, audio = self._source(source, sample_rate)
        regenerate = self._regenerate(mask, shape)                             # [B, K, T]
        prompts = given if prompt is None else check_prompts(prompt)
        if prompts is not None:
            prompts = prompts * shape[0] if len(prompts) == 1 else prompts
            if len(prompts) != shape[0]:
                raise ValueError(f"prompt has {len(prompts)} entries for {shape[0]} source clips: give one, "
                                 "or one per clip")
        s = resolve(self.config, shape[0], frames=shape[-1], **params)
        tail = regenerate[..., shape[-1] // s.span_len * s.span_len:]
        if tail.any():
            warnings.warn(f"the last {tail.shape[-1]} frames are not a whole span of span_len={s.span_len}: MAGNeT "
                          "decodes whole spans, so they are kept as they are", stacklevel=3)
        return prompts, s, regenerate, codes() if callable(codes) else codes, audio

    def _source(self, source, sample_rate):
        """``(codes or a function that encodes them, their shape [B, K, T], the prompts given, the audio given)``,
        checked: codes of the codec, at most the model's segment (audio: read, checked and resampled, not yet
        encoded)."""
        k, card = self.num_codebooks, self.config["card"]
        segment = int(self.config["segment_duration"] * self.frame_rate)
        given = list(source.prompts) if isinstance(source, Generation) else None
        x = source.codes if isinstance(source, Generation) else source
        x = x if isinstance(x, (str, Path)) else np.asarray(x)
        if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.integer):
            codes = x.reshape((1,) * (3 - x.ndim) + x.shape) if x.ndim in (2, 3) else None
            if codes is None or codes.shape[1] != k:
                raise ValueError(f"source codes of shape {x.shape} are not allowed: give [{k}, frames] or "
                                 f"[batch, {k}, frames]")
            if ((codes < 0) | (codes >= card)).any():
                raise ValueError(f"source holds codes outside [0, {card}): they must be codes of the model's codec")
            if codes.shape[-1] > segment:
                raise ValueError(f"source is {codes.shape[-1]} frames long: longer than the model's segment of "
                                 f"{segment} frames ({self.config['segment_duration']:g} s), all MAGNeT decodes")
            return codes.astype(np.int64), codes.shape, given, None
        if getattr(self.codec, "encode", None) is None:
            raise ValueError("this model's codec cannot encode audio (no encodec_encode.onnx): give codes or a "
                             "Generation as source")
        audio, rate = continuation.read(x, sample_rate)
        seconds = audio.shape[-1] / (rate or self.codec.sample_rate)
        if -(-round(seconds * self.codec.sample_rate) // self.codec.hop_length) > segment:
            raise ValueError(f"source audio is {seconds:.2f} s: longer than the model's segment of "
                             f"{self.config['segment_duration']:g} s, all MAGNeT decodes")
        audio = continuation.check(audio, rate, channels=self.codec.channels, batch=audio.shape[0],
                                   model_rate=self.codec.sample_rate, hop_length=self.codec.hop_length,
                                   window_frames=segment + 1)                  # [B, C, samples] at the model's rate
        frames = -(-audio.shape[-1] // self.codec.hop_length)                  # what the encoder gives
        return (lambda: self.codec.encode(audio)), (audio.shape[0], k, frames), None, audio

    def _regenerate(self, mask, shape) -> np.ndarray:
        b, k, t = shape
        if isinstance(mask, Mask):
            mask = mask.resolve(k, t, self.frame_rate)                         # [K, T]
        mask = np.asarray(mask)
        if mask.dtype != bool:
            raise TypeError(f"mask of dtype {mask.dtype} is not allowed: mask must be bool (True = regenerate) or "
                            "a builder of mglab.decoding.masks")
        if mask.shape not in ((k, t), (b, k, t)):
            raise ValueError(f"mask of shape {mask.shape} does not fit the source {shape}: give [{k}, {t}] or "
                             f"[{b}, {k}, {t}]")
        return np.broadcast_to(mask, shape).copy()

    def _condition(self, prompts, batch: int, hooks):
        """``hidden [R, n, d]``, ``mask [R, n]`` and whether guided: the prompts' rows, then a null row each (one
        zero vector, mask 1); no prompts: the null rows alone."""
        d = self.config["hidden_size"]
        null_hidden, null_mask = np.zeros((batch, 1, d), np.float32), np.ones((batch, 1), np.int64)
        if prompts is None or all(p == "" for p in prompts):                  # unconditional: no guidance
            return null_hidden, null_mask, False
        ids, mask = self.text.tokenize(prompts)                                # [B, n]
        hidden = self.text.encode(ids, mask)                                   # [B, n, d]
        empty = np.array([p == "" for p in prompts])                           # audiocraft: "" is no text
        hidden[empty], mask[empty] = 0, 0
        hidden = hooks("text_encoder.hook_hidden", hidden)                     # [B, n, d]
        mask = np.array(hooks("text_encoder.hook_mask", mask))                 # [B, n]
        hidden = hidden * (mask[..., None] > 0)                                # what a hook masked out is gone
        mask[mask.sum(axis=1) == 0, 0] = 1                                     # no text left: one zero vector
        n = hidden.shape[1]
        pad = lambda x: np.pad(x, [(0, 0), (0, n - 1)] + [(0, 0)] * (x.ndim - 2))   # noqa: E731
        return np.concatenate([hidden, pad(null_hidden)]), np.concatenate([mask, pad(null_mask)]), True

    def _run(self, prompts, s, regenerate, source, hooks, progress: bool) -> Generation:
        batch = len(prompts) if prompts is not None else source.shape[0]
        hidden, mask, guided = self._condition(prompts, batch, hooks)          # [R, n, d], [R, n]
        layers = self.config["num_layers"]
        resid = hooks.wants_kind(RESID)

        def run(codes, stage, step):                                           # [R, K, T] -> [R, K, T, card]
            return self.lm.logits(codes, hidden, mask, stage, stepper(hooks, step, layers) if resid else None)

        bar = progress_bar(sum(s.decoding_steps), progress)
        try:
            codes = masked.generate(run, batch, s.frames, sampling.make_rngs(s.seed, batch),
                                    num_codebooks=self.num_codebooks, card=self.config["card"], span_len=s.span_len,
                                    decoding_steps=s.decoding_steps, temperature=s.temperature, top_k=s.top_k,
                                    top_p=s.top_p, max_cfg_coef=s.max_cfg_coef, min_cfg_coef=s.min_cfg_coef,
                                    mask_temperature=s.mask_temperature, upper_codebooks=s.upper_codebooks,
                                    span_scoring=s.span_scoring, span_arrangement=s.span_arrangement,
                                    guided=guided, source=source,
                                    regenerate=regenerate, hooks=hooks, on_step=bar.update)   # [B, K, T']
        finally:
            bar.close()
        if source is not None:                    # frames past the last whole span: the source's
            codes = np.concatenate([codes, source[..., codes.shape[-1]:]], axis=-1)   # [B, K, T]
        return self._finish(codes, prompts, s, hooks)

    def _finish(self, codes, prompts, s, hooks, audio=None) -> Generation:
        codes = hooks("codec.hook_codes", codes)                               # [B, K, T]
        if audio is None:
            audio = hooks("codec.hook_audio", decode(self.codec, codes, hooks))   # [B, C, samples]
        return Generation(audio=audio, sample_rate=self.codec.sample_rate, codes=codes, tokens=codes.copy(),
                          prompts=list(prompts) if prompts else [""] * codes.shape[0], settings=s.to_dict(),
                          model=self.provenance(), mglab_version=__version__, prompt_frames=0)

    # describing -----------------------------------------------------------------------------------------
    @property
    def providers(self) -> list[str]:
        """The ONNX Runtime providers the masked LM runs on."""
        return self.lm.providers

    def info(self) -> dict:
        """Sizes, codebooks, rates, MAGNeT's schedule defaults (and a vamp's, where the config has them), variant and
        file per component, providers."""
        c = self.config
        keys = ("num_layers", "num_heads", "hidden_size", "num_codebooks", "card", "span_len", "subcodes_context",
                "segment_duration", "sample_rate", "frame_rate")
        return {"source": self.source, "decoding": "masked", **{k: c[k] for k in keys},
                "generation": dict(c["generation"]), **({"vamp": dict(c["vamp"])} if c.get("vamp") else {}),
                "components": {n: {"dtype": self.dtypes.get(n), "file": str(p),
                                   "mb": round(files.file_bytes(p) / 1e6, 2)} for n, p in self.paths.items()},
                "providers": self.providers}

    def provenance(self) -> dict:
        """Source, each graph's variant and sha256, and the sha256 of the config and tokenizer (hashed at load)."""
        if self._provenance is None:
            config_dir = getattr(self.files, "config_dir", None)
            read = [config_dir / n for n in ("config.json", "tokenizer.json")] if config_dir is not None else []
            self._provenance = {
                "source": self.source, "decoding": "masked",
                "components": {n: {"dtype": self.dtypes.get(n), "file": p.name, "sha256": files.sha256(p)}
                               for n, p in self.paths.items()},
                "files": {p.name: files.sha256(p) for p in read if p.is_file()}}
        return self._provenance

    def __repr__(self) -> str:
        c = self.config
        return (f"MaskedMusicGen({self.source!r}, layers={c['num_layers']}, codebooks={c['num_codebooks']}, "
                f"span_len={c['span_len']}, segment={c['segment_duration']:g}s, providers={self.providers})")


_P = inspect.Parameter
_PARAMS = [_P(p.name, _P.KEYWORD_ONLY, default=None) for p in MASKED_PARAMS]
_HOOKS = [_P("hooks", _P.KEYWORD_ONLY, default=None), _P("hook_steps", _P.KEYWORD_ONLY, default=None),
          _P("progress", _P.KEYWORD_ONLY, default=False)]
MaskedMusicGen.generate.__doc__ = f"""Text to music by MAGNeT's masked decoding.

Parameters
----------
prompt : str or list of str
    One prompt, or a batch.
{params_docstring()}
hooks : list of (name_or_filter, fn), optional
    Hooks for this call only (points: :func:`mglab.core.hooks.masked_hook_points`).
hook_steps : slice or list of int, optional
    The iterations (counted over all stages) the ``hooks`` of this call run at.
progress : bool
    A progress bar over iterations.

Returns
-------
Generation
"""
MaskedMusicGen.generate.__signature__ = inspect.Signature(
    [_P("self", _P.POSITIONAL_OR_KEYWORD), _P("prompt", _P.POSITIONAL_OR_KEYWORD)] + _PARAMS + _HOOKS)
MaskedMusicGen.vamp.__doc__ = MaskedMusicGen.vamp.__doc__.replace(
    "{params}", params_docstring(skip=("duration",)).replace("\n", "\n        "))
MaskedMusicGen.vamp.__signature__ = inspect.Signature(
    [_P("self", _P.POSITIONAL_OR_KEYWORD), _P("source", _P.POSITIONAL_OR_KEYWORD),
     _P("mask", _P.POSITIONAL_OR_KEYWORD), _P("prompt", _P.POSITIONAL_OR_KEYWORD, default=None),
     _P("sample_rate", _P.KEYWORD_ONLY, default=None)] + [p for p in _PARAMS if p.name != "duration"] + _HOOKS)
