"""Latency tables: what is measured, the cache and its key, reading tables back, the CLI."""

from __future__ import annotations

import json

import pytest
from conftest import save_tiny_model, tiny_config

from nnprune.errors import NNPruneError
from nnprune.measure.latency import (TABLE_FORMAT, LatencySetting, cache_path, check_table_fits, ffn_grid,
                                     head_grid, latency_table, read_table, table_key)

FAST = dict(budget_s=0.5)


def _config(**kw):
    cfg = tiny_config(**kw)
    cfg.architectures = ["BertForSequenceClassification"]
    return cfg


def test_grids():
    assert head_grid(12) == list(range(13))
    assert head_grid(32)[0] == 0 and head_grid(32)[-1] == 32 and len(head_grid(32)) <= 17
    grid = ffn_grid(1536)
    assert grid[:3] == [0, 16, 64] and grid[-1] == 1536 and len(grid) == 11
    assert all(g % 8 == 0 for g in grid)


def test_table_is_measured_cached_and_reused(tmp_path):
    cfg = _config()
    setting = LatencySetting(batch_size=2, seq_len=16, threads=1)
    table = latency_table(cfg, setting, cache_dir=tmp_path, **FAST)
    m = table.model
    assert not table.cached and table.path and table.rounds >= 3
    assert m.num_layers == 2 and m.heads == (0, 1, 2, 3, 4) and m.ffn_dims[-1] == 64
    assert m.attention_ms[0] == 0 and m.ffn_ms[0] == 0
    assert list(m.attention_ms) == sorted(m.attention_ms) and list(m.ffn_ms) == sorted(m.ffn_ms)
    # the model predicts the dense forward it measured
    assert m.dense_ms == pytest.approx(table.measured["dense"])
    assert set(table.measured) >= {"dense", "empty", "heads=0", "ffn=0"}
    again = latency_table(cfg, setting, cache_dir=tmp_path, **FAST)
    assert again.cached and again.model == m and again.path == table.path
    rebuilt = latency_table(cfg, setting, cache_dir=tmp_path, rebuild=True, **FAST)
    assert not rebuilt.cached and rebuilt.path == table.path
    # another shape of input is another table
    other = latency_table(cfg, LatencySetting(batch_size=1, seq_len=16, threads=1),
                          cache_dir=tmp_path, **FAST)
    assert other.path != table.path and len(list(tmp_path.iterdir())) == 2


def test_cache_key_holds_shapes_setting_hardware_and_versions():
    cfg = _config()
    key = table_key(cfg, LatencySetting(threads=None, seq_len=128))
    assert key["setting"]["threads"] >= 1  # resolved: a table says how many threads it used
    assert {"hardware", "torch", "transformers"} <= set(key)
    assert (key["layers"], key["hidden"], key["heads"], key["head_dim"], key["ffn"]) == (2, 32, 4, 8, 64)
    a = cache_path(key, "/c")
    setting = LatencySetting(seq_len=128)
    assert a != cache_path(table_key(_config(intermediate_size=128), setting), "/c")
    assert a != cache_path(table_key(cfg, LatencySetting(seq_len=64)), "/c")
    assert a == cache_path(table_key(cfg, setting), "/c")
    # the same encoder under another task head is the same table
    qa = _config()
    qa.architectures = ["BertForQuestionAnswering"]
    assert a == cache_path(table_key(qa, setting), "/c")
    with pytest.raises(NNPruneError, match="needs a sequence length"):
        table_key(cfg, LatencySetting())
    assert LatencySetting().at(64).seq_len == 64 and LatencySetting(seq_len=32).at(64).seq_len == 32


def test_a_corrupted_cache_entry_is_measured_again(tmp_path):
    cfg = _config()
    setting = LatencySetting(batch_size=1, seq_len=8, threads=1)
    path = cache_path(table_key(cfg, setting), tmp_path)
    path.write_text("{not json")
    table = latency_table(cfg, setting, cache_dir=tmp_path, **FAST)
    assert not table.cached and json.loads(path.read_text())["format"] == TABLE_FORMAT


def test_table_files_are_read_and_checked_against_the_model(tmp_path):
    cfg = _config()
    table = latency_table(cfg, LatencySetting(batch_size=1, seq_len=8, threads=1),
                          cache_dir=tmp_path, **FAST)
    back = read_table(table.path)
    assert back.model == table.model and back.key == table.key
    check_table_fits(back, cfg)
    with pytest.raises(NNPruneError, match="another architecture.*ffn 64 vs 128"):
        check_table_fits(back, _config(intermediate_size=128))
    with pytest.raises(NNPruneError, match="does not exist"):
        read_table(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": 99}))
    with pytest.raises(NNPruneError, match="unknown format"):
        read_table(bad)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(NNPruneError, match="cpu or cuda"):
        LatencySetting(device="tpu")
    with pytest.raises(NNPruneError, match="fp32, fp16, bf16"):
        LatencySetting(dtype="int4")
    with pytest.raises(NNPruneError, match=">= 1"):
        LatencySetting(batch_size=0)


def test_cli_prints_and_writes_the_table(tmp_path):
    from typer.testing import CliRunner

    from nnprune.cli.main import app

    model = save_tiny_model(tmp_path / "tiny")
    out = tmp_path / "table.json"
    args = ["latency-table", str(model), "--batch-size", "1", "--seq-len", "8", "--threads", "1",
            "--cache-dir", str(tmp_path / "cache"), "--budget-seconds", "0.5"]
    res = CliRunner().invoke(app, args + ["--json-file", str(out)])
    assert res.exit_code == 0, res.output
    assert "one attention block, by heads kept" in res.output and "largest speedup" in res.output
    data = json.loads(out.read_text())
    # the width terms, one row per measured width, each the table's own numbers
    table = read_table(out).model
    assert table.has_width_depth and "by hidden width" in res.output
    after = res.output[res.output.index("by hidden width"):]
    lines = [line for line in after.splitlines() if "│" in line]
    for w in table.widths:
        row = next(line for line in lines if line.split("│")[1].strip() == str(w))
        a, f, layer, base = table.width_terms(w)
        assert [float(c) for c in row.split("│")[2:6]] == pytest.approx([a, f, layer, base], abs=6e-4)
    assert f"{table.max_speedup_width_depth:.2f}x" in res.output
    assert data["model"]["heads"] == [0, 1, 2, 3, 4] and data["cached"] is False
    res = CliRunner().invoke(app, args + ["--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["cached"] is True
    assert read_table(out).model.num_layers == 2
