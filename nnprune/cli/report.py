"""``nnprune report CKPT``: a model card (README.md) and pictures of what was pruned."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Mapping, Optional

import typer

from nnprune.cli.common import (JsonFileOpt, JsonOutOpt, add_command, console, err_console,
                                quiet_libraries, write_json)
from nnprune.errors import NNPruneError
from nnprune.launch import is_main_process


def report(
    checkpoint: Annotated[Path, typer.Argument(help="Masked, bertarized, compacted or filled checkpoint folder.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder for README.md and the pictures (default: the checkpoint folder).")] = None,
    speed: Annotated[Optional[Path], typer.Option("--speed", help="JSON of `nnprune speed` (--json-file): measured speed.")] = None,
    eval_file: Annotated[Optional[Path], typer.Option("--eval", help="JSON of `nnprune evaluate` (--json-file): metrics measured on this checkpoint.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a README.md that nnprune did not write.")] = False,
    seq_len: Annotated[int, typer.Option(help="Sequence length of the FLOP speedup estimate.")] = 128,
    json_out: JsonOutOpt = False,
    json_file: JsonFileOpt = None,
) -> None:
    """Write a model card (README.md) and pictures of what CHECKPOINT pruned.

    The card has Hugging Face YAML metadata (base model, task, dataset, metrics, tags), the
    results (metric vs the dense teacher, density, heads and FFN dimensions kept per layer,
    compression, measured speed), how the model was pruned and the commands that reproduce it.
    The PNG pictures show the pruning pattern of every matrix, the heads kept and the FFN
    dimensions kept. A README.md that nnprune did not write is never replaced without
    --overwrite."""
    quiet_libraries()
    from nnprune.report.card import write_card

    result = write_card(checkpoint, output, speed=speed, evaluation=eval_file,
                        overwrite=overwrite, seq_len=seq_len)
    if not json_out:
        print_written(result)
    write_json(json_out, result.to_dict(), json_file)


def print_written(result: Any, to_stderr: bool = False) -> None:
    out = err_console if to_stderr else console
    out.print(f"wrote {result.card} and {len(result.images)} pictures "
              f"({', '.join(p.name for p in result.images.values())})", highlight=False)


def card_after_save(checkpoint: Path, json_out: Any = False, *,
                    bertarize: Optional[Mapping[str, Any]] = None) -> None:
    """The card a command writes next to the checkpoint it saved (``--no-card`` skips it); its
    one line goes to stderr when ``--json`` owns stdout. The checkpoint is already written: a
    card that cannot be written is a note, not a failure."""
    if not is_main_process():  # one process writes it under torchrun
        return
    from nnprune.report.card import write_card

    to_stderr = json_out
    out = err_console if to_stderr else console
    try:
        result = write_card(checkpoint, bertarize=bertarize)
    except NNPruneError as exc:
        out.print(f"[yellow]note:[/] model card not written: {exc}", highlight=False)
        return
    print_written(result, to_stderr)


def register(app: typer.Typer) -> None:
    add_command(app, "report", report, "nnprune report runs/sst2-compact --speed speed.json "
                                       "--eval eval.json")
