"""Feature pages for an SAE's features (SAE-Vis conventions), checked against ground-truth attributes.

For a feature: its activation histogram and density (the share of rows where it fires), the clips that
activate it most, heard, with the frames where it fires marked on their spectrogram, the logit-lens effect
of its decoder direction (which tokens of which codebook it promotes and suppresses), and its AUROC against
each value of each ground-truth attribute. :func:`page` writes one static HTML page (figures and clips
embedded) for a notebook or the report::

    z = sae.encode(ds.frames(sae.hook_name))                      # [rows, d_sae]
    table = aurocs(z, ds.table("frames"), ["instrument", "register"])
    best(table)                                                   # the best feature per attribute value
    html = page(model, sae, feature, z, ds.table("frames"), codes, table)

Examples
--------
>>> z = np.array([[0.0, 1.0], [0.0, 2.0], [3.0, 0.0], [1.0, 0.0]])
>>> auroc(z, np.array([False, False, True, True])).round(2).tolist()     # feature 0 fires on the positives
[1.0, 0.0]
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np


def auroc(z, positive) -> np.ndarray:
    """AUROC of every column of ``z [rows, features]`` as a score for ``positive [rows]`` (Mann-Whitney U with
    average ranks for ties): ``[features]``; 0.5 where there is no positive or no negative."""
    from scipy.stats import rankdata

    z, positive = np.asarray(z, dtype=np.float64), np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return np.full(z.shape[1], 0.5)
    ranks = rankdata(z, axis=0)                                            # [rows, features]
    return (ranks[positive].sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def aurocs(z, table, attributes):
    """Every feature's AUROC against each value of each attribute (rows of ``table`` with the value known): a
    DataFrame ``feature``, ``attribute``, ``value``, ``auroc``."""
    import pandas as pd

    out = []
    for attribute in attributes:
        col = table[attribute]
        known = col.notna().to_numpy()
        for value in sorted(set(col[known])):
            a = auroc(np.asarray(z)[known], (col[known] == value).to_numpy())
            out.append(pd.DataFrame({"feature": np.arange(len(a)), "attribute": attribute, "value": value,
                                     "auroc": a}))
    return pd.concat(out, ignore_index=True)


def best(table):
    """The feature of highest AUROC for each attribute value of an :func:`aurocs` table."""
    return table.loc[table.groupby(["attribute", "value"])["auroc"].idxmax()].reset_index(drop=True)


def logit_effect(model, sae, feature: int, top: int = 5) -> list[dict]:
    """The feature's decoder direction through the final layer norm's scale and the K heads (the logit lens of
    a direction): per codebook, the ``top`` tokens it promotes and suppresses most, ``[{codebook, promoted:
    [(token, logit)], suppressed: [...]}]``."""
    from .interventions import lens_weights

    path = next(iter(model.decoder.paths.values()))
    scale, _, heads, _ = lens_weights(path, model.config.num_codebooks)     # [d], [d], [K, d, V]
    effect = np.einsum("d,kdv->kv", sae.W_dec[feature] * scale, heads)      # [K, V]
    out = []
    for k, row in enumerate(effect):
        order = np.argsort(row)
        out.append({"codebook": k, "promoted": [(int(t), float(row[t])) for t in order[::-1][:top]],
                    "suppressed": [(int(t), float(row[t])) for t in order[:top]]})
    return out


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=70)
    plt.close(fig)
    return f"<img alt='figure' src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>"


def histogram(z_f, ax=None, title: str = ""):
    """Histogram of a feature's non-zero activations; its density (share of rows active) in the title."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(4, 2.5))[1]
    z_f = np.asarray(z_f)
    active = z_f[z_f > 0]
    ax.hist(active, bins=40, color="C0")
    ax.set(xlabel="activation (where active)", ylabel="rows",
           title=f"{title} density {active.size / max(z_f.size, 1):.2%}")
    return ax


def top_clips(z_f, clip_of_row, n: int = 3) -> list[int]:
    """The ``n`` clips whose largest activation of the feature is highest."""
    z_f, clip_of_row = np.asarray(z_f), np.asarray(clip_of_row)
    peak = {}
    for c, v in zip(clip_of_row, z_f):
        peak[c] = max(peak.get(c, 0.0), v)
    return [int(c) for c, _ in sorted(peak.items(), key=lambda kv: -kv[1])[:n]]


def clip_card(model, codes, z_clip, frames, title: str) -> str:
    """One clip rendered from ``codes [K, frames]``: a player and its spectrogram with the frames where the
    feature fires (``z_clip`` at ``frames``) shaded."""
    import matplotlib.pyplot as plt

    from . import plot
    from .reports import clip_html

    audio = model.codec.decode(np.asarray(codes)[None])[0, 0]               # [samples]
    sr, rate = model.config.sample_rate, model.config.frame_rate
    fig, ax = plt.subplots(figsize=(5, 2.2), constrained_layout=True)
    plot.plot_spectrogram(audio, sr=sr, ax=ax, title=title)
    for f, v in zip(frames, z_clip):
        if v > 0:
            ax.axvspan(f / rate, (f + 1) / rate, color="cyan", alpha=min(0.5, 0.1 + 0.4 * v / max(z_clip.max(), 1e-9)))
    player = clip_html(audio, sr, title)
    return f"<div style='display:inline-block'>{_png(fig)}<br>{player.split('<br>')[-1]}</div>"


def page(model, sae, feature: int, z, table, codes, auroc_table=None, n_top: int = 3) -> str:
    """A static HTML page for ``feature``: ``z [rows, d_sae]`` the SAE's activations over a dataset's frame
    rows, ``table`` their labels (``Dataset.table('frames')``), ``codes[clip]`` each clip's codes
    ``[K, frames]``, ``auroc_table`` from :func:`aurocs` (its rows for this feature are listed)."""
    z_f = np.asarray(z)[:, feature]                                          # [rows]
    parts = [f"<h2>feature {feature} of {html.escape(repr(sae))}</h2>",
             _png(histogram(z_f, title=f"feature {feature}:").figure)]
    if auroc_table is not None:
        rows = auroc_table[auroc_table["feature"] == feature].sort_values("auroc", ascending=False)
        parts.append("<h3>AUROC against the ground truth</h3><table>" + "".join(
            f"<tr><td>{html.escape(str(r.attribute))}={html.escape(str(r.value))}</td><td>{r.auroc:.3f}</td></tr>"
            for r in rows.itertuples()) + "</table>")
    parts.append("<h3>logit lens of the decoder direction</h3><table><tr><th>codebook</th><th>promotes</th>"
                 "<th>suppresses</th></tr>" + "".join(
                     f"<tr><td>{e['codebook']}</td><td>{', '.join(f'{t} ({v:+.2f})' for t, v in e['promoted'])}"
                     f"</td><td>{', '.join(f'{t} ({v:+.2f})' for t, v in e['suppressed'])}</td></tr>"
                     for e in logit_effect(model, sae, feature)) + "</table>")
    clips, frames = table["clip"].to_numpy(), table["frame"].to_numpy()
    cards = []
    for c in top_clips(z_f, clips, n_top):
        rows = clips == c
        cards.append(clip_card(model, codes[c], z_f[rows], frames[rows], f"clip {c}: {table['prompt'][rows].iloc[0]}"))
    parts.append("<h3>top-activating clips (shaded: frames where it fires)</h3>" + "".join(cards))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>feature</title></head><body>"
            + "\n".join(parts) + "</body></html>")
