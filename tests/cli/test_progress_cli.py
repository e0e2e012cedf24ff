"""Training progress: one plain line per logging step in logs, a bar on a terminal, and none of
the Trainer's dict prints or tqdm bars."""

from __future__ import annotations

import io
import json
import re

import pytest

STEP_LINE = re.compile(r"^step (\d+)/(\d+) \| loss [0-9.e+-]+ \| ")


def _train_argv(tiny_dir, toy_data, out, *extra: str) -> list[str]:
    return ["fine-prune", "sst2", "--model", str(tiny_dir), "--output-dir", str(out),
            "--data-dir", str(toy_data), "--method", "hybrid-nt", "--target-density", "0.5",
            "--max-steps", "4", "--batch-size", "8", "--max-seq-length", "32",
            "--logging-steps", "1", "--eval-steps", "2", "--save-steps", "100", *extra]


def test_fine_prune_logs_one_line_per_logging_step(tiny_dir, toy_data, tmp_path, capsys):
    from nnprune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(_train_argv(tiny_dir, toy_data, tmp_path / "run", "--json"))
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err
    result = json.loads(out)  # stdout holds the JSON alone: no Trainer print reached it
    assert result["steps"] == 4

    steps = [m for m in map(STEP_LINE.match, err.splitlines()) if m]
    assert [(int(m[1]), int(m[2])) for m in steps] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    last = [ln for ln in err.splitlines() if ln.startswith("step 4/4 |")][0]
    for field in ("task_loss", "density", "target", "threshold", "lambda", "lr", "s/step",
                  "ETA 0s"):
        assert f" {field}" in last, last
    assert re.search(r"^eval step 2/4 \(masks at the current threshold\) \| eval_loss [0-9.]+", err, re.M), err
    assert re.search(r"^done: 4 steps in \d+s \|", err, re.M), err
    # The Trainer's own prints and bars are gone, from both streams.
    for text in (out, err):
        assert "{'loss'" not in text and "'learning_rate'" not in text
        assert "it/s]" not in text and "%|" not in text


def test_terminal_gets_a_bar_and_no_step_lines(tiny_dir, toy_data, tmp_path, capsys):
    """The terminal's view, through the CLI's own bar on a terminal console (the test's stderr
    is not a terminal, so the bar is registered here as ``training_display`` would)."""
    from nnprune.cli.common import CliConsole, TrainingBar, setup_logging
    from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune
    from nnprune.workflows.progress import progress_display

    from conftest import make_args

    setup_logging()
    screen = io.StringIO()
    bar = TrainingBar(CliConsole(file=screen, force_terminal=True, width=200, color_system=None))
    with progress_display(bar):
        fine_prune(make_args(
            FinePruneArgs, task="sst2", model=str(tiny_dir), output_dir=tmp_path / "run",
            method="hybrid-nt", target_density=0.5, data_dir=toy_data, max_steps=4,
            batch_size=8, max_seq_length=32, logging_steps=1, save_steps=100))
    err = capsys.readouterr().err
    drawn = screen.getvalue()
    assert "training" in drawn and "4/4" in drawn and "loss " in drawn and "density" in drawn
    assert bar.progress is None  # stopped at the end of training
    # The per-step lines were left to the bar; the end-of-run line is still logged (above the
    # bar: while it is drawn, stderr goes through its console).
    assert not re.search(r"step \d+/4 \| loss", drawn + err), drawn + err
    assert "done: 4 steps" in drawn + err
    # Out of the bar's lifetime, the step lines are logged again.
    import logging

    assert all(not h.filters for h in logging.getLogger("nnprune").handlers)


def test_progress_formats():
    from nnprune.workflows.progress import format_duration, step_fields

    assert [format_duration(s) for s in (0, 45.4, 60, 1052, 3600, 7530)] == [
        "0s", "45s", "1m00s", "17m32s", "1h00m", "2h05m"]
    logs = {"loss": 0.41234, "task_loss": 0.39, "pruning/density": 0.7312,
            "pruning/threshold": 0.41, "pruning/lambda_attention": 3.2,
            "pruning/lambda_ffn": 3.2, "learning_rate": 4.1e-05, "epoch": 0.3}
    assert " | ".join(step_fields(logs)) == (
        "loss 0.4123 | task_loss 0.39 | density 0.731 | threshold 0.41 | lambda 3.2 | lr 4.1e-05")
    logs["pruning/lambda_ffn"] = 1.5
    assert "lambda_attn 3.2 | lambda_ffn 1.5" in " | ".join(step_fields(logs))
    assert step_fields({"loss": 1.0}) == ["loss 1"]
