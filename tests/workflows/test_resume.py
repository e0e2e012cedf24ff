"""Resuming for real: a ``fine-prune`` process killed with SIGKILL mid-run and resumed with
``--resume`` ends where an unbroken run ends; half-written checkpoints are skipped; ``--overwrite``
leaves nothing of the earlier run behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import kill_when, make_args, save_tiny_model, subprocess_env, write_toy_sst2

from nnprune.errors import NNPruneError
from nnprune.io_utils import record_written
from nnprune.pruning_core.checkpoint import load_model, read_state_dict
from nnprune.pruning_core.masked import MaskedLinear
from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune
from nnprune.workflows.options import TrainingOptions
from nnprune.workflows.training import resume_checkpoint

MAX_STEPS = 12
SAVE_STEPS = 3  # the first save comes after the density controller's first update


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    return save_tiny_model(root / "tiny-bert", "bert"), write_toy_sst2(root / "toy")


def _command(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nnprune", "fine-prune", "sst2", "--model", str(model),
            "--output-dir", str(out), "--data-dir", str(data), "--method", "hybrid-nt",
            "--target-density", "0.5", "--set", "attention_block=8x8",
            "--set", "mask_scores_learning_rate=0.05", "--batch-size", "8",
            "--max-seq-length", "32", "--learning-rate", "1e-3", "--seed", "3",
            "--max-steps", str(MAX_STEPS), "--save-steps", str(SAVE_STEPS),
            "--logging-steps", "1", *extra]


def _complete(ck: Path) -> bool:
    return (ck / "trainer_state.json").is_file() and (ck / "nnprune_state.json").is_file()


def _steps(folder: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("checkpoint-*") if p.is_dir())


def _kill_after_first_save(cmd: list[str], out: Path, log: Path, timeout: float = 180) -> dict:
    """Start ``cmd``; as soon as the first checkpoint is complete and a later checkpoint folder
    exists (most likely being written), SIGKILL the process. Returns what was on disk then."""
    def past_first_save() -> dict:
        steps = _steps(out) if out.is_dir() else []
        if (steps and steps[-1] > SAVE_STEPS and (out / f"checkpoint-{SAVE_STEPS}").is_dir()
                and _complete(out / f"checkpoint-{SAVE_STEPS}")):
            return {f"checkpoint-{s}": _complete(out / f"checkpoint-{s}") for s in steps}
        return {}

    return kill_when(cmd, out.parent, log, past_first_save, "it could be killed after its first save",
                     timeout=timeout, poll=0.005)


def test_sigkill_mid_run_then_resume_ends_like_an_unbroken_run(inputs, tmp_path):
    model, data = inputs
    full, broken = tmp_path / "full", tmp_path / "broken"
    # The unbroken run goes alongside the killed one and its resumption (one thread each).
    full_log = (tmp_path / "full.log").open("w")
    full_proc = subprocess.Popen(_command(model, data, full), stdout=full_log,
                                 stderr=subprocess.STDOUT, env=subprocess_env(), cwd=tmp_path)
    try:
        on_disk = _kill_after_first_save(_command(model, data, broken), broken,
                                         tmp_path / "broken.log")
        # Killed mid-run: no final model yet. The resume checkpoint is past the density
        # controller's first update, so its state (nnprune_state.json) matters.
        assert not (broken / "config.json").exists(), on_disk
        last = max((k for k, done in on_disk.items() if done), key=lambda k: int(k.split("-")[1]))
        controller = json.loads((broken / last / "nnprune_state.json").read_text())
        assert controller["soft_start"] is not None and controller["integral"] != 0, controller
        proc = subprocess.run(_command(model, data, broken, "--resume"), capture_output=True,
                              text=True, env=subprocess_env(), cwd=tmp_path, timeout=300)
    finally:
        full_proc.wait(timeout=300)
        full_log.close()
    assert full_proc.returncode == 0, (tmp_path / "full.log").read_text()[-3000:]
    assert proc.returncode == 0, f"{on_disk}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"

    # Same step count: the results and the last Trainer checkpoint.
    results = [json.loads((d / "nnprune_results.json").read_text()) for d in (full, broken)]
    assert results[0]["steps"] == results[1]["steps"] == MAX_STEPS
    for d in (full, broken):
        state = json.loads((d / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
        assert state["global_step"] == MAX_STEPS
    # The resumed run did not train the steps of its resume checkpoint again.
    log = json.loads((broken / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
    logged = [e["step"] for e in log["log_history"] if "loss" in e]
    assert logged == sorted(set(logged)) and logged[-1] == MAX_STEPS

    # Same final weights and mask scores...
    a, b = read_state_dict(full), read_state_dict(broken)
    assert a.keys() == b.keys() and any(k.endswith("mask_scores") for k in a)
    diffs = {k: float((a[k].float() - b[k].float()).abs().max()) for k in a}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= 1e-5, (worst, diffs[worst], on_disk)
    # ... and the same final (eval) masks, at the target density.
    ma, mb = load_model(full), load_model(broken)
    layers_a = {n: m for n, m in ma.model.named_modules() if isinstance(m, MaskedLinear)}
    layers_b = {n: m for n, m in mb.model.named_modules() if isinstance(m, MaskedLinear)}
    assert layers_a.keys() == layers_b.keys() and layers_a
    for name, layer in layers_a.items():
        assert torch.equal(layer.block_mask(training=False),
                           layers_b[name].block_mask(training=False)), name
    assert ma.pruner.density() == mb.pruner.density() == pytest.approx(0.5, abs=0.02)
    assert results[0]["metrics"] == results[1]["metrics"]


def _fake_checkpoint(folder: Path, step: int, *, trainer_state: bool = True,
                     pruning_state: bool = True) -> Path:
    ck = folder / f"checkpoint-{step}"
    ck.mkdir(parents=True)
    (ck / "model.safetensors").write_bytes(b"")
    if trainer_state:
        (ck / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if pruning_state:
        (ck / "nnprune_state.json").write_text("{}\n")
    return ck


def test_resume_skips_half_written_checkpoints(tmp_path):
    """A process killed while saving leaves a checkpoint folder without its trainer state (written
    after the weights, optimizer and RNG states) or without the pruning state (written last):
    ``--resume`` takes the last complete one."""
    out = tmp_path / "run"
    resume = TrainingOptions(resume=True)
    good = _fake_checkpoint(out, 4)
    _fake_checkpoint(out, 2)
    _fake_checkpoint(out, 6, pruning_state=False)
    _fake_checkpoint(out, 8, trainer_state=False, pruning_state=False)
    (out / "checkpoint-10").mkdir()
    assert resume_checkpoint(out, resume) == str(good)
    # Half-written folders still hold this run's output: a fresh run refuses them too...
    only_partial = tmp_path / "partial"
    _fake_checkpoint(only_partial, 2, trainer_state=False)
    with pytest.raises(NNPruneError, match="--resume .* or --overwrite"):
        resume_checkpoint(only_partial, TrainingOptions())
    # ... --resume finds nothing to resume from, and --overwrite removes them.
    with pytest.raises(NNPruneError, match="no complete checkpoint"):
        resume_checkpoint(only_partial, resume)
    assert resume_checkpoint(only_partial, TrainingOptions(overwrite=True)) is None
    assert not list(only_partial.glob("checkpoint-*"))


def test_overwrite_leaves_nothing_stale(inputs, tmp_path):
    model, data = inputs
    out = tmp_path / "run"
    base = dict(task="sst2", model=str(model), output_dir=out, data_dir=data, method="hybrid-nt",
                overrides=["attention_block=8x8"], max_steps=4, batch_size=8, learning_rate=1e-3,
                max_seq_length=32, logging_steps=2, save_steps=2, seed=3)
    fine_prune(make_args(FinePruneArgs, **{**base, "target_density": 0.5}))
    # What an earlier, different run could have left: a sharded save's index (loaders prefer it
    # to model.safetensors; nnprune recorded writing it) and a checkpoint of a longer run
    # (--resume would take it).
    (out / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"classifier.weight": "model-00001-of-00002.safetensors"}}))
    record_written(out, ["model.safetensors.index.json"])
    stale = out / "checkpoint-999"
    stale.mkdir()
    (stale / "trainer_state.json").write_text(json.dumps({"global_step": 999}))
    with pytest.raises(NNPruneError, match="--overwrite"):
        fine_prune(make_args(FinePruneArgs, **{**base, "target_density": 0.25}))

    result = fine_prune(make_args(FinePruneArgs, **{**base, "target_density": 0.25},
                                  overwrite=True))
    assert not (out / "model.safetensors.index.json").exists()
    assert not stale.exists()
    assert _steps(out) == [2, 4]
    loaded = load_model(out)
    assert loaded.is_masked and loaded.pruner.density() == pytest.approx(result.density, abs=1e-9)
    assert result.density == pytest.approx(0.25, abs=0.02)
    saved = json.loads((out / "nnprune_config.json").read_text())
    assert saved["pruning"]["target_density"] == 0.25
    assert json.loads((out / "nnprune_results.json").read_text())["density"] == result.density
