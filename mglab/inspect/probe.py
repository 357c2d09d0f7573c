"""Probes: what a residual point says about the music, measured held-out, against a control task.

A probe is a scikit-learn pipeline, a ``StandardScaler`` then logistic regression (classes: instrument,
register, key, mode, ...) or ridge regression (numbers: tempo in bpm, pitch in MIDI). It is scored by
cross-validation **grouped by clip**: the frames of one clip are never on both sides, so a probe cannot pass
by recognising a clip it has seen. The scaler is a step of the pipeline, so it is fitted on the training
folds only (SynTheory's published code fits it on the validation data too).

Selectivity (Hewitt & Liang 2019): the same probe on a *control task*, where each distinct prompt gets a random
label drawn from the attribute's own distribution. A probe that does well on the control task memorises
its inputs rather than reading the attribute; the score minus the control score is the selectivity::

    ds = activations.Dataset("acts")
    r = probe(ds.clips("decoder.layers.2.hook_resid_post"), table["instrument"], groups=table["clip"],
              control_by=table["prompt"])
    r["score"], r["control"], r["selectivity"]           # accuracy, control accuracy, points
    probe(x, y, groups, make=mlp)                         # SynTheory's 512-unit MLP probe instead
    table = layer_table(ds, ["instrument", "register"])   # every point x attribute
    plot_layers(table)

Examples
--------
>>> rng = np.random.default_rng(0)
>>> y = rng.integers(0, 3, 300)
>>> x = rng.normal(size=(300, 8)); x[:, 0] += 6 * y              # the class is written along axis 0
>>> r = probe(x, y, groups=np.arange(300), folds=3)
>>> r["kind"], r["score"] > 0.9
('accuracy', True)
"""

from __future__ import annotations

import re

import numpy as np

KINDS = ("auto", "accuracy", "r2")
POINT = re.compile(r"decoder\.layers\.(\d+)\.hook_(\w+)")


def estimator(kind: str, seed: int = 0):
    """The probe: ``StandardScaler`` then ``LogisticRegression`` (``kind='accuracy'``) or ``RidgeCV``
    (``'r2'``), as one pipeline (the scaler is fitted with the probe, on training rows only)."""
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "accuracy":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed))
    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))


def mlp(kind: str, seed: int = 0, hidden: int = 512):
    """SynTheory's probe: ``StandardScaler`` then one hidden layer of ``hidden`` ReLU units (scikit-learn's
    ``MLPClassifier`` for ``kind='accuracy'``, ``MLPRegressor`` for ``'r2'``, its target standardized too; Adam,
    early stopping on a tenth of the training rows). Pass it as ``probe(..., make=mlp)``: it reads functions of
    the features that no linear probe can (an XOR of two of them; the mode from the tonic and the pitches)."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind not in ("accuracy", "r2"):
        raise ValueError(f"kind={kind!r} is not allowed: kind must be 'accuracy' or 'r2'")
    settings = dict(hidden_layer_sizes=(hidden,), alpha=1e-3, max_iter=500, early_stopping=True, random_state=seed)
    if kind == "accuracy":
        return make_pipeline(StandardScaler(), MLPClassifier(**settings))
    return TransformedTargetRegressor(make_pipeline(StandardScaler(), MLPRegressor(**settings)),
                                      transformer=StandardScaler())      # bpm, MIDI: the target scaled too


def folds_of(y, groups, kind: str, folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(train rows, test rows), ...]``, grouped: no group on both sides (stratified by class for
    classes, when every class has at least ``folds`` rows)."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    if len(np.unique(groups)) < folds:
        raise ValueError(f"{len(np.unique(groups))} groups for folds={folds}: give at least as many clips as folds")
    if kind == "accuracy" and np.unique(y, return_counts=True)[1].min() >= folds:
        split = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        split = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(split.split(np.zeros(len(y)), y, groups))


def control_labels(y, by, seed: int = 0) -> np.ndarray:
    """Hewitt & Liang's control task: each distinct value of ``by`` (the prompt) gets one label drawn at random
    from ``y``'s own values (so the classes keep their shares): ``[rows]``."""
    y, by = np.asarray(y), np.asarray(by)
    rng = np.random.default_rng(seed)
    keys, inverse = np.unique(by, return_inverse=True)
    return y[rng.integers(0, len(y), len(keys))][inverse]


def _kind(y, kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not allowed: kind must be one of {KINDS}")
    if kind != "auto":
        return kind
    return "r2" if np.asarray(y).dtype.kind == "f" else "accuracy"


def held_out(x, y, splits, kind: str, seed: int = 0, make=None) -> np.ndarray:
    """The held-out score of a fresh probe on each split: ``[folds]`` (accuracy or R^2)."""
    from sklearn.metrics import accuracy_score, r2_score

    make = make or estimator
    scores = []
    for train, test in splits:
        if kind == "accuracy" and len(np.unique(y[train])) < 2:
            raise ValueError(f"a training fold holds one class only ({y[train][0]!r}): give more clips of each "
                             "class, or fewer folds")
        model = make(kind, seed).fit(x[train], y[train])
        pred = model.predict(x[test])
        scores.append(accuracy_score(y[test], pred) if kind == "accuracy" else r2_score(y[test], pred))
    return np.array(scores)


def probe(x, y, groups, *, control_by=None, kind: str = "auto", folds: int = 5, max_rows: int | None = 20000,
          seed: int = 0, make=None) -> dict:
    """Cross-validated probe of ``y`` from ``x [rows, d]``, grouped by ``groups`` (the clip of each row).

    Rows whose label is missing (None, NaN) are left out; ``max_rows`` keeps a random subset of rows (whole
    data below it). ``control_by`` (the prompt of each row): also the control task and the selectivity.
    ``make(kind, seed)`` replaces :func:`estimator`. Returns ``{"kind", "score", "scores", "control",
    "selectivity", "chance", "rows", "groups"}``; ``chance`` is the majority class's share (accuracy) or 0 (R^2).
    """
    y = np.asarray(y, dtype=object)
    keep = np.array([v is not None and not (isinstance(v, float) and np.isnan(v)) for v in y])
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(keep)
    if max_rows is not None and rows.size > max_rows:
        rows = np.sort(rng.choice(rows, max_rows, replace=False))
    kind = _kind(np.array(list(y[rows])), kind)
    yy = np.array([float(v) for v in y[rows]]) if kind == "r2" else np.array([str(v) for v in y[rows]])
    xx, gg = np.asarray(x[rows], dtype=np.float32), np.asarray(groups)[rows]       # [rows, d], [rows]
    splits = folds_of(yy, gg, kind, folds, seed)
    scores = held_out(xx, yy, splits, kind, seed, make)
    values, counts = np.unique(yy, return_counts=True)
    out = {"kind": kind, "score": float(scores.mean()), "scores": scores.tolist(), "control": None,
           "selectivity": None, "chance": float(counts.max() / counts.sum()) if kind == "accuracy" else 0.0,
           "rows": int(rows.size), "groups": int(len(np.unique(gg)))}
    if control_by is not None:
        fake = control_labels(yy, np.asarray(control_by)[rows], seed)
        out["control"] = float(held_out(xx, fake, splits, kind, seed, make).mean())
        out["selectivity"] = out["score"] - out["control"]
    return out


def layer_point(name: str) -> tuple[int | None, str]:
    """``(layer, point)`` of a hook name: ``decoder.layers.2.hook_resid_post`` -> ``(2, 'resid_post')``."""
    m = POINT.fullmatch(name)
    return (int(m.group(1)), m.group(2)) if m else (None, name)


def layer_table(dataset, attributes, names=None, rows: str = "clips", where=None, **probe_kwargs):
    """A probe per point x attribute over an :class:`~mglab.inspect.activations.Dataset`: a DataFrame with
    ``name``, ``layer``, ``point``, ``attribute``, ``kind``, ``score``, ``control``, ``selectivity``,
    ``chance``, ``rows``. ``rows``: ``'clips'`` (each clip's mean) or ``'frames'``; ``where(table)``: a
    boolean mask of the rows to use (e.g. only clips whose prompt names the attribute)."""
    import pandas as pd

    table = dataset.table(rows)
    mask = np.ones(len(table), bool) if where is None else np.asarray(where(table), bool)
    out = []
    for name in names or dataset.names:
        x = dataset.clips(name) if rows == "clips" else dataset.frames(name)         # [rows, d]
        for attribute in [attributes] if isinstance(attributes, str) else attributes:
            if attribute not in table:
                continue
            y = table[attribute].where(mask, None).to_numpy(dtype=object)
            r = probe(x, y, table["clip"].to_numpy(), control_by=table["prompt"].to_numpy(), **probe_kwargs)
            layer, point = layer_point(name)
            out.append({"name": name, "layer": layer, "point": point, "attribute": attribute,
                        **{k: r[k] for k in ("kind", "score", "control", "selectivity", "chance", "rows")}})
    return pd.DataFrame(out)


def best(table):
    """The best point of each attribute in a :func:`layer_table` (highest held-out score)."""
    return table.loc[table.groupby("attribute")["score"].idxmax()].reset_index(drop=True)


def plot_layers(table, attribute: str | None = None, ax=None):
    """Layer curves: held-out score (solid) and control score (dashed) per layer, one colour per point (and
    attribute, unless ``attribute`` picks one). Returns the Axes."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    t = table if attribute is None else table[table["attribute"] == attribute]
    for (attr, point), g in t.groupby(["attribute", "point"], sort=False):
        g = g.sort_values("layer")
        line, = ax.plot(g["layer"], g["score"], marker="o", label=f"{attr}: {point}")
        if g["control"].notna().any():
            ax.plot(g["layer"], g["control"], ls="--", color=line.get_color(), alpha=0.6)
    ax.set(xlabel="layer", ylabel="held-out score (dashed: control task)", ylim=(min(0, t["score"].min()), 1.02))
    ax.legend(fontsize=7)
    return ax
