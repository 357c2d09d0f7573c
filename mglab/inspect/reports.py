"""``reports/index.html``: one page linking every notebook's report, with its key metrics and its clips.

``make report`` runs every notebook with papermill into ``reports/<notebook>/`` (the executed notebook, its
HTML, its figures, WAVs and ``metrics.json``), then::

    python -m mglab.inspect.reports reports          # -> reports/index.html

The page is self-contained for listening offline: each report's WAVs play in an ``<audio>`` player that
links the file next to it, and each report's figures are shown small. Metrics listed are the top-level
numbers, booleans and short strings of ``metrics.json`` (lists and tables stay in the report).

Inside a notebook, :func:`clip_html` embeds one clip as a self-contained card (its mel spectrogram as a
base64 PNG beside a base64 WAV ``<audio>`` player), so the HTML that nbconvert writes plays offline.

Examples
--------
>>> import tempfile, json, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "02_guidance").mkdir()
>>> _ = (root / "02_guidance" / "metrics.json").write_text(json.dumps({"kl_cond_null": 0.5}))
>>> index(root).name
'index.html'
"""

from __future__ import annotations

import base64
import html
import io
import json
import sys
from pathlib import Path

import numpy as np

from ..core.fileio import atomic_write

STYLE = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}section{border-top:1px solid #ccc;padding:.5em 0}"
         "table{border-collapse:collapse}td{padding:.1em .8em;border-bottom:1px solid #eee}img{height:9em;margin:.2em}")


def summary(metrics: dict) -> dict:
    """The top-level numbers, booleans and short strings of a ``metrics.json``."""
    keep = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or isinstance(value, (int, float)):
            keep[key] = round(value, 4) if isinstance(value, float) else value
        elif isinstance(value, str) and len(value) <= 80:
            keep[key] = value
    return keep


def section(folder: Path, root: Path) -> str:
    """One report's part of the index."""
    rel = lambda p: html.escape(p.relative_to(root).as_posix())               # noqa: E731
    name = html.escape(folder.name)
    pages = sorted(folder.glob("*.html"))
    title = f'<a href="{rel(pages[0])}">{name}</a>' if pages else name
    parts = [f"<section><h2>{title}</h2>"]
    if len(pages) > 1:                                       # pages the notebook wrote (feature pages, ...)
        parts.append("<p>" + " ".join(f'<a href="{rel(p)}">{html.escape(p.stem)}</a>' for p in pages[1:]) + "</p>")
    metrics_path = folder / "metrics.json"
    if metrics_path.is_file():
        rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                       for k, v in summary(json.loads(metrics_path.read_text())).items())
        parts.append(f"<table>{rows}</table>")
    parts += [f'<img src="{rel(p)}" alt="{html.escape(p.name)}">' for p in sorted(folder.glob("*.png"))]
    parts += [f'<div>{html.escape(p.name)} <audio controls preload="none" src="{rel(p)}"></audio></div>'
              for p in sorted(folder.rglob("*.wav"))[:12]]
    parts.append("</section>")
    return "\n".join(parts)


def clip_html(audio, sr: int, title: str = "") -> str:
    """One clip as HTML: its title, its mel spectrogram (base64 PNG) and an audio player (base64 16-bit WAV).

    ``audio``: ``[samples]`` or ``[channels, samples]``; the spectrogram is of the first channel.

    Examples
    --------
    >>> import numpy as np
    >>> card = clip_html(np.zeros(3200, dtype=np.float32), sr=32000, title="silence")
    >>> card.count("base64,")
    2
    """
    import matplotlib.pyplot as plt
    import soundfile as sf

    from . import plot

    y = np.atleast_2d(np.asarray(audio, dtype=np.float32))                     # [channels, samples]
    wav = io.BytesIO()
    sf.write(wav, np.clip(y.T, -1, 1), sr, format="WAV", subtype="PCM_16")
    fig, ax = plt.subplots(figsize=(4, 2), constrained_layout=True)
    plot.plot_spectrogram(y[0], sr=sr, ax=ax, title=title)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=60)
    plt.close(fig)
    b64 = lambda b: base64.b64encode(b.getvalue()).decode()                  # noqa: E731
    return (f'<div class="mglab-clip" style="display:inline-block;margin:.3em;vertical-align:top">'
            f"<b>{html.escape(title)}</b><br><img alt='mel spectrogram' src='data:image/png;base64,{b64(png)}'>"
            f"<br><audio controls src='data:audio/wav;base64,{b64(wav)}'></audio></div>")


def clips_html(clips) -> str:
    """Cards of :func:`clip_html` side by side: ``clips`` is an iterable of ``(title, audio, sr)``."""
    return "<div>" + "".join(clip_html(audio, sr, title) for title, audio, sr in clips) + "</div>"


def index(root: Path) -> Path:
    """Write ``root/index.html`` over every report folder of ``root`` (those with a ``metrics.json`` or an
    HTML report), written to a temporary name and renamed."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root={str(root)!r} is not a folder of reports")
    folders = [f for f in sorted(root.iterdir()) if f.is_dir() and
               ((f / "metrics.json").is_file() or any(f.glob("*.html")))]
    body = "\n".join(section(f, root) for f in folders) or "<p>No reports yet: run <code>make report</code>.</p>"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>mglab reports</title><style>{STYLE}</style>"
            f"</head><body><h1>mglab reports</h1>{body}</body></html>")
    out = root / "index.html"
    atomic_write(out, lambda tmp: Path(tmp).write_text(page))
    return out


if __name__ == "__main__":
    print(index(Path(sys.argv[1] if len(sys.argv) > 1 else "reports")))
