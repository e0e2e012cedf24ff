"""Writing outputs without losing anything: the output policy, one writer per folder, atomic saves.

The rule (docs/outputs.md states it for users):

- A folder nnprune writes carries a record, :data:`RECORD_FILE` (``.nnprune-output.json``), of the
  top-level names nnprune put there. An entry is *nnprune's* when the record names it, when it is
  nnprune's bookkeeping (hidden names starting with ``.nnprune``: the record, the lock, temporary
  files), when it is in nnprune's namespace (``nnprune_*``), a Trainer ``checkpoint-<step>`` folder
  of an nnprune run, or a sub-folder with its own record. Anything else is the *user's*, and so is
  everything in a folder without a record.
- :func:`check_output_dir` sorts what stands at an output path (:class:`OutputState`) and applies
  the policy: a file where a folder is wanted is refused, whatever the flags; a folder holding
  anything of the user's is never replaced or emptied (refused naming one of the entries, even
  with ``overwrite``); a folder nnprune wrote is replaced whole only with ``overwrite`` (or
  continued with ``resume``); a missing or empty folder is fine.
- :func:`atomic_directory` (a whole folder replaced at once) and :func:`claim_output_dir` (a
  folder written over a long run) take that policy as a required argument, so no command can
  write a folder without deciding it; :func:`atomic_write_text` replaces single files (a
  ``--json-file``), never a folder in their place.
- One writer per folder: :func:`output_lock` holds ``.nnprune.lock`` (a ``filelock`` lock, which
  the kernel releases when its process dies) with the holder's host and pid beside it, for the
  one-line refusal of a second writer; a lock left by a dead process of this host is taken over.
- Saves never half-happen: everything is written under a temporary name in the same folder and
  renamed into place when complete.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from nnprune.errors import NNPruneError

logger = logging.getLogger(__name__)

RECORD_FILE = ".nnprune-output.json"  # the names nnprune wrote in a folder
LOCK_FILE = ".nnprune.lock"  # held by the one process writing the folder
LOCK_INFO_FILE = ".nnprune.lock.json"  # who holds it: host, pid, since
TMP_PREFIX = ".nnprune-tmp-"  # files and folders being written
BOOKKEEPING_PREFIX = ".nnprune"  # every name above starts with it
NAMESPACE_PREFIX = "nnprune_"  # nnprune_config.json, nnprune_results.json, nnprune_modeling.py, ...
CHECKPOINT_RE = re.compile(r"checkpoint-\d+")  # the Trainer's checkpoints of an nnprune run
#: What file browsers leave in any folder they show: not the user's work, so it does not make a
#: folder the user's (and goes with it when the folder is replaced).
OS_METADATA = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})

#: The help of every command's ``--overwrite``: one wording, one rule.
OVERWRITE_HELP = ("Replace an output that nnprune wrote before. A folder that also holds files "
                  "nnprune did not write is never replaced, nor a file where a folder is wanted.")


class OutputState(str, Enum):
    """What stands at an output path."""

    MISSING = "missing"
    EMPTY = "empty"  # a folder with nothing, or nothing but nnprune's bookkeeping
    NNPRUNE = "nnprune"  # a folder holding only what nnprune wrote
    USER = "user"  # a folder holding something nnprune did not write
    FILE = "file"  # not a folder


@dataclass(frozen=True)
class OutputCheck:
    """:func:`inspect_output` of a path: its state and, for :attr:`OutputState.USER`, the entries
    that are not nnprune's (sorted)."""

    path: Path
    state: OutputState
    user_entries: tuple[str, ...] = ()


# ------------------------------------------------------------------------------ the record
def is_bookkeeping(name: str) -> bool:
    """nnprune's own hidden files (record, lock, temporaries), and a file browser's
    (:data:`OS_METADATA`)."""
    return name.startswith(BOOKKEEPING_PREFIX) or name in OS_METADATA


def read_record(folder: "str | Path") -> Optional[set[str]]:
    """The names the record of ``folder`` lists, or ``None`` when it has no (readable) record."""
    path = Path(folder) / RECORD_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list):
        return None
    return {str(f) for f in files}


def _write_record(folder: Path, names: Iterable[str]) -> None:
    payload = {"format": 1, "written_by": "nnprune",
               "files": sorted({n for n in names if not is_bookkeeping(n)})}
    _replace_text(folder / RECORD_FILE, json.dumps(payload, indent=2) + "\n")


def record_written(folder: "str | Path", names: Iterable[str], *, create: bool = False) -> None:
    """Add ``names`` (top-level entries of ``folder``) to the names nnprune wrote there. A folder
    without a record gets one only with ``create`` (a folder nnprune writes into as its output);
    otherwise it is left as it is (a user's folder where a ``--json-file`` went)."""
    folder = Path(folder)
    known = read_record(folder)
    names = {n for n in names if not is_bookkeeping(n)}
    if known is None:
        if create:
            _write_record(folder, names)
    elif not names <= known:
        _write_record(folder, known | names)


def forget_written(folder: "str | Path", names: Iterable[str]) -> None:
    """Take ``names`` (removed) off the record of ``folder``."""
    folder = Path(folder)
    known = read_record(folder)
    if known is not None and known & set(names):
        _write_record(folder, known - set(names))


def is_nnprune_entry(folder: Path, name: str, record: Optional[set[str]]) -> bool:
    """Whether entry ``name`` of ``folder`` (whose record lists ``record``) is nnprune's."""
    if is_bookkeeping(name):
        return True
    if record is None:
        return False
    if name in record or name.startswith(NAMESPACE_PREFIX):
        return True
    path = folder / name
    if path.is_dir() and not path.is_symlink():
        return bool(CHECKPOINT_RE.fullmatch(name)) or (path / RECORD_FILE).is_file()
    return False


def inspect_output(path: "str | Path") -> OutputCheck:
    """What stands at ``path`` (see the module doc for whose an entry is)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return OutputCheck(path, OutputState.MISSING)
    if not path.is_dir():
        return OutputCheck(path, OutputState.FILE)
    try:
        names = sorted(p.name for p in path.iterdir())
    except OSError as exc:
        raise NNPruneError(f"cannot read the folder {path}: {exc.strerror or exc}") from None
    if all(is_bookkeeping(n) for n in names):
        return OutputCheck(path, OutputState.EMPTY)
    record = read_record(path)
    user = tuple(n for n in names if not is_nnprune_entry(path, n, record))
    return OutputCheck(path, OutputState.USER if user else OutputState.NNPRUNE, user)


def check_output_dir(path: "str | Path", *, overwrite: bool, resume: bool = False,
                     adds: bool = False, option: str = "the output folder",
                     can_resume: bool = False) -> OutputCheck:
    """Apply the output policy to the folder a command is about to write, before any work.

    Args:
        overwrite: ``--overwrite``: a folder nnprune wrote may be replaced.
        resume: ``--resume``: a folder nnprune wrote is continued (the command says how).
        adds: the command adds files to the folder rather than replacing it (a report, prediction
            files): the user's other files are fine there; :func:`check_output_file` guards each
            file it writes.
        option: how messages name the path (``--output-dir``).
        can_resume: the command has ``--resume`` (its refusal says so).

    Raises:
        NNPruneError: one line, for a file where a folder is wanted (whatever the flags), a folder
            holding the user's files (unless ``adds``), or a folder nnprune wrote without
            ``overwrite`` / ``resume`` / ``adds``.
    """
    check = inspect_output(path)
    p = check.path
    if check.state is OutputState.FILE:
        raise NNPruneError(f"{option} {p} is a file, not a folder; nnprune does not replace it, "
                           "even with --overwrite: choose another path")
    if check.state is OutputState.USER and not adds:
        first = check.user_entries[0]
        more = f" (and {len(check.user_entries) - 1} more)" if len(check.user_entries) > 1 else ""
        raise NNPruneError(f"{option} {p} holds {first}{more}, which nnprune did not write; nnprune "
                           "never replaces or empties a folder holding your files, even with "
                           "--overwrite: choose a new or empty folder")
    if check.state is OutputState.NNPRUNE and not (overwrite or resume or adds):
        also = " or --resume to continue the run that wrote it" if can_resume else ""
        raise NNPruneError(f"{option} {p} is not empty; pass --overwrite to replace the earlier "
                           f"nnprune output there{also}")
    return check


def check_output_file(path: "str | Path", *, overwrite: bool, option: str = "the output file") -> Path:
    """Refuse (one line) to write the file ``path`` where a folder stands, or over a file nnprune
    did not write there (not in its folder's record) unless ``overwrite``."""
    path = Path(path)
    if path.is_dir():
        raise NNPruneError(f"{option} {path} is a folder, not a file; nnprune does not replace it, "
                           "even with --overwrite")
    if path.exists() and not overwrite:
        record = read_record(path.parent)
        if record is None or path.name not in record:
            raise NNPruneError(f"{option} {path} exists and was not written by nnprune; pass "
                               "--overwrite to replace it")
    return path


# ------------------------------------------------------------------------------ single files
def _make_parent(path: Path) -> None:
    """Create the folder ``path`` goes in; a file on the way is a one-line error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise NNPruneError(f"cannot write {path}: a file stands where its folder should be") from None


def _replace_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: "str | Path", text: str) -> None:
    """Write ``text`` to the file ``path`` through a temporary file in the same folder and a
    rename: a crash leaves the old file or the new one, never half of one. An existing file is
    replaced (the file a user names as an output, a ``--json-file``); a folder is not (one-line
    error). In a folder nnprune writes (one with a record) the file is recorded as nnprune's."""
    path = Path(path)
    if path.is_dir():
        raise NNPruneError(f"{path} is a folder; nnprune writes a file there only in place of a "
                           "file, never of a folder")
    _make_parent(path)
    _replace_text(path, text)
    if path.name != RECORD_FILE:
        record_written(path.parent, [path.name])


def update_json(path: "str | Path", items: dict[str, Any], *, sort_keys: bool = False) -> None:
    """Add (or replace) top-level ``items`` in the JSON object at ``path`` (a new one if there is
    no file), atomically."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(items)
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys, default=str) + "\n")


# ------------------------------------------------------------------------------ one writer
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _read_holder(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / LOCK_INFO_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process"
    since = holder.get("since")
    when = f", since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}" if since else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')}{when}"


class _Held:
    """A lock this process holds on a folder, with how many nested users it has."""

    def __init__(self, lock: Any, inode: Optional[int]) -> None:
        self.lock = lock
        self.inode = inode  # of the locked file (None: not known, the file is then left in place)
        self.count = 1


_HELD: dict[str, _Held] = {}


def _key(folder: Path) -> str:
    return str(folder.resolve())


def holds_lock(folder: "str | Path") -> bool:
    """Whether this process holds the lock of ``folder`` (:func:`output_lock`)."""
    return _key(Path(folder)) in _HELD


def _inode(path: Path) -> Optional[int]:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _new_lock(path: Path, inodes: list[int]) -> Any:
    from filelock import FileLock

    try:  # filelock >= 4 hands over the locked descriptor: its inode proves the file is the one
        return FileLock(str(path), timeout=0, on_acquired=lambda fd: inodes.append(os.fstat(fd).st_ino))
    except TypeError:  # pragma: no cover - older filelock
        return FileLock(str(path), timeout=0)


def _acquire(folder: Path) -> _Held:
    from filelock import Timeout

    path = folder / LOCK_FILE
    took_over = False
    for _ in range(20):
        inodes: list[int] = []
        lock = _new_lock(path, inodes)
        try:
            lock.acquire()
        except Timeout:
            holder = _read_holder(folder)
            pid = holder.get("pid")
            stale = (not took_over and holder.get("host") == socket.gethostname()
                     and isinstance(pid, int) and not _pid_alive(pid))
            if not stale:
                raise NNPruneError(f"{folder} is being written by another nnprune run "
                                   f"({_describe(holder)}); wait for it to end or choose another "
                                   "folder") from None
            # Its process is gone, but something it started still holds the lock file open:
            # a new lock file takes over (the old one lives on only in that orphan).
            logger.warning("%s: taking over the lock of pid %s, which is no longer running",
                           folder, pid)
            path.unlink(missing_ok=True)
            took_over = True
            continue
        if not inodes:  # pragma: no cover - older filelock: the file stays, nothing to check
            return _Held(lock, None)
        if _inode(path) == inodes[0]:
            return _Held(lock, inodes[0])
        # the holder removed the file while this process opened it: lock the new one
        lock.release()
    raise NNPruneError(f"cannot lock {folder}: its lock file keeps changing")


@contextmanager
def output_lock(folder: "str | Path") -> Iterator[None]:
    """Hold ``folder``'s lock (``.nnprune.lock``, created with the folder when missing) while the
    block runs: a second process asking for it gets a one-line error naming the host and pid
    that hold it. Nested use in one process is free. The lock file and the holder's record
    beside it are removed on release (still holding the lock: a process that opened the file
    meanwhile finds it gone and locks a new one)."""
    folder = Path(folder)
    key = _key(folder)
    held = _HELD.get(key)
    if held is not None:
        held.count += 1
        try:
            yield
        finally:
            held.count -= 1
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise NNPruneError(f"{folder} is a file, not a folder") from None
    held = _acquire(folder)
    _HELD[key] = held
    try:
        _replace_text(folder / LOCK_INFO_FILE, json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}) + "\n")
        yield
    finally:
        del _HELD[key]
        with _suppress_os():
            (folder / LOCK_INFO_FILE).unlink(missing_ok=True)
            if held.inode is not None and _inode(folder / LOCK_FILE) == held.inode:
                (folder / LOCK_FILE).unlink()
        held.lock.release()


@contextmanager
def _suppress_os() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass


# ------------------------------------------------------------------------------ whole folders
def remove_stale_temporaries(folder: "str | Path") -> None:
    """Remove what saves killed half-way left in ``folder`` (``.nnprune-tmp-*``). Only call it
    while holding the folder's lock: another writer's temporaries are not stale."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.name.startswith(TMP_PREFIX):
            logger.info("removing %s, left by a save that was stopped", p)
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)


@contextmanager
def atomic_directory(target: "str | Path", *, overwrite: bool,
                     option: str = "the output folder") -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``target``; when the block ends without an error
    it replaces ``target`` whole, with a record of its names (:data:`RECORD_FILE`).

    The policy (:func:`check_output_dir`) is applied first, and again just before the swap:
    ``target`` may be missing, empty, or a folder nnprune wrote with ``overwrite``; a file or
    a folder holding the user's files is refused. Whatever ``target`` held survives until the
    new content is complete; on an error the temporary folder is removed and ``target`` is
    untouched. A ``target`` that exists is locked (:func:`output_lock`) for the time.
    """
    target = Path(target)
    check = check_output_dir(target, overwrite=overwrite, option=option)
    if check.state is not OutputState.MISSING:
        here = Path.cwd().resolve()
        if target.resolve() == here or target.resolve() in here.parents:
            raise NNPruneError(f"{option} {target} is the current folder or holds it; nnprune "
                               "replaces its output folder whole: name a folder inside it")
    _make_parent(target)
    locked = output_lock(target) if check.state is not OutputState.MISSING else _no_lock()
    with locked:
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f"{TMP_PREFIX}{target.name}-"))
        try:
            yield tmp
            _write_record(tmp, (p.name for p in tmp.iterdir()))
            _swap_in(tmp, target, overwrite=overwrite, option=option)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


@contextmanager
def _no_lock() -> Iterator[None]:
    yield


def _swap_in(tmp: Path, target: Path, *, overwrite: bool, option: str) -> None:
    """Put the complete folder ``tmp`` at ``target`` (see :func:`atomic_directory`)."""
    check = check_output_dir(target, overwrite=overwrite, option=option)  # it may have changed
    if check.state is OutputState.MISSING:
        try:
            os.replace(tmp, target)
        except OSError as exc:  # it appeared meanwhile, with content
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise NNPruneError(f"{option} {target} was created by someone else while nnprune "
                                   "wrote it; nothing was replaced") from None
            raise
        return
    # The lock file and who holds it move into the new folder: same file, so the lock held on
    # it stays held (a second writer still finds it taken).
    for name in (LOCK_FILE, LOCK_INFO_FILE):
        if (target / name).exists():
            os.replace(target / name, tmp / name)
    if _exchange(tmp, target):  # one step: target is never missing
        shutil.rmtree(tmp, ignore_errors=True)  # the old content, now
        return
    backup = Path(tempfile.mkdtemp(dir=target.parent, prefix=f"{TMP_PREFIX}{target.name}-old-"))
    os.replace(target, backup)
    os.replace(tmp, target)
    shutil.rmtree(backup, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the folders ``a`` and ``b`` in one step (Linux ``renameat2(RENAME_EXCHANGE)``);
    ``False`` where the system or the filesystem cannot (then two renames do it)."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return rc == 0


# ------------------------------------------------------------------------------ long runs
_CLAIMED: dict[str, int] = {}


@contextmanager
def claim_output_dir(path: "str | Path", *, overwrite: bool, resume: bool = False,
                     option: str = "--output-dir",
                     inputs: Iterable["str | Path | None"] = ()) -> Iterator[Path]:
    """Hold ``path`` as the output folder of a command that writes it over a long run
    (fine-prune, prune, fill: checkpoints as they come, the final model at the end), from
    before any work until the block ends.

    The policy (:func:`check_output_dir`) is applied first: a file, or a folder holding the
    user's files, is refused; a folder nnprune wrote needs ``overwrite`` (its entries are
    removed now: a run takes long and writes there as it goes) or ``resume`` (continued). Then
    the folder is locked (:func:`output_lock`), a save a killed process left half-done there is
    finished (:func:`move_into`) and its temporaries removed, and the folder gets its record.

    Under a distributed launch the main process alone does it (and holds the lock); a refusal
    is raised on every process. Nested claims of one folder in one process are free (a
    two-stage command claims its folder once, its stages again).

    ``inputs``: the folders the command reads (checkpoint, teacher): the output must not be one
    of them, nor, with ``overwrite``, hold one of them.
    """
    from contextlib import ExitStack

    from nnprune.launch import from_main_process, is_main_process

    path = Path(path)
    key = _key(path)
    if key in _CLAIMED:
        _CLAIMED[key] += 1
        try:
            yield path
        finally:
            _CLAIMED[key] -= 1
        return
    with ExitStack() as stack:
        def claim() -> None:
            check_not_an_input(path, inputs, overwrite=overwrite, option=option)
            check = inspect_output(path)
            if not (resume and _legacy_run(check)):
                check = check_output_dir(path, overwrite=overwrite, resume=resume, option=option,
                                         can_resume=True)
            # after the lock is released: a run refused before writing anything leaves nothing
            stack.push(_undo_if_unused(path, created=check.state is OutputState.MISSING))
            stack.enter_context(output_lock(path))
            finish_move_into(path)
            remove_stale_temporaries(path)
            if overwrite and check.state is OutputState.NNPRUNE:
                for p in sorted(path.iterdir()):
                    if not is_bookkeeping(p.name):
                        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
                _write_record(path, [])
                logger.info("--overwrite: removed the earlier output in %s", path)
            record_written(path, [], create=True)

        from_main_process(claim)
        if not is_main_process():
            stack.close()
        _CLAIMED[key] = 1
        try:
            yield path
        finally:
            del _CLAIMED[key]


def _undo_if_unused(path: Path, *, created: bool) -> Callable[..., bool]:
    """An exit callback: when the block failed and the folder holds nothing but nnprune's
    bookkeeping, remove that (and the folder, if the claim created it)."""
    def undo(exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None or inspect_output(path).state is not OutputState.EMPTY:
            return False
        with _suppress_os():
            if created:
                shutil.rmtree(path)
            else:
                for name in (RECORD_FILE, LOCK_FILE, LOCK_INFO_FILE):
                    (path / name).unlink(missing_ok=True)
        return False

    return undo


def check_not_an_input(path: "str | Path", inputs: Iterable["str | Path | None"], *,
                       overwrite: bool, option: str = "the output folder") -> None:
    """Refuse (one line) an output folder that is one of the command's ``inputs``, or, with
    ``overwrite``, holds one of them (replacing it would delete what the command reads)."""
    out = Path(path).resolve()
    for given in inputs:
        if given is None or not Path(given).exists():
            continue  # a hub name, or nothing
        src = Path(given).resolve()
        if src == out:
            raise NNPruneError(f"{option} must differ from the input {given}")
        if overwrite and out in src.parents:
            raise NNPruneError(f"{option} {path} holds the input {given}: --overwrite would delete "
                               "it; write somewhere else")


def _legacy_run(check: OutputCheck) -> bool:
    """A run folder written before folders had a record (checkpoints, no record): ``resume``
    continues it (nothing in it is removed but what the run itself writes again)."""
    return (check.state is OutputState.USER and read_record(check.path) is None
            and any(CHECKPOINT_RE.fullmatch(n) for n in check.user_entries))


PENDING_FILE = ".nnprune-pending.json"  # a move_into under way


def move_into(folder: "str | Path", staged: "str | Path", *, remove: Iterable[str] = (),
              last: tuple[str, ...] = ()) -> list[str]:
    """Move the complete files of ``staged`` (a temporary folder inside ``folder``) into
    ``folder``, the names in ``last`` last and in that order (the files that say a save is
    complete), and remove the entries ``remove`` (nnprune's, of an earlier save). Returns the
    names moved in, now recorded as nnprune's.

    The moves are listed first in :data:`PENDING_FILE`: a process killed half-way leaves that
    list, and the next :func:`claim_output_dir` of the folder finishes the moves. Before the
    list is written nothing in ``folder`` has changed.
    """
    folder, staged = Path(folder), Path(staged)
    names = _ordered(sorted(p.name for p in staged.iterdir() if not is_bookkeeping(p.name)), last)
    plan = {"staged": staged.relative_to(folder).as_posix(), "files": names,
            "remove": [n for n in remove if n not in names]}
    _replace_text(folder / PENDING_FILE, json.dumps(plan) + "\n")
    return finish_move_into(folder)


def _ordered(names: list[str], last: tuple[str, ...]) -> list[str]:
    return sorted(names, key=lambda n: (last.index(n) + 1) if n in last else 0)


def finish_move_into(folder: "str | Path") -> list[str]:
    """Finish the :func:`move_into` recorded in ``folder`` (nothing to do without one)."""
    folder = Path(folder)
    try:
        plan = json.loads((folder / PENDING_FILE).read_text())
    except (OSError, ValueError):
        return []
    staged = folder / str(plan.get("staged") or ".")
    names = [str(n) for n in plan.get("files", [])]
    record_written(folder, names, create=True)  # first: a name half-moved is still nnprune's
    for name in names:
        if (staged / name).exists() or (staged / name).is_symlink():
            dest = folder / name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            os.replace(staged / name, dest)
    gone = [str(n) for n in plan.get("remove", [])]
    for name in gone:
        p = folder / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    forget_written(folder, gone)
    (folder / PENDING_FILE).unlink(missing_ok=True)
    top = folder / Path(str(plan.get("staged") or ".")).parts[0] if plan.get("staged") else folder
    if top != folder and top.name.startswith(TMP_PREFIX):
        shutil.rmtree(top, ignore_errors=True)
    return names


__all__ = ["BOOKKEEPING_PREFIX", "CHECKPOINT_RE", "LOCK_FILE", "LOCK_INFO_FILE", "NAMESPACE_PREFIX",
           "OVERWRITE_HELP", "PENDING_FILE", "RECORD_FILE", "TMP_PREFIX", "OutputCheck",
           "OutputState", "atomic_directory", "atomic_write_text", "check_output_dir",
           "check_not_an_input", "check_output_file", "claim_output_dir", "finish_move_into", "forget_written",
           "holds_lock", "inspect_output", "is_bookkeeping", "is_nnprune_entry", "move_into",
           "output_lock", "read_record", "record_written", "remove_stale_temporaries",
           "update_json"]
