"""``benchmarks/tradeoff.py`` pieces that decide which files a report reads."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from conftest import REPO


def _tradeoff():
    spec = importlib.util.spec_from_file_location("tradeoff", REPO / "benchmarks" / "tradeoff.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up while being built
    spec.loader.exec_module(mod)
    return mod


def test_a_moved_point_is_timed_from_where_it_is_now(tmp_path):
    """Run folders trained on a GPU machine (other paths) or gathered into one --work keep
    their recorded timed_dir; the model is then found at the same place under the folder."""
    timed_dir = _tradeoff().timed_dir
    out = tmp_path / "work" / "struct-x3-s42"
    (out / "compact").mkdir(parents=True)
    gpu = {"timed_dir": "/gpu/runs/tradeoff/struct-x3-s42/compact"}
    assert timed_dir(gpu, out) == out / "compact"
    assert timed_dir({"timed_dir": "/gpu/runs/tradeoff/struct-x3-s42"}, out) == out
    here = {"timed_dir": str(out / "compact")}
    assert timed_dir(here, out) == out / "compact"


def _sweep_args(dense, data, table, work, out, *extra):
    return ["--dense", str(dense), "--data-dir", str(data), "--latency-table", table,
            "--speed-seq", "16", "--latency-threads", "1", "--threads", "1", "--targets", "1.5",
            "--seeds", "42", "--steps", "4", "--batch-size", "8", "--max-seq-length", "16",
            "--max-train-samples", "32", "--max-eval-samples", "16", "--calibration-samples",
            "32", "--iters", "2", "--warmup", "1", "--work", str(work), "--out", str(out),
            "--quiet", *extra]


def test_every_route_is_trained_evaluated_timed_then_reused(tiny_dir, toy_data, tmp_path):
    """One target, the four routes from one tiny fine-tuned model: each point has its accuracy,
    its table-predicted and measured speedup; a second run (a sweep extended later) reuses the
    finished points, and a point of another budget is trained again, not mixed in."""
    from conftest import known_latency_table

    tradeoff = _tradeoff()
    table = known_latency_table(tiny_dir, tmp_path / "table.json")
    work, out = tmp_path / "work", tmp_path / "sweep.json"
    assert tradeoff.main(_sweep_args(tiny_dir, toy_data, table, work, out)) == 0
    report = json.loads(out.read_text())
    points = {p["route"]: p for p in report["points"]}
    assert sorted(points) == sorted(tradeoff.ROUTES)
    assert report["dense"]["shape"]["heads"] == 8 and 0 <= report["dense"]["metric"] <= 1
    for route, p in points.items():
        assert 0 <= p["metric"] <= 1 and p["seed"] == 42 and p["target"] == 1.5, route
        assert p["speed"]["t1"]["b1"] > 0 and p["speed"]["t1"]["b32"] > 0, route
    # Known table (1 ms a head, 0.1 ms an FFN dim, 2 ms fixed): 1 of 2 layers predicts 1.84x.
    assert points["layer-drop"]["shape"]["layers"] == 1
    assert points["layer-drop"]["predicted"] == pytest.approx(22.8 / 12.4, abs=1e-3)
    # Cut to the target by the table; compaction then rounds each FFN up to a multiple of 8
    # dimensions (faster CPU kernels), a large share of a 64-dimension FFN (43 -> 48).
    for route in ("hybrid-filled", "struct", "one-shot"):
        assert points[route]["predicted"] == pytest.approx(1.5, rel=0.1), route
        assert points[route]["shape"]["heads"] < 8 or points[route]["shape"]["ffn_dims"] < 128
    assert out.with_suffix(".png").stat().st_size > 0

    weights = {r: Path(p["timed_dir"]) / "model.safetensors" for r, p in points.items()}
    stamps = {r: w.stat().st_mtime_ns for r, w in weights.items()}
    assert tradeoff.main(_sweep_args(tiny_dir, toy_data, table, work, out)) == 0
    assert {r: w.stat().st_mtime_ns for r, w in weights.items()} == stamps  # reused, not retrained
    assert len(json.loads(out.read_text())["points"]) == 4

    # Another budget (6 steps): the layer-drop folder is trained again and the report holds
    # only this budget's points.
    assert tradeoff.main(_sweep_args(tiny_dir, toy_data, table, work, out, "--steps", "6",
                                     "--only", "layer-drop")) == 0
    again = json.loads(out.read_text())["points"]
    assert [p["route"] for p in again] == ["layer-drop"]
    assert again[0]["budget"]["steps"] == 6
    assert weights["layer-drop"].stat().st_mtime_ns != stamps["layer-drop"]

    # --time-only times what is trained and starts nothing: target 3 has no run yet.
    assert tradeoff.main(_sweep_args(tiny_dir, toy_data, table, work, out, "--steps", "6",
                                     "--only", "layer-drop", "--targets", "1.5,3",
                                     "--time-only")) == 0
    assert [p["target"] for p in json.loads(out.read_text())["points"]] == [1.5]
    assert not (work / "layer-drop-x3-s42").exists()
    assert tradeoff.main(_sweep_args(tiny_dir, toy_data, table, work, out, "--time-only",
                                     "--train-only")) == 2
