"""Every script under ``examples/`` runs as a user runs it (``--smoke``: a tiny random model, a
few steps) and ends with what it promises."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

EXAMPLES = REPO / "examples"


def run_example(cmd: list[str], tmp_path: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd + ["--smoke", "--output", str(tmp_path / "out")], cwd=EXAMPLES,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = "\n" + proc.stdout
    return json.loads(text[text.rindex("\n{"):])  # the result: the last JSON object printed


def test_every_example_is_tested():
    scripts = {p.name for p in EXAMPLES.glob("*.py")} - {"common.py"}
    assert scripts == {"plain_loop.py", "hf_trainer_callback.py", "accelerate_loop.py",
                       "post_training_custom_loss.py"}


def test_plain_loop_fine_prunes_compacts_and_times(tmp_path):
    out = run_example([sys.executable, "plain_loop.py"], tmp_path)
    assert out["predicted_speedup"] >= 1.3 * 0.99
    assert out["accuracy"] == out["masked_accuracy"]  # compaction is exact
    assert out["measured_speedup_b1"] > 0 and (tmp_path / "out" / "config.json").is_file()


def test_hf_trainer_callback_prunes_to_the_density(tmp_path):
    out = run_example([sys.executable, "hf_trainer_callback.py"], tmp_path)
    assert abs(out["density"] - 0.5) < 0.02
    assert out["accuracy"] == out["masked_accuracy"] and out["exactness"] <= 1e-4
    assert out["heads_removed"] + out["ffn_dims_removed"] > 0


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not installed")
def test_accelerate_loop_on_two_processes_has_the_same_masks_everywhere(tmp_path):
    out = run_example(["torchrun", "--nproc_per_node", "2", "--master_port", "29633",
                       "accelerate_loop.py"], tmp_path)
    assert out["processes"] == 2 and out["same_masks_everywhere"]
    assert out["predicted_speedup"] >= 1.3 * 0.99


def test_post_training_with_a_custom_loss_reloads_in_stock_transformers(tmp_path):
    out = run_example([sys.executable, "post_training_custom_loss.py"], tmp_path)
    assert out["predicted_by"] == "flops" and out["predicted_speedup"] > 1.5
    assert out["stock_reload_max_abs_diff"] <= 1e-4
