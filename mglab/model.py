"""``mglab.load`` and ``MusicGen.generate``: the whole pipeline, top to bottom.

    prompts --tokenize/T5--> hidden [B, n, d] --(+ null condition)--> [2B, n, d]
    for each step t:  tokens[:, :, t] --decoder--> logits [2B*K, V]
                      --guidance--> [B, K, V] --warp/sample--> [B, K] --delay mask--> tokens[:, :, t+1]
    tokens [B, K, L] --undelay--> codes [B, K, frames] --EnCodec--> audio [B, channels, samples]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import delay, files, guidance, sampling
from .codec import Codec
from .config import MusicGenConfig, generation_defaults, read_json
from .decoder import Decoder
from .generation import Generation
from .settings import check_prompts, resolve
from .text import TextEncoder

DTYPES = ("fp32", "q8")


def load(path, *, dtype: str = "fp32", decoder: str = "auto", providers=None) -> "MusicGen":
    """Load a MusicGen ONNX export from a local folder (Xenova ``onnx/`` layout or optimum's flat one).

    Parameters
    ----------
    path : str or Path
        Folder with ``config.json``, ``tokenizer.json`` and the ``.onnx`` files.
    dtype : {"fp32", "q8"}
        Variant of the graphs (``q8`` = the ``*_quantized.onnx`` files).
    decoder : {"auto", "merged", "split"}
        ``merged`` runs ``decoder_model_merged``; ``split`` the ``decoder_model`` +
        ``decoder_with_past_model`` pair; ``auto`` takes merged when present.
    providers : list of str, optional
        ONNX Runtime execution providers; default CPU.

    Examples
    --------
    >>> import mglab
    >>> model = mglab.load("data/models/tiny-musicgen")
    >>> model.generate("lofi piano", duration=0.5, seed=0).codes.shape
    (1, 4, 25)
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not allowed: dtype must be one of {list(DTYPES)}")
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"path={str(path)!r}: no such model folder")
    for name in ("config.json", "tokenizer.json"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"path={str(path)!r}: {name} is missing from the model folder")
    layout = files.choose_decoder(root, decoder, dtype)
    return MusicGen(root, dtype=dtype, layout=layout, providers=providers)


class MusicGen:
    """A loaded MusicGen: text encoder, decoder, codec, and the model's generation defaults."""

    def __init__(self, root: Path, *, dtype: str, layout: str, providers=None):
        self.root, self.dtype, self.layout = Path(root), dtype, layout
        gen = read_json(self.root / "generation_config.json")
        self.config = MusicGenConfig.from_dict(read_json(self.root / "config.json"), gen)
        self.defaults = generation_defaults(gen)
        self.text = TextEncoder(self.root / "tokenizer.json", files.find(self.root, "text_encoder", dtype),
                                providers)
        self.decoder = Decoder(self.root, self.config, dtype=dtype, layout=layout, providers=providers)
        self.codec = Codec(files.find(self.root, "encodec_decode", dtype), self.config.audio_channels,
                           providers)

    def __repr__(self) -> str:
        c = self.config
        return (f"MusicGen({str(self.root)!r}, dtype={self.dtype!r}, decoder={self.layout!r}, "
                f"layers={c.num_layers}, codebooks={c.num_codebooks}, sample_rate={c.sample_rate})")

    def generate(self, prompt, *, duration=None, max_new_tokens=None, guidance_scale=None, temperature=None,
                 top_k=None, top_p=None, do_sample=None, seed=None, progress: bool = False) -> Generation:
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
        c = self.config
        batch, k = len(prompts), c.num_codebooks
        guided = guidance.is_guided(s.guidance_scale)
        rngs = sampling.make_rngs(s.seed, batch)

        ids, mask = self.text.tokenize(prompts)                                 # [B, n]
        hidden = self.text.encode(ids, mask)                                    # [B, n, d]
        if guided:
            hidden, mask = guidance.null_condition(hidden, mask)                # [2B, n, d], [2B, n]
        halves = 2 if guided else 1

        length = s.max_new_tokens + 1
        pattern = delay.build_delay_pattern(k, length, c.decoder_start_token_id, c.delays)   # [K, L]
        tokens = np.full((batch, k, length), c.decoder_start_token_id, dtype=np.int64)     # [B, K, L]
        tokens[:, :, :1] = delay.apply_delay_pattern(tokens[:, :, :1], pattern)

        cache = None
        for t in _steps(s.max_new_tokens, progress):
            x = np.tile(tokens[:, :, t].reshape(-1, 1), (halves, 1))            # [H*B*K, 1]
            logits, cache = self.decoder.step(x, hidden, mask, cache)           # [H*B*K, V]
            cond, uncond = guidance.split(logits, batch, k)                     # [B, K, V] each
            scores = guidance.guide(cond, uncond, s.guidance_scale) if guided else cond
            if s.do_sample:
                scores = sampling.warp(scores, s.temperature, s.top_k, s.top_p)   # [B, K, V]
                nxt = sampling.sample(scores, rngs)                             # [B, K]
            else:
                nxt = sampling.greedy(scores)                                   # [B, K]
            forced = pattern[:, t + 1]                                          # [K]
            tokens[:, :, t + 1] = np.where(forced == delay.PREDICT, nxt, forced)    # [B, K]

        codes = delay.undelay(tokens, c.delays)                                 # [B, K, frames]
        audio = self.codec.decode(codes)                                        # [B, C, samples]
        return Generation(audio=audio, sample_rate=c.sample_rate, codes=codes, tokens=tokens,
                          prompts=prompts, settings=s.to_dict())


def _steps(n: int, progress: bool):
    if not progress:
        return range(n)
    from tqdm.auto import tqdm
    return tqdm(range(n), desc="decoding", unit="step")
