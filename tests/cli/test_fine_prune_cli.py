"""``nnprune fine-prune --target-speedup`` without --method: auto says which route it took."""

from __future__ import annotations

import json

import pytest

from conftest import known_latency_table as _table_file, save_tiny_model, write_toy_sst2
from typer.testing import CliRunner


def test_auto_route_is_named_in_the_title_the_table_and_the_json(tmp_path, capsys):
    from nnprune.cli.main import app, main

    model = save_tiny_model(tmp_path / "tiny", "bert")
    data = write_toy_sst2(tmp_path / "data")
    table = _table_file(model, tmp_path / "table.json")
    common = ["fine-prune", "sst2", "--model", model, "--data-dir", data, "--target-speedup", "2",
              "--latency-table", table, "--latency-batch-size", "1", "--latency-seq-len", "16",
              "--latency-threads", "1", "--max-steps", "2", "--batch-size", "8",
              "--max-seq-length", "16"]
    res = CliRunner().invoke(app, [str(a) for a in common + ["--output-dir", tmp_path / "a"]])
    assert res.exit_code == 0, res.output
    assert "sst2 · auto → one-shot ·" in res.output
    assert "route (auto)" in res.output and "one-shot (32 training examples <= 76,800)" in res.output
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in common + ["--output-dir", tmp_path / "b", "--set", "final_threshold=0.2"]])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "--set configure fine-pruning" in err and "Traceback" not in err
    res = CliRunner().invoke(app, [str(a) for a in common + ["--output-dir", tmp_path / "c", "--json"]])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["route"]["route"] == "one-shot"
