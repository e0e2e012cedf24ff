"""Shared CLI pieces: consoles, tables, JSON output, quiet library logging."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Optional, Sequence

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


class _NNPruneHandler(logging.StreamHandler):
    """Writes nnprune's log records to the *current* ``sys.stderr`` as plain lines."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property  # type: ignore[override]
    def stream(self):  # noqa: D401 - follows sys.stderr when it is replaced (tests, redirection)
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _DropOnnxQuantAdvice(logging.Filter):
    """onnxruntime's quantizer logs advice to pre-process on the root logger at WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not ("onnxruntime" in record.pathname and record.levelno < logging.ERROR)


def setup_logging(level: int = logging.INFO) -> None:
    """What a CLI user sees of the library's logs: nnprune's INFO lines on stderr (library code
    only logs; this is the one place that decides how). Idempotent."""
    log = logging.getLogger("nnprune")
    if not any(isinstance(h, _NNPruneHandler) for h in log.handlers):
        log.addHandler(_NNPruneHandler())
    log.setLevel(level)
    root = logging.getLogger()
    if not any(isinstance(f, _DropOnnxQuantAdvice) for f in root.filters):
        root.addFilter(_DropOnnxQuantAdvice())


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
TeacherOpt = Annotated[Optional[str], typer.Option(
    help="Fine-tuned dense checkpoint to distil from.")]
TaskOptionOpt = Annotated[Optional[list[str]], typer.Option(
    "--task-option", help="A task setting, key=value (repeatable); cnn_dailymail: generation "
                          "settings num_beams, max_length, min_length, length_penalty, "
                          "no_repeat_ngram_size, early_stopping.")]
JsonOutOpt = Annotated[Optional[Path], typer.Option(
    "--json", help="Write the results as JSON here ('-' for stdout).")]


def task_options(items: Optional[Sequence[str]]) -> dict[str, str]:
    """``--task-option`` values as a mapping (one-line error when malformed)."""
    from nnprune.settings import parse_assignments

    return parse_assignments(items or (), option="--task-option")


def training_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command every field of :class:`~nnprune.workflows.options.TrainingOptions` as an
    option (name, type, default and help from the dataclass: one source of truth), collected
    into the command's ``training`` parameter."""
    import dataclasses

    from nnprune.settings import field_types
    from nnprune.workflows.options import TrainingOptions

    sig = inspect.signature(func)
    if "training" not in sig.parameters:
        raise TypeError(f"{func.__name__} has no 'training' parameter")
    kinds = field_types(TrainingOptions)
    extra = []
    for f in dataclasses.fields(TrainingOptions):
        annotation = Annotated[kinds[f.name], typer.Option(help=f.metadata.get("help"))]
        extra.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                       default=f.default, annotation=annotation))
    # The command module may use ``from __future__ import annotations``: resolve its own
    # annotations in its globals, since typer reads them from this wrapper.
    params = [p.replace(annotation=eval(p.annotation, func.__globals__))  # noqa: S307
              if isinstance(p.annotation, str) else p
              for p in sig.parameters.values() if p.name != "training"]
    clash = {p.name for p in params} & {p.name for p in extra}
    if clash:
        raise TypeError(f"{func.__name__} redefines training options {sorted(clash)}")
    names = {p.name for p in extra}

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        training = TrainingOptions(**{k: kwargs.pop(k) for k in list(kwargs) if k in names})
        return func(*args, training=training, **kwargs)

    command.__signature__ = sig.replace(parameters=params + extra)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params + extra}
    del command.__wrapped__  # typer must read the new signature, not the wrapped one's
    return command
