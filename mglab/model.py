"""``mglab.load`` and ``MusicGen``: the facade a newcomer reads first. Each stage lives in its own file::

    prompts --networks/text.py (1)--> hidden [B, n, d]
            --decoding/conditioning.py (2)--> rows [H*B, n, d]                  (H = 2 with guidance)
    decoding/longform.py: window after window, each decoded by decoding/loop.py:
        for each step t:  tokens[:, :, t] --networks/decoder.py (3)--> logits [H*B*K, V]
                          --decoding/guidance.py (4)--> [B, K, V] --decoding/sampling.py (5)--> [B, K]
                          --decoding/patterns.py (6)--> tokens[:, :, t+1]
    codes [B, K, frames] --networks/codec.py (7)--> audio [B, channels, samples]
                                                              (decoding/streaming.py: chunk by chunk)

Hook points (core/hooks.py) fire at every stage; ``run_with_cache`` records them
(inspect/activation_cache.py).
"""

from __future__ import annotations

import inspect
import itertools
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from .core.config import MusicGenConfig, generation_defaults, read_json
from .core.hooks import KV, HookRegistry, check_steps, hook_points, match, selected
from .core.progress import progress_bar
from .core.settings import check_number, check_prompts, resolve
from .core.settings import docstring as params_docstring
from .core.settings import signature as params_signature
from .decoding import conditioning, continuation, guidance, longform, patterns, sampling, streaming
from .generation import Generation
from .inspect.activation_cache import ActivationCache
from .masked_model import is_masked, load_masked
from .nano.synth import SynthCodec
from .networks.codec import Codec, EncodecCodec, decode
from .networks.decoder import Decoder
from .networks.text import TextEncoder
from .onnx import accuracy
from .onnx import modelfiles as files
from .onnx.spec import LoadSpec, locate
from .version import __version__

STREAM_TOLERANCE = streaming.STREAM_TOLERANCE
READ_FILES = ("config.json", "generation_config.json", "tokenizer.json")     # what load reads beside the graphs
# (claims(folder) -> bool, load(spec)): other layouts; masked (config.json: "decoding": "masked"), melody_model.py's
OTHER_LOADERS = [(is_masked, load_masked)]


def load(path, *, dtype="fp32", decoder: str = "auto", providers=None, device: str | None = None,
         size: str | None = None, revision: str | None = None, local_files_only: bool = False,
         cache_dir=None, kv_cache: str = "inplace", matmul_accuracy: int | None = None) -> "MusicGen":
    """Load a MusicGen ONNX export: a local folder or a Hugging Face Hub id.

    Parameters
    ----------
    path : str, Path or LoadSpec
        A folder (``Xenova/musicgen-small`` layout with ``onnx/``, optimum's flat export, or the
        ``gabotechs/music_gen`` per-size layout), or a Hub id such as ``"Xenova/musicgen-small"``, of which
        only the files this variant needs are downloaded (huggingface_hub's cache and progress bars). A
        :class:`~mglab.LoadSpec` (``model.spec``) loads that model again; the other arguments must then be
        left at their defaults.
    dtype : str or dict
        ``"fp32"``, ``"fp16"``, ``"q8"``, ``"int8"``, ``"uint8"``, ``"bnb4"``, ``"q4"`` or ``"q4f16"``, or a dict
        per component as in
        transformers.js: ``{"text_encoder": "fp32", "decoder_model_merged": "q8", "encodec_decode": "fp32"}``
        (unnamed components are fp32). A variant that is not there is an error listing those that are.
    decoder : {"auto", "merged", "split"}
        ``merged`` runs ``decoder_model_merged``; ``split`` the ``decoder_model`` +
        ``decoder_with_past_model`` pair; ``auto`` takes merged when present.
    providers : list, optional
        ONNX Runtime execution providers (names or ``(name, options)``). Missing ones fall back to CPU with a
        warning. Exclusive with ``device``.
    device : {"cpu", "cuda", "coreml", "dml"}, optional
        Shorthand for ``providers``.
    size : str, optional
        ``"small"``, ``"medium"`` or ``"large"`` for ``gabotechs/music_gen``-shaped repositories.
    matmul_accuracy : {None, 0, 1, 2, 3, 4}
        For 4-bit variants (q4, q4f16): the ``accuracy_level`` of their ``MatMulNBits`` nodes, rewritten once
        at load (:mod:`mglab.onnx.accuracy`); 4 computes with int8 activations, several times faster on CPU, at a
        measured quality cost. None keeps the file's.
    kv_cache : {"inplace", "concat"}
        ``inplace`` (CPU): later steps run the with-past graph rewritten to write one position a step into a
        preallocated cache (:mod:`mglab.onnx.inplace_kv`); ``concat``: the exported graph, which copies the whole
        growing cache every step. ``inplace`` falls back to ``concat``, with a warning, for a graph it does not
        recognise.
    revision, local_files_only, cache_dir :
        Passed to ``huggingface_hub.snapshot_download`` for Hub ids (``HF_HUB_OFFLINE=1`` is honoured too).

    Returns
    -------
    MusicGen
        It records how it was loaded (``model.spec``), pickles as that and can be made again from it.

    Examples
    --------
    >>> import mglab
    >>> model = mglab.load("data/models/tiny-musicgen")
    >>> model.generate("lofi piano", duration=0.5, seed=0).codes.shape
    (1, 4, 25)
    """
    if isinstance(path, LoadSpec):
        given = dict(dtype=dtype, decoder=decoder, providers=providers, device=device, size=size, revision=revision,
                     local_files_only=local_files_only, cache_dir=cache_dir, kv_cache=kv_cache,
                     matmul_accuracy=matmul_accuracy)
        extra = [k for k, v in given.items() if v != LoadSpec.__dataclass_fields__[k].default]
        if extra:
            raise TypeError(f"path is a LoadSpec, which says how to load: {', '.join(extra)} cannot be given too")
        return load(**{"path": path.path, **{k: getattr(path, k) for k in given}})
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path={path!r} is not allowed: path must be a model folder, a Hub id (str or Path) or a "
                        "LoadSpec")
    if not str(path).strip():
        raise ValueError(f"path={path!r} is empty: give a model folder or a Hub id")
    spec = LoadSpec(str(path), dtype=dtype, decoder=decoder, providers=providers, device=device, size=size,
                    revision=revision, local_files_only=local_files_only, cache_dir=cache_dir,
                    kv_cache=kv_cache, matmul_accuracy=matmul_accuracy)
    other = [load for claims, load in OTHER_LOADERS if claims(Path(path).expanduser())]
    if other:
        return other[0](spec)
    found, layout, dtypes, providers = locate(spec)
    root = found.config_dir
    generation_config = read_json(root / "generation_config.json")
    config = MusicGenConfig.from_dict(read_json(root / "config.json"), generation_config)
    parts = ["decoder_model_merged"] if layout == "merged" else ["decoder_model", "decoder_with_past_model"]
    paths = {c: found.find(c, dtypes[c]) for c in ["text_encoder", *parts, "encodec_decode"]}
    level = accuracy.check_level(spec.matmul_accuracy)
    paths = {c: accuracy.apply(p, level) if dtypes[c] in accuracy.FOUR_BIT else p for c, p in paths.items()}
    text = TextEncoder(root / "tokenizer.json", paths["text_encoder"], providers)
    codec_class = SynthCodec if read_json(root / "config.json").get("mglab_codec") == "synth" else EncodecCodec
    encoder = found.path("encodec_encode", "fp32")                            # mglab export writes it
    extra = {"encoder_path": encoder} if codec_class is EncodecCodec and encoder.is_file() else {}
    codec = codec_class(paths["encodec_decode"], sample_rate=config.sample_rate, hop_length=config.hop_length,
                        channels=config.audio_channels, providers=providers, **extra)
    _check_codebooks(config, codec)
    dec = Decoder({p: paths[p] for p in parts}, config, providers=providers, inplace_cache=kv_cache == "inplace")
    model = MusicGen(config, text, dec, codec, defaults=generation_defaults(generation_config), spec=spec,
                     files=found, paths=paths, dtypes=dtypes)
    model.provenance()                           # hashed now: what was loaded, not what is on disk later
    return model


def _check_codebooks(config: MusicGenConfig, codec: Codec) -> None:     # the config must describe the graphs
    if codec.num_codebooks is not None and codec.num_codebooks != config.num_codebooks:
        raise ValueError(f"config.json says {config.num_codebooks} codebooks but encodec_decode takes "
                         f"{codec.num_codebooks // codec.channels}")


class MusicGen:
    """A MusicGen: text encoder, decoder, codec and the model's generation defaults.

    :func:`load` assembles one from an export's files; the components can also be given directly (any
    :class:`~mglab.networks.codec.Codec`, e.g. a synthesizer in place of EnCodec). The codec decides the sample and
    frame rates.
    """

    def __init__(self, config: MusicGenConfig, text: TextEncoder, decoder: Decoder, codec: Codec, *,
                 defaults: dict | None = None, spec: LoadSpec | None = None, files=None, paths=None, dtypes=None):
        self.config = replace(config, sample_rate=codec.sample_rate, hop_length=codec.hop_length)
        self.text, self.decoder, self.codec = text, decoder, codec
        self.defaults = defaults or generation_defaults({})
        self.spec, self.files = spec, files
        self.paths, self.dtypes = dict(paths or {}), dict(dtypes or {})
        self.layout = decoder.layout
        self.source = spec.path if spec else type(self).__name__
        self._provenance = None
        self._hooks = HookRegistry(hook_points(config.num_layers))

    # re-creating ----------------------------------------------------------------------------------------
    def __reduce__(self):
        """A model pickles as its load spec: unpickling (a Dask worker, say) loads its own copy."""
        if self.spec is None:
            raise TypeError("this MusicGen was assembled from components, not loaded: it cannot be pickled")
        return (load, (self.spec,))

    # hooks ----------------------------------------------------------------------------------------------
    def hook_names(self) -> dict:
        """Every hook point: ``{name: HookPoint(shape, when, kind, editable)}``, in pipeline order."""
        return dict(self._hooks.points)

    def hooks(self, hooks, steps=None):
        """``with model.hooks([(name_or_filter, fn), ...], steps=None):`` attaches hooks for the block only.

        ``name_or_filter`` is a hook name, a list of names, or a predicate on names; ``steps`` (a slice or
        a list of indices) limits per-step hooks to those decoding steps. Hooks are removed on exit, also
        when the block raises, so nothing leaks between notebook cells.
        """
        return self._hooks.scope(hooks, steps)

    def steer(self, vector, layer: int, scale: float = 1.0, rows: str = "cond", point: str = "resid_post"):
        """``with model.steer(vector, layer, scale):`` adds ``scale * vector`` to ``point`` (default
        ``resid_post``) of ``layer`` in every run in the block (see :func:`mglab.inspect.interventions.steer`)."""
        from .inspect.interventions import steer

        return steer(self, vector, layer, scale, rows, point)

    def run_with_cache(self, prompt, *, names_filter=None, steps=None, **generate_kwargs):
        """Generate and record hook values: ``(Generation, ActivationCache)``.

        Parameters
        ----------
        names_filter : str, list of str or callable, optional
            Which hook points to record (default all). Attention points make the decoder run a graph
            rewritten to output attention probabilities.
        steps : slice or list of int, optional
            Which decoding steps to record per-step points at (default all), and to run the ``hooks=``
            given here at. Key/value points always record every step's new position (the cache at step t
            needs all of them; it costs O(steps)).
        **generate_kwargs
            Passed to :meth:`generate` (``hooks=`` included).
        """
        names = match(names_filter, self._hooks.points)
        check_steps(steps)
        hooks = self._hooks.call(generate_kwargs.pop("hooks", None), steps)
        cache = ActivationCache(watch=[n for n in names if self._hooks.points[n].kind == KV and hooks.wants(n)])

        def record(value, hook):
            if hook.kind == KV or selected(hook.step, steps):
                cache.record(value, hook)

        for name in names:
            hooks.table.setdefault(name, []).append((record, None))
        progress = generate_kwargs.pop("progress", False)
        given = [generate_kwargs.pop(k, None) for k in ("audio", "sample_rate", "continue_from")]
        start = self._start(prompt, generate_kwargs, *given)
        gen = self._generate(*start, hooks, progress)
        return gen, cache

    # generating -----------------------------------------------------------------------------------------
    def generate(self, prompt, *, audio=None, sample_rate: int | None = None, continue_from=None, hooks=None,
                 hook_steps=None, progress: bool = False, **params) -> Generation:
        """Text to music; with ``audio`` (``[samples]``, ``[channels, samples]``, ``[B, channels, samples]`` or a
        file path, at ``sample_rate``) or ``continue_from`` (a :class:`Generation`), continuation: the result
        starts with the given frames (``prompt_frames``). ``prompt=None`` continues unconditionally (see
        :mod:`mglab.decoding.continuation`)."""
        start = self._start(prompt, params, audio, sample_rate, continue_from)
        return self._generate(*start, self._hooks.call(hooks, hook_steps, "hook_steps"), progress)

    def vamp(self, source, mask, prompt=None, **params):
        """Vamping regenerates masked codes in place: a masked (MAGNeT) model's :meth:`MaskedMusicGen.vamp`."""
        raise TypeError("vamp needs a masked (MAGNeT) model; this MusicGen decodes autoregressively: continue audio "
                        "with generate(prompt, audio=...) or continue_from=...")

    def _start(self, prompt, params: dict, audio, sample_rate, continue_from):
        """Prompts, settings and prefix codes ``[B, K, P]``: every argument checked before any model runs."""
        unconditional = prompt is None
        if unconditional:
            batch = continuation.clips(audio, continue_from)
            prompts = [""] * batch
        else:
            prompts = check_prompts(prompt)
        s = resolve(self.config, self.defaults, len(prompts), **params)
        prefix = continuation.prefix_codes(self, s, len(prompts), audio, sample_rate, continue_from)
        return prompts, s, prefix, unconditional

    def _generate(self, prompts, s, prefix, unconditional, hooks, progress: bool) -> Generation:
        bar = progress_bar(_total_steps(s, self.config, prefix.shape[-1]), progress)
        frames, tokens = [prefix], None
        try:
            for frame, window_tokens in self._frames(prompts, s, hooks, bar.update, prefix, unconditional):
                frames.append(frame)                                            # [B, K, 1]
                tokens = window_tokens                                          # [B, K, S]
        finally:
            bar.close()
        codes = hooks("codec.hook_codes", np.concatenate(frames, axis=-1))     # [B, K, frames]
        audio = hooks("codec.hook_audio", decode(self.codec, codes, hooks))     # [B, C, samples]
        if s.windows > 1:       # the delayed matrix of the whole run, not of the last window
            tokens = patterns.delay_codes(codes, self.config.decoder_start_token_id, self.config.delays)   # [B, K, S]
        return Generation(audio=audio, sample_rate=self.config.sample_rate, codes=codes, tokens=tokens,
                          prompts=prompts, settings=s.to_dict(), model=self.provenance(),
                          mglab_version=__version__, prompt_frames=int(prefix.shape[-1]))

    def stream(self, prompt, *, chunk_duration: float = 1.0, audio=None, sample_rate: int | None = None,
               continue_from=None, hooks=None, hook_steps=None, progress: bool = False, **params):
        """Yield audio chunks ``[batch, channels, samples]`` while decoding goes on.

        Takes :meth:`generate`'s arguments. Each chunk holds about ``chunk_duration`` seconds; joined, the
        chunks equal a one-shot decode of the same codes within ``STREAM_TOLERANCE`` (see
        :mod:`mglab.decoding.streaming`); with an audio prompt the prompt's frames come first, as in :meth:`generate`.
        The codec hooks fire once per chunk. Per-call hooks belong to this stream only: stopping the iteration
        (or Ctrl-C), or leaving the generator half consumed, leaves the model as it was.

        Examples
        --------
        >>> for chunk in model.stream("lofi piano", duration=4, chunk_duration=1.0):   # doctest: +SKIP
        ...     play(chunk)
        """
        check_number("chunk_duration", chunk_duration, "a number of seconds > 0", lambda v: 0 < v < math.inf)
        start = self._start(prompt, params, audio, sample_rate, continue_from)
        call = self._hooks.call(hooks, hook_steps, "hook_steps")
        chunk = max(1, round(chunk_duration * self.config.frame_rate))
        return self._stream(*start, call, chunk, progress)

    def _stream(self, prompts, s, prefix, unconditional, hooks, chunk: int, progress: bool):
        bar = progress_bar(_total_steps(s, self.config, prefix.shape[-1]), progress)
        given = ((prefix[..., f:f + 1], None) for f in range(prefix.shape[-1]))   # the prompt's frames first
        try:
            frames = self._frames(prompts, s, hooks, bar.update, prefix, unconditional)
            yield from streaming.chunks(itertools.chain(given, frames), self.codec, hooks, chunk)
        finally:
            bar.close()

    def _frames(self, prompts: list[str], s, hooks, on_step, prefix, unconditional: bool = False):
        """Condition once, then every finished frame ``[B, K, 1]`` after ``prefix [B, K, P]``, window after
        window."""
        cond = conditioning.condition(self.text, prompts, s.negative_prompt,
                                      guidance.is_guided(s.guidance_scale), hooks, null=unconditional)
        rngs = sampling.make_rngs(s.seed, len(prompts))
        return longform.frames(self.decoder, hooks, cond, prefix, s, rngs, on_step)

    # describing -----------------------------------------------------------------------------------------
    @property
    def dtype(self):
        """The variant: one name if every component uses it, else the dict per component."""
        used = {c: d for c, d in self.dtypes.items() if c in self.paths}
        return next(iter(used.values())) if len(set(used.values())) == 1 else used

    @property
    def providers(self) -> list[str]:
        """The ONNX Runtime execution providers the decoder runs on."""
        return self.decoder.providers

    def info(self) -> dict:
        """Sizes, layers, heads, codebooks, rates, variant and file per component, providers."""
        c = self.config
        return {
            "source": self.source, "layout": getattr(self.files, "layout", None),
            "size": getattr(self.files, "size", None), "decoder": self.layout,
            "layers": c.num_layers, "heads": c.num_heads, "hidden_size": c.hidden_size,
            "codebooks": c.num_codebooks, "vocab_size": c.vocab_size, "audio_channels": c.audio_channels,
            "sample_rate": c.sample_rate, "frame_rate": c.frame_rate,
            "components": {name: {"dtype": self.dtypes.get(name), "file": str(path),
                                  "mb": round(files.file_bytes(path) / 1e6, 2)}
                           for name, path in self.paths.items()},
            "providers": self.providers,
        }

    def provenance(self) -> dict:
        """What a Generation records of the model: source, layout, decoder, each graph's variant and sha256, and
        the sha256 of the json files and tokenizer it read; :func:`load` hashes them as it loads."""
        if self._provenance is None:
            config_dir = getattr(self.files, "config_dir", None)
            read = [config_dir / n for n in READ_FILES] if config_dir is not None else []
            self._provenance = {
                "source": self.source, "layout": getattr(self.files, "layout", None),
                "size": getattr(self.files, "size", None), "decoder": self.layout,
                "components": {name: {"dtype": self.dtypes.get(name), "file": path.name,
                                      "sha256": files.sha256(path)} for name, path in self.paths.items()},
                "files": {p.name: files.sha256(p) for p in read if p.is_file()}}
            if not self.paths:
                self._provenance["components"] = {"codec": {"class": type(self.codec).__name__}}
        return self._provenance

    def __repr__(self) -> str:
        c = self.config
        return (f"MusicGen({self.source!r}, dtype={self.dtype!r}, decoder={self.layout!r}, "
                f"layers={c.num_layers}, codebooks={c.num_codebooks}, sample_rate={c.sample_rate}, "
                f"providers={self.providers})")

    def _repr_html_(self) -> str:
        i = self.info()
        rows = "".join(f"<tr><td>{k}</td><td>{v['dtype']}</td><td>{v['mb']} MB</td><td>{Path(v['file']).name}"
                       f"</td></tr>" for k, v in i["components"].items())
        return (f"<b>MusicGen</b> {i['source']} ({i['layout']} layout, {i['decoder']} decoder): "
                f"{i['layers']} layers x {i['hidden_size']}, {i['heads']} heads, {i['codebooks']} codebooks of "
                f"{i['vocab_size']}, {i['sample_rate']} Hz, {i['frame_rate']:g} frames/s, "
                f"providers {', '.join(i['providers'])}<table>{rows}</table>")


_GENERATE_DOC = """Text to music.

Parameters
----------
prompt : str or list of str
    One prompt, or a batch (padded with an attention mask).
{params}
hooks : list of (name_or_filter, fn), optional
    Hooks for this call only (see :mod:`mglab.core.hooks`), on top of those of ``with model.hooks(...)``.
hook_steps : slice or list of int, optional
    The decoding steps the ``hooks`` of this call run at (default every step).
progress : bool
    Show a progress bar over decoding steps.

Returns
-------
Generation
"""
MusicGen.generate.__doc__ = _GENERATE_DOC.format(params=params_docstring())
_P = inspect.Parameter
MusicGen.generate.__signature__ = params_signature(
    [_P("self", _P.POSITIONAL_OR_KEYWORD), _P("prompt", _P.POSITIONAL_OR_KEYWORD)],
    [_P("hooks", _P.KEYWORD_ONLY, default=None), _P("hook_steps", _P.KEYWORD_ONLY, default=None),
     _P("progress", _P.KEYWORD_ONLY, default=False)])


def _total_steps(s, config: MusicGenConfig, prompt_frames: int = 0) -> int:
    plan = longform.plan(s.frames, s.window_frames, s.stride_frames, prompt_frames)
    return sum(n + max(config.delays) for _, n in plan)
