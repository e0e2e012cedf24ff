"""Generic sequence classification and regression: ``text-classification``.

One text or a pair of texts per example, any label set, or one numeric score (regression). The
adapter reads columns and labels from the data or from ``--task-option key=value`` settings
(:class:`TextClassificationOptions`), or from a *preset* that fixes them: the GLUE tasks
(``sst2``, ``mrpc``, ``qqp``, ``mnli``, :mod:`nnprune.tasks.glue`) are presets of this adapter
(:class:`~nnprune.tasks.classification_data.TextClassificationPreset`: columns, labels, files,
metrics declared as data, read by :class:`~nnprune.tasks.classification_data.PresetReader`).

=====================  ==============================================================================
option                 meaning (default)
=====================  ==============================================================================
``text_column``        the text column (found by name: ``text``, ``sentence``, ``sentence1``,
                       ``text_a``, ``premise``, ``question1``, ``question``)
``text_pair_column``   the second text of a pair (found by name: ``sentence2``, ``text_b``,
                       ``hypothesis``, ``question2``, ``text_pair``; none found: single texts);
                       ``none``: single texts even when such a column exists
``label_column``       the label column (found by name: ``label``, ``labels``, ``gold_label``,
                       ``target``, ``class``)
``labels``             ``a,b,c``: the label set and its order (class id 0, 1, 2). Default: the
                       hub's ``ClassLabel`` names, else the sorted distinct labels of the
                       training data, numerically when every label is a number (``2`` before
                       ``10``)
``regression``         ``true``: one numeric label per example, one output, MSE loss (false)
``dataset``            a ``datasets.load_dataset`` name (hub id or local folder) used when no
                       local file is given
``dataset_config``     its configuration name (none)
``train_split``        its training split (``train``)
``validation_split``   its evaluation split (``validation``)
``delimiter``          the field separator of delimited files (``.csv``: ``,``; ``.tsv``: tab);
                       one character, or ``tab`` / ``\\t``; with it, ``.txt`` files are read too
=====================  ==============================================================================

Data sources, first match wins (see :meth:`TextClassificationTask.load_data`):

1. ``--train-file`` / ``--validation-file`` (``.tsv``, ``.csv``, ``.json``, ``.jsonl``; see
   :mod:`nnprune.tasks.io`);
2. ``--data-dir``: ``train.*`` and ``validation.*`` or ``dev.*`` in that folder (any of the
   extensions above; two candidates for one split are an error);
3. ``--task-option dataset=NAME``: ``datasets.load_dataset(NAME, dataset_config, split=...)``.
   Giving both a local source and ``dataset`` is an error: one run reads one source.

Labels. A label is compared as text: JSON numbers become their decimal text (``1`` and ``1.0`` are
``"1"``, ``true`` is ``"true"``), strings are stripped; an empty label is an error. Every label
of the evaluation data must be in the label set. The label order is that of the model when it has
one: a checkpoint whose classification head carries named labels (``config.id2label`` other than
``LABEL_0``, ``LABEL_1``, ...) keeps its order, even over ``labels=`` (with a warning), and a
checkpoint with another label set is refused naming both sets
(:meth:`TextClassificationTask.check_checkpoint`, also run by
:meth:`~TextClassificationTask.build_model`). Once a checkpoint or a built model has fixed the
order, a checkpoint checked later (a teacher) with the same labels in another order is refused.
When the data was tokenized before the model fixed the order (``fine-prune`` loads the data
first), the collator (:class:`LabelOrderCollator`) maps the data's class ids to the model's, so
the tokenized datasets never need rebuilding.

Metrics (one evaluation split, ``validation``): classification: ``accuracy`` (the main metric),
``macro_f1`` (the mean F1 over the classes present in the labels or the predictions, as
scikit-learn's ``average="macro"``) and, with two labels, ``f1`` of the positive class (the second
label in order: ``1`` of ``0,1``, ``positive`` of ``negative,positive``); regression: ``pearson``
(the main metric: higher is better, as for every other task, and STS-B's headline score),
``spearman`` (ties get their average rank) and ``mse``. ``eval_loss`` is added when the trainer
reports it (:mod:`nnprune.tasks.classification_metrics`). A preset reports the metrics it names
(GLUE: ``accuracy``, plus ``f1`` for MRPC and QQP), keyed ``"<split>_<metric>"`` when it has
several evaluation splits (MNLI matched and mismatched), its labels are fixed (a checkpoint's head
needs as many outputs, whatever it calls them) and it takes no ``--task-option``.

Distillation: classification distils the logits ``(batch, num_labels)``.
Regression hands over the single output ``(batch, 1)``, but the trainer's loss is a KL divergence
of softmaxes, which is identically zero over one class: a teacher adds nothing to a regression
run (a warning says so) and ``alpha_ce`` scales the MSE loss alone.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np
import torch

from nnprune.errors import NNPruneError
from nnprune.settings import apply_assignments
from nnprune.tasks.base import (TASKS, DataArgs, TaskAdapter, TaskData, add_label_names,
                                auto_config, auto_model, encode_texts, named_labels,
                                predict_split)
from nnprune.tasks.classification_data import (PresetReader, RawExamples,
                                               TextClassificationPreset, label_name, sort_labels)
from nnprune.tasks.classification_metrics import ClassificationMetric, classification_scores
from nnprune.tasks.io import (SUPPORTED_EXTENSIONS, as_texts, column_list, column_values, places,
                              read_table)
from nnprune.tasks.sources import HubDatasetOptions, local_split_paths, pick_column

logger = logging.getLogger(__name__)

TASK_NAME = "text-classification"

#: candidate column names, tried in order when the matching option is not given
TEXT_COLUMNS = ("text", "sentence", "sentence1", "text_a", "premise", "question1", "question")
TEXT_PAIR_COLUMNS = ("sentence2", "text_b", "hypothesis", "question2", "text_pair")
LABEL_COLUMNS = ("label", "labels", "gold_label", "target", "class")
#: ``text_pair_column`` value meaning "single texts, do not look for a pair column"
NO_PAIR = "none"
#: file names (without extension) of the splits in a ``--data-dir``
TRAIN_STEMS = ("train",)
EVAL_STEMS = ("validation", "dev")
EVAL_SPLIT = "validation"


# ------------------------------------------------------------------------------ options


@dataclass(frozen=True)
class TextClassificationOptions(HubDatasetOptions):
    """The ``--task-option key=value`` settings of ``text-classification`` (module docstring);
    the hub source settings are :class:`~nnprune.tasks.sources.HubDatasetOptions`'.

    Empty strings mean "not given": columns are then found by name, labels read from the data.
    """

    task_name: ClassVar[str] = TASK_NAME

    text_column: str = ""
    text_pair_column: str = ""
    label_column: str = ""
    labels: str = ""
    regression: bool = False
    delimiter: str = ""

    def __post_init__(self) -> None:
        self.label_list  # noqa: B018  (validates labels=)
        self.delimiter_char  # noqa: B018
        if self.regression and self.labels.strip():
            raise NNPruneError(f"{TASK_NAME}: regression=true takes one numeric label; "
                               "drop labels=")
        super().__post_init__()

    @property
    def label_list(self) -> Optional[tuple[str, ...]]:
        """``labels=a,b,c`` as ``("a", "b", "c")``; ``None`` when not given."""
        if not self.labels.strip():
            return None
        names = tuple(x.strip() for x in self.labels.split(","))
        if any(not n for n in names):
            raise NNPruneError(f"{TASK_NAME}: labels={self.labels} has an empty label name")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise NNPruneError(f"{TASK_NAME}: labels={self.labels} repeats {', '.join(dupes)}")
        if len(names) < 2:
            raise NNPruneError(f"{TASK_NAME}: labels={self.labels} names one label; a classifier "
                               "needs at least 2 (or pass regression=true)")
        return names

    @property
    def delimiter_char(self) -> Optional[str]:
        """The ``delimiter`` option as one character (``tab`` / ``\\t`` -> a tab); ``None``:
        by file extension."""
        raw = self.delimiter
        if raw == "":
            return None
        value = "\t" if raw.strip().lower() in ("tab", "\\t") else raw
        if len(value) != 1 or value in ('"', "\r", "\n"):
            raise NNPruneError(f"{TASK_NAME}: delimiter must be one character (or 'tab'), "
                               f"got {raw!r}")
        return value


# ------------------------------------------------------------------------------ collator


class LabelOrderCollator:
    """Pads a batch with ``inner`` and maps its class ids from the order the data was tokenized
    in (``data_labels``) to the task's current order (``task.labels``).

    The two differ only when a checkpoint with its own label order was met after
    :meth:`TextClassificationTask.load_data` (``fine-prune`` builds the model after loading the
    data); the map is then a permutation, read when each batch is made.

    Output: the ``inner`` collator's batch (``input_ids`` ``(batch, seq)``, ...) with ``labels``
    ``(batch,)`` int64 in the model's order.
    """

    def __init__(self, inner: Any, task: TextClassificationTask,
                 data_labels: tuple[str, ...]) -> None:
        self.inner = inner
        self.task = task
        self.data_labels = data_labels

    def mapping(self) -> Optional[np.ndarray]:
        """``(num_labels,)``: model class id of each data class id; ``None`` when identical."""
        current = self.task.labels
        if current is None or tuple(current) == self.data_labels:
            return None
        index = {name: i for i, name in enumerate(current)}
        return np.array([index[name] for name in self.data_labels], dtype=np.int64)

    def to_model_ids(self, ids: np.ndarray) -> np.ndarray:
        """Data class ids ``(n,)`` as model class ids ``(n,)``."""
        mapping = self.mapping()
        ids = np.asarray(ids)
        return ids if mapping is None else mapping[ids]

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(features)
        mapping = self.mapping()
        if mapping is not None and "labels" in batch:
            batch["labels"] = torch.as_tensor(mapping)[batch["labels"].long()]
        return batch


# ------------------------------------------------------------------------------ the task


@TASKS.register(TASK_NAME)
class TextClassificationTask(TaskAdapter):
    """Classification (or regression) of one text or a text pair (see the module docstring).

    Features: the tokenizer's model inputs (``input_ids``, ``attention_mask``, and
    ``token_type_ids`` when the tokenizer makes them), variable-length lists padded per batch to
    ``(batch, seq)``, plus ``labels``: the class id (``(batch,)`` int64 once collated) or the
    score (``(batch,)`` float32, regression).

    :attr:`labels` is the label set in class-id order once known (from ``labels=``, a checkpoint
    or the data; a :attr:`preset`'s from the start); ``None`` before, and always for regression.

    :attr:`main_metric` is ``"accuracy"`` (regression ``"pearson"``, a preset its first metric),
    prefixed ``"<split>_"`` by the first evaluation split when there are several (MNLI:
    ``"validation_matched_accuracy"``); :meth:`load_data` and :meth:`evaluate` set it from the
    splits actually present (``"accuracy"`` when only ``dev_matched.tsv`` exists locally).
    """

    name = TASK_NAME
    main_metric = "accuracy"
    head_suffix = "ForSequenceClassification"

    def __init__(self, options: Optional[TextClassificationOptions] = None,
                 preset: Optional[TextClassificationPreset] = None) -> None:
        if preset is not None and options is not None:
            raise ValueError(f"task {preset.name} is a preset: it takes no options")
        #: the named configuration this task is (``sst2``, ...), ``None`` for the generic task
        self.preset = preset
        self.options = options if options is not None else TextClassificationOptions()
        self.regression = self.options.regression
        self.labels: Optional[tuple[str, ...]] = self.options.label_list
        #: where :attr:`labels` came from, for messages
        self.labels_source = "--task-option labels" if self.labels is not None else ""
        if preset is not None:
            self.name = preset.name
            self.labels, self.labels_source = preset.labels, f"task {preset.name}"
        self.main_metric = self._metric_key(self._main_metric(), self._eval_splits())
        # what pinned the order (a checkpoint's head, a built model); later checkpoints (a
        # teacher) must then agree with it exactly
        self._order_pinned_by: Optional[str] = None
        # (count, where) of a checkpoint head with unnamed labels, checked once labels are known
        self._unnamed_head: Optional[tuple[int, str]] = None
        self._warned_distillation = False

    def with_options(self, options: dict[str, str]) -> TextClassificationTask:
        """This task with ``--task-option key=value`` settings (:class:`TextClassificationOptions`);
        an unknown key is a one-line error listing the known ones. A preset refuses any: its
        columns and labels are its definition."""
        if self.preset is not None:
            super().with_options(options)
            return self
        if not options:
            return self
        return type(self)(apply_assignments(self.options, options,
                                            what=f"{TASK_NAME} option"))

    def _main_metric(self) -> str:
        if self.preset is not None:
            return self.preset.main_metric.value
        main = ClassificationMetric.PEARSON if self.regression else ClassificationMetric.ACCURACY
        return main.value

    def _eval_splits(self) -> list[str]:
        """The evaluation splits of a full data set (before any is found missing)."""
        return list(self.preset.files.eval_splits) if self.preset is not None else [EVAL_SPLIT]

    @staticmethod
    def _metric_key(metric: str, splits: list[str], split: Optional[str] = None) -> str:
        """``metric`` of ``split`` (default: the first) as a results key: bare with one
        evaluation split, ``"<split>_<metric>"`` with several."""
        if len(splits) <= 1:
            return metric
        return f"{split if split is not None else splits[0]}_{metric}"

    @property
    def num_labels(self) -> Optional[int]:
        """Outputs of the model head: 1 for regression, else the size of :attr:`labels`."""
        if self.regression:
            return 1
        return None if self.labels is None else len(self.labels)

    # ------------------------------------------------------------------ data

    def load_data(self, tokenizer: Any, data: DataArgs, *, need_train: bool = True) -> TaskData:
        """Load, subsample and tokenize the train split (if ``need_train``) and ``validation``.

        The label set is settled first, on the full data: ``labels=``, else a checkpoint's (see
        :meth:`check_checkpoint`), else the training data's (:func:`sort_labels`, or the hub's
        ``ClassLabel`` order), else -- evaluation only -- the evaluation data's, with a warning
        that the order is a guess. Then ``max_train_samples`` takes the first N after a shuffle
        with ``data.seed``, ``max_eval_samples`` the first N of each evaluation split in file
        order, so evaluation sets do not change with the seed. A preset's rows without a gold
        label are dropped first (MNLI), so N counts usable rows.

        ``TaskData.train`` is ``None`` when ``need_train`` is false; ``TaskData.eval`` holds
        ``validation``, or a preset's splits found (MNLI: ``validation_matched`` and
        ``validation_mismatched``).
        """
        train, evals = self._load_examples(data, need_train=need_train)
        if not self.regression:
            self._settle_labels(train, *evals.values())
        if train is not None and data.max_train_samples is not None \
                and data.max_train_samples < len(train):
            order = np.random.default_rng(data.seed).permutation(len(train))
            train = train.take(order[: data.max_train_samples].tolist())
        if data.max_eval_samples is not None:
            evals = {split: ex.take(range(min(len(ex), data.max_eval_samples)))
                     for split, ex in evals.items()}
        self.main_metric = self._metric_key(self._main_metric(), list(evals))

        from transformers import DataCollatorWithPadding

        collator: Any = DataCollatorWithPadding(tokenizer)
        if not self.regression:
            collator = LabelOrderCollator(collator, self, tuple(self.labels or ()))
        return TaskData(
            train=None if train is None else self._tokenize(tokenizer, train, data),
            eval={split: self._tokenize(tokenizer, ex, data) for split, ex in evals.items()},
            data_collator=collator,
        )

    def _load_examples(self, data: DataArgs, *, need_train: bool
                       ) -> tuple[Optional[RawExamples], dict[str, RawExamples]]:
        """(training split or ``None``, ``{evaluation split: examples}``) from the preset's
        sources, else from those the options name (module docstring)."""
        if self.preset is not None:
            train, evals = PresetReader(self.preset).read(data, need_train=need_train)
        elif self.options.use_hub(data):
            train, split = self.options.load_splits(self.from_dataset, need_train=need_train)
            evals = {EVAL_SPLIT: split}
        else:
            exts = SUPPORTED_EXTENSIONS + ((".txt",) if self.options.delimiter_char else ())
            train_path, eval_path = local_split_paths(
                self.name, data, need_train=need_train, train_stems=TRAIN_STEMS,
                eval_stems=EVAL_STEMS, exts=exts, eval_first_wins=False)
            train = self._read_file(train_path) if train_path is not None else None
            evals = {EVAL_SPLIT: self._read_file(eval_path)}
        for split in evals.values():
            if train is not None and (train.text_b is None) != (split.text_b is None):
                with_pair, without = (train, split) if train.text_b is not None else (split, train)
                raise NNPruneError(f"{self.name}: {with_pair.source} has text pairs but "
                                   f"{without.source} single texts; name the columns with "
                                   "text_pair_column=NAME (or text_pair_column=none)")
        return train, evals

    def _read_file(self, path: Path) -> RawExamples:
        header, rows = read_table(path, delimiter=self.options.delimiter_char)
        col_a, col_b, col_label = self._columns(path, header)
        if not rows:
            raise NNPruneError(f"{path}: no examples (only a header)")
        text_a, text_b, labels = column_values(path, rows, (col_a, col_b, col_label))
        return self._examples(str(path), text_a, text_b, labels, where=places(rows))

    def _columns(self, source: str | Path, header: list[str]
                 ) -> tuple[str, Optional[str], str]:
        """(text, text pair or ``None``, label) columns of a file or split with ``header``."""
        opts = self.options
        col_a = pick_column(source, header, opts.text_column, TEXT_COLUMNS, "text_column")
        pair = opts.text_pair_column.strip()
        if pair.lower() == NO_PAIR:
            col_b = None
        elif pair:
            col_b = pick_column(source, header, pair, (), "text_pair_column")
        else:
            col_b = next((c for c in TEXT_PAIR_COLUMNS if c in header and c != col_a), None)
        col_label = pick_column(source, header, opts.label_column, LABEL_COLUMNS, "label_column")
        return col_a, col_b, col_label

    def _examples(self, source: str, text_a: list[Any], text_b: Optional[list[Any]],
                  raw_labels: list[Any], class_names: Optional[tuple[str, ...]] = None,
                  where: Optional[list[str]] = None) -> RawExamples:
        """Parse the labels of one split; errors name a row by ``where`` (its line in a file),
        else 1-based (a hub split)."""
        at = where or [f"row {i + 1}" for i in range(len(raw_labels))]
        labels: list[Any] = []
        for i, raw in enumerate(raw_labels):
            if class_names is not None and isinstance(raw, (int, np.integer)) \
                    and not isinstance(raw, bool):
                # a hub ClassLabel: ids index its names; -1 marks "no label" (test splits)
                raw = class_names[raw] if 0 <= raw < len(class_names) else None
            labels.append(self._parse_label(source, at[i], raw))
        return RawExamples(source, as_texts(source, text_a, at),
                           None if text_b is None else as_texts(source, text_b, at),
                           labels, class_names, where)

    def _parse_label(self, source: str, at: str, raw: Any) -> Any:
        """The label value ``raw`` of the row at ``at`` of ``source``: its name (a number's
        decimal text), or its value for regression."""
        try:
            name = label_name(raw)
        except TypeError:
            kind = {list: "JSON list", dict: "JSON object"}.get(type(raw), type(raw).__name__)
            raise NNPruneError(f"{source}: {at}: the label is a {kind}, expected a string or a "
                               "number") from None
        if name is None:
            raise NNPruneError(f"{source}: {at} has no label ({raw!r})")
        if not self.regression:
            return name
        try:
            value = float(name)
        except ValueError:
            raise NNPruneError(f"{source}: {at}: label {name!r} is not a number "
                               "(regression=true needs numeric labels)") from None
        if not math.isfinite(value) or isinstance(raw, (bool, np.bool_)):
            raise NNPruneError(f"{source}: {at}: label {raw!r} is not a finite number "
                               "(regression=true needs numeric labels)")
        return value

    def from_dataset(self, ds: Any, where: str) -> RawExamples:
        """Examples of one :class:`datasets.Dataset` split (columns as for files; a ``ClassLabel``
        label column gives its names and their order)."""
        header = list(ds.column_names)
        col_a, col_b, col_label = self._columns(where, header)
        if len(ds) == 0:
            raise NNPruneError(f"{where}: no examples")
        feature = ds.features.get(col_label)
        class_names = tuple(feature.names) if hasattr(feature, "names") else None
        # [:] materialises a list; a datasets Column reads Arrow once per indexed item
        return self._examples(where, ds[col_a][:], None if col_b is None else ds[col_b][:],
                              ds[col_label][:], class_names)

    # ---------------------------------------------------------------- labels

    def _settle_labels(self, train: Optional[RawExamples], *evals: RawExamples) -> None:
        """Fix :attr:`labels` if still unknown (from ``train``, else the first of ``evals``),
        then check every split's labels against it."""
        if self.labels is None:
            base = train if train is not None else evals[0]
            if base.label_names is not None:
                found, how = tuple(base.label_names), f"the ClassLabel names of {base.source}"
            else:
                found, how = sort_labels(base.labels), base.source
            if train is None:
                logger.warning("%s: label order taken from the evaluation data %s: %s; pass "
                               "--task-option labels=... if the model was trained with another",
                               self.name, base.source, ", ".join(found))
            if len(found) < 2:
                raise NNPruneError(f"{self.name}: {base.source} has one label "
                                   f"({column_list(found)}); a classifier needs at least 2 "
                                   "(pass labels=a,b,... or regression=true)")
            if self._unnamed_head is not None and self._unnamed_head[0] != len(found):
                n, where = self._unnamed_head
                raise NNPruneError(f"checkpoint {where} has {n} labels but {base.source} has "
                                   f"{len(found)} ({', '.join(found)}); pass --task-option "
                                   "labels=... in the model's order")
            self.labels, self.labels_source = found, how
            logger.info("%s: %d labels from %s: %s", self.name, len(found), how, ", ".join(found))
        known = set(self.labels)
        for split in (train, *evals):
            if split is None:
                continue
            for i, name in enumerate(split.labels):
                if name not in known:
                    raise NNPruneError(f"{split.source}: {split.where(i)}: label {name!r} is not "
                                       f"in the label set ({column_list(self.labels)}) of "
                                       f"{self.labels_source}")

    def _label_ids(self, names: list[str]) -> list[int]:
        index = {n: i for i, n in enumerate(self.labels or ())}
        return [index[n] for n in names]

    def _tokenize(self, tokenizer: Any, ex: RawExamples, data: DataArgs) -> Any:
        import datasets

        columns: dict[str, Any] = encode_texts(tokenizer, ex.text_a, ex.text_b,
                                               data.max_seq_length)
        columns["labels"] = ([float(v) for v in ex.labels] if self.regression
                             else self._label_ids(ex.labels))
        return datasets.Dataset.from_dict(columns)

    # ----------------------------------------------------------------- model

    def check_checkpoint(self, config: dict[str, Any], where: str) -> None:
        """Refuse (one line) a checkpoint that cannot serve this task, before any data is read.

        Refused: another head (see the base class); a regression head (one output) for
        classification or a classification head for ``regression=true``; a head whose named
        labels (``id2label``) are another set than :attr:`labels`, or another order once the
        order is pinned by a checkpoint checked before or by :meth:`build_model` (the logits of
        a teacher and its student would not line up); a head with unnamed labels (``LABEL_0``,
        ...) of another count. Otherwise named labels set :attr:`labels` to the checkpoint's
        order (a warning when that changes it). A checkpoint without a classification head
        (a base model) is refused here, as by every task (``evaluate`` and ``prune`` need a
        trained head); :meth:`build_model` gives it a new head.

        A preset's labels are fixed by id: only the head's output count is checked.
        """
        super().check_checkpoint(config, where)
        if self.preset is not None:
            n = config.get("num_labels") or len(config.get("id2label") or {}) or None
            if n is not None and int(n) != len(self.preset.labels):
                raise NNPruneError(f"checkpoint {where} has {n} labels but task {self.name} "
                                   f"needs {len(self.preset.labels)}")
            return
        self._check_head_labels(config, where)

    def _check_head_labels(self, config: dict[str, Any], where: str) -> None:
        """The label checks of :meth:`check_checkpoint`, without refusing a base model."""
        archs = [str(a) for a in config.get("architectures") or []]
        if archs and not any(a.endswith(self.head_suffix) for a in archs):
            return  # a base model: build_model gives it a fresh head
        names = named_labels(config.get("id2label"))
        if not archs and names is None and not config.get("problem_type"):
            return  # no architectures recorded and nothing named: nothing to check against
        # transformers >= 5 leaves a default 2-label id2label out of config.json
        n = int(config.get("num_labels") or len(config.get("id2label") or {}) or 2)
        is_regression = config.get("problem_type") == "regression" or n == 1
        if self.regression:
            if not is_regression:
                raise NNPruneError(f"checkpoint {where} has a classification head with {n} "
                                   "labels; regression=true needs a one-output head (start "
                                   "from a base checkpoint)")
            return
        if is_regression:
            raise NNPruneError(f"checkpoint {where} has a regression head (one output); pass "
                               f"--task-option regression=true to fine-prune it as such")
        if names is None:
            if self.labels is not None and n != len(self.labels):
                raise NNPruneError(f"checkpoint {where} has {n} labels but {self.name} has "
                                   f"{len(self.labels)} ({', '.join(self.labels)}) from "
                                   f"{self.labels_source}")
            self._unnamed_head = (n, where)
            return
        if self.labels is None:
            self.labels, self.labels_source = names, f"checkpoint {where}"
            self._order_pinned_by = f"checkpoint {where}"
            logger.info("%s: labels of checkpoint %s: %s", self.name, where, ", ".join(names))
            return
        if set(names) != set(self.labels):
            raise NNPruneError(f"checkpoint {where} has labels ({', '.join(names)}) but "
                               f"{self.labels_source} has ({', '.join(self.labels)})")
        if names != self.labels:
            if self._order_pinned_by is not None:
                raise NNPruneError(f"checkpoint {where} orders its labels ({', '.join(names)}) "
                                   f"unlike {self._order_pinned_by} ({', '.join(self.labels)}); "
                                   "their logits would not line up")
            logger.warning("%s: using the label order of checkpoint %s (%s) instead of that of "
                           "%s (%s)", self.name, where, ", ".join(names), self.labels_source,
                           ", ".join(self.labels))
            self.labels, self.labels_source = names, f"checkpoint {where}"
        self._order_pinned_by = self._order_pinned_by or f"checkpoint {where}"

    def build_model(self, model_name_or_path: str, **kwargs: Any) -> torch.nn.Module:
        """``AutoModelForSequenceClassification`` with :attr:`num_labels` outputs.

        The checkpoint is checked first (:meth:`check_checkpoint`: a head with named labels keeps
        its order; data tokenized in another order is mapped by the collator). A base checkpoint
        gets a fresh head named after :attr:`labels` (``id2label``/``label2id``; regression:
        ``problem_type="regression"``, one output). ``kwargs`` go to ``from_pretrained``;
        ``ignore_mismatched_sizes=True`` skips the checks and replaces a head of another size.
        Classification needs the labels known: load the data first, or pass ``labels=``.

        A preset's head keeps the class ids of its data (a checkpoint's label names are not
        compared): a head with another output count is refused, and a fresh head is named after
        the preset's labels (as the hub names them).
        """
        from transformers import AutoModelForSequenceClassification

        if self.preset is not None:
            if not kwargs.get("ignore_mismatched_sizes"):
                # Without this, transformers fails deep in loading with a RuntimeError and a table.
                self._check_preset_head(auto_config(model_name_or_path),
                                        model_name_or_path, len(self.preset.labels))
            add_label_names(kwargs, self.preset.labels)
            return auto_model(AutoModelForSequenceClassification, model_name_or_path, **kwargs)
        if not kwargs.get("ignore_mismatched_sizes"):
            config = auto_config(model_name_or_path)
            self._check_head_labels(config.to_dict(), str(model_name_or_path))
        if self.regression:
            kwargs.setdefault("num_labels", 1)
            kwargs.setdefault("problem_type", "regression")
        else:
            if self.labels is None:
                raise NNPruneError(f"{self.name}: the label set is not known yet: load the data "
                                   "first or pass --task-option labels=a,b,...")
            add_label_names(kwargs, self.labels)
            kwargs.setdefault("problem_type", "single_label_classification")
            # the head now means this order: a teacher checked later must use the same one
            self._order_pinned_by = self._order_pinned_by or f"the model built from {model_name_or_path}"
        return auto_model(AutoModelForSequenceClassification, model_name_or_path, **kwargs)

    def _check_preset_head(self, config: Any, model_name_or_path: str, n: int) -> None:
        """Refuse a checkpoint whose classification head has another output count than the
        preset's ``n`` labels (a base checkpoint gets a fresh head)."""
        has_head = any(a.endswith(self.head_suffix)
                       for a in (getattr(config, "architectures", None) or []))
        if has_head and config.num_labels != n:
            raise NNPruneError(
                f"{model_name_or_path} has a classification head with {config.num_labels} "
                f"labels but {self.name} needs {n}; start from a base checkpoint or load with "
                "ignore_mismatched_sizes=True to replace the head")

    def distillation_logits(self, outputs: Any) -> tuple[torch.Tensor, ...]:
        """``(logits,)``: ``(batch, num_labels)``; regression ``(batch, 1)`` (see the module
        docstring: the trainer's softmax KL is zero over one output)."""
        if self.regression and not self._warned_distillation:
            self._warned_distillation = True
            logger.warning("%s: regression=true: distillation compares softmaxes, which are "
                           "constant over one output, so the teacher adds nothing; the MSE "
                           "loss (scaled by alpha_ce) alone trains the model", self.name)
        return (outputs.logits,)

    # ---------------------------------------------------------------- metric

    def evaluate(self, trainer: Any, data: TaskData) -> dict[str, float]:
        """Predict every eval split with ``trainer.predict`` and score it (module docstring).

        Keys are the bare metric names with one split (``"accuracy"``, ``"eval_loss"``),
        ``"<split>_<metric>"`` with several. Only ``trainer.predict`` is used, so a plain
        :class:`transformers.Trainer` or any subclass works.
        """
        splits = list(data.eval)
        self.main_metric = self._metric_key(self._main_metric(), splits)
        results: dict[str, float] = {}
        for split, ds in data.eval.items():
            logits, labels, loss = predict_split(trainer, ds, split)
            if labels is None:  # the collator maps class ids; the dataset holds the data's order
                labels = np.asarray(ds["labels"][:])
                if isinstance(data.data_collator, LabelOrderCollator):
                    labels = data.data_collator.to_model_ids(labels)
            for metric, value in self.compute_metrics(logits, labels).items():
                results[self._metric_key(metric, splits, split)] = value
            if loss is not None:
                results["eval_loss" if len(splits) == 1 else f"{split}_loss"] = loss
        return results

    def compute_metrics(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Metrics of one split from ``logits`` ``(n, num_labels)`` (regression ``(n, 1)`` or
        ``(n,)``) and ``labels`` ``(n,)``: class ids in the model's order, or scores
        (:func:`~nnprune.tasks.classification_metrics.classification_scores`); a preset's
        metrics only, in its order."""
        scores = classification_scores(logits, labels, regression=self.regression)
        if self.preset is None:
            return scores
        return {m.value: scores[m.value] for m in self.preset.metrics}


__all__ = [
    "EVAL_STEMS",
    "LABEL_COLUMNS",
    "NO_PAIR",
    "TASK_NAME",
    "TEXT_COLUMNS",
    "TEXT_PAIR_COLUMNS",
    "TRAIN_STEMS",
    "LabelOrderCollator",
    "TextClassificationOptions",
    "TextClassificationTask",
]
