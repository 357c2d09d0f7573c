"""A thin wrapper over ``onnxruntime.InferenceSession``: outputs by name, float inputs cast to what the graph
declares (so fp16 graphs take the pipeline's float32 arrays), execution providers chosen with a fallback, and
the optimized graph cached on disk.

Optimized-graph cache (CPU): the first session of a file saves ONNX Runtime's optimized graph, weights in a
side file, to ``$MGLAB_CACHE/ort/<name>-<key>/`` (the key covers the file's path, size and modification time,
the ONNX Runtime version and the CPU). Later sessions load that: no protobuf parsing of the weights and no
fusion passes, so a second ``mglab.load`` is several times faster. ``MGLAB_ORT_CACHE=0`` turns it off.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort

DEVICES = {"cpu": ["CPUExecutionProvider"],
           "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
           "coreml": ["CoreMLExecutionProvider", "CPUExecutionProvider"],
           "dml": ["DmlExecutionProvider", "CPUExecutionProvider"]}
FLOATS = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def resolve_providers(providers=None, device: str | None = None) -> list:
    """The execution providers to use: ``providers`` (names or ``(name, options)``) or those of ``device``.

    Providers this ONNX Runtime build lacks are dropped with a warning that says which are used instead.
    """
    if providers is not None and device is not None:
        raise ValueError(f"providers={providers!r} and device={device!r}: give one of them, not both")
    if device is not None:
        if device not in DEVICES:
            raise ValueError(f"device={device!r} is not known; allowed: {sorted(DEVICES)}")
        providers = DEVICES[device]
    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, str):
        providers = [providers]
    available = set(ort.get_available_providers())
    chosen = [p for p in providers if (p[0] if isinstance(p, tuple) else p) in available]
    missing = [p for p in providers if p not in chosen]
    if not chosen:
        chosen = ["CPUExecutionProvider"]
    if missing:
        names = [p[0] if isinstance(p, tuple) else p for p in chosen]
        warnings.warn(f"ONNX Runtime here lacks {[m[0] if isinstance(m, tuple) else m for m in missing]}; "
                      f"using {names} (available: {sorted(available)})", RuntimeWarning, stacklevel=3)
    return chosen


def _options(level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = level
    return options


def _session(path: Path, providers: list) -> ort.InferenceSession:
    """An InferenceSession of ``path``, through the optimized-graph cache when only the CPU runs it."""
    def open_(p):
        return ort.InferenceSession(str(p), _options(), providers=providers)

    cpu = all((p[0] if isinstance(p, tuple) else p) == "CPUExecutionProvider" for p in providers)
    if not cpu or os.environ.get("MGLAB_ORT_CACHE") == "0":
        return open_(path)
    cached = optimized_folder(path) / "model.onnx"
    if cached.is_file():
        try:
            return open_(cached)
        except Exception:                         # a damaged cache entry: build it again
            shutil.rmtree(cached.parent, ignore_errors=True)
    _save_optimized(path, cached.parent, providers)
    return open_(cached if cached.is_file() else path)


def _save_optimized(path: Path, folder: Path, providers: list) -> None:
    """ONNX Runtime's optimized graph of ``path`` into ``folder`` (``model.onnx`` + ``model.onnx.data``),
    written under a temporary name and renamed: a folder appears whole or not at all."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    # the saved graph stops at the portable (extended) level; layout passes for this CPU run on each load
    options = _options(ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
    options.optimized_model_filepath = str(tmp / "model.onnx")
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", "model.onnx.data")
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    try:
        ort.InferenceSession(str(path), options, providers=providers)
        os.replace(tmp, folder)
    except OSError:                               # another process made it first
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def optimized_folder(path: Path) -> Path:
    """Where the optimized graph of ``path`` is cached."""
    from .graphfile import cache_dir, cache_name

    cpu = f"{platform.machine()}|{platform.processor()}|{os.cpu_count()}|{_cpu_flags()}"
    return cache_dir() / "ort" / cache_name(path, ort.__version__, cpu)


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return hashlib.sha256(next((line for line in f if line.startswith("flags")), "").encode()).hexdigest()[:8]
    except OSError:
        return ""


class Session:
    """One ONNX graph. ``run(feeds) -> {output_name: array}``."""

    def __init__(self, path: Path, providers=None):
        self.path = Path(path)
        try:
            self.session = _session(self.path, providers or ["CPUExecutionProvider"])
        except Exception as err:     # ONNX Runtime's own errors: InvalidProtobuf, Fail, NoSuchFile...
            raise ValueError(f"{self.path} cannot be loaded by ONNX Runtime (truncated or corrupt file?): "
                             f"{str(err).strip()[:300]}") from err
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_dtypes = {i.name: FLOATS[i.type] for i in self.session.get_inputs() if i.type in FLOATS}
        self.output_dtypes = {o.name: FLOATS[o.type] for o in self.session.get_outputs() if o.type in FLOATS}

    @property
    def providers(self) -> list[str]:
        """The execution providers the session runs on."""
        return self.session.get_providers()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph: inputs by name (cast to the graph's types), outputs by name."""
        feeds = {k: self._cast(k, v) for k, v in feeds.items() if k in self.input_names}
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))

    def bind(self, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> "Bound":
        """An IO binding of numpy arrays, kept by reference: the graph reads ``feeds`` and writes ``outputs``
        in their memory (the same array in both is updated in place). Refill the arrays, then
        :meth:`run_bound`."""
        arrays = {k: np.ascontiguousarray(self._cast(k, v)) for k, v in feeds.items() if k in self.input_names}
        missing = [n for n in self.input_names if n not in arrays]
        if missing:
            raise ValueError(f"{self.path.name}: no value bound for inputs {missing}")
        values = {}                                    # one OrtValue per array, shared when the array is
        binding = self.session.io_binding()
        for kind, table in (("in", arrays), ("out", outputs)):
            for name, a in table.items():
                if not a.flags.c_contiguous:
                    raise ValueError(f"{name}: a bound array must be C-contiguous")
                v = values.setdefault(id(a), ort.OrtValue.ortvalue_from_numpy(a))
                (binding.bind_ortvalue_input if kind == "in" else binding.bind_ortvalue_output)(name, v)
        return Bound(binding, {**arrays, **outputs}, list(values.values()), self)

    def run_bound(self, bound: "Bound") -> None:
        """Run with the inputs and outputs bound by :meth:`bind` (written in place)."""
        self.session.run_with_iobinding(bound.binding)

    def _cast(self, name: str, value: np.ndarray) -> np.ndarray:
        dtype = self.input_dtypes.get(name)
        return value if dtype is None or value.dtype == dtype else value.astype(dtype)


class Bound:
    """An IO binding and the numpy arrays (and OrtValues over them) it reads and writes."""

    def __init__(self, binding, arrays: dict[str, np.ndarray], values: list, session: "Session"):
        self.binding, self.arrays, self._values, self.session = binding, arrays, values, session

    def run(self) -> dict[str, np.ndarray]:
        """Run the graph on the bound arrays; returns them (outputs included) by name."""
        self.session.run_bound(self)
        return self.arrays
