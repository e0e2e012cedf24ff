"""Whole-forward FLOP counter, interleaved speed measurement, ONNX export and int8 (issue #5)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import cli_output as _cli
from conftest import compact_first as compact
from conftest import tiny_bert as _bert
from conftest import tiny_config, zero_units as _zero_units
from torch import nn
from typer.testing import CliRunner

from nnprune.errors import NNPruneError
from nnprune.measure.flops import count_flops, flop_profile, make_inputs

# ------------------------------------------------------------------------------ FLOPs

def test_flops_hand_count_compacted_bert():
    """hidden 32, 4 heads of 8, FFN 64, 2 layers, 2 labels; layer 0 keeps 3 heads / 40 dims,
    layer 1 keeps no head (compaction's empty attention block) and 16 dims. B=3, S=20."""
    model = compact(_bert(), {("encoder", 0): 3, ("encoder", 1): 0},
                    {("encoder", 0): 40, ("encoder", 1): 16})
    B, S, h = 3, 20, 32
    t = B * S
    expected = 0
    for heads, f in ((3, 40), (0, 16)):
        inner = heads * 8
        expected += 2 * t * h * inner * 3  # Q, K, V
        expected += 2 * t * inner * h  # attention output
        expected += 2 * t * h * f + 2 * t * f * h  # FFN in, out
        expected += 2 * B * S * S * inner * 2  # QK^T and AV
    expected += 2 * B * h * h  # pooler (CLS only)
    expected += 2 * B * h * 2  # classifier
    c = count_flops(model, B, S)
    assert c.total == expected
    assert [lf.heads["self"] for lf in c.layers] == [3, 0]
    assert [lf.ffn_dims for lf in c.layers] == [40, 16]
    assert c.other == 2 * B * h * h + 2 * B * h * 2
    # The profile (stored with ONNX exports) round-trips through JSON.
    dense = flop_profile(_bert())
    from nnprune.measure.flops import FlopProfile

    again = FlopProfile.from_dict(json.loads(json.dumps(dense.to_dict())))
    assert again.count(B, S).total == dense.count(B, S).total > c.total


@pytest.mark.parametrize("kind", ["bert-token", "bart-seq2seq", "bart-cls"])
def test_flops_match_torch_flop_counter(kind):
    """Against torch's own op-level counter (eager attention, so the matmuls are visible)."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import (
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    torch.manual_seed(0)
    if kind == "bert-token":
        cfg, cls = tiny_config("bert"), AutoModelForTokenClassification
    else:
        cfg = tiny_config("bart")
        cls = AutoModelForSeq2SeqLM if kind == "bart-seq2seq" else AutoModelForSequenceClassification
    cfg._attn_implementation = "eager"
    model = cls.from_config(cfg).eval()
    # Uneven heads / FFN dims: encoder layer 0 shrinks; the last stack's layer 1 loses all its
    # heads (BART: self and cross attention).
    stacks = ["encoder"] + (["decoder"] if kind.startswith("bart") else [])
    model = compact(model, {(stacks[-1], 1): 0, ("encoder", 0): 3}, {(stacks[0], 0): 24})
    B, S, T = 3, 19, 11
    inputs = make_inputs(model, B, S, T)
    tgt = inputs["decoder_input_ids"].shape[1] if "decoder_input_ids" in inputs else None
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(**inputs)
    assert count_flops(model, B, S, tgt).total == fc.get_total_flops()


def test_flops_masked_model_counts_full_size_and_after_compaction():
    import copy

    from nnprune.pruning_core import build_config, patch_model
    from nnprune.measure.flops import compacted_profile

    model = _bert()
    dense = count_flops(model, 2, 16).total
    small = compact(copy.deepcopy(model), {("encoder", 0): 1}, {("encoder", 1): 8})
    _zero_units(model, {("encoder", 0): 1}, {("encoder", 1): 8})
    patch_model(model, build_config("struct"))
    assert count_flops(model, 2, 16).total == dense  # masks do not shrink anything
    # What compaction would leave, counted without compacting: exactly the compacted model.
    assert compacted_profile(model).count(2, 16).total == count_flops(small, 2, 16).total < dense


# ------------------------------------------------------------------------------ speed

def _speed_models():
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    cfg = tiny_config("bert", hidden_size=256, num_attention_heads=4, intermediate_size=1024,
                      num_hidden_layers=4)
    dense = AutoModelForSequenceClassification.from_config(cfg).eval()
    import copy

    half = compact(copy.deepcopy(dense), {("encoder", i): 2 for i in range(4)},
                   {("encoder", i): 512 for i in range(4)})
    return dense, half


def save_pair(root, dense: nn.Module, half: nn.Module):
    """Save a dense model and its compacted half as ``root/dense`` and ``root/half``."""
    dense.save_pretrained(root / "dense")
    half.save_pretrained(root / "half")
    return root / "dense", root / "half"


@pytest.fixture(scope="module")
def speed_dirs(tmp_path_factory):
    return save_pair(tmp_path_factory.mktemp("speed"), *_speed_models())


def test_speed_cli_compacted_half_flops_report(speed_dirs):
    """The report of a compacted model against its dense baseline. Only what is deterministic is
    asserted (FLOP ratio, fields, row and timing counts, the ratios' arithmetic): whether it is
    faster on a shared machine is a benchmark's question, not a test's."""
    dense_dir, half_dir = speed_dirs
    out = _cli(["speed", str(half_dir), "--baseline", str(dense_dir), "--batch-sizes", "8",
                "--seq-lens", "64", "--threads", "1", "--warmup", "2", "--iters", "9",
                "--json"])
    rep = json.loads(out)
    assert rep["model_kind"] == "compacted" and rep["threads"] == 1
    (row,) = rep["rows"]
    assert row["batch_size"] == 8 and row["seq_len"] == 64
    assert 1.9 < row["theoretical_speedup"] < 2.05
    assert row["theoretical_speedup"] == pytest.approx(row["baseline_gflops"] / row["model_gflops"])
    assert row["speedup"] == pytest.approx(row["baseline_ms"] / row["model_ms"])
    assert row["efficiency"] == pytest.approx(row["speedup"] / row["theoretical_speedup"])
    assert row["baseline_p90_ms"] >= row["baseline_ms"] > 0
    assert row["model_p90_ms"] >= row["model_ms"] > 0
    assert len(row["baseline_times_ms"]) == len(row["model_times_ms"]) == 9


def test_speed_default_baseline_and_dense_model(speed_dirs, tmp_path):
    """No --baseline: the architecture rebuilt from the config; a dense model has FLOP ratio 1."""
    from nnprune.api.speed import run_speed

    dense_dir, _ = speed_dirs
    rep = run_speed(dense_dir, batch_sizes=[2], seq_lens=[16], threads=1, warmup=1, iters=2)
    assert rep.model_kind == "plain" and "random weights" in rep.baseline
    assert rep.rows[0].theoretical_speedup == 1.0
    out = tmp_path / "s.json"
    _cli(["speed", str(dense_dir), "--batch-sizes", "1", "--seq-lens", "8", "--iters", "1",
          "--warmup", "0", "--json-file", str(out)])
    assert json.loads(out.read_text())["rows"][0]["theoretical_speedup"] == 1.0


def test_speed_masked_checkpoint_is_timed_with_a_note(tmp_path):
    from nnprune.pruning_core import build_config, patch_model
    from nnprune.pruning_core.checkpoint import save_checkpoint
    from nnprune.api.speed import run_speed

    model = _bert()
    _zero_units(model, {("encoder", 0): 2, ("encoder", 1): 2}, {})
    cfg = build_config("struct")
    patch_model(model, cfg)
    save_checkpoint(model, tmp_path / "masked", config=cfg)
    rep = run_speed(tmp_path / "masked", batch_sizes=[1], seq_lens=[8], warmup=0, iters=1)
    assert rep.model_kind == "masked"
    assert any("not compacted" in n for n in rep.notes)
    assert rep.rows[0].theoretical_speedup == 1.0
    assert any("once compacted" in n and "1.00x" not in n for n in rep.notes), rep.notes


def test_speed_int8_torch_and_errors(speed_dirs):
    from nnprune.measure.quantize import quantize_int8
    from nnprune.api.speed import run_speed

    dense_dir, half_dir = speed_dirs
    rep = run_speed(half_dir, dense_dir, batch_sizes=[2], seq_lens=[16], quantize="int8",
                    threads=1, warmup=1, iters=2)
    assert rep.quantize == "int8" and rep.rows[0].model_ms > 0
    assert any("int8" in n for n in rep.notes)
    # Quantized logits stay close to fp32 ones.
    _, half = _speed_models()
    q = quantize_int8(half)
    inputs = make_inputs(half, 2, 16)
    with torch.inference_mode():
        diff = (q(**inputs).logits - half(**inputs).logits).abs().max().item()
    assert diff < 0.1
    with pytest.raises(NNPruneError, match="int8"):
        run_speed(half_dir, quantize="int4")
    with pytest.raises(NNPruneError, match="fp32"):
        run_speed(half_dir, quantize="int8", dtype="bf16")
    if not torch.cuda.is_available():
        with pytest.raises(NNPruneError, match="CUDA"):
            run_speed(half_dir, device="cuda")


def test_speed_cli_bad_list():
    from nnprune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["speed", "x", "--batch-sizes", "1,a"])
    assert exc.value.code == 2


def test_speed_with_task_reports_int8_metric_change(tmp_path):
    """``speed --quantize int8 --task`` evaluates the timed model in fp32 and int8."""
    import json as _json

    from conftest import save_tiny_model, write_toy_sst2

    from nnprune.cli.main import app

    model = save_tiny_model(tmp_path / "tiny", "bert")
    data = write_toy_sst2(tmp_path / "toy", n_train=8, n_dev=24)
    out = tmp_path / "speed.json"
    result = CliRunner().invoke(app, [
        "speed", str(model), "--batch-sizes", "2", "--seq-lens", "16", "--iters", "2",
        "--warmup", "1", "--threads", "1", "--quantize", "int8", "--task", "sst2",
        "--data-dir", str(data), "--json-file", str(out)])
    assert result.exit_code == 0, result.output
    metrics = _json.loads(out.read_text())["task_metrics"]
    assert set(metrics) == {"fp32", "int8"}
    assert 0 <= metrics["int8"]["accuracy"] <= 1 and 0 <= metrics["fp32"]["accuracy"] <= 1
    assert "change" in result.output
