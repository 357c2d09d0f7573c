"""Sparse autoencoders on a residual point: SAE Lens's file format, applied in numpy through hooks.

A TopK SAE (Gao et al. 2024) writes a point ``x [d_in]`` as a few features::

    z     = topk(relu((x - b_dec) @ W_enc + b_enc), k)      [d_sae], at most k non-zero
    x_hat = z @ W_dec + b_dec                               [d_in]

Files (SAE Lens's, so ``sae_lens.SAE.load_from_disk(folder)`` reads them)::

    folder/cfg.json                    d_in, d_sae, architecture "topk", k, hook_name (mglab's), ...
    folder/sae_weights.safetensors     W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in]

The safetensors file is read and written here with numpy alone (the format is a JSON header and raw
little-endian arrays), so applying an SAE needs neither torch nor safetensors; training does
(:mod:`mglab.inspect.sae_train`, the ``training`` extra). On a model, :func:`~mglab.inspect.sae.features`
reads the feature activations while generating and :func:`~mglab.inspect.sae.clamp` sets (or adds to) one
feature at every step: the point becomes ``x + (z'_f - z_f) W_dec[f]``, so what the SAE does not explain (its
error) is kept::

    sae = load("data/models/nano-musicgen/sae/decoder.layers.2.hook_resid_post")
    gen, z = features(model, sae, "a low organ melody", duration=2.0)     # z [steps, B, d_sae]
    with clamp(model, sae, feature=17, value=8.0):
        gen = model.generate("a low organ melody")

Examples
--------
>>> rng = np.random.default_rng(0)
>>> sae = SAE.random(d_in=8, d_sae=32, k=4, hook_name="decoder.layers.0.hook_resid_post", rng=rng)
>>> z = sae.encode(rng.normal(size=(5, 8)))
>>> z.shape, int((z > 0).sum(-1).max()) <= 4
((5, 32), True)
"""

from __future__ import annotations

import json
import struct
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.fileio import atomic_write

WEIGHTS, CONFIG = "sae_weights.safetensors", "cfg.json"
DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}


# safetensors in numpy ------------------------------------------------------------------------------------------
def write_safetensors(path, tensors: dict, metadata: dict | None = None) -> Path:
    """Write ``{name: array}`` as a safetensors file (``metadata``: string to string)."""
    names = {v: k for k, v in DTYPES.items()}
    header, offset, blobs = {}, 0, []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        blob = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": names[a.dtype.type], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)                                         # the data starts 8-aligned
    data = struct.pack("<Q", len(text)) + text + b"".join(blobs)
    return atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(data)) or Path(path)


def read_safetensors(path) -> tuple[dict, dict]:
    """``({name: array}, metadata)`` of a safetensors file."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8: 8 + n])
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, h in header.items():
        start, end = h["data_offsets"]
        dtype = np.dtype(DTYPES[h["dtype"]]).newbyteorder("<")
        out[name] = np.frombuffer(raw[8 + n + start: 8 + n + end], dtype=dtype).reshape(h["shape"]).copy()
    return out, meta


# the SAE -------------------------------------------------------------------------------------------------------
@dataclass
class SAE:
    """A TopK sparse autoencoder (numpy, float32)."""

    W_enc: np.ndarray                      # [d_in, d_sae]
    b_enc: np.ndarray                      # [d_sae]
    W_dec: np.ndarray                      # [d_sae, d_in]
    b_dec: np.ndarray                      # [d_in]
    k: int
    hook_name: str
    cfg: dict = field(default_factory=dict)   # everything else cfg.json says (training statistics included)

    @property
    def d_in(self) -> int:
        """The width of the point it reads (SAE Lens's ``d_in``)."""
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        """The number of features (SAE Lens's ``d_sae``)."""
        return self.W_enc.shape[1]

    @classmethod
    def random(cls, d_in: int, d_sae: int, k: int, hook_name: str, rng=None) -> "SAE":
        """Unit-norm random decoder rows, the encoder their transpose, zero biases."""
        rng = rng or np.random.default_rng(0)
        w = rng.normal(size=(d_sae, d_in))
        w /= np.linalg.norm(w, axis=1, keepdims=True)                       # [d_sae, d_in]
        return cls(w.T.astype(np.float32).copy(), np.zeros(d_sae, np.float32), w.astype(np.float32),
                   np.zeros(d_in, np.float32), int(k), hook_name)

    def pre(self, x) -> np.ndarray:
        """The encoder's pre-activations ``[..., d_sae]``."""
        x = np.asarray(x, dtype=np.float32)
        return (x - self.b_dec) @ self.W_enc + self.b_enc                   # [..., d_sae]

    def encode(self, x) -> np.ndarray:
        """Feature activations ``[..., d_sae]``: the ``k`` largest pre-activations, ReLU'd, the rest 0."""
        h = self.pre(x)                                                     # [..., d_sae]
        top = np.argpartition(-h, self.k - 1, axis=-1)[..., : self.k]       # [..., k]
        z = np.zeros_like(h)
        np.put_along_axis(z, top, np.maximum(np.take_along_axis(h, top, -1), 0), -1)
        return z

    def decode(self, z) -> np.ndarray:
        """``[..., d_in]``."""
        return np.asarray(z, dtype=np.float32) @ self.W_dec + self.b_dec

    def __call__(self, x) -> np.ndarray:
        return self.decode(self.encode(x))

    def stats(self, x) -> dict:
        """``explained_variance`` (1 - residual variance / variance around the mean), ``l0`` (mean active
        features) and ``dead`` (share of features never active) on ``x [rows, d_in]``."""
        x = np.asarray(x, dtype=np.float32)
        z = self.encode(x)                                                  # [rows, d_sae]
        err = ((x - self.decode(z)) ** 2).sum()
        total = ((x - x.mean(0)) ** 2).sum()
        return {"explained_variance": float(1 - err / total), "l0": float((z > 0).sum(-1).mean()),
                "dead": float(((z > 0).sum(0) == 0).mean())}

    def __repr__(self) -> str:
        return f"SAE({self.hook_name}: {self.d_in} -> {self.d_sae}, topk k={self.k})"


def config(sae: SAE) -> dict:
    """``cfg.json``: SAE Lens's keys (v6, and the older ``hook_name`` / ``activation_fn_kwargs`` too) and
    mglab's hook name."""
    cfg = {"architecture": "topk", "d_in": sae.d_in, "d_sae": sae.d_sae, "k": sae.k,
           "activation_fn": "topk", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": sae.k},
           "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
           "dtype": "float32", "device": "cpu", "hook_name": sae.hook_name, "hook_layer": _layer(sae.hook_name),
           "hook_head_index": None, "model_name": None, "prepend_bos": False, "context_size": None}
    cfg.update({k: v for k, v in sae.cfg.items() if k not in cfg})
    cfg["metadata"] = {**sae.cfg.get("metadata", {}), "hook_name": sae.hook_name, "hook_layer": cfg["hook_layer"]}
    return cfg


def _layer(name: str):
    parts = name.split(".")
    return int(parts[2]) if len(parts) > 2 and parts[1] == "layers" and parts[2].isdigit() else None


def save(sae: SAE, folder) -> Path:
    """Write ``folder/cfg.json`` and ``folder/sae_weights.safetensors``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / WEIGHTS, {"W_enc": sae.W_enc, "b_enc": sae.b_enc, "W_dec": sae.W_dec,
                                         "b_dec": sae.b_dec})
    text = json.dumps(config(sae), indent=1)
    atomic_write(folder / CONFIG, lambda tmp: Path(tmp).write_text(text))
    return folder


def load(folder) -> SAE:
    """An SAE from SAE Lens's files (``cfg.json`` with ``k`` or ``activation_fn_kwargs.k``)."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file():
        raise FileNotFoundError(f"{str(folder)!r} holds no SAE (no {CONFIG})")
    cfg = json.loads((folder / CONFIG).read_text())
    if cfg.get("architecture", "topk") != "topk":
        raise ValueError(f"architecture={cfg.get('architecture')!r}: mglab applies TopK SAEs only")
    w, _ = read_safetensors(folder / WEIGHTS)
    k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
    hook = cfg.get("hook_name") or (cfg.get("metadata") or {}).get("hook_name")
    f32 = lambda n: np.asarray(w[n], np.float32)                            # noqa: E731
    return SAE(f32("W_enc"), f32("b_enc"), f32("W_dec"), f32("b_dec"), int(k), hook, cfg)


def train(x, *, hook_name: str, k: int, d_sae: int, **kwargs) -> tuple[SAE, list[dict]]:
    """A TopK SAE trained on ``x [rows, d_in]`` for the point ``hook_name``, and its training log
    (:func:`mglab.inspect.sae_train.train`, whose keywords it takes; needs torch: the ``training`` extra)."""
    from .sae_train import train as _train

    w, settings, log = _train(x, k=k, d_sae=d_sae, **kwargs)
    sae = SAE(w["W_enc"], w["b_enc"], w["W_dec"], w["b_dec"], int(k), hook_name, {"training": settings})
    return sae, log


# on a model ----------------------------------------------------------------------------------------------------
def features(model, sae: SAE, prompt, **generate_kwargs) -> tuple:
    """Generate and read the SAE's features at its point: ``(Generation, z [steps, B, d_sae])``, the
    conditional rows."""
    gen, cache = model.run_with_cache(prompt, names_filter=sae.hook_name, **generate_kwargs)
    b = gen.codes.shape[0]
    return gen, sae.encode(cache[sae.hook_name][:, :b, 0])                  # [steps, B, d_sae]


def edit_hook(sae: SAE, feature: int, value: float, mode: str = "set", rows: str = "cond", batch=None):
    """``fn(x, hook)`` setting (``mode='set'``) or adding to (``'add'``) feature ``feature`` of the point
    ``x [H*B, 1, d]``: ``x + delta * W_dec[feature]``, the SAE's error kept. ``rows='cond'``: the first
    ``batch['B']`` rows only."""
    if mode not in ("set", "add"):
        raise ValueError(f"mode={mode!r} is not allowed: mode must be 'set' or 'add'")
    if not 0 <= feature < sae.d_sae:
        raise ValueError(f"feature={feature!r} is not allowed: the SAE has {sae.d_sae} features")
    direction = sae.W_dec[feature]                                          # [d]

    def edit(x, hook):                                                      # [H*B, 1, d]
        b = (batch or {}).get("B", x.shape[0]) if rows == "cond" else x.shape[0]
        z = sae.encode(x[:b, 0])[:, feature]                                 # [b]
        delta = value - z if mode == "set" else np.full_like(z, value)       # [b]
        y = x.copy()
        y[:b, 0] += (delta[:, None] * direction).astype(x.dtype)             # [b, d]
        return y
    return edit


@contextmanager
def clamp(model, sae: SAE, feature: int, value: float, mode: str = "set", rows: str = "cond", steps=None):
    """``with clamp(model, sae, feature, value):`` every run in the block has ``feature`` set to ``value``
    (``mode='add'``: raised by it) at the SAE's point, at every step (or ``steps``)."""
    batch = {}

    def count(ids, hook):                                                   # [B, K]: the batch size
        batch["B"] = ids.shape[0]

    with model.hooks([("decoder.hook_input_ids", count), (sae.hook_name, edit_hook(sae, feature, value, mode,
                                                                                   rows, batch))], steps=steps):
        yield
