"""Checks before work: every input of a command checked against the model, the data and the
machine before any data is loaded or any training starts, so that a mistake costs one
``error:`` line in a second and leaves nothing written.

What is checked, and where the workflows call it:

- the order of the arguments (``evaluate TASK CHECKPOINT``, ``prune``/``fill CHECKPOINT TASK``):
  :func:`check_argument_order`;
- output paths: a file where a folder is wanted, a folder that cannot be written
  (:func:`check_output_dir`, :func:`check_output_file`), not enough free disk for the checkpoints
  the run will write (:func:`run_bytes`, :func:`check_free_disk`);
- devices: ``cuda`` asked for where torch sees none: :func:`check_device`;
- sequence lengths against the model's positions (:func:`nnprune.max_positions`): a length a
  measurement asks for past them is refused (:func:`check_seq_lens`); a ``--max-seq-length``
  past them is capped with a warning, as the transformers examples do
  (:func:`cap_max_seq_length`), since the data is cut to it anyway;
- the tokenizer against the model's vocabulary: :func:`check_tokenizer`;
- labels against the head, where the starting model has the task's head:
  :func:`check_task_head`;
- data paths that are missing or of the wrong kind (:func:`check_data_paths`), and data left
  empty once read and filtered (:func:`check_data`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from nnprune import check_positions, max_positions
from nnprune.errors import NNPruneError
from nnprune.tasks import TASKS

logger = logging.getLogger(__name__)

#: Bytes of a fp32 value: the weights and each of AdamW's two moments per trained parameter.
FP32_BYTES = 4
#: What one Trainer checkpoint holds per parameter (fp32): the weights and AdamW's two moments.
CHECKPOINT_BYTES_PER_PARAMETER = 3 * FP32_BYTES
#: Free space kept beyond the estimate (logs, the tokenizer, results, the card's pictures).
DISK_MARGIN_BYTES = 64 * 2**20


# ------------------------------------------------------------------------------------ arguments
def check_argument_order(command: str, usage: str, task: str, checkpoint: "str | Path") -> None:
    """Refuse (one line naming the order) a ``task`` that is no task but looks like the
    checkpoint (a folder, a path) or a ``checkpoint`` that is a task name: the arguments were
    swapped (``evaluate`` takes ``TASK CHECKPOINT``, ``prune`` and ``fill`` ``CHECKPOINT
    TASK``). ``usage``: the command's arguments as its help names them."""
    if task in TASKS:
        return
    path = Path(task)
    looks = ("it is a folder" if path.is_dir() else "it is a file" if path.exists()
             else "it looks like a path" if "/" in task or os.sep in task else None)
    swapped = str(checkpoint) in TASKS
    if looks is None and not swapped:
        return  # a misspelt task: the registry's own error lists the known ones
    why = "; ".join(filter(None, [looks, f"{str(checkpoint)!r} is a task" if swapped else None]))
    raise NNPruneError(f"unknown task {task!r} ({why}): the order is `nnprune {command} {usage}`; "
                       f"known tasks: {', '.join(TASKS.names())}")


# --------------------------------------------------------------------------------- output paths
def _existing_ancestor(path: Path) -> Path:
    for folder in [path, *path.parents]:
        if folder.exists():
            return folder
    return Path(".")


def check_output_dir(path: "str | Path", option: str = "--output-dir") -> None:
    """Refuse (one line) an output folder that cannot be: ``path`` or one of its parents a file,
    or the folder (or the nearest existing parent it would be made in) not writable. Nothing is
    created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NNPruneError(f"{option} {path} is a file, not a folder; name a folder (it is made if "
                           "missing)")
    base = _existing_ancestor(path)
    if not base.is_dir():
        raise NNPruneError(f"{option} {path}: {base} is a file, so no folder can be made there")
    _check_writable(base, f"{option} {path}" + ("" if base == path else f": {base}"))


def check_free_disk(path: "str | Path", need_bytes: int, option: str = "--output-dir") -> None:
    """Refuse (one line) a run that would fill the disk: less free space where ``path`` is (or
    would be made) than ``need_bytes`` (an estimate, :func:`run_bytes`) less what ``path``
    already holds (checkpoints a resumed run replaces)."""
    path = Path(path)
    base = _existing_ancestor(path)
    need = need_bytes - (_folder_bytes(path) if path.is_dir() else 0)
    free = shutil.disk_usage(base).free
    if need > 0 and free < need + DISK_MARGIN_BYTES:
        raise NNPruneError(f"{option} {path}: the run writes about {_gb(need_bytes)} (its model and "
                           f"the checkpoints --save-total-limit keeps) and {base} has {_gb(free)} "
                           "free")


def _folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed meanwhile
                pass
    return total


def check_output_file(path: "str | Path | None", option: str) -> None:
    """Refuse (one line) a file to write (``--json-file``, ...) that names a folder, or whose
    folder cannot be made or written; checked before the work whose result it holds."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise NNPruneError(f"{option} {path} is a folder; name a file")
    base = _existing_ancestor(path.parent)
    if not base.is_dir():
        raise NNPruneError(f"{option} {path}: {base} is a file, so no folder can be made there")
    _check_writable(base, f"{option} {path}")


def _check_writable(folder: Path, what: str) -> None:
    """Try it (``os.access`` says yes to root on folders that refuse files): a temporary file
    made and removed at once."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".nnprune-probe-")
    except OSError as exc:
        raise NNPruneError(f"{what} is not writable ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(name)


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def parameter_count(config: Any) -> Optional[int]:
    """Parameters of the (dense) model of ``config``, built on the meta device (no memory, no
    weights read); ``None`` when transformers cannot build it from the config alone."""
    import torch
    from transformers import AutoModel

    try:
        with torch.device("meta"):
            model = AutoModel.from_config(config)
    except Exception as exc:  # an exotic or remote-code config: the disk check is skipped
        logger.debug("cannot count the parameters of %s: %s", type(config).__name__, exc)
        return None
    return sum(p.numel() for p in model.parameters())


def saved_checkpoints(opts: Any) -> int:
    """How many Trainer checkpoints a run with training options ``opts`` keeps on disk at once:
    ``save_total_limit``, one more while the newest is written before the oldest goes, and none
    when ``max_steps`` ends the run before the first save."""
    if opts.max_steps is not None and opts.max_steps < opts.save_steps:
        return 0
    most = opts.max_steps // opts.save_steps if opts.max_steps is not None else None
    kept = opts.save_total_limit + 1
    return kept if most is None else min(kept, most)


def run_bytes(parameters: int, opts: Any, *, stages: int = 1, masked: bool = True) -> int:
    """About how many bytes a training run of a model of ``parameters`` parameters writes:
    per stage, the checkpoints it keeps (:func:`saved_checkpoints`: weights and AdamW's moments,
    fp32) and its final model; ``masked``: mask scores as many as the weights, trained (an upper
    bound: only the layers' matrices have scores)."""
    per_parameter = CHECKPOINT_BYTES_PER_PARAMETER * (2 if masked else 1)
    final = FP32_BYTES * parameters * (2 if masked else 1)
    return stages * (saved_checkpoints(opts) * per_parameter * parameters + final)


# ----------------------------------------------------------------------------------- the machine
def check_device(device: str, option: str) -> None:
    """Refuse ``cuda`` where torch sees no CUDA device, before anything is loaded."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise NNPruneError(f"{option} cuda: no CUDA device is available to this torch "
                               f"({torch.__version__})")


# ------------------------------------------------------------------------------------ the model
def _get(config: Any, key: str) -> Any:
    return config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)


def check_seq_lens(config: Any, lengths: Iterable[Optional[int]], option: str,
                   where: str) -> None:
    """Refuse a sequence length a measurement asks for (``--seq-lens``, ``--latency-seq-len``)
    past the positions of the model of ``config`` (``where``: its folder or name)."""
    check_positions(config, lengths, option=option, where=where)


def cap_max_seq_length(config: Any, value: Optional[int], where: str,
                       option: str = "--max-seq-length") -> Optional[int]:
    """``value`` capped at the positions of the model of ``config``, with a warning when it is
    (as the transformers examples cap theirs): the data is cut to the length anyway, so a longer
    one would only work while the examples happen to be short. ``None`` stays ``None``."""
    most = max_positions(config)
    if value is None or most is None or value <= most:
        return value
    logger.warning("%s %d is past the %d positions of %s: using %d", option, value, most, where,
                   most)
    return most


def check_tokenizer(tokenizer: Any, config: Any, where: str) -> None:
    """Refuse a tokenizer whose ids go past the model's vocabulary (``vocab_size`` rows of its
    embedding): another model's tokenizer, or tokens added without resizing the embeddings."""
    vocab = _get(config, "vocab_size")
    if not isinstance(vocab, int) or vocab < 1:
        return
    size = len(tokenizer)
    if size > vocab:
        raise NNPruneError(f"the tokenizer of {where} has {size:,} tokens but the model's "
                           f"vocabulary {vocab:,}: ids past {vocab - 1:,} have no embedding (another "
                           "model's tokenizer? pass the model's own, e.g. --tokenizer)")


def check_task_head(task: Any, config: Mapping[str, Any], where: str) -> None:
    """Labels against the head, where knowable before the data: a starting model that already
    has the task's head (``architectures`` ending in the task's head) must serve the task
    (:meth:`~nnprune.tasks.TaskAdapter.check_checkpoint`: output count, label names); a base
    model gets a fresh head and is not checked."""
    suffix = getattr(task, "head_suffix", "")
    archs = [str(a) for a in config.get("architectures") or []]
    if suffix and any(a.endswith(suffix) for a in archs):
        task.check_checkpoint(dict(config), where)


# ------------------------------------------------------------------------------------- the data
def check_data_paths(opts: Any) -> None:
    """Refuse (one line) a ``--data-dir`` that is no folder, or a ``--train-file`` /
    ``--validation-file`` that is no file, before any model or tokenizer is loaded (``opts``:
    training options, or anything with those attributes)."""
    for name, want_dir in (("data_dir", True), ("train_file", False), ("validation_file", False)):
        value = getattr(opts, name, None)
        if value is None:
            continue
        path = Path(value)
        flag = "--" + name.replace("_", "-")
        if not path.exists():
            raise NNPruneError(f"{flag} {path} does not exist")
        if want_dir and not path.is_dir():
            raise NNPruneError(f"{flag} {path} is a file; name the task's data folder (or pass it "
                               "as --train-file / --validation-file)")
        if not want_dir and path.is_dir():
            raise NNPruneError(f"{flag} {path} is a folder; name a file (or pass the folder as "
                               "--data-dir)")


def check_data(data: Any, task: str, *, need_train: bool = True) -> None:
    """Refuse data left empty once read and filtered (``--max-train-samples``, examples a task
    drops): a training split without an example, or an evaluation split without one."""
    if need_train and (data.train is None or len(data.train) == 0):
        raise NNPruneError(f"{task}: no training example is left once the data is read and "
                           "filtered; check --data-dir / --train-file and the task options")
    for split, ds in data.eval.items():
        if ds is not None and len(ds) == 0:
            raise NNPruneError(f"{task}: the evaluation split {split!r} has no example once read "
                               "and filtered")


__all__ = ["cap_max_seq_length", "check_argument_order", "check_data", "check_data_paths",
           "check_device",
           "check_free_disk", "check_output_dir", "check_output_file", "check_seq_lens", "check_task_head",
           "check_tokenizer", "parameter_count", "run_bytes", "saved_checkpoints"]
