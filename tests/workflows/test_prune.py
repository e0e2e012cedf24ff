"""``nnprune prune``: post-training pruning of a fine-tuned checkpoint end to end (tiny BERT, toy
SST-2): the FLOP target is met, the output is compacted exactly, reloads with stock transformers,
records how it was made; bad input is a one-line error."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch
from conftest import (kill_after, resumed_like_unbroken, save_tiny_model, stock_reload_diffs,
                      write_probe, write_toy_sst2)
from typer.testing import CliRunner

from nnprune.errors import NNPruneError
from nnprune.pruning_core.checkpoint import load_model, read_state_dict
from nnprune.workflows.prune import PRUNE_TRAINING, PruneArgs, prune


def _args(**kw) -> PruneArgs:
    """``PruneArgs`` from flat keywords: the training options among them go to ``training``,
    on prune's defaults."""
    names = set(PRUNE_TRAINING.names())
    training = replace(PRUNE_TRAINING, **{k: kw.pop(k) for k in list(kw) if k in names})
    return PruneArgs(training=training, **kw)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("prune")
    return save_tiny_model(root / "model"), write_toy_sst2(root / "data", n_train=96, n_dev=32)


def test_prune_meets_the_target_compacts_and_reloads_with_stock_transformers(setup, tmp_path):

    from nnprune.measure.counting import count_parameters
    from nnprune.measure.flops import flop_profile
    from nnprune.pruning_core.checkpoint import load_model
    from nnprune.pruning_core.compact import model_outputs, probe_inputs

    model_dir, data = setup
    out = tmp_path / "pruned"
    result = prune(_args(checkpoint=str(model_dir), task="sst2", output_dir=out,
                             target_flops=0.5, data_dir=data, calibration_samples=64,
                             max_seq_length=32, speed_probe=False))
    # the FLOP target: the whole forward (batch 1, 32 tokens) at most half the dense one
    assert result.predicted_by == "flops" and result.predicted_speedup >= 2.0
    assert result.heads_kept < result.heads_total and result.ffn_dims_kept < result.ffn_dims_total
    reloaded = load_model(out).model
    dense = load_model(model_dir).model
    measured = flop_profile(dense).count(1, 32).total / flop_profile(reloaded).count(1, 32).total
    # FFN sizes are chosen as multiples of 8: no padding, the prediction is the compacted model's
    assert measured == pytest.approx(result.predicted_speedup, rel=1e-6)
    assert all(n % 8 == 0 for n in result.ffn_dims_per_layer)
    assert result.exactness <= 1e-4
    count = count_parameters(reloaded)
    assert sum(k for lc in count.layers for k, _ in lc.heads.values()) == result.heads_kept
    info = json.loads((out / "nnprune_config.json").read_text())
    assert info["post_training"]["options"]["target_flops"] == 0.5
    # classification: no least-squares tuning unless asked (it cost SST-2 accuracy)
    assert info["post_training"]["method"] == "fisher+search+width+depth+rearrange" and not result.tune_error
    assert info["post_training"]["calibration_examples"] == 64
    assert set(result.metrics_before) == set(result.metrics_after) >= {"accuracy"}

    # the in-memory pruned model's logits == stock transformers' reload, without nnprune
    inputs = probe_inputs(result.model.config)
    ref = model_outputs(result.model, inputs)
    write_probe(out, inputs, ref)
    diffs = stock_reload_diffs([(str(out), "AutoModelForSequenceClassification")], tmp_path)
    assert diffs[str(out)] <= 1e-4


def test_target_speedup_is_met_by_the_latency_table(setup, tmp_path):
    from nnprune.measure.latency import LatencySetting, LatencyTable, table_key
    from nnprune.pruning_core.latency_model import LatencyModel
    from nnprune.pruning_core.checkpoint import load_config

    model_dir, data = setup
    # tiny BERT: 2 layers, 4 heads, FFN 64. A head costs 1 ms, the first 32 FFN dims 0.05 ms
    # each and the next 32 0.15 ms each (not a line), 2 ms fixed: dense 2 + 2 * (4 + 6.4).
    lm = LatencyModel(2, 4, 64, (0, 1, 2, 3, 4), (0.0, 1.0, 2.0, 3.0, 4.0), (0, 32, 64),
                      (0.0, 1.6, 6.4), 2.0)
    setting = LatencySetting(batch_size=1, seq_len=32, threads=1)
    table = tmp_path / "table.json"
    table.write_text(json.dumps(LatencyTable(table_key(load_config(str(model_dir)), setting),
                                             lm).to_dict()))
    out = tmp_path / "pruned"
    result = prune(_args(checkpoint=str(model_dir), task="sst2", output_dir=out,
                             target_speedup=2.0, data_dir=data, calibration_samples=64,
                             max_seq_length=32, latency=setting, latency_table=table,
                             speed_probe=False))
    assert result.predicted_by == "latency table"
    predicted = lm.speedup(result.heads_per_layer, result.ffn_dims_per_layer)
    assert result.predicted_speedup == pytest.approx(predicted)
    assert predicted >= 2.0 / (1 + 0.005)  # the table's price of the mask fits the budget
    info = json.loads((out / "nnprune_config.json").read_text())
    assert info["latency_table"]["model"]["ffn_ms"] == [0.0, 1.6, 6.4]
    assert info["post_training"]["speed_setting"]["seq_len"] == 32


def test_prune_cli_then_fill_writes_both_stages(setup, tmp_path):
    from nnprune.cli.main import app

    model_dir, data = setup
    out = tmp_path / "run"
    res = CliRunner().invoke(app, [
        "prune", str(model_dir), "sst2", "--output-dir", str(out), "--target-flops", "0.6",
        "--data-dir", str(data), "--calibration-samples", "48", "--max-seq-length", "32",
        "--no-speed-probe", "--then-fill", "2", "--json-file", str(tmp_path / "r.json")],
        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["metrics_filled"] is not None and "accuracy" in payload["metrics_filled"]
    assert (out / "prune" / "config.json").is_file() and (out / "config.json").is_file()
    stages = json.loads((out / "nnprune_config.json").read_text())["stages"]
    assert [s["stage"] for s in stages] == ["prune", "fill"]


def test_prune_cli_measured_target_records_every_candidate_timed(setup, tmp_path):
    """``--measured-target``: the result's measured speedup is the taken candidate's, every
    candidate is recorded with the table's prediction beside it, and the table shows them."""
    import nnprune
    from nnprune.cli.main import app
    from nnprune.pruning_core.checkpoint import load_config

    model_dir, data = setup
    table = nnprune.latency_table(load_config(str(model_dir)), batch_size=1, seq_len=32, threads=1,
                                  budget_s=2.0, cache_dir=tmp_path / "cache")
    (tmp_path / "table.json").write_text(json.dumps(table.to_dict()))
    res = CliRunner().invoke(app, [
        "prune", str(model_dir), "sst2", "--output-dir", str(tmp_path / "run"),
        "--target-speedup", "1.3", "--measured-target", "--latency-table",
        str(tmp_path / "table.json"), "--latency-threads", "1", "--data-dir", str(data),
        "--calibration-samples", "48", "--max-seq-length", "32", "--json-file",
        str(tmp_path / "r.json")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    payload = json.loads((tmp_path / "r.json").read_text())
    rounds = payload["speed_rounds"]
    assert rounds and [r["taken"] for r in rounds].count(True) == 1
    assert payload["measured_speedup"] == next(r["measured"] for r in rounds if r["taken"])
    assert all(r["predicted"] > 1 and r["measured"] > 0 for r in rounds)
    assert "candidate 1" in res.output and "measured speedup (target" in res.output
    options = json.loads((tmp_path / "run" / "nnprune_config.json").read_text())
    assert options["post_training"]["options"]["measured_target"] is True


def test_a_pruned_model_is_pruned_again_against_the_dense_model(setup, tmp_path, capsys):
    """Pruning in steps: ``prune`` of its own compacted output cuts deeper, the target and the
    speed probe counting against the dense model (not the first cut); the second cut's model
    reloads in stock transformers; an output whose stream was narrowed is refused in one line."""
    from nnprune.cli.main import main
    from nnprune.cli.prune import result_rows
    from nnprune.measure.flops import flop_profile
    from nnprune.pruning_core.compact import model_outputs, probe_inputs

    model_dir, data = setup
    common = dict(task="sst2", data_dir=data, calibration_samples=64, max_seq_length=32)
    first = prune(_args(checkpoint=str(model_dir), output_dir=tmp_path / "x2", target_flops=0.5,
                        width_depth=False, speed_probe=False, **common))
    second = prune(_args(checkpoint=str(tmp_path / "x2"), output_dir=tmp_path / "x4",
                         target_flops=0.25, width_depth=False, **common))
    # "before" is the model it was given, and says so
    assert second.metrics_before == first.metrics_after and second.pruned_before
    assert not first.pruned_before
    assert dict(result_rows(second))["accuracy before (pruned before)"] == first.metrics_after["accuracy"]
    assert second.heads_kept <= first.heads_kept and second.exactness <= 1e-4
    dense, small = load_model(model_dir).model, load_model(tmp_path / "x4").model
    flops = flop_profile(dense).count(1, 32).total / flop_profile(small).count(1, 32).total
    assert flops == pytest.approx(second.predicted_speedup, rel=1e-6) and flops >= 4.0
    assert second.measured_speedup > 0  # the probe ran, against the dense architecture
    inputs = probe_inputs(small.config)
    write_probe(tmp_path / "x4", inputs, model_outputs(small, inputs))
    diffs = stock_reload_diffs([(str(tmp_path / "x4"), "AutoModelForSequenceClassification")],
                               tmp_path)
    assert diffs[str(tmp_path / "x4")] <= 1e-4

    narrow = prune(_args(checkpoint=str(model_dir), output_dir=tmp_path / "narrow",
                         target_flops=0.5, hidden_size=24, speed_probe=False, **common))
    assert narrow.hidden_kept == 24
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["prune", str(tmp_path / "narrow"), "sst2", "--output-dir", str(tmp_path / "o"),
              "--target-flops", "0.3", "--data-dir", str(data), "--max-seq-length", "32",
              "--calibration-samples", "64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code != 0 and len(err) == 1 and "narrower hidden dimension" in err[0], err


@pytest.mark.parametrize("kw, message", [
    (dict(target_speedup=0.0), "--target-speedup must be > 1"),
    (dict(target_speedup=0.8), "--target-speedup must be > 1"),
    (dict(target_flops=1.5), "--target-flops is the fraction"),
    (dict(target_speedup=2.0, target_flops=0.5), "pass one target"),
    (dict(), "pass one target"),
    (dict(target_speedup=2.0, calibration_samples=8), "--calibration-samples must be >= 32"),
    (dict(target_flops=0.5, measured_target=True), "--measured-target holds --target-speedup"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, kw, message):
    with pytest.raises(NNPruneError, match=message):
        PruneArgs(checkpoint="x", task="sst2", output_dir=tmp_path / "o", **kw)


def test_a_checkpoint_without_a_task_head_or_with_too_little_data_is_refused(setup, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from conftest import minilm_path, tiny_config

    model_dir, data = setup
    base = tmp_path / "base"
    torch.manual_seed(0)
    AutoModel.from_config(tiny_config("bert")).save_pretrained(base)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(base)
    with pytest.raises(NNPruneError, match="needs a \\*ForSequenceClassification head"):
        prune(_args(checkpoint=str(base), task="sst2", output_dir=tmp_path / "o1",
                        target_speedup=2.0, data_dir=data, calibration_samples=64))
    small = write_toy_sst2(tmp_path / "small", n_train=20, n_dev=8)
    with pytest.raises(NNPruneError, match="only 20 calibration examples"):
        prune(_args(checkpoint=str(model_dir), task="sst2", output_dir=tmp_path / "o2",
                        target_speedup=2.0, data_dir=small, calibration_samples=64,
                        max_seq_length=32))


def test_prune_cli_bad_input_exits_2_with_one_line(setup, tmp_path):
    from nnprune.cli.main import main

    model_dir, data = setup
    with pytest.raises(SystemExit) as e:
        main(["prune", str(model_dir), "sst2", "--output-dir", str(tmp_path / "o"),
              "--target-speedup", "0.5", "--data-dir", str(data)])
    assert e.value.code == 2


def test_the_task_chooses_the_least_squares_tuning_by_default():
    from nnprune.tasks import get_task

    assert get_task("squad").prune_tune and get_task("question-answering").prune_tune
    assert not get_task("sst2").prune_tune and not get_task("text-classification").prune_tune


def test_then_fill_killed_mid_fill_resumes_where_an_unbroken_run_ends(setup, tmp_path):
    model_dir, data = setup
    out = tmp_path / "run"
    args = _args(checkpoint=str(model_dir), task="sst2", output_dir=out, target_flops=0.6,
                     data_dir=data, calibration_samples=48, max_seq_length=32, batch_size=8,
                     speed_probe=False, then_fill=4, save_steps=2)
    full = prune(args)
    unbroken = read_state_dict(out)
    pruned_at = (out / "prune" / "model.safetensors").stat().st_mtime_ns
    kill_after(out, 2)
    with pytest.raises(NNPruneError, match="not empty; pass --overwrite .* or --resume"):
        prune(args)
    with pytest.raises(NNPruneError, match="--resume continues a run and --overwrite"):
        replace(args, training=replace(args.training, resume=True, overwrite=True))
    resumed = prune(replace(args, training=replace(args.training, resume=True)))
    # the pruned model was not made again; the fill went on from step 2 to where it ends
    assert (out / "prune" / "model.safetensors").stat().st_mtime_ns == pruned_at
    assert resumed.metrics_after == full.metrics_after
    assert resumed.heads_per_layer == full.heads_per_layer
    assert resumed.metrics_filled == full.metrics_filled
    resumed_like_unbroken(out, unbroken, 4)


@pytest.mark.skipif(not shutil.which("torchrun"), reason="torchrun not installed")
def test_prune_then_fill_under_torchrun(setup, tmp_path):
    """``torchrun nnprune prune --then-fill`` on 2 processes: one latency table and one mask (the
    main process scores, cuts and saves; the other waits for it), both evaluate and distil, and
    every process reports the same pruned model."""
    from conftest import known_latency_table, torchrun2

    model_dir, data_dir = setup
    table = known_latency_table(model_dir, tmp_path / "table.json")
    out = tmp_path / "out"
    script = tmp_path / "run.py"
    script.write_text(
        "import json, os\n"
        "from pathlib import Path\n"
        "from nnprune.measure.latency import LatencySetting\n"
        "from dataclasses import replace\n"
        "from nnprune.workflows.prune import PRUNE_TRAINING, PruneArgs, prune\n"
        f"r = prune(PruneArgs(checkpoint={str(model_dir)!r}, task='sst2', output_dir=Path({str(out)!r}),\n"
        f"    target_speedup=1.5, training=replace(PRUNE_TRAINING, data_dir=Path({str(data_dir)!r}),\n"
        "    batch_size=4, max_seq_length=16), calibration_samples=32,\n"
        "    then_fill=2, latency_table=" + repr(table) + ",\n"
        "    latency=LatencySetting(batch_size=1, seq_len=16, threads=1)))\n"
        "d = r.to_dict()\n"
        "d['has_model'] = r.model is not None\n"
        "Path(f'rank-{os.environ[\"RANK\"]}.json').write_text(json.dumps(d, default=str))\n")
    proc = torchrun2([str(script)], tmp_path, 29535)
    assert proc.returncode == 0, proc.stderr[-3000:]
    main, other = (json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1))
    assert main["has_model"] and not other["has_model"]
    for key in ("heads_per_layer", "ffn_dims_per_layer", "predicted_speedup", "exactness",
                "metrics_before", "metrics_after", "metrics_filled", "measured_speedup"):
        assert main[key] == other[key], key
    assert main["predicted_speedup"] >= 1.5 and main["metrics_filled"]["accuracy"] >= 0
    assert main["seconds"]["score"] == other["seconds"]["score"]  # the main process's phases
    pruned = load_model(out / "prune").model  # what the search kept, compacted
    heads = [m.num_attention_heads for m in (layer.attention.self for layer in pruned.bert.encoder.layer)]
    assert heads == main["heads_per_layer"]
    results = json.loads((out / "nnprune_results.json").read_text())
    assert results["steps"] == 2  # the fill: 2 steps of 2 processes x batch 4
