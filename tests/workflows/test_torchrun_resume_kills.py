"""A distributed fine-prune (``torchrun --nproc_per_node 2``, CPU, gloo) killed at 5 random points
in a row, each time with SIGKILL to the launcher and both of its workers at once (a machine that
dies), resumes every time with ``--resume`` and ends with the weights of the unbroken run.

After every kill each ``checkpoint-<step>`` folder there is complete (saves are renamed into
place whole) and the dead run's lock is no obstacle (the kernel released it with its process).
The kill points are drawn by a seeded generator: some land mid-step, some mid-save.

It takes about 3 minutes on 2 busy CPU cores (7 launches of 2 processes, the unbroken run
alongside the others; most of it is starting processes), less with more cores; it runs in CI
like the rest.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import resumed_like_unbroken, save_tiny_model, subprocess_env, write_toy_sst2

from nnprune.pruning_core.checkpoint import read_state_dict
from nnprune.workflows.training import checkpoint_complete, checkpoint_folders

MAX_STEPS = 30  # checkpoints every step; 5 kills land before the end (about step 10 here)
KILLS = 5
SEED = 20240527
PORT = 29711  # master ports PORT..PORT+KILLS+1: none another test uses

pytestmark = pytest.mark.skipif(
    shutil.which("torchrun") is None or not sys.platform.startswith("linux"),
    reason="needs torchrun, and /proc to find the workers")


def _command(model: Path, data: Path, out: Path, port: int, *extra: str) -> list[str]:
    return ["torchrun", "--nproc_per_node", "2", "--master_port", str(port), "-m", "nnprune",
            "fine-prune", "sst2", "--model", str(model), "--output-dir", str(out),
            "--data-dir", str(data), "--method", "hybrid-nt", "--target-density", "0.5",
            "--set", "attention_block=8x8", "--set", "mask_scores_learning_rate=0.05",
            "--batch-size", "4", "--max-seq-length", "16", "--learning-rate", "1e-3",
            "--seed", "3", "--max-steps", str(MAX_STEPS), "--save-steps", "1",
            "--logging-steps", "1", *extra]



def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its workers in sessions of their own, so a
    process group does not reach them)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").is_file() and " Z " not in Path(f"/proc/{pid}/stat").read_text()


def _last_complete(out: Path) -> int:
    done = [int(c.name.split("-")[1]) for c in checkpoint_folders(out) if checkpoint_complete(c)]
    return max(done, default=0)


def _run_and_kill(cmd: list[str], out: Path, past: int, delay: float, log: Path) -> int:
    """Start ``cmd``; once it has a complete checkpoint past step ``past``, wait ``delay``
    seconds and SIGKILL the launcher and its workers together. Returns the last complete step
    at the kill."""
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=subprocess_env(),
                                cwd=out.parent)
        try:
            deadline = time.monotonic() + 300
            while _last_complete(out) <= past:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the run ended (rc {proc.returncode}) or stalled before a "
                                f"checkpoint past step {past}:\n{log.read_text()[-3000:]}")
                time.sleep(0.01)
            time.sleep(delay)
            victims = [proc.pid] + _descendants(proc.pid)
            if proc.poll() is not None:
                pytest.fail(f"the run finished before it could be killed (raise MAX_STEPS):\n"
                            f"{log.read_text()[-2000:]}")
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(timeout=60)
            deadline = time.monotonic() + 60
            while any(_alive(pid) for pid in victims) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return _last_complete(out)


def test_torchrun_killed_at_five_random_points_resumes_to_the_unbroken_weights(tmp_path):
    model = save_tiny_model(tmp_path / "tiny-bert", "bert")
    data = write_toy_sst2(tmp_path / "toy")
    full, out = tmp_path / "full", tmp_path / "run"
    # the unbroken run goes alongside the killed ones
    full_log = (tmp_path / "full.log").open("w")
    full_proc = subprocess.Popen(_command(model, data, full, PORT), stdout=full_log,
                                 stderr=subprocess.STDOUT, env=subprocess_env(), cwd=tmp_path)
    try:
        draw = random.Random(SEED)
        steps = [0]
        for kill in range(KILLS):
            extra = ("--resume",) if kill else ()
            # past at least one more checkpoint (every attempt moves on), then a random moment
            delay = draw.uniform(0.0, 0.3)
            reached = _run_and_kill(_command(model, data, out, PORT + 1 + kill, *extra), out,
                                    steps[-1], delay, tmp_path / f"kill-{kill}.log")
            assert reached < MAX_STEPS, "the run got to its end before it was killed"
            for ck in checkpoint_folders(out):
                assert checkpoint_complete(ck), f"kill {kill}: {ck.name} is incomplete"
            assert not (out / "nnprune_results.json").exists()
            steps.append(reached)
    finally:
        full_proc.wait(timeout=600)
        full_log.close()
    assert full_proc.returncode == 0, (tmp_path / "full.log").read_text()[-3000:]
    unbroken = read_state_dict(full)
    assert steps == sorted(steps) and len(set(steps)) == KILLS + 1, steps

    last = subprocess.run(_command(model, data, out, PORT + KILLS + 1, "--resume"),
                          capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path, timeout=600)
    assert last.returncode == 0, last.stderr[-3000:]
    resumed_like_unbroken(out, unbroken, MAX_STEPS)
