"""Saves that cannot half-happen: a disk that fills up in the middle of writing a checkpoint or a
final model, and a process SIGKILLed while it saves, leave every ``checkpoint-<step>`` folder
complete and an earlier final model as it was (``evaluate`` still scores it); ``--resume``
then ends with the weights an unbroken run ends with."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (kill_when, make_args, resumed_like_unbroken, save_tiny_model, subprocess_env,
                      write_toy_sst2)

from nnprune.io_utils import LOCK_FILE, PENDING_FILE, TMP_PREFIX
from nnprune.pruning_core.checkpoint import read_state_dict
from nnprune.workflows.evaluate import evaluate_checkpoint
from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune
from nnprune.workflows.training import checkpoint_complete, checkpoint_folders



@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    return save_tiny_model(root / "tiny-bert", "bert"), write_toy_sst2(root / "toy")


def _args(model: Path, data: Path, out: Path, **kw) -> FinePruneArgs:
    return make_args(FinePruneArgs, **{
        "task": "sst2", "model": str(model), "output_dir": out, "data_dir": data,
        "method": "hybrid-nt", "target_density": 0.5,
        "overrides": ["attention_block=8x8", "mask_scores_learning_rate=0.05"],
        "batch_size": 8, "max_seq_length": 32, "learning_rate": 1e-3, "seed": 3,
        "max_steps": 6, "save_steps": 2, "logging_steps": 1, **kw})


def _snapshot(folder: Path) -> dict[str, str]:
    """The final model's files (the top level of the run folder): name -> hash of the bytes."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def _assert_only_complete_checkpoints(out: Path) -> None:
    for ck in checkpoint_folders(out):
        assert checkpoint_complete(ck), f"{ck.name} is there but incomplete"


class DiskFull:
    """Fault injection into the real weights writer (``safetensors.torch.save_file``, which
    ``save_pretrained`` calls): the ``fail_at``-th call writes the first half of the real bytes
    and then fails as a full disk does."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at, self.calls = fail_at, 0

    def __call__(self, tensors, filename, metadata=None):
        from safetensors.torch import save

        self.calls += 1
        data = save(tensors, metadata=metadata)
        if self.calls == self.fail_at:
            with open(filename, "wb") as fh:
                fh.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device", str(filename))
        with open(filename, "wb") as fh:
            fh.write(data)


def test_a_full_disk_mid_save_loses_nothing_and_resume_ends_like_an_unbroken_run(
        inputs, tmp_path, monkeypatch):
    import transformers.modeling_utils as modeling_utils

    model, data = inputs
    unbroken_dir, out = tmp_path / "unbroken", tmp_path / "run"
    fine_prune(_args(model, data, unbroken_dir))
    unbroken = read_state_dict(unbroken_dir)

    # 1. the disk fills up while checkpoint-4 is written (weights writes: checkpoint-2, then 4)
    monkeypatch.setattr(modeling_utils, "safe_save_file", DiskFull(fail_at=2))
    with pytest.raises(OSError, match="No space left"):
        fine_prune(_args(model, data, out))
    monkeypatch.undo()
    assert [c.name for c in checkpoint_folders(out)] == ["checkpoint-2"]
    _assert_only_complete_checkpoints(out)
    assert not [p.name for p in out.iterdir() if p.name.startswith(TMP_PREFIX)]
    assert not (out / LOCK_FILE).exists() and not (out / "config.json").exists()

    fine_prune(_args(model, data, out, resume=True))
    resumed_like_unbroken(out, unbroken, 6)
    before = _snapshot(out)
    metrics = evaluate_checkpoint("sst2", out, data_dir=data).metrics

    # 2. the disk fills up while a finished run, resumed, saves its final model again
    monkeypatch.setattr(modeling_utils, "safe_save_file", DiskFull(fail_at=1))
    with pytest.raises(OSError, match="No space left"):
        fine_prune(_args(model, data, out, resume=True))
    monkeypatch.undo()
    assert _snapshot(out) == before  # the earlier final model, byte for byte
    assert evaluate_checkpoint("sst2", out, data_dir=data).metrics == metrics
    _assert_only_complete_checkpoints(out)
    fine_prune(_args(model, data, out, resume=True))
    resumed_like_unbroken(out, unbroken, 6)


# ------------------------------------------------------------------------------ SIGKILL
MAX_STEPS, SAVE_STEPS = 8, 2


def _command(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nnprune", "fine-prune", "sst2", "--model", str(model),
            "--output-dir", str(out), "--data-dir", str(data), "--method", "hybrid-nt",
            "--target-density", "0.5", "--set", "attention_block=8x8",
            "--set", "mask_scores_learning_rate=0.05", "--batch-size", "8",
            "--max-seq-length", "32", "--learning-rate", "1e-3", "--seed", "3",
            "--max-steps", str(MAX_STEPS), "--save-steps", str(SAVE_STEPS),
            "--logging-steps", "1", *extra]


def _kill_while_saving(cmd: list[str], out: Path, saving: str, log: Path,
                       timeout: float = 300) -> None:
    """Run ``cmd``; the moment ``out`` holds the temporary folder of the save named ``saving``
    (``.nnprune-tmp-<saving>``), SIGKILL the process: it dies in the middle of that save."""
    staging = f"{TMP_PREFIX}{saving}"

    def saving_now() -> bool:
        try:
            return any(n.startswith(staging) for n in os.listdir(out))
        except FileNotFoundError:
            return False

    kill_when(cmd, out.parent, log, saving_now, f"it saved {saving}", timeout=timeout)


def test_sigkill_during_saves_then_resume_ends_like_an_unbroken_run(inputs, tmp_path):
    model, data = inputs
    full, out = tmp_path / "full", tmp_path / "run"
    full_log = (tmp_path / "full.log").open("w")
    full_proc = subprocess.Popen(_command(model, data, full), stdout=full_log,
                                 stderr=subprocess.STDOUT, env=subprocess_env(), cwd=tmp_path)
    try:
        # killed while writing checkpoint-4: only checkpoint-2 is there, complete
        _kill_while_saving(_command(model, data, out), out, f"checkpoint-{2 * SAVE_STEPS}",
                           tmp_path / "a.log")
        assert [c.name for c in checkpoint_folders(out)] == [f"checkpoint-{SAVE_STEPS}"]
        _assert_only_complete_checkpoints(out)
        resumed = subprocess.run(_command(model, data, out, "--resume"), capture_output=True,
                                 text=True, env=subprocess_env(), cwd=tmp_path, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    finally:
        full_proc.wait(timeout=300)
        full_log.close()
    assert full_proc.returncode == 0, (tmp_path / "full.log").read_text()[-3000:]
    unbroken = read_state_dict(full)
    resumed_like_unbroken(out, unbroken, MAX_STEPS)
    assert not [p.name for p in out.iterdir() if p.name.startswith(TMP_PREFIX)]

    # killed while a finished run, resumed, writes its final model again: the earlier one stays
    before = _snapshot(out)
    metrics = evaluate_checkpoint("sst2", out, data_dir=data).metrics
    _kill_while_saving(_command(model, data, out, "--resume"), out, "final-", tmp_path / "b.log")
    assert not (out / PENDING_FILE).exists()  # killed before the files moved in
    assert _snapshot(out) == before
    assert evaluate_checkpoint("sst2", out, data_dir=data).metrics == metrics
    again = subprocess.run(_command(model, data, out, "--resume"), capture_output=True, text=True,
                           env=subprocess_env(), cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]  # the dead run's lock is no block
    resumed_like_unbroken(out, unbroken, MAX_STEPS)
    assert json.loads((out / "nnprune_results.json").read_text())["steps"] == MAX_STEPS
    assert not [p.name for p in out.iterdir() if p.name.startswith(TMP_PREFIX)]
