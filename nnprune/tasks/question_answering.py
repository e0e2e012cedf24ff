"""Extractive question answering: ``question-answering``, and its presets ``squad`` (SQuAD v1.1)
and ``squad_v2`` (SQuAD v2.0, :mod:`nnprune.tasks.squad`).

Any data in the SQuAD format (:mod:`nnprune.tasks.squad_format`), configured by
``--task-option key=value`` settings (:class:`QuestionAnsweringOptions`); a preset
(:class:`QuestionAnsweringPreset`) fixes them and names its hub dataset. Features and decoding
are :mod:`nnprune.tasks.qa_features` (the ``run_qa.py`` recipe), metrics
:mod:`nnprune.tasks.squad_metrics` (the official scripts).

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

Data sources, first match wins (:meth:`QuestionAnsweringTask.load_data`):

1. ``--train-file`` / ``--validation-file``: an official SQuAD JSON file or a file of
   one-question rows;
2. ``--data-dir``: ``train-v1.1.json`` / ``dev-v1.1.json`` (``-v2.0`` with unanswerable
   questions), or ``train.json`` and ``dev.json`` / ``validation.json`` (``.jsonl`` too), in the
   folder or its ``v1.1`` / ``v2.0`` subfolder (the official layout keeps versions apart);
3. ``--task-option dataset=NAME``: ``datasets.load_dataset(NAME, dataset_config, split=...)``.
   There is no default dataset, and giving both a local source and ``dataset`` is an error. A
   preset reads its hub dataset (``rajpurkar/squad``, ``rajpurkar/squad_v2``) instead, used only
   when no local source is given, so a run with local files never touches the network.

Metrics: v1.1 ``exact_match`` and ``f1`` in percent; v2.0 ``exact``, ``f1``, ``total``,
``HasAns_*``, ``NoAns_*`` at ``null_score_diff_threshold`` and the ``best_*`` threshold search
(the null-score differences as no-answer probabilities); ``main_metric`` is ``"f1"`` (v2.0: at
the fixed threshold; ``best_f1`` picks the threshold on the evaluation data). Prediction files:
``predictions.json``, v2.0 also ``null_odds.json`` (:meth:`QuestionAnsweringTask.prediction_files`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np
import torch

from nnprune.errors import NNPruneError
from nnprune.settings import apply_assignments
from nnprune.tasks.base import TASKS, DataArgs, TaskAdapter, TaskData, auto_model
from nnprune.tasks.qa_features import (DOC_STRIDE, MAX_ANSWER_LENGTH, N_BEST_SIZE, SquadEvalSet,
                                       check_fast_tokenizer, postprocess_predictions,
                                       prepare_eval_features, prepare_train_features)
from nnprune.tasks.sources import HubDatasetOptions, PresetHub, missing_data_message, pick_column
from nnprune.tasks.squad_format import (SquadColumns, SquadExample, hub_split_examples,
                                        read_squad_file, read_squad_rows)
from nnprune.tasks.squad_metrics import squad_v1_evaluate, squad_v2_evaluate

logger = logging.getLogger(__name__)

TASK_NAME = "question-answering"

#: the column options, in the order their columns are checked
COLUMN_OPTIONS = ("id_column", "question_column", "context_column", "answers_column")
#: v2.0: answer "" when the null score minus the best span score is above this
NULL_SCORE_DIFF_THRESHOLD = 0.0
#: what a generic v1.1 run met with unanswerable questions should do instead
V2_OPTION_HINT = "pass --task-option version_2_with_negative=true"


@dataclass(frozen=True)
class QuestionAnsweringOptions(HubDatasetOptions):
    """The ``--task-option key=value`` settings of ``question-answering`` (module docstring);
    the hub source settings are :class:`~nnprune.tasks.sources.HubDatasetOptions`'.

    ``dataset``/``dataset_config`` empty mean "not given"; ``null_score_diff_threshold``
    ``None`` means the SQuAD v2.0 default, :data:`NULL_SCORE_DIFF_THRESHOLD`.
    """

    task_name: ClassVar[str] = TASK_NAME

    version_2_with_negative: bool = False
    question_column: str = "question"
    context_column: str = "context"
    answers_column: str = "answers"
    id_column: str = "id"
    doc_stride: int = DOC_STRIDE
    n_best_size: int = N_BEST_SIZE
    max_answer_length: int = MAX_ANSWER_LENGTH
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


@dataclass(frozen=True)
class QuestionAnsweringPreset:
    """A named ``question-answering`` configuration (``squad``, ``squad_v2``), registered under
    ``name`` with :func:`~nnprune.tasks.base.register_preset`: its settings, the hub dataset it
    reads when no local source is given (split ``train`` and ``validation``, its columns the
    hub's SQuAD ones), and, for a v1.1 preset, what its error suggests when a question has no
    answer. A preset takes no ``--task-option``: it is the settings."""

    name: str
    hub: PresetHub
    options: QuestionAnsweringOptions = field(default_factory=QuestionAnsweringOptions)
    v2_hint: str = ""

    def __post_init__(self) -> None:
        # the hub source is the preset's own, not an option
        if self.options.dataset.strip():
            raise ValueError(f"preset {self.name}: its hub dataset is {self.hub.source_name}; "
                             "options.dataset must stay empty")


# ------------------------------------------------------------------------------ the task


@TASKS.register(TASK_NAME)
class QuestionAnsweringTask(TaskAdapter):
    """Extractive QA on SQuAD-format data (see the module docstring for data, features, decoding
    and metrics), configured by :class:`QuestionAnsweringOptions` or a
    :class:`QuestionAnsweringPreset`.

    Features: model inputs ``(n_features, seq)`` (padded per batch), ``start_positions`` /
    ``end_positions`` for training; the model gives start and end logits ``(batch, seq)``.
    After :meth:`evaluate`, :attr:`last_predictions` holds ``{question id: answer}`` and
    :attr:`last_null_score_diffs` the null-score differences; :meth:`prediction_files` gives
    them as the official scripts' files. The settings are instance attributes
    (:attr:`version_2`, :attr:`doc_stride`, ...), read from the options.
    """

    name = TASK_NAME
    main_metric = "f1"
    #: sequence length the adapter is meant for (the runner's generic default is 128)
    default_max_seq_length = 384
    head_suffix = "ForQuestionAnswering"
    prune_tune = True  # nnprune prune: least squares gave the SQuAD v1.1 split +1.2 F1 at 1.5x

    def __init__(self, options: Optional[QuestionAnsweringOptions] = None,
                 preset: Optional[QuestionAnsweringPreset] = None) -> None:
        if preset is not None and options is not None:
            raise ValueError(f"task {preset.name} is a preset: it takes no options")
        #: the named configuration this task is (``squad``, ...), ``None`` for the generic task
        self.preset = preset
        self.options = (preset.options if preset is not None
                        else options if options is not None else QuestionAnsweringOptions())
        opts = self.options
        if preset is not None:
            self.name = preset.name
        self.version_2 = opts.version_2_with_negative
        #: the file version in official names: train-v1.1.json, dev-v1.1.json
        self.file_version = "2.0" if self.version_2 else "1.1"
        #: field names of one-question rows
        self.columns: SquadColumns = opts.columns
        self.doc_stride = opts.doc_stride
        self.n_best_size = opts.n_best_size
        self.max_answer_length = opts.max_answer_length
        self.null_score_diff_threshold = (NULL_SCORE_DIFF_THRESHOLD
                                          if opts.null_score_diff_threshold is None
                                          else opts.null_score_diff_threshold)
        #: what a v1.1 run met with unanswerable questions should do instead
        self.v2_hint = preset.v2_hint if preset is not None else V2_OPTION_HINT
        self.last_predictions: dict[str, str] = {}
        self.last_null_score_diffs: dict[str, float] = {}

    def with_options(self, options: dict[str, str]) -> QuestionAnsweringTask:
        """This task with ``--task-option key=value`` settings (:class:`QuestionAnsweringOptions`);
        an unknown key is a one-line error listing the known ones. A preset refuses any."""
        if self.preset is not None:
            super().with_options(options)
            return self
        if not options:
            return self
        return type(self)(apply_assignments(self.options, options, what=f"{TASK_NAME} option"))

    # ------------------------------------------------------------------ data

    def load_data(self, tokenizer: Any, data: DataArgs, *, need_train: bool = True) -> TaskData:
        """Load, subsample and tokenize the examples.

        ``max_train_samples`` takes the first N questions after a shuffle with ``data.seed``;
        ``max_eval_samples`` the first N in file order. Both count questions, not features.
        ``TaskData.train`` is ``None`` when ``need_train`` is false; the one eval split is
        ``"validation"``, and ``TaskData.eval_examples["validation"]`` is a
        :class:`SquadEvalSet`.
        """
        from transformers import DataCollatorWithPadding

        check_fast_tokenizer(tokenizer)
        train_ex, eval_ex = self._load_examples(data, need_train=need_train)
        if train_ex is not None and data.max_train_samples is not None \
                and data.max_train_samples < len(train_ex):
            order = np.random.default_rng(data.seed).permutation(len(train_ex))
            train_ex = [train_ex[i] for i in order[: data.max_train_samples]]
        if data.max_eval_samples is not None:
            eval_ex = eval_ex[: data.max_eval_samples]
        length = data.max_seq_length
        train = (prepare_train_features(tokenizer, train_ex, length, self.doc_stride)
                 if train_ex is not None else None)
        eval_ds, feats = prepare_eval_features(tokenizer, eval_ex, length, self.doc_stride)
        return TaskData(train=train, eval={"validation": eval_ds},
                        eval_examples={"validation": SquadEvalSet(eval_ex, feats)},
                        data_collator=DataCollatorWithPadding(tokenizer))

    def read_file(self, path: str | Path) -> list[SquadExample]:
        """:func:`read_squad_file` (rows named by :attr:`columns`), refusing unanswerable
        questions for v1.1."""
        examples = read_squad_file(path, self.columns)
        self.check_answerable(path, examples)
        return examples

    def check_answerable(self, source: str | Path, examples: list[SquadExample]) -> None:
        """v1.1: refuse (one line naming ``source``) examples without an answer."""
        if not self.version_2:
            missing = [ex.id for ex in examples if not ex.has_answer]
            if missing:
                raise NNPruneError(f"{source}: {len(missing)} question(s) have no answer (e.g. "
                                   f"id {missing[0]}); SQuAD v1.1 needs one: {self.v2_hint}")

    def _load_examples(self, data: DataArgs, *, need_train: bool
                       ) -> tuple[list[SquadExample] | None, list[SquadExample]]:
        # a preset reads its hub dataset when no local source is given; the generic task needs
        # one source (dataset= or local files) and refuses both
        use_hub = (not data.uses_local_files if self.preset is not None
                   else self.options.use_hub(data))
        if use_hub:
            return self._load_hub(need_train=need_train)
        folder = self._folder(data.data_dir) if data.data_dir is not None else None
        train_path: Path | None = None
        if need_train:
            train_path = data.train_file
            if train_path is None and folder is not None:
                train_path = _first_file(folder, self._train_names())
            if train_path is None:
                raise NNPruneError(self._missing_msg("training", folder, self._train_names(),
                                                     "--train-file"))
        eval_path = data.validation_file
        if eval_path is None and folder is not None:
            eval_path = _first_file(folder, self._eval_names())
        if eval_path is None:
            raise NNPruneError(self._missing_msg("evaluation", folder, self._eval_names(),
                                                 "--validation-file"))
        train = self.read_file(train_path) if train_path is not None else None
        return train, self.read_file(eval_path)

    def _train_names(self) -> tuple[str, ...]:
        return (f"train-v{self.file_version}.json", "train.json", "train.jsonl")

    def _eval_names(self) -> tuple[str, ...]:
        return (f"dev-v{self.file_version}.json", "dev.json", "dev.jsonl", "validation.json",
                "validation.jsonl")

    def _folder(self, data_dir: Path) -> Path:
        # The official layout keeps versions apart: squad/v1.1/dev-v1.1.json
        names = self._train_names() + self._eval_names()
        sub = data_dir / f"v{self.file_version}"
        if _first_file(data_dir, names) is None and sub.is_dir():
            return sub
        return data_dir

    def _missing_msg(self, what: str, folder: Path | None, names: tuple[str, ...],
                     flag: str) -> str:
        return missing_data_message(self.name, what, folder, " or ".join(names), flag)

    def _load_hub(self, *, need_train: bool
                  ) -> tuple[list[SquadExample] | None, list[SquadExample]]:
        if self.preset is None:
            return self.options.load_splits(self._from_hub_split, need_train=need_train)
        hub = self.preset.hub
        dsd = hub.load(self.name)
        return (self._from_hub_split(dsd["train"], f"{hub.source_name}[train]")
                if need_train else None,
                self._from_hub_split(dsd["validation"], f"{hub.source_name}[validation]"))

    def _from_hub_split(self, ds: Any, where: str) -> list[SquadExample]:
        """Examples of one :class:`datasets.Dataset` split: a preset's hub split as the hub
        stores SQuAD; else with the option-named columns, checked as rows of a file are
        (answers inside the context, unique ids, ...)."""
        if self.preset is not None:
            examples = hub_split_examples(ds)
            if not self.version_2 and any(not ex.has_answer for ex in examples):
                raise NNPruneError(f"{where}: has unanswerable questions; {self.v2_hint}")
            return examples
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

    # ----------------------------------------------------------------- model

    def build_model(self, model_name_or_path: str, **kwargs: Any) -> torch.nn.Module:
        """``AutoModelForQuestionAnswering`` (a base checkpoint gets a fresh span head)."""
        from transformers import AutoModelForQuestionAnswering

        return auto_model(AutoModelForQuestionAnswering, model_name_or_path, **kwargs)

    def distillation_logits(self, outputs: Any) -> tuple[torch.Tensor, ...]:
        return (outputs.start_logits, outputs.end_logits)

    # ---------------------------------------------------------------- metric

    def evaluate(self, trainer: Any, data: TaskData) -> dict[str, float]:
        """Predict the eval features with ``trainer.predict``, decode answers, score them."""
        results: dict[str, float] = {}
        self.last_predictions, self.last_null_score_diffs = {}, {}
        splits = list(data.eval)
        for split, ds in data.eval.items():
            eval_set = data.eval_examples.get(split)
            if not isinstance(eval_set, SquadEvalSet):
                raise TypeError(f"TaskData.eval_examples[{split!r}] must be a SquadEvalSet")
            out = trainer.predict(ds, metric_key_prefix=split)
            preds = out.predictions
            if not isinstance(preds, (tuple, list)) or len(preds) < 2:
                raise ValueError("expected (start_logits, end_logits) predictions from a "
                                 "question-answering model")
            metrics = self.score(eval_set, np.asarray(preds[0]), np.asarray(preds[1]))
            for key, value in metrics.items():
                results[key if len(splits) == 1 else f"{split}_{key}"] = value
        return results

    def score(self, eval_set: SquadEvalSet, start_logits: np.ndarray,
              end_logits: np.ndarray) -> dict[str, float]:
        """Decode answers from feature logits and compute the official metrics."""
        texts, diffs = postprocess_predictions(
            eval_set, start_logits, end_logits, n_best_size=self.n_best_size,
            max_answer_length=self.max_answer_length)
        gold = eval_set.gold()
        if not self.version_2:
            self.last_predictions.update(texts)
            self.last_null_score_diffs.update(diffs)
            return squad_v1_evaluate(gold, texts)
        thr = self.null_score_diff_threshold
        self.last_predictions.update({k: ("" if diffs[k] > thr else t) for k, t in texts.items()})
        self.last_null_score_diffs.update(diffs)
        # The un-thresholded answers with the differences as "no-answer probabilities": the
        # official script then scores the thresholded answers and searches the best threshold.
        return squad_v2_evaluate(gold, texts, na_probs=diffs, na_prob_thresh=thr)

    def prediction_files(self) -> dict[str, Any]:
        """The last :meth:`evaluate`'s answers as the official scripts read them.

        ``predictions.json``: ``{question id: answer text}`` (v2.0: ``""`` where the null score
        difference is above ``null_score_diff_threshold``), the ``evaluate-v1.1.py`` /
        ``evaluate-v2.0.py`` prediction file. v2.0 also ``null_odds.json``: ``{question id: null
        score - best span score}`` (``Infinity`` without a valid span), the v2.0 script's
        ``--na-prob-file``. Scored with ``--na-prob-thresh`` = the threshold (0.0), they give the
        reported ``exact``/``f1`` and ``HasAns_*``/``NoAns_*``; the reported ``best_*`` search
        the threshold over the un-thresholded answers, which the files do not hold.
        """
        if not self.last_predictions:
            return {}
        files: dict[str, Any] = {"predictions.json": dict(self.last_predictions)}
        if self.version_2:
            files["null_odds.json"] = dict(self.last_null_score_diffs)
        return files


def _first_file(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` that is a file in ``folder``."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


__all__ = [
    "COLUMN_OPTIONS",
    "NULL_SCORE_DIFF_THRESHOLD",
    "TASK_NAME",
    "QuestionAnsweringOptions",
    "QuestionAnsweringPreset",
    "QuestionAnsweringTask",
]
