"""mglab.sweep on Dask: rows equal serial generation, resume, killed workers, failing rows, bad input."""

import os
import signal
import threading
import time

import numpy as np
import pytest

import mglab
from mglab import Generation

GRID = {"prompt": ["lofi piano", "rock guitar with drums"], "seed": [0, 1], "guidance_scale": [1.0, 3.0]}
KW = dict(max_new_tokens=12)


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_every_row_equals_a_serial_generate(merged_model, client, tmp_path):
    df = mglab.sweep(merged_model, GRID, tmp_path, client=client, evaluate=False, progress=False, **KW)
    assert len(df) == 8 and (df["status"] == "ok").all() and df["row"].is_unique
    assert set(df["worker"]) <= {w for w in client.scheduler_info()["workers"]}
    for _, row in df.iterrows():
        alone = merged_model.generate(row["prompt"], seed=int(row["seed"]), guidance_scale=row["guidance_scale"], **KW)
        back = Generation.load(row["wav"])
        np.testing.assert_array_equal(back.codes, alone.codes)
        assert back.prompts == [row["prompt"]]
    import pandas as pd
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "results.parquet"), df)


def test_a_second_call_regenerates_nothing(merged_model, tmp_path):
    first = mglab.sweep(merged_model, GRID, tmp_path, client=False, evaluate=False, progress=False, **KW)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "rows").iterdir()}
    again = mglab.sweep(merged_model, GRID, tmp_path, client=False, evaluate=False, progress=False, **KW)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "rows").iterdir()} == stamps
    assert again.equals(first)
    more = mglab.sweep(merged_model, {**GRID, "seed": [0, 1, 2]}, tmp_path, client=False, evaluate=False,
                       progress=False, **KW)
    assert len(more) == 12 and len(list((tmp_path / "rows").glob("*.row.json"))) == 12   # 4 new rows only


def test_a_killed_worker_loses_no_row(tiny_path, client, tmp_path):
    model = mglab.load(tiny_path)
    grid = {"prompt": [f"prompt {i}" for i in range(6)], "seed": [0, 1]}
    pids = list(client.run(os.getpid).values())
    done = {}

    def slow(ids, hook):                                  # 10 ms a step: rows take ~0.4 s, the kill lands mid-sweep
        time.sleep(0.01)

    def run():
        done["df"] = mglab.sweep(model, grid, tmp_path, client=client, evaluate=False, progress=False,
                                 batch_size=1, max_new_tokens=40, hooks=[("decoder.hook_input_ids", slow)])

    t = threading.Thread(target=run)
    t.start()
    deadline = time.time() + 60
    while not list((tmp_path / "rows").glob("*.row.json")) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(pids[0], signal.SIGKILL)                      # mid-sweep: rows done, rows in flight, rows queued
    assert len(list((tmp_path / "rows").glob("*.row.json"))) < 12
    t.join(timeout=300)
    df = done["df"]
    assert len(df) == 12 and (df["status"] == "ok").all()
    client.wait_for_workers(2, timeout=60)


def test_a_row_that_kills_its_worker_records_the_loss_and_the_sweep_goes_on(tiny_path, client, tmp_path):
    """Defect: after Dask's allowed failures ``future.result()`` raised KilledWorker out of ``sweep()``: no error
    row, no results.parquet, and every rerun died the same way. The row that kills its worker (every time: it
    exits at step 30, which only the 40-token row reaches) records the loss; the other row is done; a rerun
    returns both without running anything."""
    model = mglab.load(tiny_path)

    def exit_at_step_30(tokens, hook):
        if hook.step == 30:
            os._exit(1)

    grid = {"prompt": ["rock"], "max_new_tokens": [12, 40]}
    kw = dict(client=client, evaluate=False, progress=False, seed=0, hooks=[("sampler.hook_tokens", exit_at_step_30)])
    df = mglab.sweep(model, grid, tmp_path, **kw)
    assert dict(zip(df["max_new_tokens"], df["status"])) == {12: "ok", 40: "error"}
    assert df.loc[df["max_new_tokens"] == 40, "error"].str.contains("KilledWorker").all()
    assert (tmp_path / "results.parquet").is_file()
    client.wait_for_workers(2, timeout=60)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "rows").iterdir()}
    again = mglab.sweep(model, grid, tmp_path, **kw)
    assert again.equals(df) and {p: p.stat().st_mtime_ns for p in (tmp_path / "rows").iterdir()} == stamps


def test_a_lost_worker_in_a_batch_runs_its_rows_alone(tiny_path, client, tmp_path):
    """A worker lost by a batch (here a hook that exits only when two prompts share a step) is no row's error:
    each row of the batch runs again alone, and both are done, equal to generating them one at a time."""
    model = mglab.load(tiny_path)

    def exit_when_batched(tokens, hook):
        if tokens.shape[0] > 1:
            os._exit(1)

    kw = dict(evaluate=False, progress=False, seed=0, max_new_tokens=12,
              hooks=[("sampler.hook_tokens", exit_when_batched)])
    df = mglab.sweep(model, {"prompt": ["rock", "jazz"]}, tmp_path, client=client, **kw)
    assert (df["status"] == "ok").all(), df["error"].tolist()
    for _, row in df.iterrows():
        alone = model.generate(row["prompt"], seed=0, max_new_tokens=12)
        np.testing.assert_array_equal(Generation.load(row["wav"]).codes, alone.codes)
    client.wait_for_workers(2, timeout=60)


def test_workers_refuse_a_model_that_changed_on_disk(tiny_path, client, tmp_path):
    """Dask workers load the model from its spec: when the files changed after the caller loaded it, the rows
    would be made by another model under this one's key. They are errors saying so; a model loaded again runs."""
    import json
    import shutil

    copy = tmp_path / "tiny"
    shutil.copytree(tiny_path, copy, ignore=shutil.ignore_patterns("pytorch"))
    model = mglab.load(copy)
    config = json.loads((copy / "generation_config.json").read_text())
    (copy / "generation_config.json").write_text(json.dumps({**config, "do_sample": False, "guidance_scale": 1.0}))
    grid = {"prompt": ["rock"], "seed": [0]}
    stale = mglab.sweep(model, grid, tmp_path / "out", client=client, evaluate=False, progress=False,
                        max_new_tokens=12)
    assert (stale["status"] == "error").all() and stale["error"][0].count("changed on disk"), stale["error"][0]
    again = mglab.load(copy)
    fresh = mglab.sweep(again, grid, tmp_path / "out", client=client, evaluate=False, progress=False,
                        max_new_tokens=12)
    assert (fresh["status"] == "ok").all()
    np.testing.assert_array_equal(Generation.load(fresh["wav"][0]).codes,
                                  again.generate("rock", seed=0, max_new_tokens=12).codes)


def test_a_failing_row_is_recorded_and_the_sweep_goes_on(merged_model, tmp_path):
    def fails_with_one_token_left(logits, hook):          # top_k=1 rows only
        if (np.isfinite(logits).sum(-1) == 1).all():
            raise RuntimeError("one token left")

    df = mglab.sweep(merged_model, {"prompt": ["lofi piano", "jazz"], "top_k": [0, 1]}, tmp_path, client=False,
                     evaluate=False, progress=False, hooks=[("sampler.hook_logits", fails_with_one_token_left)], **KW)
    failed = df[df["status"] == "error"]
    assert sorted(failed["top_k"]) == [1, 1] and failed["error"].str.contains("one token left").all()
    assert (df[df["top_k"] == 0]["status"] == "ok").all()


def test_recorded_hook_points_come_back_across_rows(merged_model, tmp_path):
    df = mglab.sweep(merged_model, {"prompt": ["lofi piano", "jazz"], "seed": [3]}, tmp_path, client=False,
                     evaluate=False, progress=False, record="decoder.layers.1.hook_resid_post", **KW)
    values, keys = mglab.sweep_cache(tmp_path, "decoder.layers.1.hook_resid_post")
    assert keys == df["row"].tolist() and values.shape[:2] == (2, 12)
    _, cache = merged_model.run_with_cache("jazz", seed=3, names_filter="decoder.layers.1.hook_resid_post", **KW)
    np.testing.assert_array_equal(values[1], cache["decoder.layers.1.hook_resid_post"])


def test_measurements_are_columns(merged_model, tmp_path):
    df = mglab.sweep(merged_model, {"prompt": ["a low organ melody"]}, tmp_path, client=False, progress=False,
                     max_new_tokens=60)
    assert {"median_midi", "onset_rate", "key", "instrument"} <= set(df.columns)


@pytest.mark.parametrize("grid, message", [
    ({"prompt": ["a"], "bpm": [60]}, "grid key 'bpm' is not a generate argument"),
    ({"prompt": ["a"], "seed": []}, r"grid\['seed'\] is an empty list"),
    ({"prompt": ["a"], "seed": 3}, r"grid\['seed'\]=3 is not allowed: each grid value must be a list"),
    ({"prompt": ["a"], "top_k": [0, 9999]}, "top_k"),
])
def test_bad_grids_are_refused_before_anything_runs(merged_model, tmp_path, grid, message):
    with pytest.raises((TypeError, ValueError), match=message):
        mglab.sweep(merged_model, grid, tmp_path / "out", client=False, progress=False, **KW)
    assert not (tmp_path / "out").exists()


def test_an_out_dir_that_is_a_file_is_refused(merged_model, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        mglab.sweep(merged_model, {"prompt": ["a"]}, tmp_path / "file", client=False, progress=False, **KW)


def test_the_command_line_runs_a_toml_grid(tiny_path, tmp_path, monkeypatch):
    import pandas as pd

    from mglab.cli import main

    grid = tmp_path / "grid.toml"
    grid.write_text(f'model = "{tiny_path}"\n[grid]\nprompt = ["lofi piano"]\nseed = [0, 1]\n'
                    '[generate]\nmax_new_tokens = 12\n')
    original = mglab.sweep
    monkeypatch.setattr(mglab, "sweep", lambda *a, **k: original(*a, **{**k, "client": False}))   # in-process
    assert main(["sweep", str(grid), "--out", str(tmp_path / "out"), "--no-evaluate"]) == 0
    df = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert df["seed"].tolist() == [0, 1] and (df["status"] == "ok").all()
