"""Sparse autoencoders: training recovers a known sparse dictionary, the files round-trip through the
``safetensors`` library itself (SAE Lens's format), the numpy encoder equals torch's top-k, and a clamp
through hooks moves the point by exactly the feature's decoder row and changes what the feature says."""

import json

import numpy as np
import pytest
from helpers import ROOT

from mglab.inspect import sae as S

NANO = ROOT / "data" / "models" / "nano-musicgen"
HOOK = "decoder.layers.2.hook_resid_post"


def sparse_data(n=20000, d=32, atoms=64, active=3, seed=0):
    rng = np.random.default_rng(seed)
    dictionary = rng.normal(size=(atoms, d))
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)       # [atoms, d]
    z = np.zeros((n, atoms))
    for i in range(n):
        z[i, rng.choice(atoms, active, replace=False)] = rng.uniform(1, 3, active)
    return (z @ dictionary + 0.5).astype(np.float32), dictionary          # [n, d], an offset for b_dec


def test_training_recovers_a_known_sparse_dictionary():
    pytest.importorskip("torch")
    x, dictionary = sparse_data()
    sae, log = S.train(x, k=3, d_sae=128, hook_name=HOOK, steps=1500, batch_size=512, lr=3e-3, dead_after=20000)
    stats = sae.stats(x[:4000])
    assert stats["explained_variance"] > 0.9 and stats["l0"] <= 3
    rows = sae.W_dec / np.linalg.norm(sae.W_dec, axis=1, keepdims=True)  # [d_sae, d]
    best = np.abs(dictionary @ rows.T).max(axis=1)                         # each true atom's closest feature
    assert np.mean(best > 0.9) >= 0.9, np.sort(best)[:10]
    assert log[-1]["mse"] < log[0]["mse"]


def test_safetensors_and_cfg_round_trip_with_the_library(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    sae = S.SAE.random(16, 64, 8, HOOK, np.random.default_rng(1))
    sae.b_enc[:] = np.arange(64) / 64
    S.save(sae, tmp_path / "a")
    theirs = st.load_file(str(tmp_path / "a" / S.WEIGHTS))                 # the library reads ours
    assert {n: v.shape for n, v in theirs.items()} == {"W_enc": (16, 64), "b_enc": (64,), "W_dec": (64, 16),
                                                        "b_dec": (16,)}
    np.testing.assert_array_equal(theirs["W_enc"], sae.W_enc)
    np.testing.assert_array_equal(theirs["b_enc"], sae.b_enc)
    cfg = json.loads((tmp_path / "a" / S.CONFIG).read_text())
    assert (cfg["d_in"], cfg["d_sae"], cfg["architecture"], cfg["k"], cfg["hook_name"]) == (16, 64, "topk", 8, HOOK)
    st.save_file({k: v for k, v in theirs.items()}, str(tmp_path / "b.safetensors"))   # we read theirs
    ours, _ = S.read_safetensors(tmp_path / "b.safetensors")
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name])
    back = S.load(tmp_path / "a")
    x = np.random.default_rng(2).normal(size=(7, 16))
    np.testing.assert_array_equal(back.encode(x), sae.encode(x))
    assert back.k == 8 and back.hook_name == HOOK


def test_numpy_encoder_equals_torch_topk():
    torch = pytest.importorskip("torch")
    sae = S.SAE.random(16, 64, 5, HOOK, np.random.default_rng(3))
    sae.b_enc[:] = np.random.default_rng(4).normal(size=64)
    x = np.random.default_rng(5).normal(size=(50, 16)).astype(np.float32)
    h = torch.from_numpy(sae.pre(x))
    vals, idx = h.topk(5, dim=-1)
    want = torch.zeros_like(h).scatter(-1, idx, vals.relu()).numpy()
    np.testing.assert_allclose(sae.encode(x), want, atol=1e-6)
    assert sae.stats(x)["l0"] <= 5


def test_clamp_moves_the_point_along_the_feature_and_the_feature_follows(tmp_path):
    import mglab

    model = mglab.load(NANO)
    sae = S.SAE.random(128, 256, 16, HOOK, np.random.default_rng(0))
    prompts = ["a low organ melody", "a high flute scale"]
    kw = dict(duration=0.3, seed=0, guidance_scale=3.0)
    gen0, cache0 = model.run_with_cache(prompts, names_filter=HOOK, **kw)
    feature, value = 7, 20.0
    with S.clamp(model, sae, feature, value):
        gen1, cache1 = model.run_with_cache(prompts, names_filter=HOOK, **kw)
        _, z = S.features(model, sae, prompts, **kw)
    x0, x1 = cache0[HOOK][0, :, 0], cache1[HOOK][0, :, 0]                  # step 0: same inputs, [H*B, d]
    z0 = sae.encode(x0[:2])[:, feature]
    want = x0.copy()
    want[:2] += (value - z0)[:, None] * sae.W_dec[feature]                 # conditional rows only
    np.testing.assert_allclose(x1, want, atol=1e-4)
    assert (z[..., feature] > 10).mean() > 0.9                             # the feature now says ~value
    assert not np.array_equal(gen0.codes, gen1.codes)
    with pytest.raises(ValueError, match="features"):
        S.edit_hook(sae, 999, 1.0)
