"""Checkpoint folders: what one holds (:func:`inspect_checkpoint`, no weights read), the config
of a folder or hub model (:func:`load_config`), and a masked checkpoint written as a standard one,
compacted or not, and checked against the masked model (:func:`bertarize_checkpoint`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from nnprune.pruning_core.bertarize import BertarizeResult
from nnprune.pruning_core.bertarize import bertarize as _bertarize
from nnprune.pruning_core.checkpoint import (CheckpointKind, check_dir, checkpoint_kind,
                                             read_config_json)
from nnprune.pruning_core.checkpoint import load_config as _load_config
from nnprune.pruning_core.compact import EXACT_TOLERANCE
from nnprune.pruning_core.run_record import RunConfig, read_config

if TYPE_CHECKING:
    from transformers import PretrainedConfig


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint folder holds, read from its config files (:func:`inspect_checkpoint`).

    Attributes:
        path: the folder.
        kind: ``"plain"`` (a stock model, dense or with baked zeros), ``"masked"`` (nnprune's
            masked layers with their scores) or ``"compacted"`` (heads / FFN dimensions removed);
            a ``str`` enum.
        config: its ``config.json`` as written (a dict: keys it does not hold stay absent).
        record: its ``nnprune_config.json`` (:class:`nnprune.records.RunConfig`: how nnprune made
            it), or ``None`` when it has none.

    Example::

        info = nnprune.inspect_checkpoint("runs/sst2-hybrid")
        print(info.kind.value, info.config.get("architectures"))
        if info.record is not None:
            print(info.record.task, info.record.pruning.method)
    """

    path: Path
    kind: CheckpointKind
    config: dict[str, Any] = field(repr=False)
    record: Optional[RunConfig] = field(default=None, repr=False)


def inspect_checkpoint(path: "str | Path") -> CheckpointInfo:
    """Check that ``path`` is a model folder (a one-line :class:`~nnprune.NNPruneError` when it
    does not exist, is no folder or has no ``config.json``) and say what it holds, without
    reading its weights.

    Example::

        info = nnprune.inspect_checkpoint("runs/sst2-hybrid")
        model = (nnprune.FinePruning.from_pretrained(info.path).model if info.kind == "masked"
                 else nnprune.load_pretrained(info.path))
    """
    folder = check_dir(path)
    config = read_config_json(folder)
    record = read_config(folder)
    return CheckpointInfo(folder, checkpoint_kind(folder), config, record)


def load_config(source: "str | Path") -> "PretrainedConfig":
    """The ``transformers`` config of a model folder or hub name (``AutoConfig``), or a one-line
    :class:`~nnprune.NNPruneError` when there is none.

    Example::

        config = nnprune.load_config("bert-base-uncased")
        table = nnprune.latency_table(config, batch_size=1, seq_len=128)   # no weights needed
    """
    return _load_config(source)


def bertarize_checkpoint(checkpoint: "str | Path", output: "str | Path", *, compact: bool = False,
                         allow_inexact: bool = False, tolerance: float = EXACT_TOLERANCE,
                         ffn_multiple: int = 8, overwrite: bool = True) -> BertarizeResult:
    """Write the checkpoint folder ``checkpoint`` (masked or plain) as a standard one at
    ``output`` (replaced atomically): final masks baked into the weights, scores dropped, its
    tokenizer files and run record carried over (the ``nnprune bertarize`` command).

    With ``compact`` the emptied heads and FFN dimensions are removed too (FFN widths padded to
    a multiple of ``ffn_multiple``), and ``nnprune_modeling.py`` is written so stock
    ``from_pretrained(..., trust_remote_code=True)`` reloads it. The written folder is reloaded
    and its outputs compared with the input model's on a fixed batch: beyond ``tolerance`` it is a
    one-line :class:`~nnprune.NNPruneError` and ``output`` is left as it was, unless
    ``allow_inexact`` (which also removes heads with only an empty query or key). ``output`` may
    be missing, empty, or a folder nnprune wrote (``overwrite=False`` refuses it); a file or a
    folder holding other files is refused before any work (docs/outputs.md).

    Returns:
        What was done and checked: ``output``, ``masked``, ``compacted``, ``max_abs_diff``,
        ``exact``, the compaction ``report``, ...; ``to_dict()`` is the command's JSON.

    Example::

        result = nnprune.bertarize_checkpoint("runs/sst2-hybrid", "runs/sst2-small", compact=True)
        print(result.report.heads_removed, result.max_abs_diff)
    """
    return _bertarize(checkpoint, output, compact=compact, allow_inexact=allow_inexact,
                      tolerance=tolerance, ffn_multiple=ffn_multiple, overwrite=overwrite)


__all__ = ["CheckpointInfo", "bertarize_checkpoint", "inspect_checkpoint", "load_config"]
