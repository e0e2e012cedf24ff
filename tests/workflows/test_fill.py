"""Hybrid Filled: fill (compact + re-init + fine-tune with a teacher) and fine-prune --method
hybrid-filled, end to end on a tiny BERT."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_args, write_toy_sst2

from nnprune.cli.main import main
from nnprune.errors import NNPruneError
from nnprune.workflows.fill import FillArgs, FillInit, fill, prepare_fill_model
from nnprune.pruning_core.checkpoint import load_model, read_state_dict
from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune

L0 = "bert.encoder.layer.0."
L1 = "bert.encoder.layer.1."
COMMON = {"batch_size": 8, "learning_rate": 1e-3, "max_seq_length": 32, "logging_steps": 1,
          "save_steps": 500, "seed": 3}


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    return write_toy_sst2(tmp_path_factory.mktemp("toy"), n_train=64, n_dev=16)


@pytest.fixture(scope="module")
def pruned(tiny_dir, toy_data, tmp_path_factory) -> Path:
    """A hybrid-nt (8x8 attention blocks, FFN dims) checkpoint whose masks are then set by hand:
    layer 0 loses head 0 (its value rows) and one 8x8 block inside head 1's query; layer 1 loses
    head 3 (its attention-output columns) and FFN dims 0..15."""
    from safetensors.torch import save_file

    out = tmp_path_factory.mktemp("pruned") / "run"
    fine_prune(make_args(FinePruneArgs, task="sst2", model=str(tiny_dir), output_dir=out, data_dir=toy_data,
                             method="hybrid-nt", overrides=["attention_block=8x8"], max_steps=2,
                             **COMMON))
    state = read_state_dict(out)
    for key in [k for k in state if k.endswith("mask_scores")]:
        state[key] = torch.full_like(state[key], 5.0)
    state[L0 + "attention.self.value.mask_scores"][0, :] = -5.0
    state[L0 + "attention.self.query.mask_scores"][1, 0] = -5.0
    state[L1 + "attention.output.dense.mask_scores"][:, 3] = -5.0
    state[L1 + "intermediate.dense.mask_scores"][:16] = -5.0
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    return out


def test_prepare_compacts_exactly_and_refills_zeros_inside_kept_heads(pruned):
    from nnprune.pruning_core.pruner import unpatch_model

    baked = unpatch_model(load_model(pruned).model, apply_masks=True)
    q_block = baked.get_submodule(L0 + "attention.self.query").weight[8:16, 0:8]
    assert bool((q_block == 0).all())

    prep = prepare_fill_model(pruned, seed=0)
    assert prep.was_masked and prep.report.exact
    assert prep.report.heads_removed == 2 and prep.report.ffn_dims_removed == 16
    layout = prep.model.config.nnprune_layout["stacks"]["encoder"]
    assert layout["attention"]["self"]["heads"] == [3, 3] and layout["ffn"]["dims"] == [64, 48]
    # Only the hand-pruned 8x8 block sat inside a kept head: head 1 is now head 0.
    assert prep.reinitialized == 64 and prep.reinit_std == pytest.approx(0.02)
    q = prep.model.get_submodule(L0 + "attention.self.query").weight
    assert q.shape == (24, 32)
    block = q.detach()[0:8, 0:8]
    assert bool((block != 0).all()) and float(block.abs().max()) < 0.15
    assert torch.equal(q[0:8, 8:], baked.get_submodule(L0 + "attention.self.query").weight[8:16, 8:])
    # std 0: the zeros stay.
    assert prepare_fill_model(pruned, reinit_std=0.0).reinitialized == 0


def test_fill_init_weights_restores_what_the_masks_hid_inside_kept_heads(pruned):
    """``--fill-init weights``: the hand-masked 8x8 query block inside kept head 1 comes back
    with the stored (unmasked) weights; the removed heads and FFN dims stay removed, and the
    model compacts to the same shapes as with noise."""
    raw = load_model(pruned).model.get_submodule(L0 + "attention.self.query").weight.detach()
    prep = prepare_fill_model(pruned, init=FillInit.WEIGHTS)
    noise = prepare_fill_model(pruned, seed=0)
    assert prep.report.exact and prep.report.heads_removed == 2
    assert prep.report.ffn_dims_removed == 16
    assert prep.model.config.nnprune_layout == noise.model.config.nnprune_layout
    assert prep.reinitialized == 64 and prep.reinit_std == 0.0
    q = prep.model.get_submodule(L0 + "attention.self.query").weight
    # head 1 (rows 8..15 of the original) is head 0 of the compacted layer: all of it stored
    assert torch.equal(q.detach(), raw[8:32])
    # the same stored weights elsewhere: a kept FFN dim of layer 1 is its original row 16
    ffn_raw = load_model(pruned).model.get_submodule(L1 + "intermediate.dense").weight.detach()
    assert torch.equal(prep.model.get_submodule(L1 + "intermediate.dense").weight.detach(),
                       ffn_raw[16:])


@pytest.mark.parametrize("kwargs,message", [
    ({"fill_init": "zeros"}, "unknown --fill-init 'zeros'; known: noise, weights"),
    ({"fill_init": "weights", "reinit_std": 0.01}, "--reinit-std is the noise of --fill-init"),
])
def test_fill_init_bad_values_are_refused(kwargs, message, tmp_path):
    with pytest.raises(NNPruneError, match=re.escape(message)):
        FillArgs(checkpoint=tmp_path, task="sst2", output_dir=tmp_path / "o", **kwargs)


def test_fill_init_weights_needs_a_masked_checkpoint(tiny_dir):
    with pytest.raises(NNPruneError, match="restores what a fine-pruned checkpoint's masks hid"):
        prepare_fill_model(tiny_dir, init=FillInit.WEIGHTS)


@pytest.fixture(scope="module")
def filled(pruned, tiny_dir, toy_data, tmp_path_factory):
    """``fill`` for 3 steps, checking that the optimizer holds exactly the compacted parameters."""
    from nnprune.workflows.trainer import PruningTrainer

    seen: dict[str, bool] = {}
    original = PruningTrainer.create_optimizer

    def create_optimizer(self, model=None):
        opt = original(self, model)
        in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
        trainable = {id(p) for p in self.model.parameters() if p.requires_grad}
        seen["same"] = in_opt == trainable
        q = self.model.get_submodule(L0 + "attention.self.query")
        seen["compacted"] = q.weight.shape[0] == 24 and id(q.weight) in in_opt
        seen["distils"] = self.teacher is not None and self.config.alpha_teacher == 0.9
        return opt

    out = tmp_path_factory.mktemp("filled") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PruningTrainer, "create_optimizer", create_optimizer)
        result = fill(make_args(FillArgs, checkpoint=pruned, task="sst2", output_dir=out,
                               teacher=str(tiny_dir), data_dir=toy_data, max_steps=3, **COMMON))
    return out, result, seen


def test_fill_trains_the_compacted_model_with_distillation(filled, pruned, tiny_dir):
    out, result, seen = filled
    assert seen == {"same": True, "compacted": True, "distils": True}
    assert result.steps == 3 and 0.0 <= result.metrics["accuracy"] <= 1.0
    assert (result.heads_kept, result.heads_original) == (6, 8)
    assert (result.ffn_dims_kept, result.ffn_dims_original) == (112, 128)
    assert result.compacted and result.reinitialized == 64
    assert result.density < 1 and result.compression > 1 and result.estimated_speedup > 1
    assert result.prune is not None and result.prune.steps == 2

    info = json.loads((out / "nnprune_config.json").read_text())
    assert info["masked"] is False and info["compacted"] is True
    assert info["filled_from"] == str(pruned) and info["base_model"] == str(tiny_dir)
    p = info["pruning"]
    assert p["method"] == "dense" and p["binarizer"] == "none" and p["teacher"] == str(tiny_dir)
    assert (p["alpha_ce"], p["alpha_teacher"], p["temperature"]) == (0.1, 0.9, 2.0)
    stages = info["stages"]
    assert [s["stage"] for s in stages] == ["prune", "fill"]
    assert stages[0]["pruning"]["method"] == "hybrid-nt" and stages[0]["masked"] is True
    assert stages[1]["reinitialized"] == 64 and stages[1]["compaction"]["heads_removed"] == 2
    results = json.loads((out / "nnprune_results.json").read_text())
    assert results["heads_kept"] == 6 and results["steps"] == 3
    assert (out / "nnprune_modeling.py").is_file()
    assert "AutoModelForSequenceClassification" in json.loads((out / "config.json").read_text())["auto_map"]


def test_filled_checkpoint_reloads_with_nnprune_and_stock_transformers(filled, tmp_path,
                                                                       monkeypatch):
    import transformers.dynamic_module_utils as dmu
    from transformers import AutoModelForSequenceClassification

    import nnprune

    out = filled[0]
    ours = nnprune.load_pretrained(out)
    layout = ours.config.nnprune_layout["stacks"]["encoder"]
    # Removed heads and FFN dims stay removed; the stock config keeps the dense sizes.
    assert layout["attention"]["self"]["heads"] == [3, 3] and layout["ffn"]["dims"] == [64, 48]
    assert ours.config.num_attention_heads == 4
    q = ours.get_submodule(L0 + "attention.self.query").weight
    assert q.shape == (24, 32) and bool((q[0:8, 0:8] != 0).all())

    monkeypatch.setattr(dmu, "HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    stock = AutoModelForSequenceClassification.from_pretrained(str(out), trust_remote_code=True)
    stock.eval()
    assert type(stock).__name__ == "NNPruneBertForSequenceClassification"
    ids = torch.randint(1000, 2000, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    with torch.no_grad():
        a = ours(input_ids=ids, attention_mask=mask).logits
        b = stock(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_count_params_reports_compression_against_the_original(filled, capsys):
    out = filled[0]
    with pytest.raises(SystemExit) as exc:
        main(["count-params", str(out), "--json"])
    assert exc.value.code == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["compacted"] is True and counts["masked"] is False
    assert counts["original"] == 2 * (4 * 32 * 32 + 2 * 32 * 64)
    assert counts["compression"] > 1.15
    assert [lc["heads"]["self"] for lc in counts["layers"]] == [{"kept": 3, "original": 4}] * 2
    assert [lc["ffn_dims"] for lc in counts["layers"]] == [{"kept": 64, "original": 64},
                                                          {"kept": 48, "original": 64}]


def test_fine_prune_hybrid_filled_runs_both_stages(tiny_dir, toy_data, tmp_path):
    out = tmp_path / "hf"
    argv = ["fine-prune", "sst2", "--model", str(tiny_dir), "--output-dir", str(out),
            "--method", "hybrid-filled", "--teacher", str(tiny_dir), "--data-dir", str(toy_data),
            "--max-steps", "2", "--batch-size", "8", "--max-seq-length", "32",
            "--learning-rate", "1e-3", "--set", "attention_block=8x8",
            "--set", "score_init=uniform", "--set", "score_init_scale=5",
            "--json-file", str(tmp_path / "result.json")]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    result = json.loads((tmp_path / "result.json").read_text())
    # Stage 1: a masked hybrid checkpoint in OUTPUT/prune; stage 2: the filled model in OUTPUT.
    first = load_model(out / "prune")
    assert first.is_masked and first.record.pruning.method == "hybrid-filled"
    assert result["steps"] == 2 and result["prune"]["steps"] == 2
    assert result["checkpoint"] == str(out / "prune")
    assert result["compacted"] and result["ffn_dims_kept"] < result["ffn_dims_original"]
    assert result["reinitialized"] > 0
    info = json.loads((out / "nnprune_config.json").read_text())
    assert [s["stage"] for s in info["stages"]] == ["prune", "fill"]
    assert info["pruning"]["teacher"] == str(tiny_dir) and info["base_model"] == str(tiny_dir)
    assert (out / "nnprune_modeling.py").is_file()
    assert not load_model(out).is_masked
    # --resume after both stages saved: the pruning stage is not run again, fill is.
    stamp = (out / "prune" / "model.safetensors").stat().st_mtime_ns
    filled_stamp = (out / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(SystemExit) as exc:
        main(argv + ["--resume"])
    assert exc.value.code == 0
    assert (out / "prune" / "model.safetensors").stat().st_mtime_ns == stamp
    assert (out / "model.safetensors").stat().st_mtime_ns != filled_stamp


def test_fill_cli_json_on_stdout(pruned, tiny_dir, toy_data, tmp_path, capsys):
    out = tmp_path / "cli"
    with pytest.raises(SystemExit) as exc:
        main(["fill", str(pruned), "sst2", "--teacher", str(tiny_dir), "--output-dir", str(out),
              "--data-dir", str(toy_data), "--max-steps", "1", "--batch-size", "8",
              "--max-seq-length", "32", "--logging-steps", "1", "--fill-init", "weights",
              "--json"])
    assert exc.value.code == 0
    result = json.loads(capsys.readouterr().out)  # the trainer's logs went to stderr
    assert result["steps"] == 1 and result["heads_kept"] == 6 and result["compression"] > 1
    assert result["fill_init"] == "weights" and result["reinitialized"] == 64
    stages = json.loads((out / "nnprune_config.json").read_text())["stages"]
    assert stages[-1]["fill_init"] == "weights"
    assert (out / "nnprune_modeling.py").is_file()


@pytest.mark.parametrize("argv,message", [
    (["fill", "{missing}", "sst2", "--teacher", "{tiny}", "--output-dir", "{out}"],
     "checkpoint {missing} does not exist"),
    (["fill", "{tiny}", "sst2", "--output-dir", "{out}"],
     "fill distils from a teacher: pass --teacher PATH"),
    (["fine-prune", "sst2", "--model", "{tiny}", "--output-dir", "{out}", "--method",
      "hybrid-filled"], "method 'hybrid-filled' distils from a teacher: pass --teacher PATH"),
])
def test_fill_errors_are_one_line(argv, message, tiny_dir, tmp_path, capsys):
    fmt = {"missing": tmp_path / "nope", "tiny": tiny_dir, "out": tmp_path / "out"}
    with pytest.raises(SystemExit) as exc:
        main([a.format(**fmt) for a in argv])
    assert exc.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert message.format(**fmt) in err[0]
    assert not (tmp_path / "out").exists()


def test_the_fill_stage_goes_on_to_other_examples(tiny_dir, toy_data, tmp_path, monkeypatch):
    """hybrid-filled's two stages with one seed: the fill stage deals batches the pruning stage
    did not see (with the pruning stage's data order it dealt the very same ones again)."""
    from nnprune.workflows.trainer import PruningTrainer

    dealt: list[str] = []
    step = PruningTrainer.training_step

    def recording_step(self, model, inputs, *args, **kwargs):
        dealt.append(hashlib.sha1(inputs["input_ids"].numpy().tobytes()).hexdigest()[:10])
        return step(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(PruningTrainer, "training_step", recording_step)
    out = tmp_path / "hf"
    fine_prune(make_args(FinePruneArgs, task="sst2", model=str(tiny_dir), output_dir=out,
                         data_dir=toy_data, method="hybrid-filled", teacher=str(tiny_dir),
                         target_density=0.5, max_steps=3, fill_max_steps=3, **COMMON))
    pruning, filling = dealt[:3], dealt[3:]
    assert len(filling) == 3 and not set(pruning) & set(filling)
    stages = json.loads((out / "nnprune_config.json").read_text())["stages"]
    assert stages[0]["training"]["seed"] == 3 and stages[0]["training"]["data_seed"] is None
    assert stages[1]["training"]["data_seed"] == 4  # recorded: the run is reproducible


@pytest.mark.parametrize("recorded, ours, expected", [
    ({"seed": 42, "data_seed": None}, {"seed": 42}, 43),  # same order: the next seed
    ({"seed": 42, "data_seed": 7}, {"seed": 42}, None),  # it used another order already
    ({"seed": 42, "data_seed": 7}, {"seed": 1, "data_seed": 7}, 8),
    ({"seed": 42}, {"seed": 42, "data_seed": 5}, 5),  # asked for another one: kept
    ({"max_seq_length": 128}, {"seed": 42}, None),  # nnprune prune: no training run recorded
])
def test_fresh_data_order(recorded, ours, expected):
    from nnprune.pruning_core.run_record import CommandOptions
    from nnprune.workflows.fill import fresh_data_order
    from nnprune.workflows.options import TrainingOptions

    options = CommandOptions(recorded)
    assert fresh_data_order(TrainingOptions(**ours), options).data_seed == expected
