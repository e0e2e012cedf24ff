"""The output policy, the one-writer lock and the atomic saves of :mod:`nnprune.io_utils`, on real
folders and real processes: what a user has at an output path is never replaced or deleted
behind their back, a second writer is refused naming the first, and a save stopped half-way
leaves the old content or the new one, never half of one."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnprune import io_utils
from nnprune.errors import NNPruneError
from nnprune.io_utils import (LOCK_FILE, LOCK_INFO_FILE, PENDING_FILE, RECORD_FILE, OutputState,
                              atomic_directory, atomic_write_text, check_output_dir,
                              check_output_file, claim_output_dir, inspect_output, move_into,
                              output_lock, read_record, record_written)

REPO = Path(__file__).resolve().parents[1]


def tree(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` (hidden ones too), with a hash of each file's bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def nnprune_folder(path: Path, *names: str) -> Path:
    """A folder as nnprune leaves it: its files, and the record naming them."""
    with atomic_directory(path, overwrite=True) as tmp:
        for name in names:
            (tmp / name).write_text(f"{name} of an earlier save\n")
    return path


def user_folder(path: Path, name: str = "keep.txt") -> Path:
    path.mkdir(parents=True)
    (path / name).write_text("the user's notes\n")
    return path


# ------------------------------------------------------------------------------ whose is what
def test_what_stands_at_an_output_path(tmp_path):
    assert inspect_output(tmp_path / "new").state is OutputState.MISSING
    (tmp_path / "notes.txt").write_text("x")
    assert inspect_output(tmp_path / "notes.txt").state is OutputState.FILE
    (tmp_path / "empty").mkdir()
    assert inspect_output(tmp_path / "empty").state is OutputState.EMPTY
    # nothing but a lock a killed run left: still empty
    (tmp_path / "empty" / LOCK_FILE).write_text("")
    assert inspect_output(tmp_path / "empty").state is OutputState.EMPTY

    run = nnprune_folder(tmp_path / "run", "config.json", "model.safetensors")
    (run / "checkpoint-4").mkdir()  # the Trainer's, in an nnprune run folder
    (run / "nnprune_pattern.png").write_text("png")  # nnprune's namespace
    nnprune_folder(run / "prune", "config.json")  # a stage with its own record
    assert inspect_output(run).state is OutputState.NNPRUNE

    (run / ".DS_Store").write_bytes(b"\0")  # a file browser looked at it: still nnprune's
    assert inspect_output(run).state is OutputState.NNPRUNE
    (run / "keep.txt").write_text("mine")
    check = inspect_output(run)
    assert check.state is OutputState.USER and check.user_entries == ("keep.txt",)
    # without a record, everything is the user's, even names nnprune also writes
    hf = user_folder(tmp_path / "hf", "config.json")
    (hf / "checkpoint-4").mkdir()
    assert inspect_output(hf).user_entries == ("checkpoint-4", "config.json")


@pytest.mark.parametrize("overwrite", [False, True])
def test_the_policy_refuses_files_and_user_folders_whatever_the_flag(tmp_path, overwrite):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(NNPruneError, match=r"notes.txt is a file, not a folder.*even with --overwrite"):
        check_output_dir(tmp_path / "notes.txt", overwrite=overwrite)
    user_folder(tmp_path / "mine")
    with pytest.raises(NNPruneError, match=r"mine holds keep.txt, which nnprune did not write"):
        check_output_dir(tmp_path / "mine", overwrite=overwrite)
    # a command that adds files to a folder (a report, predictions) may write beside them
    assert check_output_dir(tmp_path / "mine", overwrite=overwrite, adds=True).state is OutputState.USER


def test_an_earlier_nnprune_output_needs_overwrite_or_resume(tmp_path):
    run = nnprune_folder(tmp_path / "run", "config.json")
    with pytest.raises(NNPruneError, match=r"run is not empty; pass --overwrite to replace"):
        check_output_dir(run, overwrite=False)
    with pytest.raises(NNPruneError, match=r"--overwrite .* or --resume to continue"):
        check_output_dir(run, overwrite=False, can_resume=True)
    assert check_output_dir(run, overwrite=True).state is OutputState.NNPRUNE
    assert check_output_dir(run, overwrite=False, resume=True).state is OutputState.NNPRUNE


def test_single_files_are_replaced_but_never_a_folder(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    atomic_write_text(target, "new")  # -o / --json-file: the user named this file
    assert target.read_text() == "new"
    (tmp_path / "adir").mkdir()
    (tmp_path / "adir" / "keep.txt").write_text("k")
    before = tree(tmp_path)
    with pytest.raises(NNPruneError, match="adir is a folder"):
        atomic_write_text(tmp_path / "adir", "x")
    with pytest.raises(NNPruneError, match="a file stands where its folder should be"):
        atomic_write_text(tmp_path / "result.json" / "inner.json", "x")
    assert tree(tmp_path) == before
    # recorded as nnprune's only in a folder nnprune writes
    assert read_record(tmp_path) is None
    run = nnprune_folder(tmp_path / "run", "config.json")
    atomic_write_text(run / "predictions.json", "{}")
    assert read_record(run) == {"config.json", "predictions.json"}


def test_a_file_nnprune_did_not_write_needs_overwrite(tmp_path):
    folder = user_folder(tmp_path / "preds", "predictions.json")
    with pytest.raises(NNPruneError, match="predictions.json exists and was not written by nnprune"):
        check_output_file(folder / "predictions.json", overwrite=False)
    check_output_file(folder / "predictions.json", overwrite=True)
    record_written(folder, ["predictions.json"], create=True)
    check_output_file(folder / "predictions.json", overwrite=False)  # nnprune's now
    with pytest.raises(NNPruneError, match="is a folder, not a file"):
        check_output_file(tmp_path, overwrite=True)


# ------------------------------------------------------------------------------ whole folders
def test_atomic_directory_writes_a_new_folder_with_its_record(tmp_path):
    with atomic_directory(tmp_path / "out", overwrite=False) as tmp:
        (tmp / "model.onnx").write_text("graph")
        assert not (tmp_path / "out").exists()  # not before the block ends
    assert read_record(tmp_path / "out") == {"model.onnx"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporaries, no lock left
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [RECORD_FILE, "model.onnx"]


def test_atomic_directory_replaces_an_nnprune_folder_whole_only_with_overwrite(tmp_path):
    out = nnprune_folder(tmp_path / "out", "old.bin", "config.json")
    before = tree(tmp_path)
    with pytest.raises(NNPruneError, match="pass --overwrite"):
        with atomic_directory(out, overwrite=False) as tmp:
            pytest.fail("the block must not run")
    assert tree(tmp_path) == before
    with atomic_directory(out, overwrite=True) as tmp:
        (tmp / "config.json").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [RECORD_FILE, "config.json"]
    assert (out / "config.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_atomic_directory_never_touches_what_the_user_has(tmp_path, overwrite):
    user_folder(tmp_path / "mine")
    (tmp_path / "notes.txt").write_text("notes")
    before = tree(tmp_path)
    for target in (tmp_path / "mine", tmp_path / "notes.txt"):
        with pytest.raises(NNPruneError):
            with atomic_directory(target, overwrite=overwrite):
                pytest.fail("the block must not run")
    assert tree(tmp_path) == before


def test_the_current_folder_is_never_replaced(tmp_path, monkeypatch):
    outer = nnprune_folder(tmp_path / "outer", "config.json")
    inner = nnprune_folder(outer / "inner", "config.json")
    monkeypatch.chdir(inner)
    before = tree(tmp_path)
    for target in (".", outer):
        with pytest.raises(NNPruneError, match="is the current folder or holds it"):
            with atomic_directory(target, overwrite=True):
                pytest.fail("the block must not run")
    assert tree(tmp_path) == before


def test_a_failed_block_leaves_the_earlier_folder_byte_for_byte(tmp_path):
    out = nnprune_folder(tmp_path / "out", "config.json", "model.safetensors")
    before = tree(tmp_path)
    with pytest.raises(OSError, match="No space left"):
        with atomic_directory(out, overwrite=True) as tmp:
            (tmp / "config.json").write_text("half")
            raise OSError(28, "No space left on device")
    assert tree(tmp_path) == before


def test_files_that_appear_during_the_work_are_not_replaced(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(NNPruneError, match="which nnprune did not write"):
        with atomic_directory(out, overwrite=True) as tmp:
            (tmp / "config.json").write_text("new")
            user_folder(out)  # the user made it meanwhile
    assert (out / "keep.txt").read_text() == "the user's notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ------------------------------------------------------------------------------ one writer
HOLD = """
import sys, time
sys.path.insert(0, {repo!r})
from nnprune.io_utils import output_lock
with output_lock({folder!r}):
    print("held", flush=True)
    time.sleep(60)
"""


def _hold_lock(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(repo=str(REPO), folder=str(folder))],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_naming_host_and_pid(tmp_path):
    folder = tmp_path / "out"
    proc = _hold_lock(folder)
    try:
        with pytest.raises(NNPruneError) as exc:
            with output_lock(folder):
                pytest.fail("two writers")
        message = str(exc.value)
        assert "\n" not in message
        assert f"pid {proc.pid} on host {socket.gethostname()}" in message
        assert "being written by another nnprune run" in message
    finally:
        proc.kill()
        proc.wait()
    # its process is gone: the kernel released the lock, the next writer takes it
    with output_lock(folder):
        assert json.loads((folder / LOCK_INFO_FILE).read_text())["pid"] == os.getpid()
        with output_lock(folder):  # nested in one process: free
            pass
    assert not (folder / LOCK_FILE).exists() and not (folder / LOCK_INFO_FILE).exists()


ORPHAN = """
import fcntl, os, sys, time
fd = os.open({lock!r}, os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def test_a_lock_whose_process_died_is_taken_over(tmp_path):
    """A run killed while a process it started still has the lock file open (a data loader
    worker, say): the lock is still taken, but its recorded owner is dead on this host."""
    folder = tmp_path / "out"
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (folder / LOCK_INFO_FILE).write_text(json.dumps(
        {"host": socket.gethostname(), "pid": int(dead.stdout), "since": time.time()}))
    orphan = subprocess.Popen([sys.executable, "-c", ORPHAN.format(lock=str(folder / LOCK_FILE))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert orphan.stdout.readline().strip() == "held"
        with output_lock(folder):
            assert json.loads((folder / LOCK_INFO_FILE).read_text())["pid"] == os.getpid()
    finally:
        orphan.send_signal(signal.SIGKILL)
        orphan.wait()


# ------------------------------------------------------------------------------ long runs
def test_claim_checks_before_work_and_leaves_nothing_when_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("notes")
    user_folder(tmp_path / "mine")
    before = tree(tmp_path)
    for target in ("notes.txt", "mine"):
        with pytest.raises(NNPruneError):
            with claim_output_dir(tmp_path / target, overwrite=True):
                pytest.fail("the work must not start")
    assert tree(tmp_path) == before
    # a run refused later (bad data, say) leaves no folder it created
    with pytest.raises(NNPruneError, match="bad data"):
        with claim_output_dir(tmp_path / "new", overwrite=False):
            assert (tmp_path / "new" / RECORD_FILE).is_file()
            raise NNPruneError("bad data")
    assert tree(tmp_path) == before


def test_claim_refuses_to_replace_its_own_inputs(tmp_path):
    run = nnprune_folder(tmp_path / "run", "config.json")
    nnprune_folder(run / "prune", "config.json")
    with pytest.raises(NNPruneError, match="must differ from the input"):
        with claim_output_dir(run, overwrite=True, inputs=[run]):
            pass
    with pytest.raises(NNPruneError, match="holds the input .*--overwrite would delete it"):
        with claim_output_dir(run, overwrite=True, inputs=[run / "prune", "bert-base-uncased"]):
            pass
    assert (run / "prune" / "config.json").is_file()


def test_claim_with_overwrite_replaces_an_earlier_run_whole(tmp_path):
    run = nnprune_folder(tmp_path / "run", "config.json", "old-results.json")
    (run / "checkpoint-8").mkdir()
    with claim_output_dir(run, overwrite=True):
        assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == []
        with claim_output_dir(run, overwrite=False):  # a stage of the same command: free
            atomic_write_text(run / "config.json", "{}")
    assert read_record(run) == {"config.json"}
    with claim_output_dir(run, overwrite=False, resume=True):  # --resume keeps it
        assert (run / "config.json").is_file()


def test_a_move_into_killed_half_way_is_finished_by_the_next_claim(tmp_path, monkeypatch):
    """Fault injection: the third rename of a final save fails (a real os.replace, stopped)."""
    run = nnprune_folder(tmp_path / "run", "config.json", "stale.bin")
    staged = run / ".nnprune-tmp-final"
    staged.mkdir()
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        (staged / name).write_text(f"new {name}")
    real, moves = os.replace, []

    def fails_on_the_third_move(src, dst):
        if Path(src).parent == staged:
            moves.append(dst)
            if len(moves) == 3:
                raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(io_utils.os, "replace", fails_on_the_third_move)
    with pytest.raises(OSError):
        move_into(run, staged, remove=["stale.bin"], last=("config.json",))
    monkeypatch.setattr(io_utils.os, "replace", real)
    assert (run / PENDING_FILE).is_file() and (run / "config.json").read_text().startswith("config")
    with claim_output_dir(run, overwrite=False, resume=True):
        pass
    assert {p.name: p.read_text() for p in run.iterdir() if not p.name.startswith(".")} == {
        "config.json": "new config.json", "model.safetensors": "new model.safetensors",
        "tokenizer.json": "new tokenizer.json"}
    assert read_record(run) == {"config.json", "model.safetensors", "tokenizer.json"}
    assert not staged.exists() and not (run / PENDING_FILE).exists()
