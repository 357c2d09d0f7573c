"""Activation datasets and probes, against oracles that do not use the code under test: a planted linear
signal, clip-memorisable data (grouping must defeat it), a scaler that records what it was fitted on (a leak
is caught), prompt-memorisable labels (the control task must expose them), and teacher forcing done another
way (forcing the delayed tokens with a hook)."""

import numpy as np
import pytest
from helpers import ROOT

pytest.importorskip("sklearn")

from mglab.inspect import activations  # noqa: E402
from mglab.inspect import probe as pr  # noqa: E402

NANO = ROOT / "data" / "models" / "nano-musicgen"


def planted(n=400, d=16, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    direction = rng.normal(size=d)
    x = rng.normal(size=(n, d)) + 5 * np.outer(y, direction) / np.linalg.norm(direction)   # [n, d]
    return x, y


def test_probe_recovers_a_planted_signal_and_not_noise():
    x, y = planted()
    assert pr.probe(x, y, groups=np.arange(len(y)))["score"] > 0.9
    noise = np.random.default_rng(1).normal(size=x.shape)
    r = pr.probe(noise, y, groups=np.arange(len(y)))
    assert abs(r["score"] - 1 / 3) < 0.1
    target = x @ np.arange(x.shape[1]) * 0.1 + 60.0                       # a linear number, e.g. MIDI
    r = pr.probe(x, target, groups=np.arange(len(y)))
    assert r["kind"] == "r2" and r["score"] > 0.99


def test_the_mlp_probe_reads_an_xor_that_the_linear_probe_cannot():
    """The label is the XOR of two features' signs (as the mode is of the tonic and the pitch classes): no
    linear probe beats chance, SynTheory's MLP probe reads it."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1200, 6))
    y = np.where((x[:, 0] > 0) ^ (x[:, 1] > 0), "minor", "major")
    groups = np.arange(1200)
    assert pr.probe(x, y, groups, folds=3)["score"] < 0.6
    assert pr.probe(x, y, groups, folds=3, make=pr.mlp)["score"] > 0.9
    for offset in (0.0, 120.0):                                                   # in bpm-like units too
        r = pr.probe(x, 30 * x[:, 0] * x[:, 1] + offset, groups, folds=3, make=pr.mlp)   # a product: R^2
        assert r["kind"] == "r2" and r["score"] > 0.8, (offset, r["score"])


def test_grouped_folds_never_share_a_clip_and_grouping_defeats_memorisation():
    from sklearn.model_selection import KFold, cross_val_score

    rng = np.random.default_rng(0)
    clips, frames, d = 60, 10, 128
    label = rng.integers(0, 2, clips)                                     # a random label per clip
    offset = 3 * rng.normal(size=(clips, d))                               # each clip sits somewhere of its own
    x = np.repeat(offset, frames, 0) + 0.1 * rng.normal(size=(clips * frames, d))   # [rows, d]
    y, groups = np.repeat(label, frames), np.repeat(np.arange(clips), frames)
    for kind in ("accuracy", "r2"):
        for train, test in pr.folds_of(y, groups, kind, 5):
            assert not set(groups[train]) & set(groups[test])
    grouped = pr.probe(x, y, groups, folds=5)["score"]
    leaky = cross_val_score(pr.estimator("accuracy"), x, y, cv=KFold(5, shuffle=True, random_state=0)).mean()
    assert leaky > 0.95 and grouped < 0.7                                   # frames of a seen clip give it away


def test_scaler_is_fitted_on_training_rows_only(monkeypatch):
    from sklearn.preprocessing import StandardScaler

    fitted = []

    class Recording(StandardScaler):
        def fit(self, X, y=None, sample_weight=None):
            fitted.append(set(np.asarray(X)[:, 0].round().astype(int)))   # column 0 holds the row id
            return super().fit(X, y, sample_weight)

    def leaky(x, y, groups):                                              # SynTheory's mistake, for contrast
        scaler = Recording().fit(x)
        return pr.probe(scaler.transform(x), y, groups, folds=4)

    x, y = planted(n=200)
    x[:, 0] = np.arange(len(x))
    groups = np.arange(len(x)) // 4
    splits = pr.folds_of(y.astype(str), groups, "accuracy", 4)
    tests = [set(test) for _, test in splits]

    def leaks():                                                          # a fit that saw some test row of every fold
        return [all(f & t for t in tests) for f in fitted]

    monkeypatch.setattr("sklearn.preprocessing.StandardScaler", Recording)   # what pr.estimator builds
    pr.probe(x, y, groups, folds=4)
    assert len(fitted) == 4 and not any(leaks())                           # each fit saw one training fold
    assert fitted == [set(range(len(x))) - t for t in tests]
    fitted.clear()
    leaky(x, y, groups)
    assert any(leaks())                                                   # the same check catches the leak


def test_the_control_task_exposes_a_probe_that_memorises_prompts():
    rng = np.random.default_rng(0)
    prompts, seeds, d = 40, 4, 64
    code = rng.normal(size=(prompts, d))                                   # each prompt's own place
    which = np.repeat(np.arange(prompts), seeds)                           # 4 clips (seeds) a prompt
    x = code[which] + 0.05 * rng.normal(size=(len(which), d))
    arbitrary = rng.integers(0, 3, prompts)[which]                         # a label per prompt, no structure
    r = pr.probe(x, arbitrary, groups=np.arange(len(which)), control_by=which, folds=4)
    assert r["score"] > 0.8 and r["control"] > 0.8 and abs(r["selectivity"]) < 0.2
    xs, ys = planted(n=len(which), d=d, seed=3)
    r = pr.probe(xs, ys, groups=np.arange(len(which)), control_by=which, folds=4)
    assert r["score"] > 0.9 and r["selectivity"] > 0.5
    labels = pr.control_labels(ys, which)
    assert all(len(set(labels[which == p])) == 1 for p in range(prompts))   # one label per prompt


@pytest.fixture(scope="module")
def nano():
    import mglab

    return mglab.load(NANO)


def test_teacher_forced_dataset_equals_forcing_the_tokens_with_a_hook(nano, tmp_path):
    from mglab.nano import corpus

    clips = [corpus.example(np.random.default_rng(i), 0.5) for i in range(3)]
    name = "decoder.layers.2.hook_resid_post"
    ds = activations.record_clips(nano, clips, tmp_path / "ds", [name], batch_size=2)
    frames = clips[0].codes.shape[1]
    assert ds.frames(name).shape == (3 * frames, 128) and ds.clips(name).shape == (3, 128)
    table = ds.table("frames")
    assert table["frame"].tolist() == list(range(frames)) * 3
    assert (table["clip"].to_numpy() == np.repeat([0, 1, 2], frames)).all()
    np.testing.assert_allclose(table["midi"].to_numpy()[:frames], activations.note_midi(clips[0].notes, frames))
    assert ds.table()["instrument"].tolist() == [c.attributes["instrument"] for c in clips]

    codes = clips[1].codes                                                 # [K, frames]
    delays = np.arange(4)

    def force(column, hook):                                              # column t+1 of the delay pattern
        t = hook.step + 1
        f = t - 1 - delays
        ok = (f >= 0) & (f < frames)
        column[0, ok] = codes[ok, f[ok]]

    _, cache = nano.run_with_cache(clips[1].prompt, names_filter=name, hooks=[("delay.hook_tokens", force)],
                                   guidance_scale=1.0, duration=(frames + 1) / 50, seed=0)
    want = cache[name][1: frames + 1, 0, 0]                                # steps 1..frames: [frames, d]
    np.testing.assert_allclose(ds.frames(name)[frames: 2 * frames], want, atol=1e-4)
    np.testing.assert_allclose(ds.clips(name)[1], want.mean(0), atol=1e-4)


def test_generated_dataset_and_layer_table(nano, tmp_path):
    names = ["decoder.layers.0.hook_cross_attn_out", "decoder.layers.3.hook_resid_post"]
    prompts = ["a low organ melody", "a high flute scale", "a low piano tune", "a high violin melody"]
    ds = activations.record_prompts(nano, prompts, [0, 1], tmp_path / "gen", names, duration=0.4)
    t = ds.table()
    assert len(ds) == 8 and t["register"].tolist() == ["low", "high", "low", "high"] * 2
    assert t["seed"].tolist() == [0] * 4 + [1] * 4
    table = pr.layer_table(ds, ["register", "instrument"], folds=2)
    assert set(table["point"]) == {"cross_attn_out", "resid_post"} and set(table["layer"]) == {0, 3}
    assert table["control"].notna().all() and (table["rows"] > 0).all()
    with pytest.raises(ValueError, match="one class only"):
        pr.probe(ds.clips(names[0]), ["melody"] * 7 + ["scale"], groups=np.arange(8), folds=2)
    with pytest.raises(FileExistsError):
        activations.Writer(tmp_path / "gen", names)


def test_dataset_from_a_sweeps_recorded_rows(nano, tmp_path):
    import mglab

    name = "decoder.layers.1.hook_resid_post"
    table = mglab.sweep(nano, {"prompt": ["a low organ melody", "a high flute scale"], "seed": [0]}, tmp_path / "sw",
                        client=False, evaluate=False, record=[name, "codec.hook_codes"], duration=0.3)
    ds = activations.from_sweep(tmp_path / "sw", tmp_path / "ds", [name])
    frames = round(0.3 * 50)
    assert len(ds) == 2 and ds.frames(name).shape == (2 * frames, 128)
    assert ds.table()["register"].tolist() == ["low", "high"] and ds.table()["seed"].tolist() == [0, 0]
    values, keys = mglab.sweep_cache(tmp_path / "sw", name)                # [rows, steps, 1, 1, d]
    assert list(keys) == table["row"].tolist()
    np.testing.assert_allclose(ds.frames(name)[:frames], values[0, 1: frames + 1, 0, 0], atol=1e-6)
