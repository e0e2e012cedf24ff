"""What the commands print: whole tables in logs, ``--json`` on stdout, ``--json-file``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import save_tiny_model
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def wide_ckpt(tmp_path_factory) -> Path:
    """A tiny BERT in a folder with a long name: its count-params table (9 columns) and title
    are wider than 80 columns."""
    root = tmp_path_factory.mktemp("a-rather-long-folder-name-for-the-checkpoint-of-this-test")
    return save_tiny_model(root / "sst2-hybrid-target-density-0.4-seed-42", "bert")


def _invoke(args, env=None):
    from nnprune.cli.main import app

    res = CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)
    return res


def _expected_table(ckpt: Path):
    """The count-params table of ``ckpt`` as the command builds it: (headers, rows of cells)."""
    from nnprune.cli.count_params import render_count_table
    from nnprune.measure.counting import count_parameters
    from nnprune.pruning_core.checkpoint import load_model

    loaded = load_model(ckpt)
    table = render_count_table(count_parameters(loaded.model, seq_len=128),
                               f"{ckpt} ({loaded.kind.value})")
    headers = [str(c.header) for c in table.columns]
    rows = list(zip(*[[str(cell) for cell in c.cells] for c in table.columns]))
    return headers, rows


def test_count_params_table_is_whole_when_stdout_is_not_a_terminal(wide_ckpt, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    res = _invoke(["count-params", wide_ckpt], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    out = res.stdout
    lines = out.splitlines()
    assert "…" not in out
    # The table needs more than 80 columns: the test really is about a too-narrow COLUMNS.
    assert max(len(line.rstrip()) for line in lines) > 80
    headers, rows = _expected_table(wide_ckpt)
    assert len(headers) >= 9 and rows
    header_line = next(line for line in lines if "layer" in line and "ffn dims" in line)
    for header in headers:
        assert f" {header} " in header_line, (header, header_line)
    for row in rows:
        # each row on one line, every cell complete
        line = next(line for line in lines if f" {row[0]} " in line)
        assert all(f" {cell} " in line for cell in row), (row, line)
    assert f"{wide_ckpt} (plain)" in out  # the title (a long path) on one line too
    assert any(line.startswith("total linear weights:") and "estimated speedup" in line
               for line in lines)


def test_tables_fold_instead_of_ellipsizing_on_a_narrow_terminal():
    from nnprune.cli.common import CliConsole, make_table

    cells = ["enc.11", "1394/1536", "100.0%", "ffn_out_weights_kept"]
    table = make_table("t", ["layer", "ffn dims", "q kept", "what"], [cells])
    buf = io.StringIO()
    CliConsole(file=buf, force_terminal=True, width=32, color_system=None).print(table)
    text = buf.getvalue()
    lines = text.splitlines()
    assert "…" not in text and max(len(line) for line in lines) <= 32
    body = lines[lines.index(next(ln for ln in lines if ln.startswith("┡"))) + 1:-1]
    assert len(body) > 1  # the row did fold
    # Each column's pieces, read top to bottom, give the whole cell back.
    columns = ["".join(ln.split("│")[j + 1].strip() for ln in body) for j in range(len(cells))]
    assert columns == cells


def test_count_params_json_flag_and_json_file(wide_ckpt, tmp_path):
    res = _invoke(["count-params", wide_ckpt, "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)  # nothing but the JSON on stdout
    assert payload["checkpoint"] == str(wide_ckpt) and payload["kind"] == "plain"
    assert payload["density"] == 1.0 and len(payload["layers"]) == 2

    # --json-file writes the same payload; the table stays on stdout
    res = _invoke(["count-params", wide_ckpt, "--json-file", tmp_path / "c.json"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "c.json").read_text()) == payload
    assert "total linear weights" in res.stdout and "{" not in res.stdout

    # with --json and --json-file both get the same text
    res = _invoke(["count-params", wide_ckpt, "--json", "--json-file", tmp_path / "d.json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == payload == json.loads((tmp_path / "d.json").read_text())
    assert res.stdout == (tmp_path / "d.json").read_text()


def test_old_json_argument_is_a_usage_error_with_a_hint(wide_ckpt, tmp_path, capsys):
    from nnprune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["count-params", str(wide_ckpt), "--json", str(tmp_path / "c.json")])
    assert exc.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--json-file PATH" in err and not (tmp_path / "c.json").exists()


def test_bertarize_o_stays_its_output_folder(wide_ckpt, tmp_path):
    res = _invoke(["bertarize", wide_ckpt, "-o", tmp_path / "plain", "--json-file",
                   tmp_path / "r.json"])
    assert res.exit_code == 0, res.output
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["output"] == str(tmp_path / "plain") and written["max_abs_diff"] == 0.0
    res = _invoke(["bertarize", wide_ckpt, "-o", tmp_path / "plain2", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["output"] == str(tmp_path / "plain2")


@pytest.mark.parametrize("command", ["fine-prune", "prune", "fill", "count-params", "bertarize",
                                     "evaluate", "speed", "export-onnx", "report"])
def test_json_is_a_flag_and_json_file_takes_a_path_everywhere(command):
    from nnprune.cli.main import app
    from typer.main import get_command

    click_cmd = get_command(app).commands[command]  # type: ignore[attr-defined]
    opts = {name: p for p in click_cmd.params for name in p.opts}
    assert opts["--json"].is_flag
    assert not opts["--json-file"].is_flag
    # no short flag: next to --output-dir, -o would read as the output folder
    assert opts["--json-file"].opts == ["--json-file"]
