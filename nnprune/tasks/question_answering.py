"""Generic extractive question answering: ``question-answering``.

The SQuAD adapters (:mod:`nnprune.tasks.squad`) configured by ``--task-option key=value``
settings (:class:`QuestionAnsweringOptions`) for any data in the SQuAD format: the same readers,
features, decoding and metrics as ``squad`` (v1.1) or, with ``version_2_with_negative=true``, as
``squad_v2`` (unanswerable questions, a null-score threshold). The named ``squad`` / ``squad_v2``
tasks are unchanged; on the same files, ``question-answering`` gives exactly their features and
scores.

============================  ======================================================================
option                        meaning (default)
============================  ======================================================================
``version_2_with_negative``   ``true``: questions may have no answer (SQuAD v2.0 semantics and
                              metrics); ``false``: every question needs one (false)
``question_column``           field of the question in a one-question row (``question``)
``context_column``            field of the context paragraph (``context``)
``answers_column``            field of the answers: ``{"text": [...], "answer_start": [...]}`` or
                              a list of ``{"text", "answer_start"}`` (``answers``)
``id_column``                 field of the question id (``id``)
``dataset``                   a ``datasets.load_dataset`` name (hub id or local folder), used when
                              no local file is given
``dataset_config``            its configuration name (none)
``train_split``               its training split (``train``)
``validation_split``          its evaluation split (``validation``)
``doc_stride``                tokens shared by neighbouring windows of a long context, at most a
                              third of ``--max-seq-length`` (128)
``n_best_size``               start and end candidates per feature (20)
``max_answer_length``         longest answer, in tokens (30)
``null_score_diff_threshold`` v2.0 only: answer ``""`` when the null score minus the best span
                              score is above it (0.0)
============================  ======================================================================

A row's ``title`` field is kept when present. The column options name the fields of one-question
rows (a hub dataset, ``.jsonl`` files, JSON lists of rows); a file in the official layout
(articles, paragraphs, ``qas``) always uses the official names.

Data sources, first match wins (the ``squad`` rules, :meth:`SquadTask.load_data`):

1. ``--train-file`` / ``--validation-file``: an official SQuAD JSON file or a file of
   one-question rows;
2. ``--data-dir``: ``train-v1.1.json`` / ``dev-v1.1.json`` (``-v2.0`` with
   ``version_2_with_negative=true``), or ``train.json`` and ``dev.json`` / ``validation.json``
   (``.jsonl`` too), in the folder or its ``v1.1`` / ``v2.0`` subfolder;
3. ``--task-option dataset=NAME``: ``datasets.load_dataset(NAME, dataset_config, split=...)``.
   There is no default dataset, and giving both a local source and ``dataset`` is an error.

Metrics: v1.1 ``exact_match`` and ``f1``; v2.0 ``exact``, ``f1``, ``total``, ``HasAns_*``,
``NoAns_*`` and the ``best_*`` threshold search; ``main_metric`` is ``"f1"``. Prediction files as
``squad`` / ``squad_v2`` (``predictions.json``, v2.0 also ``null_odds.json``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from nnprune.errors import NNPruneError
from nnprune.settings import apply_assignments
from nnprune.tasks.base import TASKS, DataArgs
from nnprune.tasks.sources import HubDatasetOptions, pick_column
from nnprune.tasks.squad import SquadColumns, SquadExample, SquadTask, read_squad_rows

logger = logging.getLogger(__name__)

TASK_NAME = "question-answering"

#: the column options, in the order their columns are checked
COLUMN_OPTIONS = ("id_column", "question_column", "context_column", "answers_column")


@dataclass(frozen=True)
class QuestionAnsweringOptions(HubDatasetOptions):
    """The ``--task-option key=value`` settings of ``question-answering`` (module docstring);
    the hub source settings are :class:`~nnprune.tasks.sources.HubDatasetOptions`'.

    ``dataset``/``dataset_config`` empty mean "not given"; ``null_score_diff_threshold``
    ``None`` means the SQuAD v2.0 default, 0.0.
    """

    task_name: ClassVar[str] = TASK_NAME

    version_2_with_negative: bool = False
    question_column: str = "question"
    context_column: str = "context"
    answers_column: str = "answers"
    id_column: str = "id"
    doc_stride: int = SquadTask.doc_stride
    n_best_size: int = SquadTask.n_best_size
    max_answer_length: int = SquadTask.max_answer_length
    null_score_diff_threshold: Optional[float] = None

    def __post_init__(self) -> None:
        names = [getattr(self, key).strip() for key in COLUMN_OPTIONS]
        for key, name in zip(COLUMN_OPTIONS, names):
            if not name:
                raise NNPruneError(f"{TASK_NAME}: {key} must not be empty")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise NNPruneError(f"{TASK_NAME}: one column for several fields: "
                               f"{', '.join(dupes)}; each of {', '.join(COLUMN_OPTIONS)} needs "
                               "its own")
        super().__post_init__()
        if self.doc_stride < 0:
            raise NNPruneError(f"{TASK_NAME}: doc_stride must be >= 0, got {self.doc_stride}")
        for key in ("n_best_size", "max_answer_length"):
            if getattr(self, key) < 1:
                raise NNPruneError(f"{TASK_NAME}: {key} must be >= 1, got {getattr(self, key)}")
        thr = self.null_score_diff_threshold
        if thr is not None:
            if not self.version_2_with_negative:
                raise NNPruneError(f"{TASK_NAME}: null_score_diff_threshold applies to "
                                   "unanswerable questions; pass version_2_with_negative=true")
            if not math.isfinite(thr):
                raise NNPruneError(f"{TASK_NAME}: null_score_diff_threshold must be finite, "
                                   f"got {thr}")

    @property
    def columns(self) -> SquadColumns:
        """The row field names, as the SQuAD readers take them."""
        return SquadColumns(id=self.id_column.strip(), question=self.question_column.strip(),
                            context=self.context_column.strip(),
                            answers=self.answers_column.strip())


@TASKS.register(TASK_NAME)
class QuestionAnsweringTask(SquadTask):
    """Extractive QA on any SQuAD-format data: :class:`SquadTask` (v1.1, or v2.0 with
    ``version_2_with_negative``) with the settings of :class:`QuestionAnsweringOptions`.

    Features and metrics are :class:`SquadTask`'s: model inputs ``(n_features, seq)`` (padded
    per batch), ``start_positions``/``end_positions`` for training, logits ``(batch, seq)``.
    """

    name = TASK_NAME
    v2_hint = "pass --task-option version_2_with_negative=true"

    def __init__(self, options: Optional[QuestionAnsweringOptions] = None) -> None:
        super().__init__()
        self.options = options if options is not None else QuestionAnsweringOptions()
        opts = self.options
        # Instance attributes shadow SquadTask's class settings: the inherited data, decoding
        # and metric code reads them through self.
        self.version_2 = opts.version_2_with_negative
        self.file_version = "2.0" if self.version_2 else "1.1"
        self.columns = opts.columns
        self.doc_stride = opts.doc_stride
        self.n_best_size = opts.n_best_size
        self.max_answer_length = opts.max_answer_length
        if opts.null_score_diff_threshold is not None:
            self.null_score_diff_threshold = opts.null_score_diff_threshold

    def with_options(self, options: dict[str, str]) -> QuestionAnsweringTask:
        """This task with ``--task-option key=value`` settings (:class:`QuestionAnsweringOptions`);
        an unknown key is a one-line error listing the known ones."""
        if not options:
            return self
        return type(self)(apply_assignments(self.options, options, what=f"{TASK_NAME} option"))

    # ------------------------------------------------------------------ data

    def _load_examples(self, data: DataArgs, *, need_train: bool
                       ) -> tuple[Optional[list[SquadExample]], list[SquadExample]]:
        self.options.use_hub(data)  # refuses both sources and none; the parent picks the one
        return super()._load_examples(data, need_train=need_train)

    def _load_hub(self, *, need_train: bool
                  ) -> tuple[Optional[list[SquadExample]], list[SquadExample]]:
        return self.options.load_splits(self._from_hub_split, need_train=need_train)

    def _from_hub_split(self, ds: Any, where: str) -> list[SquadExample]:
        """Examples of one :class:`datasets.Dataset` split with the option-named columns, checked
        as rows of a file are (answers inside the context, unique ids, ...)."""
        header = list(ds.column_names)
        cols = self.columns
        for option, column in zip(COLUMN_OPTIONS, (cols.id, cols.question, cols.context,
                                                   cols.answers)):
            pick_column(where, header, column, (), option)
        names = [cols.id, cols.question, cols.context, cols.answers]
        names += [cols.title] if cols.title in header else []
        # [:] materialises each column once; indexing a datasets Column row by row reads Arrow
        # for every item
        values = [ds[n][:] for n in names]
        rows = [dict(zip(names, row)) for row in zip(*values)]
        for row in rows:
            if row.get(cols.title, "") is None:  # a missing title: "" (not "None")
                del row[cols.title]
        examples = read_squad_rows(where, rows, cols)
        self.check_answerable(where, examples)
        return examples


__all__ = ["COLUMN_OPTIONS", "TASK_NAME", "QuestionAnsweringOptions", "QuestionAnsweringTask"]
