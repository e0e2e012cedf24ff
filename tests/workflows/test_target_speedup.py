"""fine-prune --target-speedup on a tiny BERT: masks cut in latency units, the predicted and
measured speedups of the final model reported and saved."""

from __future__ import annotations

import json

import pytest
from conftest import known_latency_table as _table_file, make_args

from nnprune.errors import NNPruneError
from nnprune.measure.latency import LatencySetting
from nnprune.pruning_core.checkpoint import load_model
from nnprune.pruning_core.compact import model_layout
from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune

SETTING = LatencySetting(batch_size=1, seq_len=16, threads=1)  # the known table's


def _args(tiny_dir, toy_data, out, **kw) -> FinePruneArgs:
    base = dict(task="sst2", model=str(tiny_dir), output_dir=out, data_dir=toy_data,
                method="struct", max_steps=12, batch_size=8, learning_rate=1e-3,
                max_seq_length=16, logging_steps=4, save_steps=6, seed=3, latency=SETTING,
                overrides=["mask_scores_learning_rate=0.5"])
    base.update(kw)
    return make_args(FinePruneArgs, **base)


def test_struct_run_cuts_to_the_speedup_and_reports_it(tiny_dir, toy_data, tmp_path):
    out = tmp_path / "run"
    table = _table_file(tiny_dir, tmp_path / "table.json")
    result = fine_prune(_args(tiny_dir, toy_data, out, target_speedup=2.0, latency_table=table))
    check = result.speed_check
    assert check is not None and check["setting"]["seq_len"] == 16
    heads, dims = check["heads_per_layer"], check["ffn_dims_per_layer"]
    # What was kept fits the budget (22.8 / 2 = 11.4 ms) by the table's costs, and compaction
    # removed exactly what the pruner's cut decided.
    predicted_ms = 2.0 + sum(heads) + 0.1 * sum(dims)
    assert predicted_ms <= 11.4 + 0.1 * 7 * 2  # FFN widths padded to multiples of 8
    assert check["predicted"] == pytest.approx(22.8 / predicted_ms)
    loaded = load_model(out)
    assert loaded.pruner.predicted_speedup() >= 2.0
    assert check["measured"] > 0
    saved = json.loads((out / "nnprune_config.json").read_text())
    assert saved["pruning"]["target_speedup"] == 2.0
    assert saved["latency_table"]["model"]["fixed_ms"] == 2.0
    assert saved["training"]["latency"]["seq_len"] == 16
    results = json.loads((out / "nnprune_results.json").read_text())
    assert results["speed_check"]["predicted"] == check["predicted"]


def test_hybrid_filled_checks_the_filled_model(tiny_dir, toy_data, tmp_path):
    out = tmp_path / "filled"
    table = _table_file(tiny_dir, tmp_path / "table.json")
    teacher = str(tiny_dir)
    result = fine_prune(_args(tiny_dir, toy_data, out, method="hybrid-filled", teacher=teacher,
                              target_speedup=1.6, latency_table=table, fill_max_steps=4,
                              overrides=["attention_block=8x8", "mask_scores_learning_rate=0.5"]))
    check = result.speed_check
    layout = model_layout(load_model(out).model)["stacks"]["encoder"]
    assert check["heads_per_layer"] == layout["attention"]["self"]["heads"]
    assert 2.0 + sum(check["heads_per_layer"]) + 0.1 * sum(check["ffn_dims_per_layer"]) <= 22.8 / 1.6 + 1.4
    assert json.loads((out / "nnprune_results.json").read_text())["speed_check"] == check


def test_a_table_of_another_architecture_is_refused(tiny_dir, toy_data, tmp_path):
    from conftest import tiny_config

    other = tmp_path / "wide"
    cfg = tiny_config(intermediate_size=128)
    cfg.architectures = ["BertForSequenceClassification"]
    cfg.save_pretrained(other)
    table = _table_file(other, tmp_path / "table.json")
    with pytest.raises(NNPruneError, match="another architecture"):
        fine_prune(_args(tiny_dir, toy_data, tmp_path / "x", target_speedup=2.0,
                         latency_table=table))
    with pytest.raises(NNPruneError, match="beyond reach"):
        fine_prune(_args(tiny_dir, toy_data, tmp_path / "y", target_speedup=20.0,
                         latency_table=_table_file(tiny_dir, tmp_path / "t2.json")))


def test_fill_recuts_a_pruned_checkpoint_to_the_speedup(tiny_dir, toy_data, tmp_path):
    from nnprune.workflows.fill import FillArgs, fill

    pruned = tmp_path / "pruned"
    # pruned by density, far slower than 2x by the table
    fine_prune(_args(tiny_dir, toy_data, pruned, target_density=0.9, max_steps=6))
    table = _table_file(tiny_dir, tmp_path / "table.json")
    out = tmp_path / "filled"
    result = fill(make_args(FillArgs, checkpoint=pruned, task="sst2", output_dir=out,
                            teacher=str(tiny_dir), target_speedup=2.0, latency=SETTING,
                            latency_table=table, data_dir=toy_data, max_steps=2, batch_size=8,
                            max_seq_length=16, save_steps=100))
    check = result.speed_check
    heads, dims = check["heads_per_layer"], check["ffn_dims_per_layer"]
    assert 2.0 + sum(heads) + 0.1 * sum(dims) <= 11.4 + 1.4  # FFN padded to multiples of 8
    assert check["predicted"] >= 2.0 / 1.15
    layout = model_layout(load_model(out).model)["stacks"]["encoder"]
    assert layout["attention"]["self"]["heads"] == heads
    # a movement (topK) checkpoint has no threshold to re-cut; a plain one has no scores at all
    movement = tmp_path / "movement"
    fine_prune(_args(tiny_dir, toy_data, movement, method="movement", target_density=0.5,
                     max_steps=2, overrides=[]))
    with pytest.raises(NNPruneError, match="needs a threshold binarizer.*uses topk"):
        fill(make_args(FillArgs, checkpoint=movement, task="sst2", output_dir=tmp_path / "m2",
                       teacher=str(tiny_dir), target_speedup=2.0, latency=SETTING,
                       latency_table=table, data_dir=toy_data, max_steps=1))
    with pytest.raises(NNPruneError, match="re-cuts a fine-pruned \\(masked\\)"):
        fill(make_args(FillArgs, checkpoint=out, task="sst2", output_dir=tmp_path / "again",
                       teacher=str(tiny_dir), target_speedup=2.0, latency=SETTING,
                       latency_table=table, data_dir=toy_data, max_steps=1))


def test_a_speedup_target_turns_the_sparsity_penalty_off_unless_set():
    """The latency cut sets the masks; the preset's L1 penalty (lambda 20, raised by the density
    controller) would otherwise drown the movement signal. An explicit --set still wins."""
    from nnprune.pruning_core.methods import build_config

    assert build_config("hybrid-filled", teacher="t").attention_lambda == 20.0
    cut = build_config("hybrid-filled", teacher="t", target_speedup=2.0)
    assert (cut.attention_lambda, cut.ffn_lambda) == (0.0, 0.0)
    kept = build_config("struct", target_speedup=2.0, overrides={"ffn_lambda": 5.0})
    assert (kept.attention_lambda, kept.ffn_lambda) == (0.0, 5.0)
    assert build_config("struct", target_density=0.5).ffn_lambda == 20.0
