"""fine-prune --method auto (the default with --target-speedup): the route chosen by the model
and the budget, run end to end on a tiny BERT, and the choice recorded."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import (kill_after, known_latency_table as _table_file, make_args,
                      resumed_like_unbroken, torchrun2)

from nnprune.errors import NNPruneError
from nnprune.measure.latency import LatencySetting
from nnprune.pruning_core.checkpoint import load_model, read_state_dict
from nnprune.pruning_core.compact import model_layout
from nnprune.tasks import get_task
from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune, requested_method
from nnprune.workflows.options import TrainingOptions
from nnprune.workflows.route import (ONE_SHOT_MAX_EXAMPLES, Route, budget_of, choose_route,
                                     has_task_head)

SST2 = get_task("sst2")
SETTING = LatencySetting(batch_size=1, seq_len=16, threads=1)  # the known table's
HEADED = {"architectures": ["BertForSequenceClassification"], "num_labels": 2}
BASE = {"architectures": ["BertModel"]}


def _no_count() -> int:
    raise AssertionError("a budget in steps must not count the training set")


def _budget(steps: int, fill_steps: int, batch: int = 32):
    return budget_of(TrainingOptions(max_steps=steps, batch_size=batch),
                     TrainingOptions(max_steps=fill_steps, batch_size=batch), _no_count)


def test_budget_counts_both_stages_and_one_shot_gets_all_of_it():
    b = _budget(300, 300)
    assert b.examples == 600 * 32 and b.epochs is None
    assert b.one_shot().max_steps == 600
    # in epochs, the training set is counted once, and one-shot distils for both stages' epochs
    calls = []
    e = budget_of(TrainingOptions(epochs=1.0), TrainingOptions(epochs=0.5),
                  lambda: calls.append(1) or 1000)
    assert (e.examples, e.epochs, len(calls)) == (1500, 1.5, 1)
    assert e.one_shot().epochs == 1.5 and e.one_shot().max_steps is None
    # mixed: one-shot trains the same number of examples, in steps
    m = budget_of(TrainingOptions(max_steps=10, batch_size=8), TrainingOptions(epochs=1.0, batch_size=8),
                  lambda: 100)
    assert m.examples == 180 and m.one_shot().max_steps == 23
    # on 4 processes every step sees 4 batches
    assert budget_of(TrainingOptions(max_steps=10, batch_size=8), TrainingOptions(max_steps=10, batch_size=8),
                     _no_count, world_size=4).examples == 640


def test_short_budget_on_a_fine_tuned_model_goes_one_shot_and_long_fine_prunes():
    short = choose_route(SST2, "ckpt", HEADED, _budget(300, 300))
    assert short.route is Route.ONE_SHOT and short.teacher == "ckpt" and short.fine_tuned
    steps = ONE_SHOT_MAX_EXAMPLES // 32
    long = choose_route(SST2, "ckpt", HEADED, _budget(steps, steps), teacher="dense")
    assert long.route is Route.HYBRID_FILLED and long.teacher == "dense"
    assert "beyond" in long.reason and long.to_dict()["route"] == "hybrid-filled"


def test_a_base_model_fine_prunes_from_a_teacher_or_is_refused():
    assert not has_task_head(SST2, BASE)
    assert not has_task_head(SST2, {**HEADED, "num_labels": 3})  # another label set
    assert choose_route(SST2, "base", BASE, _budget(10, 10), teacher="dense").route is Route.HYBRID_FILLED
    with pytest.raises(NNPruneError, match="no trained sst2 head.*--teacher"):
        choose_route(SST2, "base", BASE, _budget(10, 10))


def test_auto_is_the_default_with_a_speed_target_only(tmp_path):
    args = FinePruneArgs(task="sst2", model="m", output_dir=tmp_path, target_speedup=2.0)
    assert requested_method(args) == "auto"
    assert requested_method(FinePruneArgs(task="sst2", model="m", output_dir=tmp_path)) == "hybrid-nt"
    assert requested_method(FinePruneArgs(task="sst2", model="m", output_dir=tmp_path,
                                          target_speedup=2.0, method="struct")) == "struct"
    file = tmp_path / "c.json"
    file.write_text(json.dumps({"method": "struct"}))
    assert requested_method(FinePruneArgs(task="sst2", model="m", output_dir=tmp_path,
                                          target_speedup=2.0, config_file=file)) == "struct"
    file.write_text(json.dumps({"target_speedup": 2.0}))
    assert requested_method(FinePruneArgs(task="sst2", model="m", output_dir=tmp_path,
                                          config_file=file)) == "auto"


def _auto_args(model, toy_data, out, **kw) -> FinePruneArgs:
    base = dict(task="sst2", model=str(model), output_dir=out, data_dir=toy_data,
                target_speedup=2.0, max_steps=4, batch_size=8, learning_rate=1e-3,
                max_seq_length=16, logging_steps=2, save_steps=100, seed=3, latency=SETTING)
    base.update(kw)
    return make_args(FinePruneArgs, **base)


def test_auto_one_shot_prunes_compacts_and_distils_for_the_whole_budget(tiny_dir, toy_data, tmp_path):
    out = tmp_path / "auto"
    table = _table_file(tiny_dir, tmp_path / "table.json")
    result = fine_prune(_auto_args(tiny_dir, toy_data, out, latency_table=table))
    assert result.route["route"] == "one-shot" and result.route["teacher"] == str(tiny_dir)
    assert result.steps == 8  # the pruning stage's 4 steps and the fill stage's 4
    check = result.speed_check
    # the final model is the one-shot cut: within the table's budget (22.8 / 2 ms)
    assert 2.0 + sum(check["heads_per_layer"]) + 0.1 * sum(check["ffn_dims_per_layer"]) <= 11.4 * 1.01
    layout = model_layout(load_model(out).model)["stacks"]["encoder"]
    assert layout["attention"]["self"]["heads"] == check["heads_per_layer"]
    pruned = json.loads((out / "prune" / "nnprune_config.json").read_text())
    assert pruned["post_training"]["predicted_speedup"] >= 2.0 / 1.01
    saved = json.loads((out / "nnprune_results.json").read_text())
    assert saved["route"] == result.route and saved["speed_check"] == check
    # the model card's reproduce command is the auto command, not its stages
    from nnprune.pruning_core.run_record import read_config
    from nnprune.report.card import reproduce_commands

    (command,) = reproduce_commands(read_config(out), out)
    assert "nnprune fine-prune sst2" in command and "--method auto" in command
    assert "--target-speedup 2" in command and "--max-steps 4" in command
    # options only fine-pruning has are refused, not dropped
    with pytest.raises(NNPruneError, match="--set configure fine-pruning.*--method hybrid-filled"):
        fine_prune(_auto_args(tiny_dir, toy_data, tmp_path / "x", latency_table=table,
                              overrides=["attention_block=8x8"]))
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"target_speedup": 2.0, "final_threshold": 0.2}))
    with pytest.raises(NNPruneError, match="--config's final_threshold configure fine-pruning"):
        fine_prune(_auto_args(tiny_dir, toy_data, tmp_path / "z", latency_table=table,
                              target_speedup=None, config_file=recipe))
    assert not (tmp_path / "z").exists()
    with pytest.raises(NNPruneError, match="unknown method 'autoo'; known: auto, block, dense"):
        fine_prune(_auto_args(tiny_dir, toy_data, tmp_path / "w", method="autoo"))
    with pytest.raises(NNPruneError, match="--method auto chooses the route to a --target-speedup"):
        fine_prune(_auto_args(tiny_dir, toy_data, tmp_path / "y", method="auto",
                              target_speedup=None, target_density=0.5))


def test_auto_one_shot_killed_mid_fill_resumes_where_an_unbroken_run_ends(tiny_dir, toy_data,
                                                                         tmp_path):
    out = tmp_path / "auto"
    table = _table_file(tiny_dir, tmp_path / "table.json")
    full = fine_prune(_auto_args(tiny_dir, toy_data, out, latency_table=table, save_steps=2))
    assert full.route["route"] == "one-shot" and full.steps == 8
    unbroken = read_state_dict(out)
    pruned_at = (out / "prune" / "model.safetensors").stat().st_mtime_ns
    kill_after(out, 6)  # the Trainer keeps the last two checkpoints
    resumed = fine_prune(_auto_args(tiny_dir, toy_data, out, latency_table=table, save_steps=2,
                                    resume=True))
    assert (out / "prune" / "model.safetensors").stat().st_mtime_ns == pruned_at
    assert resumed.route == full.route and resumed.metrics == full.metrics
    resumed_like_unbroken(out, unbroken, 8)


def test_auto_fine_prunes_a_base_model_from_its_teacher(tiny_dir, toy_data, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_dir, base)
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "architectures": ["BertModel"]}))
    out = tmp_path / "auto"
    result = fine_prune(_auto_args(base, toy_data, out, teacher=str(tiny_dir), target_speedup=1.6,
                                   latency_table=_table_file(tiny_dir, tmp_path / "t.json")))
    assert result.route["route"] == "hybrid-filled" and not result.route["fine_tuned"]
    stage = json.loads((out / "prune" / "nnprune_config.json").read_text())
    assert stage["pruning"]["method"] == stage["training"]["method"] == "hybrid-filled"
    assert result.speed_check["predicted"] >= 1.6 / 1.15


@pytest.mark.skipif(not shutil.which("torchrun"), reason="torchrun not installed")
def test_every_process_gets_the_main_process_answer(tmp_path):
    """What a latency table goes through under torchrun: measured once, the same everywhere (two
    processes measuring on one machine would disturb each other and cut different masks)."""
    script = tmp_path / "answer.py"
    # One file per process: two processes printing to one pipe interleave their words
    script.write_text(
        "import os\n"
        "from pathlib import Path\n"
        "from nnprune.errors import NNPruneError\n"
        "from nnprune.workflows.training import barrier, from_main_process\n"
        "lines = [f'answer {from_main_process(lambda: os.environ[\"RANK\"])}']\n"
        "def bad():\n"
        "    raise NNPruneError('no table')\n"
        "try:\n"
        "    from_main_process(bad)\n"
        "except NNPruneError as exc:\n"
        "    lines.append(f'error {exc}')\n"
        "Path(f'rank-{os.environ[\"RANK\"]}.txt').write_text('\\n'.join(lines))\n"
        "barrier()\n")
    proc = torchrun2([str(script)], tmp_path, 29531)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        assert (tmp_path / f"rank-{rank}.txt").read_text().splitlines() == ["answer 0", "error no table"]


@pytest.mark.skipif(not shutil.which("torchrun"), reason="torchrun not installed")
def test_auto_one_shot_under_torchrun(tiny_dir, toy_data, tmp_path):
    """The main process prunes, the other waits; both distil: 2 processes x batch 4 x 4 steps."""
    out = tmp_path / "ddp"
    table = _table_file(tiny_dir, tmp_path / "table.json")
    proc = torchrun2(["-m", "nnprune", "fine-prune", "sst2", "--model", str(tiny_dir),
                      "--output-dir", str(out), "--data-dir", str(toy_data), "--target-speedup", "2",
                      "--latency-table", table, "--latency-batch-size", "1", "--latency-seq-len", "16",
                      "--latency-threads", "1", "--max-steps", "2", "--batch-size", "4",
                      "--max-seq-length", "16", "--save-steps", "100", "--json"], tmp_path, 29533)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "nnprune_results.json").read_text())
    assert results["route"]["route"] == "one-shot" and results["route"]["examples"] == 2 * 2 * 2 * 4
    # --json: one document on stdout, the main process's (the other prints nothing)
    assert json.loads(proc.stdout)["route"] == results["route"]
    assert results["steps"] == 4 and results["speed_check"]["predicted"] >= 2.0 / 1.01
    assert (out / "prune" / "model.safetensors").is_file() and load_model(out).model is not None
