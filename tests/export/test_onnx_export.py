"""ONNX export: checked against PyTorch at other shapes, int8, and run by ``speed --onnx``."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import cli_output, compact_first, tiny_bert

from nnprune.errors import NNPruneError
from nnprune.measure.flops import make_inputs


def test_export_onnx_compacted_matches_and_int8(tmp_path):
    pytest.importorskip("onnxruntime")
    model = compact_first(tiny_bert(), {("encoder", 0): 3, ("encoder", 1): 1},
                    {("encoder", 0): 40, ("encoder", 1): 16})
    model.save_pretrained(tmp_path / "ckpt")
    tiny_bert().save_pretrained(tmp_path / "dense")
    out = cli_output(["export-onnx", str(tmp_path / "ckpt"), str(tmp_path / "onnx"), "--quantize", "int8",
                "--json"])
    exp = json.loads(out)
    assert exp["max_abs_diff"] < 1e-4
    assert exp["ort_disabled_optimizers"] == ["SkipLayerNormFusion"]
    # the table tells a server what to leave off (the same as nnprune_onnx.json)
    shown = cli_output(["export-onnx", str(tmp_path / "ckpt"), str(tmp_path / "onnx2"), "--quantize", "int8"])
    assert "disabled_optimizers" in shown and "SkipLayerNormFusion" in shown
    assert exp["int8_max_abs_diff"] is not None
    meta = json.loads((tmp_path / "onnx" / "nnprune_onnx.json").read_text())
    # BERT's segment ids are an input (pair tasks: MNLI, SQuAD); a model without them has none
    assert meta["kind"] == "compacted"
    assert meta["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert (tmp_path / "onnx" / "model.int8.onnx").is_file()

    # The export runs at other batch/sequence sizes, with padding, like PyTorch.
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = make_inputs(model, 5, 41, seed=3)
    inputs["attention_mask"][1, 30:] = 0
    inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
    inputs["token_type_ids"][:, 20:] = 1
    got = sess.run(None, {k: inputs[k].numpy() for k in meta["inputs"]})[0]
    with torch.inference_mode():
        ref = model(**inputs).logits.numpy()
    assert abs(got - ref).max() < 1e-4

    # speed --onnx: the export folder (fp32 and int8) against the ONNX-exported dense baseline.
    from nnprune.api.speed import run_speed

    for q in (None, "int8"):
        rep = run_speed(tmp_path / "onnx", onnx=True, quantize=q, batch_sizes=[2], seq_lens=[16],
                        threads=1, warmup=1, iters=2)
        assert rep.runtime == "onnxruntime" and rep.model_kind == "compacted"
        assert any("without SkipLayerNormFusion" in n for n in rep.notes)
        assert rep.rows[0].theoretical_speedup > 1.5
    # against the dense model served in PyTorch fp32 (what a user has before exporting)
    rep = run_speed(tmp_path / "onnx", tmp_path / "dense", onnx=True, quantize="int8",
                    baseline_pytorch=True, batch_sizes=[2], seq_lens=[16], threads=1, warmup=1, iters=2)
    assert rep.runtime == "onnxruntime, baseline PyTorch" and rep.baseline.endswith("(PyTorch fp32)")
    assert rep.rows[0].speedup > 0 and rep.rows[0].theoretical_speedup > 1.5
    with pytest.raises(NNPruneError, match="--baseline-pytorch is for --onnx"):
        run_speed(tmp_path / "ckpt", baseline_pytorch=True, batch_sizes=[2], seq_lens=[16])
    with pytest.raises(NNPruneError, match="needs a checkpoint folder"):
        run_speed(tmp_path / "onnx", tmp_path / "onnx", onnx=True, baseline_pytorch=True,
                  batch_sizes=[2], seq_lens=[16])


def test_export_onnx_refuses_a_bad_opset(tmp_path, tiny_bert_dir):
    from nnprune.export.onnx import export_checkpoint

    with pytest.raises(NNPruneError, match="opset"):
        export_checkpoint(tiny_bert_dir, tmp_path / "o", opset=99)


def test_int8_sessions_leave_the_slow_skip_layernorm_fusion_off(tmp_path):
    """onnxruntime fuses each residual add + LayerNorm of an int8 graph into a
    SkipLayerNormalization node whose CPU kernel is several times slower than the two ops
    (benchmarks/ort_fusions.py); nnprune's sessions (speed --onnx, evaluate --onnx, load_onnx)
    run without that fusion and give the same outputs."""
    pytest.importorskip("onnxruntime")
    import onnx

    from nnprune.export.onnx import ORT_DISABLED_OPTIMIZERS, cpu_session, export_onnx

    model = compact_first(tiny_bert(), {("encoder", 0): 3}, {("encoder", 1): 16})
    exp = export_onnx(model, tmp_path / "onnx", quantize="int8")
    meta = json.loads((tmp_path / "onnx" / "nnprune_onnx.json").read_text())
    assert meta["ort_disabled_optimizers"] == list(ORT_DISABLED_OPTIMIZERS)

    def fused_ops(path):
        return [n.op_type for n in onnx.load(str(path)).graph.node]

    default = cpu_session(exp.int8_path, 1, disabled_optimizers=(),
                          optimized_model_path=tmp_path / "default.onnx")
    # the pattern is there: onnxruntime's defaults fuse it
    assert "SkipLayerNormalization" in fused_ops(tmp_path / "default.onnx")
    ours = cpu_session(exp.int8_path, 1, optimized_model_path=tmp_path / "ours.onnx")
    ops = fused_ops(tmp_path / "ours.onnx")
    assert "SkipLayerNormalization" not in ops and "LayerNormalization" in ops

    inputs = make_inputs(model, 2, 19, seed=4)
    inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
    feed = {k: inputs[k].numpy() for k in meta["inputs"]}
    assert abs(default.run(None, feed)[0] - ours.run(None, feed)[0]).max() < 1e-4
