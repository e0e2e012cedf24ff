"""The run record (``nnprune_config.json``, ``nnprune_results.json``) as types: every file nnprune
wrote before the schema version (v0, real runs: ``fixtures/run_records``) loads into them without
losing a key, and the model card, ``evaluate``, ``prune --resume`` and ``fill`` read the same from
them as the code that wrote them did (``fixtures/run_records/golden``); a newer schema is refused,
unknown keys are kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_record_fixtures import RUNS, V0, materialize, v0_names

from nnprune.errors import NNPruneError
from nnprune.pruning_core.run_record import (SCHEMA_VERSION, BeforePruning, FillResult,
                                             FinePruneResult, PruneResult, RunConfig, Stage,
                                             read_config, read_results, results_from_dict,
                                             update_results, write_config, write_results)

GOLDEN = V0.parent / "golden"
NAMES = v0_names()


def _contains(old, new, where="") -> None:
    """Every key and value of ``old`` is in ``new`` (which may add keys)."""
    if isinstance(old, dict):
        assert isinstance(new, dict), where
        for k, v in old.items():
            assert k in new, f"{where}.{k} was dropped"
            _contains(v, new[k], f"{where}.{k}")
    elif isinstance(old, list):
        assert isinstance(new, list) and len(old) == len(new), where
        for i, (a, b) in enumerate(zip(old, new)):
            _contains(a, b, f"{where}[{i}]")
    else:
        assert old == new, (where, old, new)


def _unrooted(obj, root: Path):
    return json.loads(json.dumps(obj, default=str).replace(str(root), RUNS))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Every v0 folder laid out with weights, under one run folder."""
    return materialize(tmp_path_factory.mktemp("v0") / "runs")


def test_the_fixtures_cover_every_kind_of_run():
    assert {"dense", "hybrid", "hybrid_speedup", "hybrid_speedup/checkpoint-6", "hybrid_filled",
            "hybrid_filled/prune", "fill", "prune", "prune_then_fill", "prune_then_fill/prune",
            "auto", "auto/prune", "auto_hybrid", "auto_hybrid/prune", "bertarized",
            "text_classification"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_v0_record_loads_into_the_types_and_keeps_every_key(name, tmp_path):
    folder = V0 / name
    old = json.loads((folder / "nnprune_config.json").read_text())
    record = read_config(folder)
    assert isinstance(record, RunConfig) and record.extra == {}  # every v0 key is a field
    _contains(old, record.to_dict())
    assert RunConfig.from_dict(record.to_dict()) == record
    if (folder / "nnprune_results.json").is_file():
        results = read_results(folder)
        assert results.extra == {}
        _contains(json.loads((folder / "nnprune_results.json").read_text()), results.to_dict())
        assert results_from_dict(results.to_dict()) == results
    # written back: version 1, read back the same
    write_config(tmp_path, record)
    assert json.loads((tmp_path / "nnprune_config.json").read_text())["schema_version"] == 1
    assert read_config(tmp_path) == record


def test_v0_records_read_as_what_made_them():
    auto = read_config(V0 / "auto")
    assert [s.stage for s in auto.stages] == [Stage.PRUNE, Stage.FILL]
    assert auto.auto.training.value("method") == "auto" and auto.auto.route["route"] == "one-shot"
    assert isinstance(auto.results, FillResult) and isinstance(auto.results.prune, BeforePruning)
    assert isinstance(read_results(V0 / "auto" / "prune"), PruneResult)
    pruned = read_config(V0 / "prune")
    assert pruned.post_training.options.value("target_flops") == 0.5
    assert pruned.training.max_seq_length == 16 and not pruned.masked
    hybrid = read_config(V0 / "hybrid_speedup")
    assert hybrid.masked and hybrid.pruning.target_speedup == 1.6
    assert hybrid.latency_table.model.fixed_ms == 2.0 and hybrid.latency_table.key is not None
    ckpt = read_config(V0 / "hybrid_speedup" / "checkpoint-6")
    assert ckpt.latency_table.model.fixed_ms == 2.0 and ckpt.latency_table.key is None
    dense = read_results(V0 / "dense")
    assert type(dense) is FinePruneResult and dense.density == 1.0
    assert read_config(V0 / "bertarized").bertarized_from == f"{RUNS}/hybrid"
    assert read_config(V0 / "text_classification").training.task_options["labels"] == "neg,pos"


def test_a_newer_schema_is_refused_and_unknown_keys_are_kept(tmp_path):
    data = json.loads((V0 / "hybrid" / "nnprune_config.json").read_text())
    (tmp_path / "nnprune_config.json").write_text(json.dumps({**data, "schema_version": 2}))
    with pytest.raises(NNPruneError, match=r"newer nnprune \(run record schema 2; this one reads "
                                           r"up to 1\): upgrade nnprune"):
        read_config(tmp_path)
    # a key this version does not know (a later one added it), at the top and nested
    data["results"]["energy_joules"] = 12.5
    (tmp_path / "nnprune_config.json").write_text(json.dumps({**data, "notes": ["by hand"]}))
    record = read_config(tmp_path)
    assert record.extra == {"notes": ["by hand"]} and record.results.extra == {"energy_joules": 12.5}
    write_config(tmp_path, record)
    again = json.loads((tmp_path / "nnprune_config.json").read_text())
    assert again["notes"] == ["by hand"] and again["results"]["energy_joules"] == 12.5


@pytest.mark.parametrize("text, message", [
    ("{not json", "is corrupted"),
    ("[1, 2]", "holds no JSON object"),
    ('{"schema_version": "one"}', "is corrupted: schema_version 'one'"),
    ('{"masked": true}', "a masked checkpoint's record needs its pruning config"),
    ('{"pruning": {"method": "x", "bogus": 1}}', r"unknown pruning config key\(s\): bogus"),
    ('{"stages": [{"checkpoint": "c"}]}', r"run config.stages\[0\] has no 'stage'"),
    ('{"stages": [{"stage": "grow"}]}', r"nnprune_config.json is not a valid nnprune run config: "
                                        r"unknown run config.stages\[0\].stage 'grow'"),
    ('{"results": {"main_metric": "a", "metrics_before": 3}}',
     "run config.results.metrics_before must be a mapping"),
])
def test_a_bad_record_is_a_one_line_error(text, message, tmp_path):
    (tmp_path / "nnprune_config.json").write_text(text)
    with pytest.raises(NNPruneError, match=message) as err:
        read_config(tmp_path)
    assert "\n" not in str(err.value)


def test_results_are_written_with_their_kind_and_updated_in_place(tmp_path):
    results = read_results(V0 / "hybrid")
    write_results(tmp_path, results)
    data = json.loads((tmp_path / "nnprune_results.json").read_text())
    assert data["schema_version"] == SCHEMA_VERSION and data["kind"] == "fine_prune"
    update_results(tmp_path, route={"route": "one-shot"})
    assert read_results(tmp_path).route == {"route": "one-shot"}
    with pytest.raises(NNPruneError, match="no results to add to"):
        update_results(tmp_path / "none", route=None)


# ------------------------------------------------------------------- readers, as before
@pytest.mark.parametrize("name", NAMES)
def test_the_model_card_of_a_v0_folder_is_what_it_was(runs, name):
    from nnprune.report.card import write_card

    card = write_card(runs / name, seq_len=16)
    expected = (GOLDEN / "cards" / (name.replace("/", "__") + ".md")).read_text()
    # commands wrap by the length of their paths: compare them unwrapped
    unwrapped = card.card.read_text().replace(" \\\n    ", " ")
    assert unwrapped.replace(str(runs), RUNS) == expected.replace(" \\\n    ", " ")


def test_evaluate_prune_and_fill_read_v0_folders_as_before(runs):
    from nnprune.pruning_core.checkpoint import checkpoint_kind
    from nnprune.report.card import teacher_results
    from nnprune.workflows.evaluate import training_max_seq_length, training_task_options
    from nnprune.workflows.fill import fresh_data_order
    from nnprune.workflows.options import TrainingOptions
    from nnprune.workflows.prune import saved_result

    golden = json.loads((GOLDEN / "readers.json").read_text())
    for name in NAMES:
        f, want = runs / name, golden[name]
        record = read_config(f)
        assert checkpoint_kind(f).value == want["kind"], name
        assert training_max_seq_length(f) == want["training_max_seq_length"], name
        assert training_task_options(f, record.task or "sst2") == want["training_task_options"]
        saved = saved_result(f)
        assert (saved is None) == (want["saved_result"] is None), name
        if saved is not None:
            _contains(want["saved_result"], _unrooted(saved.to_dict(), runs), name)
        assert fresh_data_order(TrainingOptions(seed=3), record.training).data_seed == \
            want["fill_data_seed"], name
        teacher = teacher_results(str(f))
        assert (teacher is None) == (want["teacher_results_of_folder"] is None), name
        if teacher is not None:
            _contains(want["teacher_results_of_folder"], _unrooted(teacher.to_dict(), runs), name)


def test_a_v0_masked_checkpoint_with_a_speed_target_loads_its_latency_cut(runs):
    from nnprune.pruning_core.checkpoint import load_model

    loaded = load_model(runs / "hybrid_speedup")
    assert loaded.is_masked and loaded.pruner.latency_cut is not None
    assert loaded.record.pruning.target_speedup == 1.6


def test_evaluate_takes_the_task_options_a_v0_folder_recorded(tmp_path):
    from nnprune.workflows.evaluate import evaluate_checkpoint

    root = materialize(tmp_path / "runs", ["text_classification"], tokenizer=True)
    rows = ["review,stars"] + [f"the film was {'great' if i % 2 else 'awful'},"
                               f"{'pos' if i % 2 else 'neg'}" for i in range(16)]
    (tmp_path / "dev.csv").write_text("\n".join(rows) + "\n")
    result = evaluate_checkpoint("text-classification", root / "text_classification",
                                 validation_file=tmp_path / "dev.csv", batch_size=8)
    assert result.num_examples == 16 and result.max_seq_length == 16
    assert 0.0 <= result.metrics["accuracy"] <= 1.0


def test_fill_continues_a_v0_folder_and_carries_its_record_on(tmp_path, toy_data):
    from conftest import make_args

    from nnprune.workflows.fill import FillArgs, fill

    root = materialize(tmp_path / "runs", ["dense", "hybrid"], tokenizer=True)
    out = tmp_path / "filled"
    fill(make_args(FillArgs, checkpoint=root / "hybrid", task="sst2", output_dir=out,
                   teacher=str(root / "dense"), data_dir=toy_data, max_steps=2, batch_size=8,
                   logging_steps=1))
    old = read_config(root / "hybrid")
    record = read_config(out)
    prune_stage = record.stages[0]
    assert prune_stage.stage is Stage.PRUNE and prune_stage.masked
    assert (prune_stage.pruning, prune_stage.training, prune_stage.results) == (
        old.pruning, old.training, old.results)
    assert record.results.prune == old.results and record.base_model == old.base_model
    # the recorded sequence length, and another data order than the recorded run's seed 3
    assert record.training.max_seq_length == 16 and record.training.value("data_seed") is None
    assert json.loads((out / "nnprune_config.json").read_text())["schema_version"] == 1
