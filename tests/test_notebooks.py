"""Every notebook runs with papermill on the tiny model; its metrics and figures are checked. The runs on the nano
model are kept (docs/_build/executed/) for the documentation's notebook gallery."""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import ROOT, TINY

NANO = ROOT / "data" / "models" / "nano-musicgen"
NANO_MAGNET = ROOT / "data" / "models" / "nano-magnet"
NANO_MELODY = ROOT / "data" / "models" / "nano-melody"
DOCS_EXECUTED = ROOT / "docs" / "_build" / "executed"

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0].get("metadata", {}).get("tags", []), "the first code cell must be parameters"
    for cell in code:
        assert not cell.get("outputs") and cell.get("execution_count") is None, "strip outputs before committing"


# A notebook's run takes under a minute on 2 cores. Once, in CI, a kernel hung in the first notebook until CI's
# limit. Now a cell still running after CELL_TIMEOUT stops the run, the kernel having written every thread's Python
# stack to a file first (faulthandler, DUMP_AFTER seconds into its life); the notebook runs once more with a warning
# that shows them (a hung or dead kernel says nothing about the notebook's claims, which are deterministic), and a
# second hang fails the test.
CELL_TIMEOUT, DUMP_AFTER = 300, 280


def kernel_args(stacks: Path) -> list[str]:
    """The kernel's faulthandler: every thread's stack into ``stacks`` once it has lived DUMP_AFTER seconds."""
    code = f"import faulthandler; faulthandler.dump_traceback_later({DUMP_AFTER}, file=open({str(stacks)!r}, 'w'))"
    return [f"--IPKernelApp.exec_lines={code}"]


def run(name: str, tmp_path: Path, **params) -> dict:
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    for attempt in (1, 2):
        stacks = tmp_path / f"{name}.stacks-{attempt}.txt"
        try:
            pm.execute_notebook(str(ROOT / "notebooks" / name), str(tmp_path / name), kernel_name="python3",
                                cwd=str(ROOT / "notebooks"), progress_bar=False,
                                execution_timeout=CELL_TIMEOUT, extra_arguments=kernel_args(stacks),
                                parameters={"model": str(TINY), "out_dir": str(tmp_path), **params})
            break
        except (CellTimeoutError, DeadKernelError) as err:
            if attempt == 2:
                raise
            where = (stacks.read_text()[-4000:] if stacks.is_file() else "") or "(none: it lived under DUMP_AFTER)"
            warnings.warn(f"{name}: the kernel hung or died ({type(err).__name__}: {str(err)[:200]}); running the "
                          f"notebook once more. The kernel's threads:\n{where}", RuntimeWarning, stacklevel=2)
    if params.get("model") in (str(NANO), str(NANO_MAGNET), str(NANO_MELODY)):   # the gallery shows these
        # (docs/_ext/mglab_docs.py)
        DOCS_EXECUTED.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / name, DOCS_EXECUTED / name)
    return json.loads((tmp_path / "metrics.json").read_text())


def test_quickstart_defaults_play_the_nano_model_following_its_prompt(tmp_path):
    """``make demo``: the notebook's own defaults (the trained nano model, an organ melody); the clip is
    measured from its audio, and the register and instrument it asks for are heard."""
    m = run("00_quickstart.ipynb", tmp_path, model=str(ROOT / "data" / "models" / "nano-musicgen"))
    assert players(tmp_path, "00_quickstart.ipynb") >= 1  # heard, not only plotted
    assert m["asked"]["instrument"] == "organ" and m["asked"]["register"] == "low"
    assert m["adherence"]["register"] and m["adherence"]["instrument"], m["adherence"]
    assert m["continued"] == {"prompt_frames": 200, "frames": 300, "starts_with_the_clip": True}


def players(tmp_path, name: str) -> int:
    """The audio players the executed notebook shows (what its HTML report embeds)."""
    nb = json.loads((tmp_path / name).read_text())
    html = ["".join(o.get("data", {}).get("text/html", "")) for c in nb["cells"] for o in c.get("outputs", [])]
    return sum(h.count("<audio") for h in html)


def written(tmp_path, names):
    for name in names:                   # named here, not read from the notebook's own list
        assert (tmp_path / name).stat().st_size > 0, name


def test_quickstart(tmp_path):
    m = run("00_quickstart.ipynb", tmp_path, prompt="ambient pad", duration=1.5, seed=4)
    assert m["frames"] == round(1.5 * 50) and m["steps"] == m["frames"] + m["codebooks"] - 1
    written(tmp_path, ["quickstart.wav", "quickstart.png", "quickstart_tokens.png"])
    audio, sr = sf.read(tmp_path / "quickstart.wav")
    assert sr == m["sample_rate"] and len(audio) == m["frames"] * 640
    assert np.abs(audio).max() == pytest.approx(m["peak"], rel=1e-5)


def test_delay_pattern(tmp_path):
    m = run("01_delay_pattern.ipynb", tmp_path, frames=10)
    k, t = m["K"], m["T"]
    import mglab
    pattern = mglab.decoding.patterns.build_delay_pattern(k, t + k, 128)
    assert m["pattern"] == pattern.tolist()                     # the matrix the notebook drew is mglab's
    drawn = np.array(m["drawn_tokens"])
    assert (drawn[pattern != -1] == 128).all() and (drawn[pattern == -1] < 128).all()
    # recomputed from the drawn tokens by hand: frame f of codebook q sits at position f + q + 1
    codes = np.stack([drawn[q, q + 1: q + 1 + t] for q in range(k)])
    assert (codes < 128).all() and m["forced_positions_match_pattern"] and m["undelay_matches_codes"]
    assert m["steps_generated"] == t + k - 1
    # audiocraft: coarse-first decodes codebook 0 (T steps), then the others together (T steps)
    assert m["step_counts"] == {"parallel": t, "delay": t + k - 1, "flattening": t * k, "coarse_first": 2 * t,
                                "musiclm": t * k}
    for f in ["filling.png", "delayed_vs_codes.png", "patterns.png"]:
        assert (tmp_path / f).stat().st_size > 0


def test_delay_pattern_on_the_nano_model(tmp_path):
    """Codebook 0 carries the pitch (left out, every voiced frame loses it; any other left out, few frames
    change), and codebook 1 of a frame reads codebook 0 of that frame (its prediction moves when that one input
    token is swapped; the codebooks predicted for earlier frames in the same step do not)."""
    m = run("01_delay_pattern.ipynb", tmp_path, model=str(NANO))
    assert players(tmp_path, "01_delay_pattern.ipynb") >= 5  # heard, not only plotted
    assert m["pitch_in_codebook_0"], m["dropped"]
    assert m["dropped"]["0"]["pitch_changed"] == 1.0 and m["dropped"]["1"]["level_db"] > 6     # 1: loudness
    assert m["codebook_1_reads_its_frame"], m["same_frame_kl"]
    written(tmp_path, ["dropped.png", "same_frame.png", "all_codebooks.wav", "without_codebook_0.wav"])


def test_guidance(tmp_path):
    m = run("02_guidance.ipynb", tmp_path, scales=[1.0, 4.0], max_new_tokens=20, adherence_scales=[1.0, 3.0],
            seeds=[0], duration=0.5, negative_probe=["a"])
    at_one, at_four = m["summary"]["1.0"], m["summary"]["4.0"]
    assert at_one["kl_guided_cond"] == 0.0 and at_one["top1_guided_vs_cond"] == 1.0
    assert "entropy_uncond" not in at_one                      # scale 1 runs the conditional model alone
    assert at_four["kl_guided_cond"] > 0 and at_four["kl_cond_uncond"] > 0
    assert m["kl_cond_negative"] != m["kl_cond_null"] and m["negative_changes_tokens"]
    assert at_four["top1_guided_vs_cond"] < 1.0                # guidance at 4 changes the most likely token
    # guided = cond + 3 (cond - uncond) at scale 4: nearer cond than uncond. A sign-flipped formula,
    # uncond + 3 (uncond - cond), is nearer uncond and fails this (checked by hand on the same logits)
    assert at_four["kl_guided_cond"] < at_four["kl_guided_uncond"]
    written(tmp_path, ["entropy.png", "kl.png", "spectrograms.png"])


def test_guidance_on_the_nano_model(tmp_path):
    """Adherence measured from the audio: at guidance 0 (the unconditional model) by chance, at 1 far above;
    a negative prompt "fast" removes the clips heard fast (prompts that name no tempo: at least 4 of the 48
    are fast without it); 3 beats 1 (on earlier models it did not; the bundled model was trained on the
    guided mix too). 3 s clips, the notebook's default: the model retrained on 2026-12-06 follows these fully
    named prompts at guidance 1 and 3 alike over 1.5 s (0.975 both), and the tempo tells them apart over 3 s
    (0.925 against 1.0, measured by hand on the same prompts and seeds)."""
    m = run("02_guidance.ipynb", tmp_path, model=str(NANO), adherence_scales=[0.0, 1.0, 3.0], duration=3.0)
    assert players(tmp_path, "02_guidance.ipynb") >= 6  # heard, not only plotted
    assert m["conditioning_is_real"], m["adherence_mean"]
    assert m["adherence_mean"]["1.0"] > 0.7 and m["adherence_mean"]["0.0"] < 0.5, m["adherence_mean"]
    assert m["adherence_3_exceeds_1"], m["adherence_mean"]          # the claim: guidance 3 beats 1
    # 6 prompts x 8 seeds with no tempo word: some fast clips to remove (retrained model, 2026-12-06: 4 of 48 fast
    # without the negative prompt, 1 with it; the model before it: at least a tenth)
    fast = (m["fast_share_negative"], m["fast_share_null"])
    assert m["negative_removes_fast"] and round(m["fast_share_null"] * 48) >= 4, fast
    written(tmp_path, ["adherence.png", "note_ends.png"])


def test_sampling(tmp_path):
    m = run("03_sampling.ipynb", tmp_path, temperatures=[0.7, 1.3], top_ks=[0, 10], top_ps=[1.0, 0.5],
            seeds=[0, 1], max_new_tokens=20, duration=0.5)
    for r in m["rows"]:
        if r["top_k"]:
            assert r["tokens_kept_max"] <= r["top_k"]
        else:
            assert r["tokens_kept_max"] == m["vocab_size"] or r["top_p"] < 1
        if r["top_p"] < 1:
            assert r["mass_kept_min"] >= r["top_p"] - 1e-6 or r["top_k"]
    assert m["diversity"]["greedy"] == 0.0 and m["diversity"]["temperature 1.3"] > 0
    for t in (0.7, 1.3):                                       # fewer tokens kept as top-p drops (top-k off)
        kept = {r["top_p"]: r["tokens_kept_mean"] for r in m["rows"] if r["temperature"] == t and r["top_k"] == 0}
        assert kept[0.5] < kept[1.0] == m["vocab_size"]
    written(tmp_path, ["kept.png", "usage.png"])


def test_sampling_on_the_nano_model(tmp_path):
    """Greedy: one clip for every seed (its loop is scored, not asserted: this model's sampled clips loop as
    much); temperature raises the entropy sampled from; sampling gives different clips (audio)."""
    m = run("03_sampling.ipynb", tmp_path, model=str(NANO), temperatures=[1.0], top_ks=[0, 10], top_ps=[1.0])
    assert players(tmp_path, "03_sampling.ipynb") >= 1  # heard, not only plotted
    greedy = m["heard"]["greedy"]
    assert greedy["distinct_results"] == 1 and greedy["seeds_disagree"] == 0.0
    assert isinstance(m["greedy_loops"], bool) and all(0 < v <= 1 for v in m["loop_score"].values())
    assert m["entropy_rises_with_temperature"], m["heard"]
    assert m["heard"]["T 1.5"]["distinct_results"] > 1
    written(tmp_path, ["diversity_adherence.png", "greedy_loops.png", "greedy.wav", "T_10.wav"])


def test_kv_cache(tmp_path):
    m = run("04_kv_cache.ipynb", tmp_path, max_new_tokens=16, duration=0.3)
    # by hand for the tiny model: key + value, 2 rows (cond, uncond), 2 heads of 16, float32, per layer
    per_position = 2 * 2 * 2 * 16 * 4
    assert m["bytes_per_layer_per_step"] == per_position and m["layers"] == 2
    assert m["bytes_measured"] == [2 * per_position * (t + 1) for t in range(16)]     # O(steps): one position
    assert m["kv_positions_last_step"] == 16 and m["cross_attention_row_sum_error"] < 1e-5
    written(tmp_path, ["growth.png", "norms.png", "cross_attention.png"])


def test_kv_cache_on_the_nano_model(tmp_path):
    """Over a clip, one layer of the trained model reads the instrument word most and another the tempo word;
    at step 0 (the first note) layers 1 and 2 read the key, layer 0 the mode and layer 3 the register (the words
    that decide the first note); the tables are the recorded attention."""
    m = run("04_kv_cache.ipynb", tmp_path, model=str(NANO))
    assert players(tmp_path, "04_kv_cache.ipynb") >= 1  # heard, not only plotted
    words = m["words"]
    # "a slow low organ melody in d minor": the README's claim, layer by layer
    assert (m["top_word"]["2"], m["top_word"]["0"]) == ("organ", "slow"), m["top_word"]
    assert [m["top_word_step0"][str(i)] for i in range(4)] == ["minor", "d", "d", "low"], m["top_word_step0"]
    table = np.array(m["attention_by_word"])
    assert table.shape == (m["layers"], len(words)) and np.allclose(table.sum(-1), 1, atol=1e-4)
    written(tmp_path, ["words_by_layer.png"])


def test_report(tmp_path):
    """The grid through mglab.sweep on a local Dask cluster (two worker processes), measured and resumable."""
    m = run("05_report.ipynb", tmp_path, prompts=["a", "b c"], seeds=[0, 1], guidance_scales=[3.0], duration=0.5)
    assert len(m["runs"]) == 4 and len({r["name"] for r in m["runs"]}) == 4
    assert all(w.startswith("tcp://") for w in m["workers"]) and set(m["adherence_by_guidance"]) == {"3.0"}
    for r in m["runs"]:
        assert r["frames"] == 25
        audio, sr = sf.read(tmp_path / r["wav"])
        assert len(audio) == 25 * 640 and np.abs(audio).max() == pytest.approx(r["peak"], rel=1e-5)
        assert (tmp_path / r["wav"]).with_suffix(".json").is_file()
    for prompt in ("a", "b c"):                                # different seeds, different audio
        a, b = (sf.read(tmp_path / r["wav"])[0] for r in m["runs"] if r["prompt"] == prompt)
        assert np.abs(a - b).max() > 1e-3
    written(tmp_path, ["summary.md", "results.parquet", "a_seed0_g3.png", "b-c_seed1_g3.png"])
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "rows").iterdir()}
    again = run("05_report.ipynb", tmp_path, prompts=["a", "b c"], seeds=[0, 1], guidance_scales=[3.0], duration=0.5,
                dask=False)
    assert [r["row"] for r in again["runs"]] == [r["row"] for r in m["runs"]]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "rows").iterdir()} == stamps     # resumed: nothing rewritten


def test_report_on_the_nano_model(tmp_path):
    """Its defaults' prompts name a figure, which is not measured: adherence counts the measured attributes."""
    m = run("05_report.ipynb", tmp_path, model=str(NANO), seeds=[0], guidance_scales=[3.0], duration=1.0,
            dask=False)
    assert players(tmp_path, "05_report.ipynb") >= 1  # heard, not only plotted
    assert len(m["runs"]) == 2 and all(0.0 <= r["adherence"] <= 1.0 for r in m["runs"])
    assert all(r["hits"]["figure"] is None for r in m["runs"])


def test_interventions_on_the_nano_model(tmp_path):
    """Steering "high" - "low" raises the pitch measured from the audio, and "fast" - "slow" (taken at the
    cross-attention output, where the prompt enters) the onset rate, monotonically in the scale; the patching
    map and the logit lens are drawn from the runs they describe."""
    m = run("06_interventions.ipynb", tmp_path, model=str(ROOT / "data" / "models" / "nano-musicgen"))
    assert players(tmp_path, "06_interventions.ipynb") == 9  # heard, not only plotted
    assert m["steering_monotonic"] and m["steering_gain"] > 6.0, m["pitch"]            # semitones
    assert m["tempo_point"] == "cross_attn_out" and min(m["tempo_scales"]) < 0 < max(m["tempo_scales"])
    assert m["tempo_monotonic"] and m["tempo_gain"] > 2.0, m["onset_rate"]             # onsets a second
    assert np.array(m["patching"]).shape == (4, len(m["patching_windows"]))
    assert len(m["lens_agreement"]) == 4              # drawn per layer (the last compares with itself: no claim)
    written(tmp_path, ["steering.png", "patching.png", "logit_lens.png"])


def test_codec(tmp_path):
    """The latent is the sum of the codebook rows read from the graph; decoding from the first n < K codebooks
    differs audibly from the full decode, n = K equals it (nano model: a synthesizer)."""
    m = run("07_codec.ipynb", tmp_path, model=str(ROOT / "data" / "models" / "nano-musicgen"))
    assert players(tmp_path, "07_codec.ipynb") >= 1  # heard, not only plotted
    assert m["latent_is_sum"] and m["full_at_K"] and m["every_codebook_needed"], m["snr_db"]
    assert 1 <= min(m["usage"].values()) and max(m["usage"].values()) <= m["codebook_size"]
    written(tmp_path, ["codebooks.png", "contributions.png", "usage.png", "full.wav", "first_1.wav"])


def test_masked_decoding(tmp_path):
    """Notebook 08 on the tiny masked model (random weights: only what holds for any weights is claimed): each
    codebook decided in its own stage, the masked share on the cosine schedule (recomputed here), fewer passes
    than the autoregressive model, a vamp that keeps every unmasked code."""
    m = run("08_masked_decoding.ipynb", tmp_path, model=str(ROOT / "data" / "models" / "tiny-magnet"),
            ar_model=str(TINY), duration=0.9, vamp_seconds=1.0,
            prompts=["lofi piano", "rock"])
    assert players(tmp_path, "08_masked_decoding.ipynb") >= 6   # 1 clip, 2 x 2 comparisons, source and vamp
    assert m["own_stage"] and m["follows_cosine"] and m["vamp_kept_exact"] and m["vamp_changed"] > 0.3
    assert m["iterations"] == sum(m["decoding_steps"]) == 50
    spans, t = m["T"] // 3, m["T"]
    i = 0
    for n in m["decoding_steps"]:                               # the schedule, recomputed: masked spans / all
        for it in range(n):
            assert m["share"][i] == pytest.approx(3 * max(1, int(np.cos(np.pi / 2 * it / (n - 1)) * spans + 1e-6)) / t,
                                                  abs=3 / t + 1e-9)
            i += 1
    assert m["passes"] == {"autoregressive": 48.0, "masked": 50.0}   # 0.9 s: 45 frames + 3 delays
    written(tmp_path, ["decided.png", "schedule.png", "vamp.png"])


def test_probes_and_features_on_the_nano_model(tmp_path):
    """Teacher-forced probes read instrument and register far above their control task; the cross-attention
    output reads the instrument only when the prompt names it, the residual stream also when it does not; the
    shipped SAE reconstructs the point, has an instrument detector per instrument, and clamping one turns clips
    to its instrument (measured from the audio)."""
    m = run("10_probes_and_features.ipynb", tmp_path, model=str(NANO))
    assert players(tmp_path, "10_probes_and_features.ipynb") >= 5   # the feature page's clips and the steered ones
    best = {p["attribute"]: p for p in m["probes"]}
    for a in ("instrument", "register"):
        assert best[a]["score"] >= 0.95 and best[a]["selectivity"] >= 0.5, best[a]
    assert best["tempo_bpm"]["score"] >= 0.8
    w = m["word_vs_played"]
    assert w["cross_attn_out, named"] > 0.9 and w["cross_attn_out, not named"] < 0.6 < w["resid_post, not named"], w
    assert m["sae"]["explained_variance"] >= 0.9 and m["sae"]["l0"] <= m["sae"]["k"], m["sae"]
    instruments = [f for f in m["best_features"] if f["attribute"] == "instrument"]
    assert len(instruments) == 6 and sum(f["auroc"] >= 0.95 for f in instruments) >= 5, instruments
    assert np.mean([s["share"] for s in m["steer"].values()]) >= 0.6, m["steer"]
    written(tmp_path, ["probes.png", m["feature_page"]])


def test_masked_decoding_defaults_on_nano_magnet(tmp_path):
    """Notebook 08 at its defaults, on the trained nano-magnet against nano-musicgen: the schedule as on any
    weights, 4 s in about 4x fewer network passes, every clip's adherence measured from its audio, the vamp's
    middle in the source's key (and not a semitone away)."""
    m = run("08_masked_decoding.ipynb", tmp_path, model=str(NANO_MAGNET), ar_model=str(NANO))
    assert players(tmp_path, "08_masked_decoding.ipynb") >= 8
    assert m["own_stage"] and m["follows_cosine"] and m["vamp_kept_exact"]
    assert m["passes"] == {"autoregressive": 203.0, "masked": 50.0} and m["fewer_passes"] >= 4
    assert all(r["adherence"] is not None for r in m["rows"]), m["rows"]      # every clip measured
    assert m["vamp_keeps_key"] is True, (m["vamp_in_scale"], m["vamp_control_in_scale"])


def test_melody_defaults_on_nano_melody(tmp_path):
    """Notebook 09 at its defaults on nano-melody: two melodies on three instruments follow the melody (chroma
    cosine, recomputed here from the notebook's numbers) far more than the same prompts without it, the text still
    picks the instrument, and rolling the chroma hook's bins transposes the clip by as many semitones."""
    m = run("09_melody.ipynb", tmp_path, model=str(NANO_MELODY))
    assert players(tmp_path, "09_melody.ipynb") >= 10        # 2 melodies, 6 clips, the transposition's 2
    assert m["guidance"] == [1.0, 2.0, 3.0, 5.0]
    rows = m["rows"]
    assert len(rows) == 6 and m["chroma_with_melody"] == pytest.approx(np.mean([r["chroma"] for r in rows]))
    # measured at the defaults (2026-12-04): 0.47 with the melody, 0.10 without (the model card's benchmark: 0.54
    # and 0.07 over 192 clips); the target, 0.8, is not met: see the card
    assert m["chroma_with_melody"] >= 0.35 and m["chroma_no_melody"] <= 0.2, (m["chroma_with_melody"],
                                                                              m["chroma_no_melody"])
    assert m["instrument_share"] >= 4 / 6, rows
    assert m["chroma_by_guidance"][-2] > m["chroma_by_guidance"][0]          # guidance 3 above guidance 1
    t = m["transposed"]
    assert t["moved_by"] == m["shift"] and t["share"] >= 0.5 and t["to_transposed"] >= t["to_original"] + 0.15, t
    timing = m["timing"]                                     # measured 0.56 -> 0.72: a frame's tolerance recovers
    assert timing["within_one_frame"] - timing["same_frame"] >= 0.1, timing   # a good share of the misses
    written(tmp_path, ["melodies.png", "timing.png", "guidance.png", "transposed.png"])
