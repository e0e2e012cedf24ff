"""``benchmarks/cache_effect.py``: each model timed warm and cold against the dense one, a table,
JSON and a picture; the models are tiny (what the timings show on MiniLM is on the docs page)."""

from __future__ import annotations

import copy
import json

import pytest

from conftest import compact_first, load_benchmark, tiny_bert


def test_every_model_is_timed_warm_and_cold_with_its_weight_bytes(tmp_path, capsys):
    dense = tiny_bert()
    half = compact_first(copy.deepcopy(dense), {("encoder", i): 2 for i in range(2)},
                         {("encoder", i): 32 for i in range(2)})
    dense.save_pretrained(tmp_path / "dense")
    half.save_pretrained(tmp_path / "half")
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    bench = load_benchmark("cache_effect")
    assert bench.main([str(tmp_path / "half"), "--baseline", str(tmp_path / "dense"),
                       "--batch-sizes", "1,4", "--seq-len", "16", "--iters", "2", "--warmup", "1",
                       "--json", str(out), "--plot", str(png), "--labels", "half"]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    # half the heads and FFN dims: fewer weight bytes than dense, the embeddings' rows aside
    assert 0 < row["weights_mib"] < row["dense_weights_mib"]
    for key in ("b1_warm", "b1_cold", "b4_warm", "b4_cold"):
        assert row[key]["model_ms"] > 0 and row[key]["speedup"] == pytest.approx(
            row[key]["dense_ms"] / row[key]["model_ms"])
    table = capsys.readouterr().out
    assert "half" in table and "warm ms" in table and table.count("\n") >= 2
    assert png.stat().st_size > 5_000
    with pytest.raises(SystemExit):  # a folder that is not there: one line, exit 2
        bench.main([str(tmp_path / "nope"), "--baseline", str(tmp_path / "dense")])
