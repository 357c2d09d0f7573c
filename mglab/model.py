"""``mglab.load`` and ``MusicGen.generate``: the whole pipeline, top to bottom.

    prompts --tokenize/T5--> hidden [B, n, d] --(+ null condition)--> [2B, n, d]
    for each step t:  tokens[:, :, t] --decoder--> logits [2B*K, V]
                      --guidance--> [B, K, V] --warp/sample--> [B, K] --delay mask--> tokens[:, :, t+1]
    tokens [B, K, L] --undelay--> codes [B, K, frames] --EnCodec--> audio [B, channels, samples]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import delay, files, guidance, hub, sampling
from .cache import ActivationCache
from .codec import Codec
from .config import MusicGenConfig, generation_defaults, read_json
from .decoder import Decoder
from .generation import Generation
from .session import resolve_providers
from .hooks import HookRegistry, hook_points, is_attention, is_kv, match
from .settings import check_prompts, resolve
from .text import TextEncoder

def load(path, *, dtype="fp32", decoder: str = "auto", providers=None, device: str | None = None,
         size: str | None = None, revision: str | None = None, local_files_only: bool = False,
         cache_dir=None) -> "MusicGen":
    """Load a MusicGen ONNX export: a local folder or a Hugging Face Hub id.

    Parameters
    ----------
    path : str or Path
        A folder (``Xenova/musicgen-small`` layout with ``onnx/``, optimum's flat export, or the
        ``gabotechs/music_gen`` per-size layout), or a Hub id such as ``"Xenova/musicgen-small"``, of which
        only the files this variant needs are downloaded (huggingface_hub's cache and progress bars).
    dtype : str or dict
        ``"fp32"``, ``"fp16"``, ``"q8"``, ``"int8"``, ``"uint8"`` or ``"q4"``, or a dict per component as in
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
    revision, local_files_only, cache_dir :
        Passed to ``huggingface_hub.snapshot_download`` for Hub ids (``HF_HUB_OFFLINE=1`` is honoured too).

    Examples
    --------
    >>> import mglab
    >>> model = mglab.load("data/models/tiny-musicgen")
    >>> model.generate("lofi piano", duration=0.5, seed=0).codes.shape
    (1, 4, 25)
    """
    dtypes = files.component_dtypes(dtype)
    if decoder not in ("auto", "merged", "split"):
        raise ValueError(f"decoder={decoder!r} is not known; allowed: 'auto', 'merged', 'split'")
    providers = resolve_providers(providers, device)
    source = str(path)
    root = Path(path).expanduser()
    if not root.exists():
        if not hub.is_repo_id(source):
            raise FileNotFoundError(f"path={source!r}: no such model folder, and not a Hub id (owner/name)")
        size = size or ("small" if source.lower() == "gabotechs/music_gen" else None)
        kw = dict(size=size, revision=revision, local_files_only=local_files_only, cache_dir=cache_dir)
        want = ["text_encoder", "encodec_decode"]
        want += ["decoder_model_merged"] if decoder != "split" else ["decoder_model", "decoder_with_past_model"]
        root = hub.download(source, {c: dtypes[c] for c in want}, **kw)
        found = files.ModelFiles(root, size)
        if decoder == "auto" and not found.path("decoder_model_merged", dtypes["decoder_model_merged"]).is_file():
            split = ["decoder_model", "decoder_with_past_model"]
            root = hub.download(source, {c: dtypes[c] for c in split}, **kw)
    elif not root.is_dir():
        raise FileNotFoundError(f"path={source!r} is a file, not a model folder")
    found = files.ModelFiles(root, size)
    for name in ("config.json", "tokenizer.json"):
        if not (found.config_dir / name).is_file():
            raise FileNotFoundError(f"path={source!r}: {name} is missing from {found.config_dir}")
    layout = found.choose_decoder(decoder, dtypes)
    return MusicGen(found, dtypes=dtypes, layout=layout, providers=providers, source=source)


class MusicGen:
    """A loaded MusicGen: text encoder, decoder, codec, and the model's generation defaults."""

    def __init__(self, found: files.ModelFiles, *, dtypes: dict, layout: str, providers=None, source=None):
        self.files, self.dtypes, self.layout = found, dtypes, layout
        self.source = source or str(found.root)
        self.root = found.config_dir
        gen = read_json(self.root / "generation_config.json")
        self.config = MusicGenConfig.from_dict(read_json(self.root / "config.json"), gen)
        self.defaults = generation_defaults(gen)
        parts = ["decoder_model_merged"] if layout == "merged" else ["decoder_model", "decoder_with_past_model"]
        self.paths = {c: found.find(c, dtypes[c]) for c in ["text_encoder", *parts, "encodec_decode"]}
        self.text = TextEncoder(self.root / "tokenizer.json", self.paths["text_encoder"], providers)
        self.decoder = Decoder({p: self.paths[p] for p in parts}, self.config, providers=providers)
        self.codec = Codec(self.paths["encodec_decode"], self.config.audio_channels, providers)
        self._check_graphs()
        self._hooks = HookRegistry(hook_points(self.config.num_layers))

    def hook_names(self) -> dict:
        """Every hook point: ``{name: HookPoint(shape, when, editable)}``, in pipeline order."""
        return dict(self._hooks.points)

    def hooks(self, hooks):
        """``with model.hooks([(name_or_filter, fn), ...]):`` attaches hooks for the block only.

        ``name_or_filter`` is a hook name, a list of names, or a predicate on names. Hooks are removed on
        exit, also when the block raises, so nothing leaks between notebook cells.
        """
        return self._hooks.scope(hooks)

    def run_with_cache(self, prompt, *, names_filter=None, steps=None, **generate_kwargs):
        """Generate and record hook values: ``(Generation, ActivationCache)``.

        Parameters
        ----------
        names_filter : str, list of str or callable, optional
            Which hook points to record (default all). Attention points make the decoder run a graph
            rewritten to output attention probabilities.
        steps : slice or list of int, optional
            Which decoding steps to record per-step points at (default all). Key/value points always record
            every step's new position (the cache at step t needs all of them; it costs O(steps)).
        **generate_kwargs
            Passed to :meth:`generate` (``hooks=`` included).
        """
        names = match(names_filter, self._hooks.points)
        bad_slice = isinstance(steps, slice) and any(v is not None and v < 0 for v in
                                                     (steps.start, steps.stop, steps.step))
        if bad_slice or (steps is not None and not isinstance(steps, (slice, list, tuple, range))):
            raise ValueError(f"steps={steps!r} is not allowed: steps must be a slice with non-negative "
                             "bounds or a list of step indices")
        cache = ActivationCache()

        def record(value, hook):
            if hook.step is None or steps is None or is_kv(hook.name) or _selected(hook.step, steps):
                cache.record(value, hook)

        user = list(generate_kwargs.pop("hooks", None) or [])
        gen = self.generate(prompt, hooks=user + [(names, record)], **generate_kwargs)
        return gen, cache

    def _check_graphs(self) -> None:
        """The config must describe the graphs: codebooks and layers agree, or a clear error now."""
        c = self.config
        names = self.decoder.input_names()
        layers = len([n for n in names if n.startswith("past_key_values.") and n.endswith(".decoder.key")])
        if layers and layers != c.num_layers:
            raise ValueError(f"config.json says {c.num_layers} decoder layers but the decoder graph has {layers}")
        codes = self.codec.session.session.get_inputs()[0].shape
        if isinstance(codes[2], int) and codes[2] != c.num_codebooks // c.audio_channels:
            raise ValueError(f"config.json says {c.num_codebooks} codebooks but encodec_decode takes {codes[2]}")

    @property
    def dtype(self):
        """The variant: one name if every component uses it, else the dict per component."""
        used = {c: d for c, d in self.dtypes.items() if c in self.paths}
        return next(iter(used.values())) if len(set(used.values())) == 1 else used

    @property
    def providers(self) -> list[str]:
        return self.decoder.providers

    def info(self) -> dict:
        """Sizes, layers, heads, codebooks, rates, variant and file per component, providers."""
        c = self.config
        return {
            "source": self.source, "layout": self.files.layout, "size": self.files.size, "decoder": self.layout,
            "layers": c.num_layers, "heads": c.num_heads, "hidden_size": c.hidden_size,
            "codebooks": c.num_codebooks, "vocab_size": c.vocab_size, "audio_channels": c.audio_channels,
            "sample_rate": c.sample_rate, "frame_rate": c.frame_rate,
            "components": {name: {"dtype": self.dtypes[name], "file": str(path),
                                  "mb": round(_file_bytes(path) / 1e6, 2)}
                           for name, path in self.paths.items()},
            "providers": self.providers,
        }

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

    def generate(self, prompt, *, duration=None, max_new_tokens=None, guidance_scale=None, temperature=None,
                 top_k=None, top_p=None, do_sample=None, seed=None, hooks=None,
                 progress: bool = False) -> Generation:
        """Text to music.

        Parameters
        ----------
        prompt : str or list of str
            One prompt, or a batch (padded with an attention mask).
        duration : float, optional
            Seconds of audio: exactly ``round(duration * frame_rate)`` frames. Exclusive with ``max_new_tokens``.
        max_new_tokens : int, optional
            Decoding steps; frames = ``max_new_tokens + 1 - K``. Default from ``generation_config.json``.
        guidance_scale : float, optional
            Classifier-free guidance; 1 runs the conditional model alone.
        temperature, top_k, top_p, do_sample :
            As in transformers; ``do_sample=False`` is greedy decoding.
        seed : int or list of int, optional
            Seeds the sampler; a prompt gives the same tokens alone or inside any batch.
        hooks : list of (name_or_filter, fn), optional
            Hooks for this call only (see :mod:`mglab.hooks`), on top of those of ``with model.hooks(...)``.
        progress : bool
            Show a progress bar over decoding steps.

        Returns
        -------
        Generation
        """
        prompts = check_prompts(prompt)
        s = resolve(self.config, self.defaults, len(prompts), duration=duration, max_new_tokens=max_new_tokens,
                    guidance_scale=guidance_scale, temperature=temperature, top_k=top_k, top_p=top_p,
                    do_sample=do_sample, seed=seed)
        with self._hooks.scope(hooks):
            return self._generate(prompts, s, progress)

    def _generate(self, prompts: list[str], s, progress: bool) -> Generation:
        c, hook = self.config, self._hooks
        batch, k = len(prompts), c.num_codebooks
        guided = guidance.is_guided(s.guidance_scale)
        rngs = sampling.make_rngs(s.seed, batch)
        attention = hook.wants_any(is_attention)

        ids, mask = self.text.tokenize(prompts)                                 # [B, n]
        hidden = hook("text_encoder.hook_hidden", self.text.encode(ids, mask))  # [B, n, d]
        mask = hook("text_encoder.hook_mask", mask)                             # [B, n]
        if guided:
            hidden, mask = guidance.null_condition(hidden, mask)                # [2B, n, d], [2B, n]
        halves = 2 if guided else 1

        length = s.max_new_tokens + 1
        pattern = delay.build_delay_pattern(k, length, c.decoder_start_token_id, c.delays)   # [K, L]
        tokens = np.full((batch, k, length), c.decoder_start_token_id, dtype=np.int64)     # [B, K, L]
        tokens[:, :, :1] = delay.apply_delay_pattern(tokens[:, :, :1], pattern)

        cache = None
        for t in _steps(s.max_new_tokens, progress):
            x = hook("decoder.hook_input_ids", tokens[:, :, t], t)              # [B, K]
            x = np.tile(x.reshape(-1, 1), (halves, 1))                          # [H*B*K, 1]
            logits, cache, attn = self.decoder.step(x, hidden, mask, cache, attention)   # [H*B*K, V]
            if hook:
                cache = self.decoder.run_hooks(hook, t, cache, attn)
            cond, uncond = guidance.split(logits, batch, k)                     # [B, K, V] each
            scores = hook("guidance.hook_cond_logits", cond, t)                 # [B, K, V]
            if guided:
                uncond = hook("guidance.hook_uncond_logits", uncond, t)         # [B, K, V]
                scores = guidance.guide(scores, uncond, s.guidance_scale)       # [B, K, V]
            scores = hook("guidance.hook_logits", scores, t)                    # [B, K, V]
            if s.do_sample:
                scores = sampling.warp(scores, s.temperature, s.top_k, s.top_p)   # [B, K, V]
            scores = hook("sampler.hook_logits", scores, t)                     # [B, K, V]
            nxt = sampling.sample(scores, rngs) if s.do_sample else sampling.greedy(scores)   # [B, K]
            nxt = hook("sampler.hook_tokens", nxt, t)                           # [B, K]
            forced = pattern[:, t + 1]                                          # [K]
            column = np.where(forced == delay.PREDICT, nxt, forced)            # [B, K]
            tokens[:, :, t + 1] = hook("delay.hook_tokens", column, t)          # [B, K]

        codes = hook("codec.hook_codes", delay.undelay(tokens, c.delays))       # [B, K, frames]
        audio = hook("codec.hook_audio", self.codec.decode(codes))              # [B, C, samples]
        return Generation(audio=audio, sample_rate=c.sample_rate, codes=codes, tokens=tokens,
                          prompts=prompts, settings=s.to_dict())


def _file_bytes(path: Path) -> int:
    """A graph's bytes, external data files included."""
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def _selected(step: int, steps) -> bool:
    """Is decoding step ``step`` in ``steps`` (a slice with non-negative bounds, or a list of indices)?"""
    if isinstance(steps, slice):
        start, stride = steps.start or 0, steps.step or 1
        return step >= start and (steps.stop is None or step < steps.stop) and (step - start) % stride == 0
    return step in steps


def _steps(n: int, progress: bool):
    if not progress:
        return range(n)
    from tqdm.auto import tqdm
    return tqdm(range(n), desc="decoding", unit="step")
