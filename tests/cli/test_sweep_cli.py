"""``nnprune sweep``: a spec file or flags alone, ``--dry-run`` (the points, starting nothing),
a real sweep through submitit's in-process debug executor, ``--pick`` on what it left, JSON out,
and bad input as one ``error:`` line with exit code 2."""

from __future__ import annotations

import json

import pytest
from conftest import known_latency_table, save_tiny_model, write_toy_sst2

from nnprune.cli.main import main


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep-cli")
    model = save_tiny_model(root / "tiny-bert", "bert")
    return model, write_toy_sst2(root / "toy"), known_latency_table(model, root / "table.json"), root


def _flags(inputs, work, *extra):
    model, data, table, _ = inputs
    return ["sweep", "--task", "sst2", "--model", str(model), "--data-dir", str(data),
            "--routes", "layer-drop,struct", "--targets", "1.5", "--seeds", "42", "--steps", "4",
            "--batch-size", "8", "--max-seq-length", "16", "--max-train-samples", "32",
            "--max-eval-samples", "16", "--latency-table", table, "--latency-seq-len", "16",
            "--threads", "1", "--iters", "2", "--warmup", "1", "--work", str(work), *extra]


def _run(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def test_dry_run_lists_the_points_and_starts_nothing(inputs, tmp_path, capsys):
    work = tmp_path / "w"
    code, out, _ = _run(_flags(inputs, work, "--dry-run", "--workers", "2"), capsys)
    assert code == 0
    for point in ("dense", "layer-drop-x1.5-s42", "struct-x1.5-s42"):
        assert point in out
    assert "local: 2 worker(s) at once" in out and out.count(" new ") >= 3
    assert not work.exists()


def test_a_sweep_from_flags_then_pick_from_what_it_left(inputs, tmp_path, capsys):
    pytest.importorskip("submitit")
    work = tmp_path / "w"
    code, out, err = _run(_flags(inputs, work, "--executor", "debug", "--json"), capsys)
    assert code == 0, err
    result = json.loads(out)  # --json: stdout holds the JSON alone
    assert [p["state"] for p in result["points"]] == ["timed", "timed"], result["points"]
    assert result["dense"]["state"] == "timed" and (work / "sweep.png").is_file()
    # start nothing, read what is there, hand over the best model (tiny models timed on a busy
    # machine: anything at least half as fast as the dense one counts)
    code, out, err = _run(_flags(inputs, work, "--phase", "report", "--pick", "1",
                                 "--pick-tolerance", "0.45"), capsys)
    assert code == 0, err
    assert "picked " in out and "layer-drop" in out.split("sweep ")[1]  # the table
    picked = json.loads((work / "picked-1x" / "sweep_pick.json").read_text())
    assert picked["point"] in ("layer-drop-x1.5-s42", "struct-x1.5-s42")
    assert (work / "picked-1x" / "README.md").is_file()


@pytest.mark.parametrize("extra, message", [
    (["--routes", "one-shot,magic"], "unknown route 'magic'"),
    (["--targets", "30"], "beyond the latency table's reach"),
    (["--executor", "kubernetes"], "unknown value 'kubernetes'"),
    (["--phase", "later"], "--phase: unknown phase 'later'"),
    (["--set", "attention_lambda"], "--set expects key=value"),
    (["--report-to", "comet"], "unknown tracker 'comet'"),
    (["--pick", "0.5"], "--pick takes a speedup >= 1"),
])
def test_bad_input_is_one_error_line_and_exit_code_2(inputs, tmp_path, capsys, extra, message):
    work = tmp_path / "w"
    code, _, err = _run(_flags(inputs, work, *extra), capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err
    assert not work.exists()


def test_a_spec_file_missing_its_model_names_it(inputs, tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("task: sst2\nmodel: nowhere\nroutes: [one-shot]\ntargets: [2]\n")
    code, _, err = _run(["sweep", spec, "--work", tmp_path / "w"], capsys)
    assert code == 2 and "model" in err and "no fine-tuned model there" in err
