"""``benchmarks/ort_fusions.py``: each model's ONNX export timed with onnxruntime's defaults and
with nnprune's session, the same outputs, and the fused kernel against the ops it replaces; the
models are tiny (what it shows on MiniLM is on docs/commands/export-onnx.md)."""

from __future__ import annotations

import json

import pytest

from conftest import compact_first, load_benchmark, tiny_bert


def test_both_sessions_are_timed_per_model_and_precision_with_the_same_outputs(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    tiny_bert().save_pretrained(tmp_path / "dense")
    compact_first(tiny_bert(), {("encoder", 0): 2}, {("encoder", 1): 16}).save_pretrained(tmp_path / "small")
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    bench = load_benchmark("ort_fusions")
    assert bench.main([str(tmp_path / "dense"), str(tmp_path / "small"), "--labels", "dense,small",
                       "--batch-sizes", "1,2", "--seq-len", "16", "--hidden-sizes", "32",
                       "--iters", "2", "--warmup", "1", "--json", str(out), "--plot", str(png)]) == 0
    res = json.loads(out.read_text())
    assert res["disabled"] == ["SkipLayerNormFusion"]
    assert [r["label"] for r in res["models"]] == ["dense", "small"]
    for row in res["models"]:
        for p in ("fp32", "int8"):
            for b in ("b1", "b2"):
                cell = row[p][b]
                assert cell["default_ms"] > 0 and cell["nnprune_ms"] > 0
                assert cell["gain"] == pytest.approx(cell["default_ms"] / cell["nnprune_ms"])
                assert cell["max_abs_diff"] < 1e-4  # the fusion changes the speed, not the result
    (kern,) = res["kernels"]
    assert kern["hidden"] == 32 and kern["fused_us"] > 0 and kern["plain_us"] > 0
    table = capsys.readouterr().out
    assert "small" in table and "int8" in table and "hidden 32" in table
    assert png.stat().st_size > 5_000
    with pytest.raises(SystemExit):  # a folder that is not there: one line, exit 2
        bench.main([str(tmp_path / "nope")])
