"""Writing files so that nothing half-written is ever left behind: a temporary name, then a rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _public(tmp) -> None:
    """``mkstemp`` makes files only their owner can read; give a written file the usual ``0o666 & ~umask``
    (what ``open(path, "w")`` would), so saved WAVs and reports are readable as any other file."""
    os.chmod(tmp, 0o666 & ~_umask())


def atomic_write(path, write) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    The temporary name keeps ``path``'s suffix (some writers choose the format from it). On any error,
    ``KeyboardInterrupt`` included, the temporary file is removed and ``path`` is left as it was.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = atomic_write(p, lambda tmp: pathlib.Path(tmp).write_text("hi"))
    >>> p.read_text()
    'hi'
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        _public(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_set(writers: dict) -> list[Path]:
    """Write several files as one: ``{path: write}``, each ``write(tmp)`` to a temporary name, then all
    renamed into place. If anything fails (``KeyboardInterrupt`` included) the files that were there before
    are put back and no temporary file is left: either every file is new, or none is.
    """
    paths = [Path(p) for p in writers]
    temps, backups, placed = {}, {}, []
    try:
        for path, write in zip(paths, writers.values()):
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
            os.close(fd)
            temps[path] = tmp
            write(tmp)
            _public(tmp)
        try:
            for path in paths:
                if path.exists():
                    fd, bak = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".bak", dir=path.parent)
                    os.close(fd)
                    os.replace(path, bak)
                    backups[path] = bak
            for path in paths:
                os.replace(temps[path], path)
                del temps[path]
                placed.append(path)
        except BaseException:
            for path in placed:
                path.unlink(missing_ok=True)
            for path, bak in backups.items():
                os.replace(bak, path)
            backups.clear()
            raise
    finally:
        for tmp in list(temps.values()) + list(backups.values()):
            Path(tmp).unlink(missing_ok=True)
    return paths
