"""Training curves in a tracker (``--report-to``): a tiny fine-pruning run reports to
TensorBoard under its own folder, offline, and the event files hold the loss, the pruning scalars
of every logging step, the final evaluation and the measured speed (read back with TensorBoard's
own event reader); a tracker that is not installed is one line before any training."""

from __future__ import annotations

import pytest
from conftest import known_latency_table, make_args

from nnprune.errors import NNPruneError
from nnprune.measure.latency import LatencySetting
from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune
from nnprune.workflows.tracking import TENSORBOARD_DIR, run_name

pytest.importorskip("tensorboard")


def _scalars(folder):
    """Every scalar TensorBoard reads from the run in ``folder``: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(folder))
    mux.Reload()
    runs = mux.Runs()
    assert list(runs) == ["."], runs  # one run: the resumed or later event files join it
    acc = mux.GetAccumulator(".")
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _args(tiny_dir, toy_data, out, **kw) -> FinePruneArgs:
    base = dict(task="sst2", model=str(tiny_dir), output_dir=out, data_dir=toy_data,
                method="struct", max_steps=8, batch_size=8, learning_rate=1e-3,
                max_seq_length=16, logging_steps=1, save_steps=100, seed=3,
                latency=LatencySetting(batch_size=1, seq_len=16, threads=1),
                overrides=["mask_scores_learning_rate=0.5"], report_to="tensorboard")
    base.update(kw)
    return make_args(FinePruneArgs, **base)


def test_tensorboard_event_files_hold_the_pruning_scalars(tiny_dir, toy_data, tmp_path):
    out = tmp_path / "run"
    table = known_latency_table(tiny_dir, tmp_path / "table.json")
    result = fine_prune(_args(tiny_dir, toy_data, out, target_speedup=2.0, latency_table=table))
    board = out / TENSORBOARD_DIR
    assert board.is_dir() and not (out / "runs").exists()  # under the run's folder, one place
    scalars = _scalars(board)
    per_step = ["train/loss", "train/pruning/density", "train/pruning/density_attention",
                "train/pruning/density_ffn", "train/pruning/threshold",
                "train/pruning/scheduled_speedup", "train/pruning/predicted_speedup",
                "train/pruning/heads_kept", "train/pruning/ffn_dims_kept"]
    for tag in per_step:
        assert [s for s, _ in scalars[tag]] == list(range(1, 9)), tag  # every logging step
    # the schedule moves from the dense model to the target; the masks follow it
    scheduled = [v for _, v in scalars["train/pruning/scheduled_speedup"]]
    assert scheduled == sorted(scheduled) and scheduled[-1] == pytest.approx(2.0, rel=1e-4)
    heads = [v for _, v in scalars["train/pruning/heads_kept"]]
    assert heads[0] == 8 and heads[-1] < 8
    assert heads[-1] == sum(result.speed_check["heads_per_layer"])  # what the saved model has
    # the end of the run: the final evaluation and the measured speed, at the last step
    assert scalars["eval/final_accuracy"] == [(8, pytest.approx(result.metrics["accuracy"]))]
    assert scalars["eval/final_measured_speedup"] == [(8, pytest.approx(result.speed_check["measured"]))]
    assert scalars["eval/final_predicted_speedup"][0][1] == pytest.approx(result.speed_check["predicted"])


def test_lambda_and_target_density_curves_of_a_regularized_run(tiny_dir, toy_data, tmp_path):
    out = tmp_path / "run"
    fine_prune(_args(tiny_dir, toy_data, out, method="hybrid-nt", target_density=0.5, max_steps=6,
                     overrides=["attention_block=8x8", "mask_scores_learning_rate=0.5"]))
    scalars = _scalars(out / TENSORBOARD_DIR)
    for tag in ("train/pruning/lambda_attention", "train/pruning/lambda_ffn",
                "train/pruning/target_density", "train/pruning/heads_kept"):
        assert len(scalars[tag]) == 6, tag
    targets = [v for _, v in scalars["train/pruning/target_density"]]
    assert targets[-1] == pytest.approx(0.5) and targets[0] > targets[-1]
    assert "train/pruning/scheduled_speedup" not in scalars  # no speed target, no latency table


def test_no_tracker_writes_nothing_and_a_missing_one_is_refused_first(tiny_dir, toy_data, tmp_path):
    out = tmp_path / "quiet"
    fine_prune(_args(tiny_dir, toy_data, out, report_to="none", max_steps=2))
    assert not (out / TENSORBOARD_DIR).exists() and not (out / "runs").exists()
    pytest.importorskip("transformers.integrations")
    from transformers.integrations import is_wandb_available

    if is_wandb_available():
        pytest.skip("wandb is installed here")
    with pytest.raises(NNPruneError, match="--report-to wandb: the wandb package is not installed"):
        fine_prune(_args(tiny_dir, toy_data, tmp_path / "wandb", report_to="wandb"))
    assert not (tmp_path / "wandb").exists()
    with pytest.raises(NNPruneError, match="unknown tracker 'comet'"):
        _args(tiny_dir, toy_data, tmp_path / "c", report_to="comet")


def test_every_training_command_takes_report_to():
    from typer.testing import CliRunner

    from nnprune.cli.main import app

    for command in ("fine-prune", "fill", "prune"):
        res = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert "--report-to" in res.stdout, command


def test_runs_are_named_after_their_folders(tmp_path):
    assert run_name(tmp_path / "sweep" / "one-shot-x2-s42" / "run") == "one-shot-x2-s42/run"
    assert run_name(tmp_path / "runs" / "sst2-hybrid") == "runs/sst2-hybrid"
