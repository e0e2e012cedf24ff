"""What ``text-classification`` reads: examples, label values, and the presets that fix them.

A *preset* (:class:`TextClassificationPreset`) is a named configuration of the generic
``text-classification`` adapter, declared as data: its columns, its fixed label set, where its
data lives (:class:`PresetFiles`: a hub dataset and a local folder layout), its metrics. The GLUE
tasks are presets (:mod:`nnprune.tasks.glue`). :class:`PresetReader` reads a preset's data;
the adapter (:mod:`nnprune.tasks.text_classification`) does the rest exactly as for its own
``--task-option`` settings.

A preset's data sources, first match wins (:meth:`PresetReader.read`):

1. ``--train-file`` / ``--validation-file`` (``.tsv``, ``.csv``, ``.json`` or ``.jsonl``);
2. ``--data-dir``: the preset's folder (GLUE: ``train.tsv``, ``dev.tsv``; MNLI
   ``dev_matched.tsv`` and ``dev_mismatched.tsv``; the same stems with another supported
   extension too), or its parent holding the folder (``SST-2``, ``MRPC``, ...);
3. the preset's hub dataset (``nyu-mll/glue``), used only when no local source was given at all,
   so a run with local files never touches the network.

Columns are found by header name among the preset's candidates (local GLUE names such as
``sentence``, ``#1 String``, ``gold_label`` and the hub's ``sentence1``, ``premise``, ``label``).
A preset's label is its name or its class id (``"1"``, ``1``, ``1.0``); ``""``, ``"-"`` and the
hub's ``-1`` mean "no label" (dropped where the preset allows, else an error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from nnprune.errors import NNPruneError
from nnprune.tasks.base import DataArgs
from nnprune.tasks.classification_metrics import REGRESSION_METRICS, ClassificationMetric
from nnprune.tasks.io import (SUPPORTED_EXTENSIONS, as_texts, column_list, column_values, places,
                              read_table)
from nnprune.tasks.sources import PresetHub, missing_data_message

#: label values of a preset meaning "no gold label" (MNLI has a few examples annotators did not
#: agree on)
UNLABELED_VALUES = ("", "-")


# ------------------------------------------------------------------------------ examples


@dataclass
class RawExamples:
    """One split's examples as read: parallel lists; ``text_b`` ``None`` for single texts.

    ``labels`` are label names (``str``) for classification, floats for regression;
    ``label_names`` is the hub ``ClassLabel`` order when the source has one; ``places`` says
    where each example is in its file (``line 17``, :func:`~nnprune.tasks.io.place`), ``None``
    for a hub split (examples are then named by index, :meth:`where`).
    """

    source: str
    text_a: list[str]
    text_b: Optional[list[str]]
    labels: list[Any]
    label_names: Optional[tuple[str, ...]] = None
    places: Optional[list[str]] = None

    def __len__(self) -> int:
        return len(self.labels)

    def where(self, i: int) -> str:
        """Where example ``i`` is (``line 17``; ``row 18`` of a hub split)."""
        return self.places[i] if self.places is not None else f"row {i + 1}"

    def take(self, idx: Any) -> RawExamples:
        idx = list(idx)
        return RawExamples(self.source, [self.text_a[i] for i in idx],
                           None if self.text_b is None else [self.text_b[i] for i in idx],
                           [self.labels[i] for i in idx], self.label_names,
                           None if self.places is None else [self.places[i] for i in idx])


def label_name(raw: Any) -> Optional[str]:
    """The text a raw label value is compared as: JSON numbers become their decimal text (``1``
    and ``1.0`` are ``"1"``, ``true`` is ``"true"``), strings are stripped; ``None``: no label."""
    if raw is None:
        return None
    if isinstance(raw, (bool, np.bool_)):
        return "true" if raw else "false"
    if isinstance(raw, (int, np.integer)):
        return str(int(raw))
    if isinstance(raw, (float, np.floating)):
        value = float(raw)
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(raw, str):
        return raw.strip() or None
    raise TypeError(type(raw).__name__)


def sort_labels(names: Any) -> tuple[str, ...]:
    """Distinct ``names`` sorted: numerically when every one is a finite number, else as text."""
    distinct = set(names)
    try:
        values = {n: float(n) for n in distinct}
    except ValueError:
        return tuple(sorted(distinct))
    if not all(math.isfinite(v) for v in values.values()):
        return tuple(sorted(distinct))
    return tuple(sorted(distinct, key=lambda n: (values[n], n)))


# ------------------------------------------------------------------------------ presets


@dataclass(frozen=True)
class PresetFiles:
    """Where a preset's data lives: a hub dataset, and the files of a local copy laid out as a
    benchmark collection ships them (GLUE: ``SST-2/train.tsv``, ``SST-2/dev.tsv``).

    ``eval_files`` maps each evaluation split name to its file name in the folder;
    ``hub_eval_splits`` are the hub's names of the same splits.
    """

    #: the collection, named in messages ("a GLUE SST-2 folder")
    collection: str
    #: the preset's folder under a collection root (``SST-2``)
    folder: str
    hub: PresetHub
    train_file: str = "train.tsv"
    eval_files: tuple[tuple[str, str], ...] = (("validation", "dev.tsv"),)
    hub_eval_splits: tuple[str, ...] = ("validation",)

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """The evaluation split names of a full local copy, in order."""
        return tuple(split for split, _ in self.eval_files)


@dataclass(frozen=True)
class TextClassificationPreset:
    """A named ``text-classification`` configuration (``sst2``, ...), registered under ``name``
    with :func:`~nnprune.tasks.base.register_preset`.

    The ``*_columns`` tuples are candidate column names, tried in order; the first present in a
    file's header is used (``text_pair_columns`` ``None``: single texts). ``labels[i]`` names
    class id ``i`` (the hub's ``ClassLabel`` order); a checkpoint's head must have as many
    outputs, whatever it calls them. ``metrics`` are the keys reported, the first being the main
    metric. A preset takes no ``--task-option``: it is the settings.
    """

    name: str
    files: PresetFiles
    labels: tuple[str, ...]
    text_columns: tuple[str, ...]
    text_pair_columns: Optional[tuple[str, ...]]
    label_columns: tuple[str, ...]
    metrics: tuple[ClassificationMetric, ...] = (ClassificationMetric.ACCURACY,)
    #: drop rows without a gold label instead of refusing the file
    drop_unlabeled: bool = False

    def __post_init__(self) -> None:
        # a declaration error, found when the preset module is imported
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"preset {self.name}: labels must be 2 or more distinct names")
        if not self.metrics:
            raise ValueError(f"preset {self.name}: no metrics")
        regression = [m.value for m in self.metrics if m in REGRESSION_METRICS]
        if regression:
            raise ValueError(f"preset {self.name}: {', '.join(regression)} need a regression "
                             "head; a preset classifies")
        if ClassificationMetric.F1 in self.metrics and len(self.labels) != 2:
            raise ValueError(f"preset {self.name}: f1 (of the positive class) needs 2 labels")

    @property
    def main_metric(self) -> ClassificationMetric:
        return self.metrics[0]

    def label_choices(self) -> str:
        """The accepted label values, for messages: ``negative, positive (or ids 0, 1)``."""
        ids = ", ".join(str(i) for i in range(len(self.labels)))
        return f"{', '.join(self.labels)} (or ids {ids})"

    def label_id(self, raw: Any) -> Optional[int]:
        """Class id of label value ``raw`` (a name or an id); ``None`` when unlabeled, ``-1``
        when not a known label."""
        n = len(self.labels)
        if raw is None:
            return None
        if isinstance(raw, (bool, int, float, np.integer, np.floating)):
            value = float(raw)
            if value == -1:  # the hub's marker for "no label" (test splits)
                return None
            return int(value) if value.is_integer() and 0 <= value < n else -1
        text = str(raw).strip()
        if text in UNLABELED_VALUES:
            return None
        if text in self.labels:
            return self.labels.index(text)
        try:
            value = float(text)
        except ValueError:
            return -1
        return int(value) if value.is_integer() and 0 <= value < n else -1


@dataclass(frozen=True)
class PresetReader:
    """Reads the data of ``preset`` (module docstring) as :class:`RawExamples` whose labels are
    the preset's label names, which the adapter maps to class ids as for any other data."""

    preset: TextClassificationPreset

    def read(self, data: DataArgs, *, need_train: bool
             ) -> tuple[Optional[RawExamples], dict[str, RawExamples]]:
        """(training split or ``None`` unless ``need_train``, ``{eval split: examples}``).

        When any local source is given the hub is never consulted: a missing train or eval file
        is an error naming it.
        """
        if not data.uses_local_files:
            return self.from_hub_splits(self.preset.files.hub.load(self.preset.name),
                                        need_train=need_train)
        files = self.preset.files
        train_path: Optional[Path] = None
        eval_paths: dict[str, Path] = {}
        folder = self._folder(data.data_dir) if data.data_dir is not None else None
        if need_train:
            train_path = data.train_file
            if train_path is None and folder is not None:
                train_path = find_file(folder, files.train_file)
            if train_path is None:
                raise NNPruneError(self._missing("training", folder, files.train_file,
                                                 "--train-file"))
        if data.validation_file is not None:
            eval_paths["validation"] = data.validation_file
        elif folder is not None:
            for split, fname in files.eval_files:
                found = find_file(folder, fname)
                if found is not None:
                    eval_paths[split] = found
        if not eval_paths:
            expected = " or ".join(f for _, f in files.eval_files)
            raise NNPruneError(self._missing("evaluation", folder, expected, "--validation-file"))
        train = self.read_file(train_path) if train_path is not None else None
        return train, {split: self.read_file(p) for split, p in eval_paths.items()}

    def _folder(self, data_dir: Path) -> Path:
        # Accept the collection root too (data_dir/SST-2/train.tsv), as GLUE's download lays it out.
        files = self.preset.files
        names = [files.train_file] + [f for _, f in files.eval_files]
        sub = data_dir / files.folder
        if not any(find_file(data_dir, n) for n in names) and sub.is_dir():
            return sub
        return data_dir

    def _missing(self, what: str, folder: Optional[Path], expected: str, flag: str) -> str:
        files = self.preset.files
        return missing_data_message(self.preset.name, what, folder, expected, flag,
                                    folder_kind=f"a {files.collection} {files.folder} folder")

    def read_file(self, path: Path) -> RawExamples:
        """The examples of one local file (columns by the preset's candidate names)."""
        header, rows = read_table(path)
        col_a, col_b, col_label = self._columns(path, header)
        if not rows:
            raise NNPruneError(f"{path}: no examples (only a header)")
        text_a, text_b, labels = column_values(path, rows, (col_a, col_b, col_label))
        return self._examples(path, text_a, text_b, labels, places(rows))

    def from_hub_splits(self, dsd: Any, *, need_train: bool
                        ) -> tuple[Optional[RawExamples], dict[str, RawExamples]]:
        """Examples from a hub-layout ``DatasetDict`` (split names and columns as on the hub)."""
        files = self.preset.files

        def convert(split: str) -> RawExamples:
            ds = dsd[split]
            where = f"{files.hub.source_name}[{split}]"
            col_a, col_b, col_label = self._columns(where, list(ds.column_names))
            # [:] materialises a list; a datasets Column reads Arrow once per indexed item
            return self._examples(where, ds[col_a][:],
                                  None if col_b is None else ds[col_b][:], ds[col_label][:])

        train = convert("train") if need_train else None
        return train, {split: convert(split) for split in files.hub_eval_splits}

    def _columns(self, source: str | Path, header: list[str]
                 ) -> tuple[str, Optional[str], str]:
        """(text, text pair or ``None``, label) columns; the pair is required when the preset
        has pairs."""
        p = self.preset
        # in this order: the first column missing is the one an error names
        col_a = self._pick(source, header, p.text_columns)
        col_b = (self._pick(source, header, p.text_pair_columns) if p.text_pair_columns
                 else None)
        return col_a, col_b, self._pick(source, header, p.label_columns)

    def _pick(self, source: str | Path, header: list[str], candidates: tuple[str, ...]) -> str:
        for name in candidates:
            if name in header:
                return name
        alts = " or ".join(repr(c) for c in candidates)
        raise NNPruneError(f"{source}: missing column {alts} for task {self.preset.name}; "
                           f"found: {column_list(header)}")

    def _examples(self, source: str | Path, text_a: list[Any], text_b: Optional[list[Any]],
                  raw_labels: list[Any], where: Optional[list[str]] = None) -> RawExamples:
        """Parse labels, dropping unlabeled rows where the preset allows; errors name a row by
        ``where`` (its line in a file), else 1-based (a hub split)."""
        p = self.preset
        at = where or [f"row {i + 1}" for i in range(len(raw_labels))]
        keep: list[int] = []
        names: list[str] = []
        for i, raw in enumerate(raw_labels):
            if isinstance(raw, (list, dict)):
                raise NNPruneError(f"{source}: {at[i]}: the label is a JSON "
                                   f"{'list' if isinstance(raw, list) else 'object'}; expected "
                                   f"one of {p.label_choices()}")
            label = p.label_id(raw)
            if label is None:
                if p.drop_unlabeled:
                    continue
                raise NNPruneError(f"{source}: {at[i]} has no label ({raw!r}); "
                                   f"expected one of {p.label_choices()}")
            if label < 0:
                raise NNPruneError(f"{source}: {at[i]}: unknown label {raw!r}; "
                                   f"expected one of {p.label_choices()}")
            keep.append(i)
            names.append(p.labels[label])
        if not keep:
            raise NNPruneError(f"{source}: no labelled examples")
        kept = [at[i] for i in keep]
        return RawExamples(str(source), as_texts(source, [text_a[i] for i in keep], kept),
                           None if text_b is None else as_texts(source, [text_b[i] for i in keep],
                                                                kept),
                           names, places=kept if where is not None else None)


def find_file(folder: Path, name: str) -> Optional[Path]:
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


__all__ = [
    "UNLABELED_VALUES",
    "PresetFiles",
    "PresetReader",
    "RawExamples",
    "TextClassificationPreset",
    "find_file",
    "label_name",
    "sort_labels",
]
