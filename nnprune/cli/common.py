"""Shared CLI pieces: consoles, tables, JSON output, quiet library logging."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

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
