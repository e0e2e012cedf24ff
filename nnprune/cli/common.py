"""Shared CLI pieces: consoles, tables, JSON output, quiet library logging."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any, Iterable, Optional, Sequence

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def quiet_libraries() -> None:
    """Keep transformers/datasets from printing weight-loading reports and advisory warnings."""
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:  # pragma: no cover - transformers always importable in practice
        pass
    logging.getLogger("datasets").setLevel(logging.ERROR)


def make_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
               justify_right_from: int = 1) -> Table:
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="right" if i >= justify_right_from else "left")
    for row in rows:
        table.add_row(*[fmt(v) for v in row])
    return table


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def stdout_for_json(json_out: Optional[Path]):
    """A context that sends stdout (the Trainer's log lines) to stderr when ``--json -`` wants
    stdout for the JSON alone."""
    import sys
    from contextlib import nullcontext, redirect_stdout

    return redirect_stdout(sys.stderr) if str(json_out) == "-" else nullcontext()


def emit(json_out: Optional[Path], title: str, rows: Iterable[Sequence[Any]],
         payload: dict[str, Any]) -> None:
    """A two-column result table on the console (unless ``--json -`` owns stdout) and the JSON."""
    if str(json_out) != "-":
        console.print(make_table(title, ["", "value"], rows))
    write_json(json_out, payload)


def write_json(path: Optional[Path], payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path``; ``-`` prints it to stdout."""
    if path is None:
        return
    text = json.dumps(payload, indent=2, sort_keys=True, default=str)
    if str(path) == "-":
        print(text)
        return
    from nnprune.io_utils import atomic_write_text

    atomic_write_text(Path(path), text + "\n")


# ---------------------------------------------------------------------------------- shared options
# Option types of the training commands (fine-prune, fill). The option name comes
# from the parameter name, so use them as e.g. ``epochs: EpochsOpt = 1.0``; the default stays with
# each command.
TeacherOpt = Annotated[str | None, typer.Option(
    help="Fine-tuned dense checkpoint to distil from.")]
EpochsOpt = Annotated[float, typer.Option(help="Training epochs (ignored with --max-steps).")]
MaxStepsOpt = Annotated[int | None, typer.Option(help="Training steps; overrides --epochs.")]
BatchSizeOpt = Annotated[int, typer.Option(help="Per-device training batch size.")]
LearningRateOpt = Annotated[float, typer.Option(
    help="Learning rate of the weights (mask scores, when pruning, use mask_scores_learning_rate).")]
WarmupOpt = Annotated[float, typer.Option(help="LR warm-up: fraction of steps (<1) or step count.")]
SeedOpt = Annotated[int, typer.Option(help="Random seed.")]
MaxSeqLengthOpt = Annotated[int | None, typer.Option(
    help="Tokens per example (default: the task's, 128 GLUE / 384 SQuAD).")]
ResumeOpt = Annotated[bool, typer.Option(help="Continue from the last checkpoint in --output-dir.")]
OverwriteOpt = Annotated[bool, typer.Option(
    help="Start again even if --output-dir holds checkpoints.")]
DataDirOpt = Annotated[Path | None, typer.Option(
    help="Task data folder: GLUE-style (train.tsv, dev.tsv) or SQuAD JSON (train-v1.1.json, "
         "dev-v1.1.json).")]
TrainFileOpt = Annotated[Path | None, typer.Option(
    help="Training file: tsv/csv/json/jsonl, or official SQuAD JSON.")]
ValidationFileOpt = Annotated[Path | None, typer.Option(
    help="Evaluation file: tsv/csv/json/jsonl, or official SQuAD JSON.")]
MaxTrainSamplesOpt = Annotated[int | None, typer.Option(
    help="Use at most this many training examples.")]
MaxEvalSamplesOpt = Annotated[int | None, typer.Option(
    help="Evaluate on at most this many examples.")]
LoggingStepsOpt = Annotated[int, typer.Option(help="Log every N steps.")]
SaveStepsOpt = Annotated[int, typer.Option(help="Checkpoint every N steps.")]
EvalStepsOpt = Annotated[int | None, typer.Option(help="Also evaluate every N steps.")]
JsonOutOpt = Annotated[Path | None, typer.Option(
    "--json", help="Write the results as JSON here ('-' for stdout).")]
