"""What ``summarization`` reads: (document, summary) examples and the sources that give them.

A source (:class:`SummarySource`) turns a run's data arguments into :class:`SummarySplits`:
datasets with the columns ``id``, ``article`` (the document) and ``highlights`` (the summary,
one sentence per line), which the adapter (:mod:`nnprune.tasks.summarization`) tokenizes. The
generic task's source reads the columns its ``--task-option`` settings name; a preset brings its
own (``cnn_dailymail``: DeepMind ``.story`` folders, :mod:`nnprune.tasks.cnn_dailymail`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol

from nnprune.errors import NNPruneError
from nnprune.tasks.base import DataArgs
from nnprune.tasks.io import check_columns, place

#: the columns of the datasets a source gives
SPLIT_COLUMNS = ("id", "article", "highlights")


@dataclass
class Story:
    """One document (``article``) and its summary (``highlights``: one sentence per line)."""

    id: str
    article: str
    highlights: str


@dataclass
class SummarySplits:
    """What a :class:`SummarySource` gives: the training split (``None`` when not asked for)
    and the evaluation split, as ``datasets.Dataset`` with :data:`SPLIT_COLUMNS`, and ``info``,
    how the data was found or split (logged by the source, kept as the task's ``split_info``)."""

    train: Any
    validation: Any
    info: str


class SummarySource(Protocol):
    """Where a summarization task's data comes from: local files or a hub dataset."""

    def load(self, task: str, data: DataArgs, *, need_train: bool) -> SummarySplits:
        """The splits of a run with data arguments ``data`` (the training split only when
        ``need_train``); errors are one line naming ``task`` and what to pass instead."""
        ...


def stories_from_rows(path: str | Path, rows: list[dict[str, Any]], text_column: str = "article",
                      summary_column: str = "highlights") -> list[Story]:
    """Stories from the ``rows`` read from ``path`` (:func:`nnprune.tasks.io.read_table`): the
    document in ``text_column``, the summary in ``summary_column`` (a JSON list of sentences is
    joined by newlines), ``id`` optional (the 1-based row number otherwise). Errors name the
    row's line (:func:`~nnprune.tasks.io.place`)."""
    if not rows:
        raise NNPruneError(f"{path}: no examples (only a header)")
    out: list[Story] = []
    for i, row in enumerate(rows):
        where = place(rows, i)
        check_columns(path, (text_column, summary_column), list(row), where=where)
        article, highlights = row[text_column], row[summary_column]
        if isinstance(highlights, list) and all(isinstance(h, str) for h in highlights):
            highlights = "\n".join(highlights)  # a JSON list of highlight sentences
        for name, value in ((text_column, article), (summary_column, highlights)):
            if not isinstance(value, str):
                raise NNPruneError(f"{path}: {where}: {name!r} is not a string (or, for the "
                                   "summary, a list of strings)")
        qid = row.get("id", i + 1)
        if isinstance(qid, (list, dict)):
            raise NNPruneError(f"{path}: {where}: 'id' is not a string or a number")
        out.append(Story(str(qid), article, highlights))
    return out


def stories_dataset(stories: Optional[list[Story]]) -> Any:
    """``stories`` as a ``datasets.Dataset`` with :data:`SPLIT_COLUMNS` (``None`` stays
    ``None``)."""
    if stories is None:
        return None
    import datasets

    return datasets.Dataset.from_dict({"id": [s.id for s in stories],
                                       "article": [s.article for s in stories],
                                       "highlights": [s.highlights for s in stories]})


@contextlib.contextmanager
def progress_bars(n: int) -> Iterator[None]:
    """Show the datasets progress bars only for big datasets (the hub's), not for a few files."""
    from datasets.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    was_disabled = are_progress_bars_disabled()
    if n < 10_000 and not was_disabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


__all__ = [
    "SPLIT_COLUMNS",
    "Story",
    "SummarySource",
    "SummarySplits",
    "progress_bars",
    "stories_dataset",
    "stories_from_rows",
]
