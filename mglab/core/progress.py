"""A progress bar over decoding steps, or nothing: ``bar.update()`` and ``bar.close()`` either way."""

from __future__ import annotations


class NoBar:
    """What :func:`progress_bar` gives when no bar is wanted."""

    def update(self, n=1):
        """Nothing (a bar's ``update``)."""
        pass

    def close(self):
        """Nothing (a bar's ``close``)."""
        pass


def progress_bar(total: int, progress: bool, desc: str = "decoding", unit: str = "step"):
    """tqdm's bar over ``total`` (notebook or terminal), or a :class:`NoBar` when ``progress`` is false."""
    if not progress:
        return NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit)
