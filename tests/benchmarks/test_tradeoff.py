"""``benchmarks/tradeoff.py``: a preset of ``nnprune sweep``. Its flags (the ones the README's
earlier results were made with) become the sweep spec they meant, and a run goes through the
sweep end to end; what the sweep itself does is tested in tests/workflows/test_sweep.py."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark


def test_the_readme_command_is_the_sweep_it_meant(tmp_path):
    from nnprune.workflows.sweep_spec import load_spec

    t = load_benchmark("tradeoff")
    a = t.parse(["--dense", str(tmp_path / "dense"), "--data-dir", str(tmp_path), "--targets",
                 "1.5,2,3", "--steps", "600", "--threads", "1,2", "--work", str(tmp_path / "w"),
                 "--set", "attention_lambda=20"])
    spec = load_spec(None, t.spec_data(a))
    assert [r.route for r in spec.routes] == ["dense", *t.ROUTES]
    assert spec.targets == (1.5, 2.0, 3.0) and spec.seeds == (42,)
    assert spec.noise.target == 2.0 and spec.noise.seeds == (43,)
    assert spec.noise.routes == ("hybrid-filled", "one-shot")
    b = spec.budget
    assert (b.steps, b.batch_size, b.max_seq_length, b.learning_rate) == (600, 32, 64, 5e-5)
    assert (b.fill_share, b.score_init, b.calibration_samples, b.set) == (0.5, "importance", 2048,
                                                                          ("attention_lambda=20",))
    assert spec.latency.seq_len == 128 and spec.latency.threads == 1
    assert spec.timing.threads == (1, 2) and spec.timing.seq_len == 128
    squad = load_spec(None, t.spec_data(t.parse(["--dense", "d", "--task", "squad", "--only",
                                                 "one-shot", "--seeds", "42"])))
    assert (squad.budget.batch_size, squad.budget.max_seq_length) == (16, 256)
    assert [r.route for r in squad.routes] == ["dense", "one-shot"] and squad.noise is None


@pytest.mark.parametrize("flags, message", [
    (["--time-only", "--train-only"], "exclude each other"),
    (["--compare", "before=runs/x"], "--compare is gone"),
    (["--only", "magic"], "unknown route(s) magic"),
])
def test_flags_that_cannot_be_a_sweep_are_refused(flags, message, capsys):
    assert load_benchmark("tradeoff").main(["--dense", "d", *flags]) == 2
    assert message in capsys.readouterr().err


def test_a_smoke_run_goes_through_the_sweep(tiny_dir, toy_data, tmp_path):
    pytest.importorskip("submitit")
    from conftest import known_latency_table

    table = known_latency_table(tiny_dir, tmp_path / "table.json")
    work = tmp_path / "work"
    argv = ["--smoke", "--dense", str(tiny_dir), "--data-dir", str(toy_data), "--latency-table",
            table, "--speed-seq", "16", "--only", "layer-drop", "--max-seq-length", "16",
            "--batch-size", "8", "--max-train-samples", "32", "--max-eval-samples", "16",
            "--work", str(work), "--executor", "debug", "--quiet"]
    assert load_benchmark("tradeoff").main(argv) == 0
    report = json.loads((work / "sweep.json").read_text())
    assert [(p["id"], p["state"]) for p in report["points"]] == [("layer-drop-x1.5-s42", "timed")]
    assert report["dense"]["state"] == "timed" and (work / "sweep.png").is_file()
