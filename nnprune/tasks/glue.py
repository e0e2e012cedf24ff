"""GLUE sentence(-pair) classification tasks: ``sst2``, ``mrpc``, ``qqp`` and ``mnli``.

One adapter class, :class:`GlueClassificationTask`, is parameterised by a frozen
:class:`GlueTaskSpec`; each registered task is a subclass that only sets ``spec``.

Data sources, first match wins (see :meth:`GlueClassificationTask.load_data`):

1. ``--train-file`` / ``--validation-file`` (``.tsv``, ``.csv``, ``.json`` or ``.jsonl``);
2. ``--data-dir``: a GLUE task folder (``train.tsv``, ``dev.tsv``; MNLI ``dev_matched.tsv`` and
   ``dev_mismatched.tsv``), or its parent holding the folder (``SST-2``, ``MRPC``, ``QQP``,
   ``MNLI``);
3. the hub dataset ``nyu-mll/glue`` (the canonical id of ``glue``), used only when no local
   source was given at all, so a run with local files never touches the network.

Columns are found by header name. Local GLUE names (``sentence``, ``#1 String``, ``gold_label``,
...) and the hub names (``sentence1``, ``premise``, ``label``, ...) are both accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnprune.errors import NNPruneError
from nnprune.tasks.base import (TASKS, DataArgs, TaskAdapter, TaskData, add_label_names,
                                encode_texts, predict_split)
from nnprune.tasks.io import SUPPORTED_EXTENSIONS, as_text, column_values, error_line, read_table
from nnprune.tasks.sources import missing_data_message

HUB_DATASET = "nyu-mll/glue"

#: label values meaning "no gold label" (MNLI has a few examples annotators did not agree on)
_UNLABELED = ("", "-")


@dataclass(frozen=True)
class GlueTaskSpec:
    """Everything that distinguishes one GLUE classification task from another.

    The ``*_columns`` tuples are candidate column names, tried in order; the first present in a
    file's header is used. ``eval_files`` maps an evaluation split name to the file name expected
    in a GLUE folder; ``hub_eval_splits`` are the hub's split names for the same data.
    """

    name: str
    hub_config: str
    glue_dir: str
    text_a_columns: tuple[str, ...]
    text_b_columns: tuple[str, ...] | None
    label_columns: tuple[str, ...]
    #: ``labels[i]`` is the name of class id ``i`` (the hub's ClassLabel order)
    labels: tuple[str, ...]
    metrics: tuple[str, ...] = ("accuracy",)
    train_file: str = "train.tsv"
    eval_files: tuple[tuple[str, str], ...] = (("validation", "dev.tsv"),)
    hub_eval_splits: tuple[str, ...] = ("validation",)
    #: drop rows whose label is empty or "-" instead of refusing the file
    drop_unlabeled: bool = False

    @property
    def num_labels(self) -> int:
        return len(self.labels)


SST2 = GlueTaskSpec(
    name="sst2", hub_config="sst2", glue_dir="SST-2",
    text_a_columns=("sentence",), text_b_columns=None, label_columns=("label",),
    labels=("negative", "positive"),
)
MRPC = GlueTaskSpec(
    name="mrpc", hub_config="mrpc", glue_dir="MRPC",
    text_a_columns=("#1 String", "sentence1"), text_b_columns=("#2 String", "sentence2"),
    label_columns=("Quality", "label"), labels=("not_equivalent", "equivalent"),
    metrics=("accuracy", "f1"),
)
QQP = GlueTaskSpec(
    name="qqp", hub_config="qqp", glue_dir="QQP",
    text_a_columns=("question1",), text_b_columns=("question2",),
    label_columns=("is_duplicate", "label"), labels=("not_duplicate", "duplicate"),
    metrics=("accuracy", "f1"),
)
MNLI = GlueTaskSpec(
    name="mnli", hub_config="mnli", glue_dir="MNLI",
    text_a_columns=("sentence1", "premise"), text_b_columns=("sentence2", "hypothesis"),
    # gold_label first: GLUE's MNLI files also carry the five annotator columns label1..label5
    label_columns=("gold_label", "label"), labels=("entailment", "neutral", "contradiction"),
    eval_files=(("validation_matched", "dev_matched.tsv"),
                ("validation_mismatched", "dev_mismatched.tsv")),
    hub_eval_splits=("validation_matched", "validation_mismatched"),
    drop_unlabeled=True,
)


@dataclass
class _Examples:
    """Raw examples of one split, parallel lists; ``text_b`` is ``None`` for one-sentence tasks."""

    text_a: list[str]
    text_b: list[str] | None
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx: Any) -> _Examples:
        return _Examples([self.text_a[i] for i in idx],
                         None if self.text_b is None else [self.text_b[i] for i in idx],
                         [self.labels[i] for i in idx])


class GlueClassificationTask(TaskAdapter):
    """A GLUE (pair) classification task described by :attr:`spec`.

    Features: the tokenizer's model inputs (``input_ids``, ``attention_mask``, and
    ``token_type_ids`` when the tokenizer makes them), each a variable-length list per example and
    padded per batch by :class:`transformers.DataCollatorWithPadding` to ``(batch, seq)``, plus
    ``labels`` (an int class id, ``(batch,)`` once collated).

    Metrics: ``accuracy`` for every task, plus ``f1`` of the positive class (id 1) for MRPC and
    QQP. With one evaluation split the keys are the bare metric names (``"accuracy"``); with
    several (MNLI matched + mismatched) they are ``"<split>_<metric>"``. The loss reported by the
    trainer is added as ``"eval_loss"`` (one split) or ``"<split>_loss"``.

    :attr:`main_metric` follows the same rule: ``"accuracy"``, or for MNLI with both splits
    ``"validation_matched_accuracy"`` (the hub default). :meth:`load_data` and :meth:`evaluate`
    set it on the instance from the splits actually present, e.g. ``"accuracy"`` when only
    ``dev_matched.tsv`` exists locally.
    """

    spec: GlueTaskSpec

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        spec = cls.__dict__.get("spec")
        if spec is not None:
            cls.name = spec.name
            cls.main_metric = cls._metric_key("accuracy", [s for s, _ in spec.eval_files])

    # ------------------------------------------------------------------ data

    def load_data(self, tokenizer: Any, data: DataArgs, *, need_train: bool = True) -> TaskData:
        """Load, subsample and tokenize the train split (if ``need_train``) and the eval splits.

        Subsampling: ``max_train_samples`` takes the first N after a shuffle with ``data.seed``
        (a file's first rows may be sorted by source or label); ``max_eval_samples`` takes the
        first N of each eval split in file order, so evaluation sets do not change with the seed.
        Rows without a gold label are dropped first (MNLI only), so N counts usable rows.

        ``TaskData.train`` is ``None`` when ``need_train`` is false. When any local source is
        given the hub is never consulted: a missing train or eval file is an error naming it.
        """
        train_ex, eval_ex = self._load_examples(data, need_train=need_train)
        if train_ex is not None and data.max_train_samples is not None \
                and data.max_train_samples < len(train_ex):
            order = np.random.default_rng(data.seed).permutation(len(train_ex))
            train_ex = train_ex.take(order[: data.max_train_samples].tolist())
        if data.max_eval_samples is not None:
            eval_ex = {s: ex.take(range(min(len(ex), data.max_eval_samples)))
                       for s, ex in eval_ex.items()}
        self.main_metric = self._metric_key("accuracy", list(eval_ex))

        from transformers import DataCollatorWithPadding

        return TaskData(
            train=None if train_ex is None else self._tokenize(tokenizer, train_ex, data),
            eval={s: self._tokenize(tokenizer, ex, data) for s, ex in eval_ex.items()},
            data_collator=DataCollatorWithPadding(tokenizer),
        )

    def _load_examples(self, data: DataArgs, *, need_train: bool
                       ) -> tuple[_Examples | None, dict[str, _Examples]]:
        if not data.uses_local_files:
            return self._load_hub(need_train=need_train)

        train_path: Path | None = None
        eval_paths: dict[str, Path] = {}
        folder = self._glue_folder(data.data_dir) if data.data_dir is not None else None
        if need_train:
            train_path = data.train_file
            if train_path is None and folder is not None:
                train_path = _find_file(folder, self.spec.train_file)
            if train_path is None:
                raise NNPruneError(self._missing_msg("training", folder, self.spec.train_file,
                                                     "--train-file"))
        if data.validation_file is not None:
            eval_paths["validation"] = data.validation_file
        elif folder is not None:
            for split, fname in self.spec.eval_files:
                found = _find_file(folder, fname)
                if found is not None:
                    eval_paths[split] = found
        if not eval_paths:
            expected = " or ".join(f for _, f in self.spec.eval_files)
            raise NNPruneError(self._missing_msg("evaluation", folder, expected,
                                                 "--validation-file"))
        train = self._read_file(train_path) if train_path is not None else None
        return train, {split: self._read_file(p) for split, p in eval_paths.items()}

    def _glue_folder(self, data_dir: Path) -> Path:
        # Accept the GLUE root too (data_dir/SST-2/train.tsv), as the GLUE download lays it out.
        names = [self.spec.train_file] + [f for _, f in self.spec.eval_files]
        sub = data_dir / self.spec.glue_dir
        if not any(_find_file(data_dir, n) for n in names) and sub.is_dir():
            return sub
        return data_dir

    def _missing_msg(self, what: str, folder: Path | None, expected: str, flag: str) -> str:
        return missing_data_message(self.name, what, folder, expected, flag,
                                    folder_kind=f"a GLUE {self.spec.glue_dir} folder")

    def _read_file(self, path: Path) -> _Examples:
        header, rows = read_table(path)
        col_a = self._pick_column(path, header, self.spec.text_a_columns)
        col_b = (self._pick_column(path, header, self.spec.text_b_columns)
                 if self.spec.text_b_columns else None)
        col_label = self._pick_column(path, header, self.spec.label_columns)
        if not rows:
            raise NNPruneError(f"{path}: no examples (only a header)")
        text_a, text_b, labels = column_values(path, rows, (col_a, col_b, col_label))
        return self._examples(path, text_a, text_b, labels)

    def _pick_column(self, source: str | Path, header: list[str],
                     candidates: tuple[str, ...]) -> str:
        for name in candidates:
            if name in header:
                return name
        alts = " or ".join(repr(c) for c in candidates)
        raise NNPruneError(f"{source}: missing column {alts} for task {self.name}; "
                           f"found: {', '.join(header)}")

    def _load_hub(self, *, need_train: bool) -> tuple[_Examples | None, dict[str, _Examples]]:
        import datasets

        try:
            dsd = datasets.load_dataset(HUB_DATASET, self.spec.hub_config)
        except Exception as e:  # offline, no cache, hub down: all fixable by pointing at files
            raise NNPruneError(
                f"{self.name}: could not load hub dataset {HUB_DATASET}/{self.spec.hub_config} "
                f"({error_line(e)}); pass --data-dir or --train-file/--validation-file") from e
        return self._from_hub_splits(dsd, need_train=need_train)

    def _from_hub_splits(self, dsd: Any, *, need_train: bool
                         ) -> tuple[_Examples | None, dict[str, _Examples]]:
        """Examples from a hub-layout ``DatasetDict`` (split names and columns as on the hub)."""

        def convert(split: str) -> _Examples:
            ds = dsd[split]
            header = list(ds.column_names)
            where = f"{HUB_DATASET}/{self.spec.hub_config}[{split}]"
            col_a = self._pick_column(where, header, self.spec.text_a_columns)
            col_b = (self._pick_column(where, header, self.spec.text_b_columns)
                     if self.spec.text_b_columns else None)
            col_label = self._pick_column(where, header, self.spec.label_columns)
            # [:] materialises a list; a datasets Column reads Arrow once per indexed item
            return self._examples(where, ds[col_a][:],
                                  None if col_b is None else ds[col_b][:], ds[col_label][:])

        train = convert("train") if need_train else None
        return train, {split: convert(split) for split in self.spec.hub_eval_splits}

    def _examples(self, source: str | Path, text_a: list[Any], text_b: list[Any] | None,
                  raw_labels: list[Any]) -> _Examples:
        """Parse labels, dropping unlabeled rows where the spec allows; rows are named 1-based,
        header excluded, in errors."""
        keep: list[int] = []
        labels: list[int] = []
        for i, raw in enumerate(raw_labels):
            label = self._parse_label(raw)
            if label is None:
                if self.spec.drop_unlabeled:
                    continue
                raise NNPruneError(f"{source}: row {i + 1} has no label ({raw!r}); "
                                   f"expected one of {self._label_choices()}")
            if label < 0:
                raise NNPruneError(f"{source}: row {i + 1}: unknown label {raw!r}; "
                                   f"expected one of {self._label_choices()}")
            keep.append(i)
            labels.append(label)
        if not keep:
            raise NNPruneError(f"{source}: no labelled examples")
        return _Examples([as_text(text_a[i]) for i in keep],
                         None if text_b is None else [as_text(text_b[i]) for i in keep],
                         labels)

    def _parse_label(self, raw: Any) -> int | None:
        """Class id of ``raw``; ``None`` when unlabeled, ``-1`` when not a known label."""
        n = self.spec.num_labels
        if raw is None:
            return None
        if isinstance(raw, (bool, int, float, np.integer, np.floating)):
            value = float(raw)
            if value == -1:  # the hub's marker for "no label" (test splits)
                return None
            return int(value) if value.is_integer() and 0 <= value < n else -1
        text = str(raw).strip()
        if text in _UNLABELED:
            return None
        if text in self.spec.labels:
            return self.spec.labels.index(text)
        try:
            value = float(text)
        except ValueError:
            return -1
        return int(value) if value.is_integer() and 0 <= value < n else -1

    def _label_choices(self) -> str:
        ids = ", ".join(str(i) for i in range(self.spec.num_labels))
        return f"{', '.join(self.spec.labels)} (or ids {ids})"

    def _tokenize(self, tokenizer: Any, ex: _Examples, data: DataArgs) -> Any:
        import datasets

        columns: dict[str, Any] = encode_texts(tokenizer, ex.text_a, ex.text_b,
                                               data.max_seq_length)
        columns["labels"] = ex.labels
        return datasets.Dataset.from_dict(columns)

    # ----------------------------------------------------------------- model

    head_suffix = "ForSequenceClassification"

    def check_checkpoint(self, config: dict[str, Any], where: str) -> None:
        super().check_checkpoint(config, where)
        n = config.get("num_labels") or len(config.get("id2label") or {}) or None
        if n is not None and int(n) != self.spec.num_labels:
            raise NNPruneError(f"checkpoint {where} has {n} labels but task {self.name} needs "
                               f"{self.spec.num_labels}")

    def build_model(self, model_name_or_path: str, **kwargs: Any) -> torch.nn.Module:
        """``AutoModelForSequenceClassification`` with ``num_labels`` classes named like the hub.

        A base or sentence-transformers checkpoint gets a freshly initialised classifier; a
        checkpoint that already has this head keeps it. ``kwargs`` go to ``from_pretrained``
        (e.g. ``ignore_mismatched_sizes=True`` to replace a head with a different class count).
        """
        from transformers import AutoConfig, AutoModelForSequenceClassification

        if not kwargs.get("ignore_mismatched_sizes"):
            # Without this, transformers fails deep in loading with a RuntimeError and a table.
            config = AutoConfig.from_pretrained(model_name_or_path)
            has_head = any(a.endswith("ForSequenceClassification")
                           for a in (getattr(config, "architectures", None) or []))
            if has_head and config.num_labels != self.spec.num_labels:
                raise NNPruneError(
                    f"{model_name_or_path} has a classification head with {config.num_labels} "
                    f"labels but {self.name} needs {self.spec.num_labels}; start from a base "
                    "checkpoint or load with ignore_mismatched_sizes=True to replace the head")
        add_label_names(kwargs, self.spec.labels)
        return AutoModelForSequenceClassification.from_pretrained(model_name_or_path, **kwargs)

    # ---------------------------------------------------------------- metric

    def evaluate(self, trainer: Any, data: TaskData) -> dict[str, float]:
        """Predict every eval split with ``trainer.predict`` and score it (see class docstring).

        Works with a plain :class:`transformers.Trainer` and with subclasses: only ``predict`` is
        used, and labels come from the dataset when the trainer does not return them.
        """
        splits = list(data.eval)
        self.main_metric = self._metric_key("accuracy", splits)
        results: dict[str, float] = {}
        for split, ds in data.eval.items():
            logits, labels, loss = predict_split(trainer, ds, split)
            if labels is None:
                labels = np.asarray(ds["labels"][:])
            for metric, value in self.compute_metrics(logits, labels).items():
                results[self._metric_key(metric, splits, split)] = value
            if loss is not None:
                results["eval_loss" if len(splits) == 1 else f"{split}_loss"] = loss
        return results

    def compute_metrics(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Metrics of one split from ``logits`` ``(n, num_labels)`` and class ids ``labels`` ``(n,)``.

        ``f1`` (MRPC, QQP) is the F1 of class 1; it is 0.0 when class 1 is neither predicted
        nor present.
        """
        if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
            raise ValueError(f"logits {logits.shape} do not match labels {labels.shape}")
        preds = logits.argmax(axis=-1)
        out = {"accuracy": float((preds == labels).mean())}
        if "f1" in self.spec.metrics:
            tp = float(((preds == 1) & (labels == 1)).sum())
            fp = float(((preds == 1) & (labels != 1)).sum())
            fn = float(((preds != 1) & (labels == 1)).sum())
            out["f1"] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        return out

    @staticmethod
    def _metric_key(metric: str, splits: list[str], split: str | None = None) -> str:
        if len(splits) <= 1:
            return metric
        return f"{split if split is not None else splits[0]}_{metric}"


def _find_file(folder: Path, name: str) -> Path | None:
    """``folder/name``, or the same stem with another supported extension (``dev.jsonl``)."""
    exact = folder / name
    if exact.is_file():
        return exact
    stem = Path(name).stem
    for ext in SUPPORTED_EXTENSIONS:
        candidate = folder / f"{stem}{ext}"
        if candidate.is_file():
            return candidate
    return None


@TASKS.register("sst2")
class Sst2Task(GlueClassificationTask):
    spec = SST2


@TASKS.register("mrpc")
class MrpcTask(GlueClassificationTask):
    spec = MRPC


@TASKS.register("qqp")
class QqpTask(GlueClassificationTask):
    spec = QQP


@TASKS.register("mnli")
class MnliTask(GlueClassificationTask):
    spec = MNLI


__all__ = [
    "HUB_DATASET",
    "MNLI",
    "MRPC",
    "QQP",
    "SST2",
    "GlueClassificationTask",
    "GlueTaskSpec",
    "MnliTask",
    "MrpcTask",
    "QqpTask",
    "Sst2Task",
]
