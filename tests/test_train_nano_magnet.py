"""nano-magnet's training (scripts/train_nano_magnet.py, mglab/nano/magnet.py) against independent oracles: the
masking (whole spans, the scheduled rate, which codebooks are given or masked), the loss's positions, the
per-example attention masks, the null condition, the cross-attention's padding mask, the checkpoint's round
trip through audiocraft's own loader, determinism."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import ROOT

from mglab.onnx.audiocraft_env import install

sys.path.insert(0, str(ROOT / "scripts"))
install()
pytest.importorskip("audiocraft")

import nano_magnet as magnet  # noqa: E402
import train_nano_magnet as tm  # noqa: E402

SMALL = dict(dim=32, num_heads=4, num_layers=2, hidden_scale=2)


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    return magnet.write_t5(tm.MUSICGEN, tmp_path_factory.mktemp("ckpt") / magnet.T5_NAME)


@pytest.fixture(scope="module")
def small(t5):
    cfg = magnet.config(**SMALL)
    return cfg, magnet.build(cfg, t5, seed=3).eval()


def test_span_starts_table_is_the_expected_masked_share():
    frames, span = 200, 3

    def share(u):                        # P(a position is masked) = 1 - C(T - L, u) / C(T, u)
        return 1 - math.comb(frames - span, u) / math.comb(frames, u)

    oracle = [next((u for u in range(frames) if share(u) >= m / 100 - 1e-12), frames) for m in range(101)]
    assert tm.span_starts_table(frames, span).tolist() == oracle


def test_mask_rates_follow_the_cosine_schedule():
    rates = tm.mask_rates(np.random.default_rng(0), 40000)
    u = np.arccos(rates) * 2 / np.pi                                            # uniform if rate = cos(pi/2 u)
    assert np.allclose(np.quantile(u, [0.1, 0.25, 0.5, 0.75, 0.9]), [0.1, 0.25, 0.5, 0.75, 0.9], atol=0.01)


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 0.9])
def test_span_mask_is_whole_spans_at_the_rate(rate):
    frames, span, rows = 200, 3, 2000
    mask = tm.span_mask(np.full(rows, rate), frames, span, np.random.default_rng(1))
    # every masked position lies in a run of `span` masked positions starting at or before it (cut at the end)
    covered = np.zeros_like(mask)
    for s in range(frames):
        whole = mask[:, s:s + span].all(-1)                                     # a span could start at s
        covered[:, s:s + span] |= whole[:, None]
    assert (covered == mask).all()
    assert mask.any(-1).all()                                                   # at least one span a row
    if rate > 0:
        assert abs(mask.mean() - rate) < 0.02


def test_masked_inputs_give_lower_codebooks_and_mask_the_rest():
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 64, (8, 4, 30))
    stages = np.array([0, 1, 2, 3, 3, 2, 1, 0])
    stage_mask = rng.random((8, 30)) < 0.4
    inputs, loss_mask = tm.masked_inputs(codes, stages, stage_mask, 64)
    for b, k, t in np.ndindex(*codes.shape):
        masked = k > stages[b] or (k == stages[b] and stage_mask[b, t])
        assert inputs[b, k, t] == (64 if masked else codes[b, k, t])
        assert loss_mask[b, k, t] == (k == stages[b] and stage_mask[b, t])


def test_loss_counts_the_stage_masked_positions_only():
    rng = np.random.default_rng(3)
    codes = torch.from_numpy(rng.integers(0, 64, (4, 4, 20)))
    loss_mask = torch.zeros(4, 4, 20, dtype=torch.bool)
    for b, s in enumerate([0, 2, 3, 1]):
        loss_mask[b, s] = torch.from_numpy(rng.random(20) < 0.5)
    logits = torch.randn(4, 4, 20, 64, dtype=torch.float64)
    logp = torch.log_softmax(logits, -1)
    terms = [-logp[b, k, t, codes[b, k, t]] for b, k, t in zip(*np.nonzero(loss_mask.numpy()))]
    assert torch.allclose(tm.masked_loss(logits, codes, loss_mask), torch.stack(terms).mean())
    elsewhere = logits + 5 * torch.randn_like(logits) * (~loss_mask)[..., None]
    assert torch.allclose(tm.masked_loss(elsewhere, codes, loss_mask), tm.masked_loss(logits, codes, loss_mask))
    b, k, t = (int(i[0]) for i in np.nonzero(loss_mask.numpy()))
    logits[b, k, t] += torch.randn(64, dtype=torch.float64)
    assert not torch.allclose(tm.masked_loss(logits, codes, loss_mask), torch.stack(terms).mean())


@pytest.mark.parametrize("context", [5, 2, -1])
def test_stage_masks_per_example(context):
    stages, frames = [0, 1, 3, 0, 2], 14
    got = magnet.stage_masks(torch.tensor(stages), frames, context)
    assert got.shape == (5, 1, frames, frames)
    for b, i, j in np.ndindex(5, frames, frames):
        allowed = stages[b] == 0 or context < 0 or abs(i - j) <= context
        assert got[b, 0, i, j] == (0.0 if allowed else -math.inf)


def _cross(lm, prompts):
    """What cross-attention reads: the fuser's text vectors and the additive key mask."""
    embeds, mask = magnet.conditions(lm, prompts)
    _, cross = lm.fuser(torch.zeros(len(prompts), 1, lm.dim), {"description": (embeds, mask)})
    return cross, magnet.text_mask(mask)


def test_null_condition_is_one_zero_vector(small):
    _, lm = small
    with torch.no_grad():
        cross, mask = _cross(lm, [None])
        assert cross.shape == (1, 1, lm.dim) and not cross.any() and mask.tolist() == [[True]]
        cross, mask = _cross(lm, ["a slow low organ melody in d minor", None])
        assert not cross[1].any() and mask[1].tolist() == [True] + [False] * (mask.shape[1] - 1)


def _logits(lm, prompts, codes, stages):
    with torch.no_grad():
        return magnet.forward(lm, codes, magnet.conditions(lm, prompts), stages)


def test_a_prompts_output_does_not_depend_on_its_batch(small, t5):
    cfg, lm = small
    codes = torch.randint(0, 65, (3, 4, 24))
    stages = torch.tensor([0, 2, 1])
    prompts = ["piano", "a slow low organ melody in d minor played loud", None]
    batched = _logits(lm, prompts, codes, stages)
    for i, p in enumerate(prompts):
        alone = _logits(lm, [p], codes[i:i + 1], stages[i:i + 1])
        assert torch.allclose(alone[0], batched[i], atol=1e-5), p
    # audiocraft's own cross-attention (unpatched) reads the padding: the control
    with magnet.nano_t5(t5):
        from audiocraft.models import builders
        from omegaconf import OmegaConf
        plain = builders.get_lm_model(OmegaConf.create(cfg)).eval()
    plain.load_state_dict(lm.state_dict())
    assert not torch.allclose(_logits(plain, prompts[:1], codes[:1], stages[:1])[0],
                              _logits(plain, prompts, codes, stages)[0], atol=1e-4)


def test_checkpoint_loads_through_audiocrafts_loader(small, t5, tmp_path):
    cfg, lm = small
    magnet.save(lm, cfg, tmp_path)
    shutil.copytree(t5, tmp_path / magnet.T5_NAME)
    pkg = torch.load(tmp_path / "state_dict.bin")                              # weights_only: a plain dict
    assert not any(k.startswith("condition_provider.conditioners.description.t5") for k in pkg["best_state"])
    assert torch.load(tmp_path / "compression_state_dict.bin") == {"pretrained": "mglab:nano-synth"}
    from audiocraft.models import loaders
    with magnet.nano_t5(tmp_path / magnet.T5_NAME):
        back = loaders.load_lm_model_magnet(tmp_path / "state_dict.bin", compression_model_frame_rate=50)
    assert type(back.condition_provider.conditioners["description"]).__name__ == "T5Conditioner"
    magnet.mask_padded_text(back)
    codes, stages = torch.randint(0, 65, (2, 4, 30)), torch.tensor([0, 3])
    prompts = ["fast flute in a major", None]
    assert torch.equal(_logits(back, prompts, codes, stages), _logits(lm, prompts, codes, stages))
    assert torch.equal(_logits(magnet.load(tmp_path), prompts, codes, stages), _logits(lm, prompts, codes, stages))


@pytest.mark.parametrize("context", [5, -1])
def test_context_reaches_the_checkpoint_as_audiocraft_reads_it(t5, tmp_path, context):
    """``--context`` (audiocraft's subcodes_context) lands in the checkpoint: the stage masks audiocraft's loaded
    MagnetLMModel builds for itself (None: unrestricted) are the ones training applies, at every stage."""
    cfg = magnet.config(context=context, **SMALL)
    magnet.save(magnet.build(cfg, t5, seed=3), cfg, tmp_path)
    shutil.copytree(t5, tmp_path / magnet.T5_NAME)
    from audiocraft.models import loaders
    with magnet.nano_t5(tmp_path / magnet.T5_NAME):
        back = loaders.load_lm_model_magnet(tmp_path / "state_dict.bin", compression_model_frame_rate=50)
    assert back.subcodes_context == context
    frames = 50 * cfg["dataset"]["segment_duration"]
    ours = magnet.stage_masks(torch.arange(4), frames, context)                # [4, 1, T, T]
    for stage, theirs in enumerate(back.attn_mask_per_stage):
        theirs = torch.zeros(frames, frames) if theirs is None else theirs[0, 0, :frames, :frames]
        assert torch.equal(ours[stage, 0], theirs), stage
    assert bool(torch.isinf(ours[1:]).any()) == (context >= 0)


def test_main_writes_the_context_and_the_parents_text_encoder(tmp_path, monkeypatch):
    """The command line's ``--context`` reaches the checkpoint's ``xp.cfg``, and the text encoder written beside
    it is ``--parent``'s (a copy of nano-musicgen in another folder), not the bundled one's."""
    parent = tmp_path / "parent"
    shutil.copytree(tm.MUSICGEN, parent)
    calls = []
    real = magnet.write_t5
    monkeypatch.setattr(magnet, "write_t5", lambda src, dst: calls.append(src) or real(src, dst))
    monkeypatch.setattr(tm, "train", lambda lm, *a, **k: {"seconds": 0.0, "final_loss": 0.0})
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        tm.main(["--out", str(tmp_path / "ckpt"), "--parent", str(parent), "--context", "-1", "--threads", "1"])
    finally:                                                  # main sets them for its process: not for the suite's
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    assert calls == [parent]
    cfg = torch.load(tmp_path / "ckpt" / "state_dict.bin")["xp.cfg"]
    assert cfg["transformer_lm"]["subcodes_context"] == -1


def test_config_refuses_a_context_below_minus_one():
    with pytest.raises(ValueError, match="context=-2 is not allowed"):
        magnet.config(context=-2)


def test_context_flag_is_checked_before_training(capsys):
    with pytest.raises(SystemExit):
        tm.main(["--context", "-2", "--out", "/nonexistent/never-written"])
    assert "context=-2 is not allowed" in capsys.readouterr().err


def test_training_is_deterministic(t5, monkeypatch):
    monkeypatch.setattr(tm, "PROBE_COUNT", 8)
    hashes, losses = [], []
    for _ in range(2):
        lm = magnet.build(magnet.config(**SMALL), t5, seed=5)
        log = tm.train(lm, steps=2, batch_size=4, seed=9, lr=1e-3, warmup=1)
        hashes.append(tm.state_hash(lm))
        losses.append(log["loss_every_100"])
    assert hashes[0] == hashes[1] and losses[0] == losses[1]
    assert hashes[0] != tm.state_hash(magnet.build(magnet.config(**SMALL), t5, seed=5))


def test_warm_start_is_nano_musicgen_under_its_causal_mask(t5):
    """The warm-started LM, run as MusicGen runs (causal mask, delayed codes), gives transformers' logits: every
    nano-musicgen tensor landed where audiocraft's transformer reads it."""
    from transformers import MusicgenForConditionalGeneration

    lm = magnet.warm_start(magnet.build(magnet.config(), t5, seed=1), tm.MUSICGEN).eval()
    ref = MusicgenForConditionalGeneration.from_pretrained(tm.MUSICGEN).eval()
    prompts = ["a slow low organ melody in d minor played loud", "fast flute"]
    codes = torch.randint(0, 65, (2, 4, 20))                                     # [B, K, T]
    t = codes.shape[-1]
    causal = torch.full((t, t), float("-inf")).triu(1)[None, None]               # [1, 1, T, T]
    with torch.no_grad():
        x = sum(lm.emb[k](codes[:, k]) for k in range(4))                        # [B, T, dim]
        x, cross = lm.fuser(x, {"description": magnet.conditions(lm, prompts)})
        out = lm.out_norm(lm.transformer(x, cross_attention_src=cross, src_mask=causal))
        ours = torch.stack([lm.linears[k](out) for k in range(4)], dim=1)        # [B, K, T, V]
        cond = lm.condition_provider.conditioners["description"]
        ids = cond.tokenize(prompts)
        theirs = ref(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"],
                     decoder_input_ids=codes.reshape(-1, t)).logits                # [B*K, T, V]
    assert torch.allclose(ours, theirs.reshape(2, 4, t, -1), atol=1e-4)
    assert not torch.allclose(ours, magnet.forward(lm, codes, magnet.conditions(lm, prompts), torch.ones(2)),
                              atol=1e-2)   # the control: MAGNeT's own mask reads other frames


def test_parent_commit_reads_the_bundles_parent_from_git(tmp_path):
    """``--parent-commit`` writes the parent's files as git holds them at that commit (the bundle's a13b50d, whose
    weights differ from today's nano-musicgen), so ``make nano-magnet`` reproduces the bundle on a clone."""
    out = tm.parent_at("a13b50d", tm.MUSICGEN, tmp_path / "parent")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"]
    rel = tm.MUSICGEN.relative_to(tm.ROOT).as_posix()
    for name in names:
        theirs = subprocess.run(["git", "-C", str(tm.ROOT), "show", f"a13b50d:{rel}/{name}"],
                                capture_output=True, check=True).stdout
        assert (out / name).read_bytes() == theirs, name
    assert (out / "model.safetensors").read_bytes() != (tm.MUSICGEN / "model.safetensors").read_bytes()


@pytest.mark.parametrize("argv, message", [
    (["--parent-commit", "0000000"], "--parent-commit 0000000"),
    (["--parent-commit", "a13b50d", "--parent", "none"], "needs a --parent"),
    (["--parent-commit", "a13b50d", "--parent", "/tmp"], "must lie inside"),
])
def test_parent_commit_is_checked_before_training(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit):
        tm.main(["--out", str(tmp_path / "never"), *argv])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "never" / "state_dict.bin").exists()


def test_guided_loss_is_the_mix_decoding_samples_from(small):
    """The guided term is the masked cross-entropy of ``u + g (c - u)``, ``c`` and ``u`` run apart here (the
    clip's condition, the null one), ``g`` MAGNeT's coefficient at the row's masked share: 10 with its stage's
    codebook all masked, 1 with none of it, linear between (``mglab.decoding.masked``'s schedule)."""
    _, lm = small
    rng = np.random.default_rng(4)
    b = tm.draw_batch(rng, 4, 4.0, lm.span_len, lm.card, dropout=0.0)
    b["loss_mask"][0] = False
    b["loss_mask"][0, b["stages"][0]] = True                                   # row 0: all of its codebook
    b["inputs"][0, b["stages"][0]] = lm.card
    with torch.no_grad():
        loss, plain = tm.guided_loss(lm, b, 0.0)
        smoothed, _ = tm.guided_loss(lm, b, 0.1)
        inputs, stages = torch.from_numpy(b["inputs"]), torch.from_numpy(b["stages"])
        c = magnet.forward(lm, inputs, magnet.conditions(lm, b["prompts"]), stages)
        u = magnet.forward(lm, inputs, magnet.conditions(lm, [None] * 4), stages)
    share = np.array([b["loss_mask"][i, b["stages"][i]].mean() for i in range(4)])
    assert share[0] == 1.0 and share.min() < 0.6                                # g from 10 down to below 6
    g = torch.from_numpy(share * 10.0 + (1 - share) * 1.0).float()[:, None, None, None]
    mask = torch.from_numpy(b["loss_mask"])
    mixed = (u + g * (c - u))[mask]
    oracle = torch.nn.functional.cross_entropy(mixed, torch.from_numpy(b["codes"])[mask])
    assert plain == pytest.approx(float(oracle), rel=1e-4)
    codes = torch.from_numpy(b["codes"])[mask]
    terms = [torch.nn.functional.cross_entropy(x, codes, label_smoothing=ls) for ls in (0.0, 0.1)
             for x in (c[mask], u[mask], mixed)]
    assert float(loss) == pytest.approx(float(sum(terms[:3])), rel=1e-4)     # c, u and the mix, weighted 1
    assert float(smoothed) == pytest.approx(float(sum(terms[3:])), rel=1e-4)
    g1 = torch.ones_like(g)                                                     # the coefficient matters
    assert plain != pytest.approx(float(torch.nn.functional.cross_entropy(
        (u + g1 * (c - u))[mask], torch.from_numpy(b["codes"])[mask])), rel=1e-3)


def test_resumed_guided_stage_is_the_whole_runs(t5, tmp_path, monkeypatch):
    """A checkpoint's guided stage run on its own (``--resume``) ends where one run of both stages ends: the
    stage draws its clips from its own generator, not from where the main stage left the shared one."""
    monkeypatch.setattr(tm, "PROBE_COUNT", 8)
    cfg = magnet.config(**SMALL)
    whole = magnet.build(cfg, t5, seed=5)
    tm.train(whole, steps=2, batch_size=2, seed=9, lr=1e-3, warmup=1)
    magnet.save(whole, cfg, tmp_path)
    shutil.copytree(t5, tmp_path / magnet.T5_NAME)
    tm.guided_stage(whole, 2, 2, 9, 3e-4, 1)
    resumed = magnet.load(tmp_path)
    assert tm.state_hash(resumed) != tm.state_hash(whole)
    tm.guided_stage(resumed, 2, 2, 9, 3e-4, 1)
    assert tm.state_hash(resumed) == tm.state_hash(whole)


@pytest.mark.parametrize("argv, message", [
    (["--guided-steps", "-1"], "--guided-steps >= 0"),
    (["--guided-batch", "0"], "--guided-batch >= 1"),
    (["--resume", "/nonexistent/ckpt", "--guided-steps", "5"], "no readable training.json"),
])
def test_guided_flags_are_checked_before_training(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit):
        tm.main(["--out", str(tmp_path / "never"), *argv])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def _main(argv):
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        tm.main(argv)
    finally:                                                  # main sets them for its process: not for the suite's
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One whole run (main stage, then the guided one; the parent read at a13b50d) and its main stage alone,
    both through the command line, tiny: 2 steps each."""
    root = tmp_path_factory.mktemp("runs")
    common = ["--steps", "2", "--batch-size", "2", "--probe-every", "1000", "--threads", "1", "--seed", "4",
              "--parent-commit", "a13b50d"]
    guided = ["--guided-steps", "2", "--guided-batch", "2"]
    mp = pytest.MonkeyPatch()
    mp.setattr(tm, "PROBE_COUNT", 8)
    try:
        _main(["--out", str(root / "whole"), *common, *guided])
        _main(["--out", str(root / "main"), *common])
        _main(["--resume", str(root / "main"), "--out", str(root / "resumed"), "--threads", "1", *guided])
    finally:
        mp.undo()
    return root, [json.loads((root / r / "training.json").read_text()) for r in ("whole", "main", "resumed")]


def test_resume_through_the_command_line_ends_where_the_whole_run_does(runs):
    root, (whole, main, resumed) = runs
    assert resumed["state_sha256"] == whole["state_sha256"] != main["state_sha256"]
    assert resumed["command"].split()[2:] == main["command"].split()[2:] + ["--guided-steps", "2", "--guided-batch",
                                                                            "2", "--guided-lr", "0.0003"]
    assert resumed["commands_run"][0] == main["command"] and "--resume" in resumed["commands_run"][1]
    assert whole["guided"]["steps"] == resumed["guided"]["steps"] == 2 and "guided" not in main
    assert whole["parent_commit"] == "a13b50d" and whole["parent"] == "data/models/nano-musicgen/pytorch"
    for run in ("whole", "main", "resumed"):                  # the parent read at a commit is not in the checkpoint
        assert sorted(p.name for p in (root / run).iterdir()) == [
            "compression_state_dict.bin", "nano-t5", "state_dict.bin", "training.json"], run


def test_whole_run_warm_starts_from_the_commits_parent_not_todays(runs, t5):
    """The bytes read at a13b50d are what the run started from: a 0-step run from them equals the warm start of
    the files git holds, and differs from one of today's nano-musicgen."""
    root, _ = runs
    at = tm.parent_at("a13b50d", tm.MUSICGEN, root / "a13b50d")
    cfg = magnet.config()
    then = magnet.warm_start(magnet.build(cfg, t5, seed=4), at)
    today = magnet.warm_start(magnet.build(cfg, t5, seed=4), tm.MUSICGEN)
    loaded = magnet.load(root / "main")
    w = "transformer.layers.0.self_attn.in_proj_weight"
    dist = lambda a: float((a.state_dict()[w] - loaded.state_dict()[w]).abs().max())   # noqa: E731
    assert dist(then) < dist(today)                           # 2 small steps from the commit's weights


@pytest.mark.parametrize("extra, message", [
    (["--seed", "3"], "--seed belong to the main stage"),
    (["--threads", "2"], "on --threads 2"),
    ([], "give --guided-steps"),
])
def test_resume_refuses_what_would_end_elsewhere(runs, extra, message, capsys, tmp_path):
    root, _ = runs
    argv = ["--resume", str(root / "main"), "--out", str(tmp_path / "never"), "--threads", "1", *extra]
    if message != "give --guided-steps":
        argv += ["--guided-steps", "2"]
    with pytest.raises(SystemExit):
        tm.main(argv)
    assert message in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("src, out, message", [
    ("resumed", "fresh", "already has a guided stage"),
    ("main", "main", "must be a new or empty folder"),
    ("main", "whole", "must be a new or empty folder"),
])
def test_resume_refuses_a_guided_source_or_a_used_folder(runs, src, out, message, capsys):
    root, _ = runs
    with pytest.raises(SystemExit):
        tm.main(["--resume", str(root / src), "--out", str(root / out), "--threads", "1", "--guided-steps", "2"])
    assert message in capsys.readouterr().err
    assert not (root / "fresh").exists()
