"""The probe and SAE code at musicgen-small's width (d = 1024): a dataset streams to disk (memory stays below
the dataset's size), probes and an SAE run on it. Random activations: the numbers mean nothing, the shapes and
the memory do. (The musicgen-small-shaped random model itself, ``benchmarks/build_small_shapes.py``, is 10 GB
and not built by the test suite; its decoder writes these rows the way the nano model's does.)"""

import tracemalloc

import numpy as np
import pytest

pytest.importorskip("sklearn")

from mglab.inspect import activations  # noqa: E402
from mglab.inspect import probe as pr  # noqa: E402
from mglab.inspect import sae as S  # noqa: E402

D, CLIPS, STEPS, BATCH = 1024, 48, 250, 4          # 5 s clips at 50 Hz, a batch of 4 as run_with_cache gives
NAMES = [f"decoder.layers.{i}.hook_resid_post" for i in (0, 11, 23)]


def test_a_small_shaped_dataset_streams_and_probes_and_an_sae_run(tmp_path):
    rng = np.random.default_rng(0)
    writer = activations.Writer(tmp_path / "ds", NAMES, dtype="float16")
    tracemalloc.start()
    for b in range(0, CLIPS, BATCH):
        labels = rng.integers(0, 6, BATCH)
        values = {n: rng.normal(size=(STEPS, BATCH, D)).astype(np.float32) + labels[None, :, None] * 0.05
                  for n in NAMES}                                           # [steps, B, d]
        clips = [{"prompt": f"prompt {b + i}", "seed": 0, "source": "test",
                  "attributes": {"instrument": ["piano", "organ", "flute", "violin", "marimba", "clarinet"][lab]}}
                 for i, lab in enumerate(labels)]
        writer.add(values, clips, np.arange(1, STEPS + 1))
        del values
    ds = writer.close()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    batch = STEPS * BATCH * D * 4 * len(NAMES)                              # one batch as recorded (float32)
    assert peak < 4 * batch and peak < batch * (CLIPS // BATCH) / 3, (peak, batch)   # streamed, not held
    assert ds.frames(NAMES[1]).shape == (CLIPS * STEPS, D) and ds.frames(NAMES[1]).dtype == np.float16
    assert ds.clips(NAMES[1]).shape == (CLIPS, D)
    table = pr.layer_table(ds, "instrument", names=NAMES[:1], folds=2)
    assert len(table) == 1 and 0 <= table["score"].iloc[0] <= 1
    pytest.importorskip("torch")
    x = np.asarray(ds.frames(NAMES[2])[:20000], dtype=np.float32)
    sae, log = S.train(x, hook_name=NAMES[2], k=32, d_sae=2048, steps=5, batch_size=256)
    assert sae.W_enc.shape == (D, 2048) and sae.W_dec.shape == (2048, D)
    z = sae.encode(x[:500])
    assert z.shape == (500, 2048) and ((z > 0).sum(-1) <= 32).all()
    S.save(sae, tmp_path / "sae")
    assert S.load(tmp_path / "sae").d_in == D
