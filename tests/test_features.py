"""Feature pages: the AUROC against scikit-learn's (ties included), the logit lens of a direction planted along
one head's token, a page with its players and tables."""

import numpy as np
import pytest
from helpers import ROOT

pytest.importorskip("sklearn")

from mglab.inspect import features as F  # noqa: E402
from mglab.inspect import sae as S  # noqa: E402

NANO = ROOT / "data" / "models" / "nano-musicgen"


def test_auroc_equals_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    z = np.maximum(rng.normal(size=(300, 12)), 0).round(1)                 # many zeros and ties
    y = rng.random(300) < 0.3
    z[y, 3] += 1.0
    want = [roc_auc_score(y, z[:, j]) for j in range(12)]
    np.testing.assert_allclose(F.auroc(z, y), want, atol=1e-12)
    assert F.auroc(z, np.zeros(300, bool)).tolist() == [0.5] * 12


def test_logit_effect_finds_a_planted_token_and_the_page_plays_the_top_clips(tmp_path):
    import mglab
    from mglab.inspect import activations
    from mglab.inspect.interventions import lens_weights
    from mglab.nano import corpus

    model = mglab.load(NANO)
    hook = "decoder.layers.1.hook_resid_post"
    sae = S.SAE.random(128, 64, 8, hook, np.random.default_rng(0))
    scale, _, heads, _ = lens_weights(next(iter(model.decoder.paths.values())), 4)
    sae.W_dec[5] = heads[2][:, 3] / scale                                   # along codebook 2's token 3
    effect = F.logit_effect(model, sae, 5)
    assert effect[2]["promoted"][0][0] == 3
    clips = [corpus.example(np.random.default_rng(i), 0.5) for i in range(4)]
    ds = activations.record_clips(model, clips, tmp_path / "ds", [hook])
    z = sae.encode(ds.frames(hook))
    table = ds.table("frames")
    auc = F.aurocs(z, table, ["instrument"])
    assert set(auc["feature"]) == set(range(64)) and auc["auroc"].between(0, 1).all()
    f = int(F.best(auc)["feature"].iloc[0])
    html = F.page(model, sae, f, z, table, [c.codes for c in clips], auc, n_top=2)
    assert html.count("<audio") == 2 and html.count("<img") >= 3 and "AUROC" in html
