"""What identifies an object across processes, for keys that must survive a restart (sweep rows).

``repr`` holds memory addresses, which change every process. :func:`fingerprint` gives plain values as they are,
arrays by their bytes, functions by qualified name, source, defaults, the values they close over and the plain
globals they read (a notebook's vector), callable objects and bound methods by their class and state. Mutable
containers a function closes over or reads (lists, dicts, sets) are identified by their type only: a hook that
records into a list keeps its key as the list grows.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import re
import types

import numpy as np

PLAIN = (str, bool, int, float, type(None))


def fingerprint(obj, depth: int = 0):
    """A JSON-able value that is equal for equal objects in any process (see the module docstring)."""
    if depth > 4:
        return type(obj).__qualname__
    if isinstance(obj, PLAIN):
        return obj
    if isinstance(obj, tuple):
        return [fingerprint(x, depth + 1) for x in obj]
    if isinstance(obj, (list, dict, set)) and depth > 0:
        return {"container": type(obj).__name__}                  # state a function keeps, not a parameter
    if isinstance(obj, list):
        return [fingerprint(x, depth + 1) for x in obj]
    if isinstance(obj, dict):
        return {str(k): fingerprint(v, depth + 1) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, np.ndarray):
        return {"array": hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest(), "shape": obj.shape,
                "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, slice):
        return {"slice": [obj.start, obj.stop, obj.step]}
    if isinstance(obj, (types.ModuleType, type)):
        name = obj.__qualname__ if isinstance(obj, type) else obj.__name__
        return {"name": f"{getattr(obj, '__module__', '')}.{name}"}
    if isinstance(obj, functools.partial):
        return {"partial": fingerprint(obj.func, depth + 1), "args": fingerprint(obj.args, depth + 1),
                "kwargs": fingerprint(obj.keywords, depth + 1)}
    if isinstance(obj, types.MethodType):
        return {"method": fingerprint(obj.__func__, depth + 1), "self": fingerprint(obj.__self__, depth + 1)}
    if isinstance(obj, types.FunctionType):
        return _function(obj, depth)
    if callable(obj) or hasattr(obj, "__dict__"):
        return {"object": f"{type(obj).__module__}.{type(obj).__qualname__}",
                "call": _function(type(obj).__call__, depth) if isinstance(type(obj).__call__, types.FunctionType)
                else None,
                "state": {k: fingerprint(v, depth + 1) for k, v in sorted(vars(obj).items())}
                if hasattr(obj, "__dict__") else None}
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))


def _function(fn, depth: int) -> dict:
    code = fn.__code__
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = None
    cells = [c.cell_contents for c in (fn.__closure__ or ()) if _filled(c)]
    names = sorted(n for n in code.co_names if n in fn.__globals__)
    globals_ = {n: fingerprint(fn.__globals__[n], depth + 1) for n in names
                if not isinstance(fn.__globals__[n], (types.ModuleType, type, types.FunctionType))}
    return {"callable": f"{fn.__module__}.{fn.__qualname__}", "source": source,
            "code": code.co_code.hex() if source is None else None,
            "defaults": fingerprint(fn.__defaults__, depth + 1),
            "kwdefaults": fingerprint(fn.__kwdefaults__ or {}, depth + 1),
            "closure": [fingerprint(c, depth + 1) for c in cells], "globals": globals_}


def _filled(cell) -> bool:
    """Whether a closure cell holds a value yet (a name bound later in its function does not)."""
    try:
        _ = cell.cell_contents
    except ValueError:
        return False
    return True
