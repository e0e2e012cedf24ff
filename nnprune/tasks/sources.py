"""Where a generic task's data comes from, shared by ``text-classification``,
``token-classification``, ``question-answering`` and ``summarization``.

One run reads one source, first match wins:

1. ``--train-file`` / ``--validation-file``;
2. ``--data-dir``: the split files found by name in that folder (:func:`find_split_file`,
   :func:`local_split_paths`);
3. ``--task-option dataset=NAME``: ``datasets.load_dataset(NAME, dataset_config, split=...)``
   (:class:`HubDatasetOptions`), used only when no local source is given, so a run with local
   files never touches the network. Giving both a local source and ``dataset`` is an error.

A preset of a generic task (``sst2``, ``squad``, ``cnn_dailymail``) takes no such option: its hub
dataset is part of its declaration (:class:`PresetHub`), read when no local source is given.

Columns are found per file or hub split by :func:`pick_column`: the column a ``--task-option``
names, else the first present of a task's candidate names. Every failure is a one-line
:class:`~nnprune.errors.NNPruneError` naming the file, folder or split and what to pass instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional, TypeVar

from nnprune.errors import NNPruneError
from nnprune.tasks.base import DataArgs
from nnprune.tasks.io import column_list, error_line

T = TypeVar("T")

#: the ``--task-option`` keys of :class:`HubDatasetOptions`: they name a hub source, and mean
#: nothing for a run reading local files
HUB_OPTION_KEYS: tuple[str, ...] = ("dataset", "dataset_config", "train_split", "validation_split")


@dataclass(frozen=True)
class HubDatasetOptions:
    """The ``--task-option`` settings naming a ``datasets.load_dataset`` source, shared by the
    options of the generic tasks (which subclass it and set :attr:`task_name`).

    ``dataset``: a hub id or a local folder (empty: none); ``dataset_config``: its configuration
    name (empty: none); ``train_split`` / ``validation_split``: the splits read (``train``,
    ``validation``; anything ``split=`` takes, e.g. ``train[:1000]``).
    """

    #: the task named in messages
    task_name: ClassVar[str] = ""

    dataset: str = ""
    dataset_config: str = ""
    train_split: str = "train"
    validation_split: str = "validation"

    def __post_init__(self) -> None:
        if self.dataset_config.strip() and not self.dataset.strip():
            raise NNPruneError(f"{self.task_name}: dataset_config={self.dataset_config} needs "
                               "dataset=NAME")
        for key in ("train_split", "validation_split"):
            if not getattr(self, key).strip():
                raise NNPruneError(f"{self.task_name}: {key} must not be empty")

    @property
    def source_name(self) -> str:
        """``dataset`` or ``dataset/dataset_config``, as messages name the source."""
        config = self.dataset_config.strip()
        return self.dataset.strip() + (f"/{config}" if config else "")

    def use_hub(self, data: DataArgs) -> bool:
        """Whether the run reads :attr:`dataset` (true) or ``data``'s local files (false);
        refuses both and neither."""
        dataset = self.dataset.strip()
        if data.uses_local_files and dataset:
            raise NNPruneError(f"{self.task_name}: both local data files and dataset={dataset} "
                               "given; pass one source")
        if not data.uses_local_files and not dataset:
            raise NNPruneError(f"{self.task_name}: no data: pass --data-dir, --train-file/"
                               "--validation-file or --task-option dataset=NAME")
        return not data.uses_local_files

    def load_split(self, split: str) -> tuple[Any, str]:
        """One split of :attr:`dataset` as a :class:`datasets.Dataset`, and its name for
        messages (``name/config[split]``); a failure to load (offline, no cache, unknown split)
        is a one-line error."""
        import datasets

        split = split.strip()
        where = f"{self.source_name}[{split}]"
        try:
            ds = datasets.load_dataset(self.dataset.strip(), self.dataset_config.strip() or None,
                                       split=split)
        except Exception as e:  # offline, no cache, unknown split: fixable by the user
            raise NNPruneError(f"{self.task_name}: could not load {where} ({error_line(e)}); "
                               "pass --data-dir or --train-file/--validation-file") from e
        return ds, where

    def load_splits(self, convert: Callable[[Any, str], T], *, need_train: bool
                    ) -> tuple[Optional[T], T]:
        """(training split or ``None`` unless ``need_train``, evaluation split), each loaded by
        :meth:`load_split` and turned into the task's examples by ``convert(ds, where)``."""
        train = convert(*self.load_split(self.train_split)) if need_train else None
        return train, convert(*self.load_split(self.validation_split))


@dataclass(frozen=True)
class PresetHub:
    """The hub dataset a preset reads when no local source is given (``nyu-mll/glue`` config
    ``sst2``, ``rajpurkar/squad``, ...): ``dataset`` and its configuration (empty: none)."""

    dataset: str
    config: str = ""

    @property
    def source_name(self) -> str:
        """``dataset`` or ``dataset/config``, as messages name the source."""
        return self.dataset + (f"/{self.config}" if self.config else "")

    def load(self, task: str, split: Optional[str] = None) -> Any:
        """``datasets.load_dataset`` of it: every split (a ``DatasetDict``), or only ``split``.
        A failure (offline, no cache, hub down) is a one-line error naming ``task`` and what
        to pass instead: all of them are fixed by pointing at local files."""
        import datasets

        args = (self.dataset, self.config) if self.config else (self.dataset,)
        kwargs = {"split": split} if split is not None else {}
        try:
            return datasets.load_dataset(*args, **kwargs)
        except Exception as e:  # offline, no cache, hub down: all fixable by pointing at files
            raise NNPruneError(f"{task}: could not load hub dataset {self.source_name} "
                               f"({error_line(e)}); pass --data-dir or "
                               "--train-file/--validation-file") from e


# ------------------------------------------------------------------------------ local files


def stem_names(stems: Sequence[str], exts: Sequence[str]) -> str:
    """``("train",)``, ``(".tsv", ".csv")`` -> ``"train.{tsv,csv}"``; several stems are joined by
    ``" or "``."""
    joined = ",".join(e.lstrip(".") for e in exts)
    return " or ".join(f"{s}.{{{joined}}}" for s in stems)


def find_split_file(task: str, folder: Path, stems: Sequence[str], exts: Sequence[str],
                    flag: str, *, first_wins: bool = True) -> Optional[Path]:
    """The file ``<stem><ext>`` of one split in ``folder``, ``None`` when there is none.

    ``first_wins``: the stems are in order of preference and the first one with a file is
    taken (``validation.*`` over ``dev.*``); else every stem is as good as the others. Two
    candidates left (two extensions of one stem, or two stems when not ``first_wins``) are an
    error naming them and ``flag``, the option that picks the file instead.
    """
    groups = [[s] for s in stems] if first_wins else [list(stems)]
    for group in groups:
        found = [folder / f"{s}{e}" for s in group for e in exts if (folder / f"{s}{e}").is_file()]
        if len(found) > 1:
            raise NNPruneError(f"{task}: {len(found)} candidate files in {folder} "
                               f"({', '.join(p.name for p in found)}); pass {flag}")
        if found:
            return found[0]
    return None


def missing_data_message(task: str, what: str, folder: Optional[Path], expected: str,
                         flag: str, *, folder_kind: str = "a folder", hint: str = "") -> str:
    """The message for a run without its ``what`` (``"training"``, ``"evaluation"``) data:
    ``expected`` (file names) is not in ``folder``, or no ``folder`` and no ``flag`` was given.
    ``hint`` is appended to the message of a folder."""
    if folder is None:
        return f"{task}: no {what} data: pass {flag} or --data-dir ({folder_kind} with {expected})"
    return f"{task}: no {what} data: expected {expected} in {folder} (or pass {flag}){hint}"


def local_split_paths(task: str, data: DataArgs, *, need_train: bool,
                      train_stems: Sequence[str], eval_stems: Sequence[str],
                      exts: Sequence[str], eval_first_wins: bool = True, hint: str = ""
                      ) -> tuple[Optional[Path], Path]:
    """(training file or ``None`` unless ``need_train``, evaluation file) of a run with local
    data: ``--train-file`` / ``--validation-file``, else found in ``--data-dir`` by
    :func:`find_split_file` (``eval_first_wins`` for the evaluation stems). A missing one is an
    error saying what was expected where (``hint`` appended when a folder was searched)."""
    folder = data.data_dir
    if folder is not None and not folder.is_dir():
        raise NNPruneError(f"--data-dir {folder} is not a folder")

    def path(given: Optional[Path], stems: Sequence[str], what: str, flag: str,
             first_wins: bool) -> Path:
        if given is None and folder is not None:
            given = find_split_file(task, folder, stems, exts, flag, first_wins=first_wins)
        if given is None:
            raise NNPruneError(missing_data_message(task, what, folder, stem_names(stems, exts),
                                                    flag, hint=hint))
        return given

    train = (path(data.train_file, train_stems, "training", "--train-file", True)
             if need_train else None)
    return train, path(data.validation_file, eval_stems, "evaluation", "--validation-file",
                       eval_first_wins)


# ------------------------------------------------------------------------------ columns


def pick_column(source: str | Path, header: Sequence[str], given: Optional[str],
                candidates: Sequence[str], option: str) -> str:
    """The column of ``header`` (the columns of file or split ``source``) that ``--task-option
    option=NAME`` names (``given``), else the first of ``candidates`` present; neither is a
    one-line error listing the columns found."""
    found = column_list(header)
    given = (given or "").strip()
    if given:
        if given not in header:
            raise NNPruneError(f"{source}: missing column {given!r} ({option}); found: {found}; "
                               f"pass --task-option {option}=NAME")
        return given
    for name in candidates:
        if name in header:
            return name
    tried = ", ".join(repr(c) for c in candidates)
    raise NNPruneError(f"{source}: no {option.replace('_column', '')} column (tried {tried}); "
                       f"found: {found}; pass --task-option {option}=NAME")


__all__ = [
    "HUB_OPTION_KEYS",
    "HubDatasetOptions",
    "PresetHub",
    "find_split_file",
    "local_split_paths",
    "missing_data_message",
    "pick_column",
    "stem_names",
]
