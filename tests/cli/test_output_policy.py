"""One output rule for every command that writes (docs/outputs.md), table-driven: what a user
already has at an output path is never replaced or deleted behind their back.

Every writing command meets, at its output path: a file of the user's, a folder holding a file
of the user's, and an earlier nnprune output. The first two are a one-line ``error:`` and exit 2
with every byte under the test folder (inputs included) unchanged, with or without
``--overwrite``; the earlier output is refused without ``--overwrite`` and replaced whole with
it. Commands that *add* files to a folder (``report``, ``evaluate --predictions-dir``) leave
the user's other files alone and refuse only to replace one of the user's files with one of
theirs, unless ``--overwrite``.

To cover a new writing command, add a row to :data:`FOLDER_COMMANDS` or :data:`ADDING_COMMANDS`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from conftest import save_tiny_model, write_toy_sst2

from nnprune.io_utils import LOCK_FILE, RECORD_FILE, TMP_PREFIX, atomic_directory, read_record


@dataclass(frozen=True)
class Inputs:
    root: Path
    model: Path  # tiny BERT, sequence classification
    data: Path  # toy SST-2
    qa_model: Path  # tiny BERT, question answering
    squad_dev: Path


@dataclass(frozen=True)
class Command:
    """A writing command: its argv for an output path, and what it writes there."""

    name: str
    argv: Callable[[Inputs, Path], list]
    product: str  # a file the command writes into its output folder

    def __str__(self) -> str:
        return self.name


TRAIN = ["--max-seq-length", "16", "--batch-size", "8", "--max-steps", "1", "--save-steps", "1"]

#: Commands that write a whole folder: new or empty, or an earlier nnprune output with --overwrite.
FOLDER_COMMANDS = [
    Command("fine-prune", lambda i, out: [
        "fine-prune", "sst2", "--model", i.model, "--output-dir", out, "--data-dir", i.data,
        "--method", "hybrid-nt", "--target-density", "0.5", "--set", "attention_block=8x8", *TRAIN],
        "nnprune_results.json"),
    Command("prune", lambda i, out: [
        "prune", i.model, "sst2", "--output-dir", out, "--data-dir", i.data, "--target-flops",
        "0.6", "--calibration-samples", "32", "--max-seq-length", "16", "--batch-size", "8",
        "--no-speed-probe"], "nnprune_results.json"),
    Command("fill", lambda i, out: [
        "fill", i.model, "sst2", "--teacher", i.model, "--output-dir", out, "--data-dir", i.data,
        "--no-card", *TRAIN], "nnprune_results.json"),
    Command("bertarize", lambda i, out: ["bertarize", i.model, "--output", out], "config.json"),
    Command("export-onnx", lambda i, out: ["export-onnx", i.model, out], "model.onnx"),
]
# The sweep continues its work folder by design (no --overwrite): its own tests are at the end.

#: Commands that add files to a folder (which may hold the user's other files).
ADDING_COMMANDS = [
    Command("report", lambda i, out: ["report", i.model, "--output", out], "README.md"),
    Command("evaluate --predictions-dir", lambda i, out: [
        "evaluate", "squad", i.qa_model, "--validation-file", i.squad_dev, "--max-seq-length",
        "64", "--predictions-dir", out], "predictions.json"),
]
ALL_COMMANDS = FOLDER_COMMANDS + ADDING_COMMANDS


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    root = tmp_path_factory.mktemp("policy")
    context = "The film opened in Paris in 1999 and was directed by Ana Ruiz."
    qas = [{"id": f"q{k}", "question": q, "answers": [{"text": a, "answer_start": context.index(a)}]}
           for k, (q, a) in enumerate([("Where did it open?", "Paris"),
                                        ("Who directed it?", "Ana Ruiz")])]
    dev = root / "dev.json"
    dev.write_text(json.dumps({"version": "1.1", "data": [
        {"title": "T", "paragraphs": [{"context": context, "qas": qas}]}]}))
    return Inputs(root, save_tiny_model(root / "tiny", "bert"), write_toy_sst2(root / "toy"),
                  save_tiny_model(root / "qa", "bert", head="question-answering"), dev)


def tree(*roots: Path) -> dict[str, str]:
    """Every file and folder under ``roots`` (hidden ones too), each file with its bytes' hash."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def run(capsys, argv: list) -> tuple[int, str]:
    from nnprune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    return int(exc.value.code or 0), capsys.readouterr().err


def assert_refused(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


def assert_no_leftovers(folder: Path) -> None:
    """No lock, no temporaries in the folder or beside it."""
    assert not (folder / LOCK_FILE).exists()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(TMP_PREFIX)]
    assert not [p for p in folder.iterdir() if p.name.startswith(TMP_PREFIX)]


# ------------------------------------------------------------------------------ every command
@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "--overwrite"])
@pytest.mark.parametrize("command", ALL_COMMANDS, ids=str)
def test_a_file_where_the_output_folder_goes_is_refused(command, overwrite, inputs, tmp_path, capsys):
    out = tmp_path / "notes.txt"
    out.write_text("the user's notes\n")
    before = tree(tmp_path, inputs.root)
    code, err = run(capsys, command.argv(inputs, out) + (["--overwrite"] if overwrite else []))
    assert_refused(code, err, "notes.txt", "not a folder")
    assert tree(tmp_path, inputs.root) == before


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "--overwrite"])
@pytest.mark.parametrize("command", FOLDER_COMMANDS, ids=str)
def test_a_folder_holding_the_users_files_is_refused(command, overwrite, inputs, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("the user's notes\n")
    before = tree(tmp_path, inputs.root)
    code, err = run(capsys, command.argv(inputs, out) + (["--overwrite"] if overwrite else []))
    assert_refused(code, err, "keep.txt", "nnprune did not write")
    assert tree(tmp_path, inputs.root) == before


@pytest.mark.parametrize("command", FOLDER_COMMANDS, ids=str)
def test_an_earlier_nnprune_output_is_replaced_whole_with_overwrite_only(command, inputs, tmp_path,
                                                                        capsys):
    out = tmp_path / "out"
    with atomic_directory(out, overwrite=False) as earlier:  # what an earlier save left
        (earlier / "earlier-only.bin").write_bytes(b"\x00" * 16)
        (earlier / command.product).write_text("earlier")
    before = tree(tmp_path, inputs.root)
    code, err = run(capsys, command.argv(inputs, out))
    assert_refused(code, err, "pass --overwrite")
    assert tree(tmp_path, inputs.root) == before

    code, err = run(capsys, command.argv(inputs, out) + ["--overwrite"])
    assert code == 0, err
    assert not (out / "earlier-only.bin").exists()
    assert (out / command.product).read_bytes() != b"earlier"
    assert command.product in read_record(out)
    assert_no_leftovers(out)
    assert tree(inputs.root) == {k: v for k, v in before.items() if k.startswith(str(inputs.root))}


HOLD = """
import sys, time
sys.path.insert(0, {repo!r})
from nnprune.io_utils import output_lock
with output_lock({folder!r}):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("command", FOLDER_COMMANDS, ids=str)
def test_a_second_writer_is_refused_naming_the_first(command, inputs, tmp_path, capsys):
    """Another run (here: a process holding the folder's lock) writes the folder: refused in one
    line naming its host and pid, whatever the flags, and nothing changes."""
    import socket
    import subprocess
    import sys

    out = tmp_path / "out"
    with atomic_directory(out, overwrite=False) as earlier:
        (earlier / command.product).write_text("earlier")
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(
        repo=str(Path(__file__).resolve().parents[2]), folder=str(out))],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = tree(tmp_path, inputs.root)
        code, err = run(capsys, command.argv(inputs, out) + ["--overwrite"])
        assert_refused(code, err, "being written by another nnprune run",
                       f"pid {holder.pid} on host {socket.gethostname()}")
        assert tree(tmp_path, inputs.root) == before
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------------------ adding commands
@pytest.mark.parametrize("command", ADDING_COMMANDS, ids=str)
def test_adding_commands_never_replace_a_users_file_without_overwrite(command, inputs, tmp_path,
                                                                      capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("the user's notes\n")
    (out / command.product).write_text("the user's own file\n")
    before = tree(tmp_path, inputs.root)
    code, err = run(capsys, command.argv(inputs, out))
    assert_refused(code, err, command.product, "--overwrite")
    assert tree(tmp_path, inputs.root) == before

    code, err = run(capsys, command.argv(inputs, out) + ["--overwrite"])
    assert code == 0, err
    assert (out / command.product).read_text() != "the user's own file\n"
    assert (out / "keep.txt").read_text() == "the user's notes\n"  # the others: left alone


@pytest.mark.parametrize("command", ADDING_COMMANDS, ids=str)
def test_adding_commands_replace_their_own_earlier_files(command, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run(capsys, command.argv(inputs, out))
    assert code == 0, err
    first = (out / command.product).read_bytes()
    (out / "keep.txt").write_text("the user's notes\n")
    code, err = run(capsys, command.argv(inputs, out))  # again, no --overwrite: nnprune's file
    assert code == 0, err
    assert (out / command.product).read_bytes() == first
    assert (out / "keep.txt").read_text() == "the user's notes\n"


# ------------------------------------------------------------------------------ as before
def test_an_export_replaces_the_earlier_export_atomically(inputs, tmp_path, capsys):
    """A real earlier output (not one made for the test) is replaced whole, in one step."""
    out = tmp_path / "onnx"
    assert run(capsys, ["export-onnx", inputs.model, out, "--quantize", "int8"])[0] == 0
    assert (out / "model.int8.onnx").is_file()
    code, err = run(capsys, ["export-onnx", inputs.model, out])
    assert_refused(code, err, "pass --overwrite")
    code, err = run(capsys, ["export-onnx", inputs.model, out, "--overwrite"])
    assert code == 0, err
    assert (out / "model.onnx").is_file() and not (out / "model.int8.onnx").exists()
    assert RECORD_FILE in {p.name for p in out.iterdir()}
    assert_no_leftovers(out)


@pytest.mark.parametrize("command", ["fine-prune", "prune", "fill", "bertarize", "export-onnx",
                                     "evaluate", "report"])
def test_every_writing_command_has_the_same_overwrite(command):
    from typer.main import get_command

    from nnprune.cli.main import app
    from nnprune.io_utils import OVERWRITE_HELP

    click_cmd = get_command(app).commands[command]  # type: ignore[attr-defined]
    opts = {name: p for p in click_cmd.params for name in p.opts}
    assert "--overwrite" in opts
    if command != "report":  # report's replaces a README.md (a single file): its own words
        assert opts["--overwrite"].help.startswith(OVERWRITE_HELP)


# ----------------------------------------------------------------------------------- the sweep
# A sweep's work folder is continued by design (finished points reused, half-finished ones
# resumed), so it has no --overwrite; what the rule asks of it is that a file, or a folder of
# the user's that is not a sweep's, is refused before any point starts, and that --pick never
# replaces the user's files.
def _sweep(inputs: Inputs, work: Path, *extra) -> list:
    from conftest import known_latency_table

    table = inputs.root / "sweep-table.json"
    if not table.exists():
        known_latency_table(inputs.model, table)
    return ["sweep", "--task", "sst2", "--model", inputs.model, "--data-dir", inputs.data,
            "--routes", "struct", "--targets", "1.5", "--seeds", "42", "--steps", "2",
            "--batch-size", "8", "--max-seq-length", "16", "--latency-table", table,
            "--latency-seq-len", "16", "--work", work, *extra]


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "--dry-run"])
def test_the_sweep_refuses_a_file_or_a_users_folder_as_its_work_folder(dry_run, inputs, tmp_path, capsys):
    extra = ["--dry-run"] if dry_run else []
    notes = tmp_path / "notes.txt"
    notes.write_text("the user's notes\n")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("keep me\n")
    _sweep(inputs, notes)  # the latency table, before the snapshot
    before = tree(tmp_path, inputs.root)
    code, err = run(capsys, _sweep(inputs, notes, *extra))
    assert_refused(code, err, "notes.txt")
    code, err = run(capsys, _sweep(inputs, mine, *extra))
    assert_refused(code, err, "mine")
    assert tree(tmp_path, inputs.root) == before
