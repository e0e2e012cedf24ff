"""``evaluate --onnx [--quantize int8]``: the ONNX export (fp32 or onnxruntime int8) scored by the
Trainer loop through :class:`~nnprune.export.onnx.OrtModel`, against the PyTorch evaluation, on a
tiny compacted BERT fine-tuned on toy SST-2; the losses of every head type, pair inputs
(``token_type_ids``), ``speed --onnx --task`` and one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import compact_first, minilm_path, tiny_bert, tiny_config, write_toy_sst2

from nnprune.cli.main import main
from nnprune.workflows.evaluate import evaluate_checkpoint

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    return write_toy_sst2(tmp_path_factory.mktemp("toy"), n_train=64, n_dev=32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy_data) -> Path:
    """A tiny BERT compacted (layer 0: 3 heads, FFN 48; layer 1: 2 heads, FFN 32), then fine-tuned
    for a few steps on the toy SST-2 train split and saved with the MiniLM tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_path())
    model = compact_first(tiny_bert(), {("encoder", 0): 3, ("encoder", 1): 2},
                          {("encoder", 0): 48, ("encoder", 1): 32})
    rows = [line.split("\t") for line in (toy_data / "train.tsv").read_text().splitlines()[1:]]
    texts, labels = [r[0] for r in rows], torch.tensor([int(r[1]) for r in rows])
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(24):
        idx = torch.arange(16) + (step * 16) % len(texts)
        idx = idx % len(texts)
        batch = tok([texts[i] for i in idx], padding=True, return_tensors="pt")
        loss = model(**batch, labels=labels[idx]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = tmp_path_factory.mktemp("ckpt") / "sst2-compact"
    model.eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


def evaluate(ckpt: Path, data: Path, batch_size: int = 8, **kw):
    return evaluate_checkpoint("sst2", ckpt, data_dir=data, batch_size=batch_size, **kw)


def test_onnx_evaluation_matches_pytorch_and_int8_is_close(trained, toy_data):
    ref = evaluate(trained, toy_data)
    assert ref.kind == "compacted" and ref.metrics["accuracy"] >= 0.75  # it did learn
    fp32 = evaluate(trained, toy_data, onnx=True)
    assert fp32.kind == "compacted+onnx"
    assert fp32.metrics["accuracy"] == ref.metrics["accuracy"]
    assert fp32.metrics["eval_loss"] == pytest.approx(ref.metrics["eval_loss"], abs=1e-4)
    assert fp32.num_examples == ref.num_examples == 32
    int8 = evaluate(trained, toy_data, onnx=True, quantize="int8")
    assert int8.kind == "compacted+onnx-int8"
    # onnxruntime int8 is another model: close to fp32, not equal
    assert abs(int8.metrics["accuracy"] - fp32.metrics["accuracy"]) <= 0.2
    assert int8.metrics["eval_loss"] == pytest.approx(fp32.metrics["eval_loss"], abs=0.1)


def test_an_export_folder_scores_the_file_it_holds(trained, toy_data, tmp_path):
    from nnprune.export.onnx import export_checkpoint

    export_checkpoint(trained, tmp_path / "onnx", quantize="int8")
    direct = evaluate(trained, toy_data, onnx=True, quantize="int8")
    folder = evaluate(tmp_path / "onnx", toy_data, onnx=True, quantize="int8")
    assert folder.kind == "compacted+onnx-int8"
    assert folder.metrics["accuracy"] == direct.metrics["accuracy"]
    assert folder.metrics["eval_loss"] == pytest.approx(direct.metrics["eval_loss"], abs=1e-6)


def test_cli_evaluate_onnx_json(trained, toy_data, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "sst2", str(trained), "--data-dir", str(toy_data), "--onnx", "--json",
              "--batch-size", "16"])
    assert exc.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "compacted+onnx" and out["main_metric"] == "accuracy"
    assert 0.0 <= out["metrics"]["accuracy"] <= 1.0


def test_speed_task_onnx_reports_the_timed_models_metrics(trained, toy_data, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["speed", str(trained), "--onnx", "--quantize", "int8", "--task", "sst2",
              "--data-dir", str(toy_data), "--batch-sizes", "1", "--seq-lens", "8",
              "--warmup", "0", "--iters", "1", "--threads", "1", "--json"])
    assert exc.value.code == 0
    metrics = json.loads(capsys.readouterr().out)["task_metrics"]
    # speed evaluates at batch 32; int8 activations are quantized per batch, so the same here
    for variant, quantize in (("fp32", None), ("int8", "int8")):
        got = evaluate(trained, toy_data, onnx=True, quantize=quantize, batch_size=32).metrics
        assert metrics[variant]["accuracy"] == got["accuracy"]
        assert metrics[variant]["eval_loss"] == pytest.approx(got["eval_loss"], abs=1e-6)


def test_pair_inputs_reach_the_export(tmp_path):
    """BERT's segment embeddings are an input of the export: with token_type_ids holding 1s the
    ONNX logits are PyTorch's (per-token logits, which the second segment moves the most)."""
    from nnprune.export.onnx import OrtModel, export_onnx

    model = _head("token").eval()
    exp = export_onnx(model, tmp_path / "onnx")
    assert exp.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    ids = torch.randint(1000, 30000, (3, 19), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    mask[2, 12:] = 0
    types = torch.zeros_like(ids)
    types[:, 9:] = 1
    ort_model = OrtModel(exp.model_path, model.config, threads=1)
    got = ort_model(input_ids=ids, attention_mask=mask, token_type_ids=types)["logits"]
    with torch.inference_mode():
        ref = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        single = model(input_ids=ids, attention_mask=mask).logits
    assert float((got - ref).abs().max()) < 1e-4
    assert float((single - ref).abs().max()) > 1e-2  # the segments do change the logits
    # no token_type_ids given: one segment, as PyTorch assumes
    got = ort_model(input_ids=ids, attention_mask=mask)["logits"]
    assert float((got - single).abs().max()) < 1e-4


def _head(kind: str):
    from transformers import (AutoModelForQuestionAnswering, AutoModelForSequenceClassification,
                              AutoModelForTokenClassification)

    torch.manual_seed(0)
    if kind == "regression":
        return AutoModelForSequenceClassification.from_config(tiny_config("bert", num_labels=1))
    if kind == "token":
        return AutoModelForTokenClassification.from_config(tiny_config("bert", num_labels=5))
    if kind == "qa":
        return AutoModelForQuestionAnswering.from_config(tiny_config("bert"))
    return AutoModelForSequenceClassification.from_config(tiny_config("bert", num_labels=3))


@pytest.mark.parametrize("kind", ["classification", "regression", "token", "qa"])
def test_losses_are_the_pytorch_heads_losses(kind, tmp_path):
    from nnprune.export.onnx import OrtModel, export_onnx

    model = _head(kind).eval()
    exp = export_onnx(model, tmp_path / "onnx")
    ort_model = OrtModel(exp.model_path, model.config, threads=1)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 30000, (4, 11), generator=g)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if kind == "classification":
        labels = {"labels": torch.tensor([0, 2, 1, 2])}
    elif kind == "regression":
        labels = {"labels": torch.tensor([0.5, 3.0, 1.25, 4.5])}
    elif kind == "token":
        tags = torch.randint(0, 5, (4, 11), generator=g)
        tags[:, 0] = -100  # [CLS] and continuation sub-tokens carry no label
        tags[1, 6:] = -100
        labels = {"labels": tags}
    else:  # one answer past the sequence (truncated away): ignored, as in PyTorch
        labels = {"start_positions": torch.tensor([1, 3, 20, 0]),
                  "end_positions": torch.tensor([2, 5, 20, 0])}
    assert ort_model.label_names == (list(labels) if kind == "qa" else ["labels"])
    got = ort_model(**inputs, **labels)
    with torch.inference_mode():
        ref = model(**inputs, **labels)
    assert list(got) == ["loss"] + exp.output_names
    assert float(got["loss"]) == pytest.approx(float(ref.loss), abs=1e-5)
    for name in exp.output_names:
        assert float((got[name] - ref[name]).abs().max()) < 1e-4
    assert "loss" not in ort_model(**inputs)  # no labels, no loss (the Trainer predicts only)


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "cnn_dailymail", "{ckpt}", "--onnx"], "--onnx: task cnn_dailymail evaluates by generate()"),
    (["evaluate", "sst2", "{ckpt}", "--onnx", "--quantize", "int4"], "--quantize supports int8 only"),
    (["evaluate", "sst2", "{export}", "--data-dir", "{data}"], "is an ONNX export: evaluate it with --onnx"),
])
def test_onnx_errors_are_one_line(argv, message, trained, toy_data, tmp_path, capsys):
    export = tmp_path / "onnx"
    export.mkdir()
    (export / "model.onnx").write_bytes(b"")
    (export / "nnprune_onnx.json").write_text("{}")
    (export / "config.json").write_text((trained / "config.json").read_text())
    fmt = {"ckpt": trained, "data": toy_data, "export": export}
    with pytest.raises(SystemExit) as exc:
        main([a.format(**fmt) for a in argv])
    assert exc.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert message in err[0]
