"""End-to-end fine-pruning on a tiny BERT: target density, resume, CLI errors, torchrun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_args
import torch

from nnprune.pruning_core.checkpoint import load_model, read_state_dict
from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune

REPO = Path(__file__).resolve().parents[2]


def _args(tiny_dir, toy_data, out, **kw) -> FinePruneArgs:
    base = dict(task="sst2", model=str(tiny_dir), output_dir=out, data_dir=toy_data,
                method="movement", max_steps=12, batch_size=8, learning_rate=1e-3,
                max_seq_length=32, logging_steps=4, save_steps=6, seed=3)
    base.update(kw)
    return make_args(FinePruneArgs, **base)


def test_fine_prune_reaches_target_density_and_saves_config(tiny_dir, toy_data, tmp_path):
    out = tmp_path / "run"
    result = fine_prune(_args(tiny_dir, toy_data, out, target_density=0.3,
                              overrides=["attention_block=4x4", "ffn_block=ffn_dim"]))
    assert abs(result.density - 0.3) < 0.02
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    saved = json.loads((out / "nnprune_config.json").read_text())
    assert saved["pruning"]["final_threshold"] == 0.3 and saved["pruning"]["ffn_block"] == "ffn_dim"
    assert saved["masked"] is True and saved["task"] == "sst2"
    # Every Trainer checkpoint carries the pruning config and the controller state.
    for ck in sorted(out.glob("checkpoint-*")):
        assert (ck / "nnprune_config.json").is_file() and (ck / "nnprune_state.json").is_file()
    # The saved model reloads masked, at the same density.
    loaded = load_model(out)
    assert loaded.is_masked and abs(loaded.pruner.density() - result.density) < 1e-9


def test_resume_continues_where_it_stopped(tiny_dir, toy_data, tmp_path):
    full = tmp_path / "full"
    fine_prune(_args(tiny_dir, toy_data, full, method="hybrid-nt", target_density=0.5,
                     overrides=["attention_block=8x8"]))
    # Simulate a run killed after its step-6 checkpoint: only checkpoint-6 survives.
    stopped = tmp_path / "stopped"
    shutil.copytree(full / "checkpoint-6", stopped / "checkpoint-6")
    state = json.loads((stopped / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    result = fine_prune(_args(tiny_dir, toy_data, stopped, method="hybrid-nt", target_density=0.5,
                              overrides=["attention_block=8x8"], resume=True))
    assert result.steps == 12
    a, b = read_state_dict(full), read_state_dict(stopped)
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < 1e-4, worst
    # Only steps 7..12 were trained again: the resumed log starts after step 6.
    log = json.loads((stopped / "checkpoint-12" / "trainer_state.json").read_text())["log_history"]
    assert min(e["step"] for e in log if "loss" in e and e["step"] > 6) == 8


def test_existing_checkpoints_need_resume_or_overwrite(tiny_dir, toy_data, tmp_path):
    from nnprune.errors import NNPruneError

    out = tmp_path / "run"
    fine_prune(_args(tiny_dir, toy_data, out, max_steps=6))
    with pytest.raises(NNPruneError, match="not empty; pass --overwrite .* or --resume"):
        fine_prune(_args(tiny_dir, toy_data, out, max_steps=6))
    with pytest.raises(NNPruneError, match="no checkpoint-\\* folder"):
        fine_prune(_args(tiny_dir, toy_data, tmp_path / "empty", resume=True))


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "nnprune", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


@pytest.mark.parametrize("argv,message", [
    (["fine-prune", "nope", "--model", "M", "--output-dir", "O"],
     "unknown task 'nope'; known: "),
    (["fine-prune", "sst2", "--model", "{tiny}", "--output-dir", "O", "--method", "prune-all"],
     "unknown method 'prune-all'; known: auto, block, dense, hybrid, "),
    (["fine-prune", "sst2", "--model", "{tiny}", "--output-dir", "O", "--target-density", "1.5"],
     "--target-density must be in (0, 1], got 1.5"),
    (["fine-prune", "sst2", "--model", "{tiny}", "--output-dir", "O", "--method", "struct",
      "--target-density", "0.5", "--target-speedup", "2"],
     "one target at a time: pass --target-speedup or --target-density, not both"),
    (["fine-prune", "sst2", "--model", "{tiny}", "--output-dir", "O", "--method", "movement",
      "--target-speedup", "2"], "--target-speedup cuts the mask scores at a latency budget"),
    (["fine-prune", "sst2", "--model", "{tiny}", "--output-dir", "O", "--method", "struct",
      "--target-speedup", "2", "--latency-table", "{bad}"], "is not valid JSON"),
    (["fine-prune", "sst2", "--model", "{tiny}", "--output-dir", "O", "--data-dir", "{data}",
      "--set", "attention_block=7x7"], "block shape 7x7 (7x7) does not divide the weight 32x32"),
    (["fine-prune", "sst2", "--model", "{tiny}", "--output-dir", "O", "--train-file", "{bad}",
      "--validation-file", "{bad}"], "missing column"),
    (["count-params", "/does/not/exist"], "checkpoint /does/not/exist does not exist"),
    (["count-params", "{data}"], "has no config.json"),
])
def test_cli_errors_are_one_line(argv, message, tiny_dir, toy_data, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tstars\nnice\t1\n")
    argv = [a.format(tiny=tiny_dir, data=toy_data, bad=bad) for a in argv]
    proc = _cli(*argv, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), proc.stderr
    assert message in " ".join(proc.stderr.split()), proc.stderr
    assert "Traceback" not in proc.stderr


def test_count_params_cli_on_fine_pruned_checkpoint(tiny_dir, toy_data, tmp_path):
    out = tmp_path / "run"
    result = fine_prune(_args(tiny_dir, toy_data, out, target_density=0.25))
    proc = _cli("count-params", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)
    assert counts["masked"] is True and abs(counts["density"] - result.density) < 1e-6
    assert abs(counts["density"] - 0.25) < 0.02 and len(counts["layers"]) == 2


@pytest.mark.skipif(not shutil.which("torchrun"), reason="torchrun not installed")
def test_torchrun_two_processes_write_one_checkpoint(tiny_dir, toy_data, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = ["torchrun", "--nproc_per_node", "2", "--master_port", "29517", "-m", "nnprune",
           "fine-prune", "sst2", "--model", str(tiny_dir), "--output-dir", str(out),
           "--data-dir", str(toy_data), "--method", "movement", "--max-steps", "4",
           "--batch-size", "4", "--max-seq-length", "32", "--save-steps", "4"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]
    assert (out / "model.safetensors").is_file() and (out / "nnprune_config.json").is_file()
    assert load_model(out).is_masked
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    # 2 processes x batch 4: each optimizer step saw 8 examples, so 4 steps are a third of the
    # 96 training examples (one process alone would have seen a sixth).
    assert state["train_batch_size"] == 4 and state["global_step"] == 4
    assert state["epoch"] == pytest.approx(4 * 2 * 4 / 96)
    assert torch.distributed.is_available()


def test_mask_scores_keep_their_learning_rate_and_skip_weight_clipping(tiny_dir, toy_data, tmp_path):
    """Weights follow the linear decay; scores keep mask_scores_learning_rate to the end, and the
    gradient clipping of the weights ignores the scores' (lambda-scaled) gradients."""
    from nnprune.tasks import get_task
    from nnprune.workflows.fine_prune import resolve_config
    from nnprune.workflows.training import run_training

    args = _args(tiny_dir, toy_data, tmp_path / "run", method="hybrid-nt",
                 overrides=["attention_block=8x8", "mask_scores_learning_rate=0.05"])
    run = run_training(get_task("sst2"), args.model, args.output_dir, args.training,
                       resolve_config(args))
    groups = run.trainer.optimizer.param_groups
    scores = [g for g in groups if g.get("nnprune_mask_scores")]
    weights = [g for g in groups if not g.get("nnprune_mask_scores")]
    assert len(scores) == 1 and scores[0]["lr"] == pytest.approx(0.05)
    assert all(g["lr"] < 1e-3 * 0.2 for g in weights)  # decayed from 1e-3 towards 0
    score_ids = {id(p) for p in scores[0]["params"]}
    assert score_ids == {id(p) for p in run.trainer.pruning.score_parameters()}


def test_config_file_then_set_then_flags(tmp_path):
    """Precedence: preset < --config file < --set < --teacher/--target-density; bad keys fail."""
    from nnprune.errors import NNPruneError
    from nnprune.workflows.fine_prune import resolve_config

    cfg_file = tmp_path / "prune.yaml"
    cfg_file.write_text("method: struct\nattention_lambda: 5\nffn_lambda: 7\ntarget_density: 0.6\n")
    args = make_args(FinePruneArgs, task="sst2", model="m", output_dir=tmp_path / "o", config_file=cfg_file,
                         overrides=["ffn_lambda=9"], target_density=0.3)
    cfg = resolve_config(args)
    assert cfg.method == "struct" and str(cfg.attention_block) == "head"
    assert (cfg.attention_lambda, cfg.ffn_lambda, cfg.target_density) == (5.0, 9.0, 0.3)
    cfg_file.write_text("attention_blok: 32x32\n")
    with pytest.raises(NNPruneError, match="unknown pruning config key.*attention_blok"):
        resolve_config(args)
    cfg_file.write_text("method: [unclosed\n")
    with pytest.raises(NNPruneError, match="line 2 column 1: not valid YAML"):
        resolve_config(args)


def test_a_teacher_with_another_head_is_refused_before_training(tiny_dir, toy_data, tmp_path):
    from conftest import save_tiny_model

    from nnprune.errors import NNPruneError

    qa = save_tiny_model(tmp_path / "qa-teacher", head="question-answering")
    with pytest.raises(NNPruneError, match="needs a \\*ForSequenceClassification head"):
        fine_prune(_args(tiny_dir, toy_data, tmp_path / "run", method="hybrid",
                         teacher=str(qa)))
    assert not (tmp_path / "run" / "checkpoint-6").exists()
