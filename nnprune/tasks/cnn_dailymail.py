"""Summarization of CNN/DailyMail news: ``cnn_dailymail`` (seq2seq, e.g. BART).

A preset of the generic ``summarization`` adapter
(:class:`~nnprune.tasks.summarization.SummarizationTask`), declared here as data
(:data:`CNN_DAILYMAIL`, a :class:`~nnprune.tasks.summarization.SummarizationPreset`): its data
source (:class:`CnnDailyMailSource`, the story-file reading below), BART's CNN/DM generation
settings as defaults. Tokenization, distillation, generation and ROUGE are the generic adapter's;
``--task-option`` takes the generation settings only (``num_beams=2``, ...).

Data sources, first match wins (:meth:`CnnDailyMailSource.load`):

1. ``--train-file`` / ``--validation-file``: ``.jsonl``, ``.json``, ``.csv`` (or ``.tsv``) rows with
   ``article`` and ``highlights`` columns (an ``id`` column is kept when present); the
   highlights of one article are separated by newlines, as the hub's 3.0.0 release writes them
   (a quoted ``.csv`` field may span lines);
2. ``--data-dir``: a folder of DeepMind ``.story`` files (searched recursively when the folder
   itself holds none, so ``cnn/stories`` and ``dailymail/stories`` below it are found). The
   split comes from ``url_lists/all_{train,val,test}.txt`` in the folder or its parent (a story's
   file name is the SHA-1 of its URL, as in the standard preprocessing); without URL lists the
   stories are sorted by file name and every :attr:`~CnnDailyMailSource.validation_every`-th one
   (the 1st, 11th, ...) goes to validation, the rest to training; the split used is logged and
   kept in the task's ``split_info``;
3. the hub dataset ``abisee/cnn_dailymail`` (config ``3.0.0``), used only when no local source is
   given, so a run with local files never touches the network.

A ``.story`` file is parsed like the hub's 3.0.0 builder (See et al.'s ``make_datafiles.py``
without lower-casing): lines stripped, ``" ."`` appended to lines not ending in punctuation or a
closing quote, the article is its non-empty lines before the first ``@highlight`` joined by
spaces, the highlights are the non-empty lines after it joined by ``"\\n"``.

Generation settings from Python: ``get_task("cnn_dailymail", {"num_beams": "2"})``, or
``CnnDailyMailTask(generation=GenerationSettings(num_beams=2))``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnprune.errors import NNPruneError
from nnprune.tasks.base import DataArgs, register_preset
from nnprune.tasks.io import check_columns, read_table, read_text
from nnprune.tasks.sources import PresetHub
from nnprune.tasks.summarization import GenerationSettings, SummarizationPreset, SummarizationTask
from nnprune.tasks.summarization_data import Story, SummarySplits, stories_dataset, stories_from_rows

logger = logging.getLogger(__name__)

HUB_DATASET = "abisee/cnn_dailymail"
HUB_CONFIG = "3.0.0"

#: the standard preprocessing appends " ." to lines that do not end with one of these
END_TOKENS = (".", "!", "?", "...", "'", "`", '"', "\u2019", "\u201d", ")")


# ------------------------------------------------------------------------------ story files


def _fix_missing_period(line: str) -> str:
    if "@highlight" in line or not line or line.endswith(END_TOKENS):
        return line
    return line + " ."


def parse_story(text: str, story_id: str = "") -> Story:
    """Article and highlights of a DeepMind ``.story`` text (see the module docstring)."""
    lines = [_fix_missing_period(line.strip()) for line in text.splitlines()]
    article: list[str] = []
    highlights: list[str] = []
    in_highlights = False
    for line in lines:
        if not line:
            continue
        if line.startswith("@highlight"):
            in_highlights = True
        elif in_highlights:
            highlights.append(line)
        else:
            article.append(line)
    return Story(story_id, " ".join(article), "\n".join(highlights))


def read_story_file(path: str | Path) -> Story:
    """Parse one ``.story`` file; its id is the file name without ``.story`` (SHA-1 of the URL)."""
    path = Path(path)
    return parse_story(read_text(path), path.stem)


def url_hash(url: str) -> str:
    """The story file name (without ``.story``) of ``url``: its SHA-1 hex digest."""
    return hashlib.sha1(url.strip().encode("utf-8")).hexdigest()


def find_story_files(folder: Path) -> list[Path]:
    """``*.story`` in ``folder``, else anywhere below it; sorted by file name, unique ids."""
    files = sorted(folder.glob("*.story"))
    if not files:
        files = sorted(p for p in folder.rglob("*.story") if p.is_file())
    seen: dict[str, Path] = {}
    for f in sorted(files, key=lambda p: (p.name, str(p))):
        seen.setdefault(f.stem, f)
    return list(seen.values())


def find_url_lists(folder: Path) -> Path | None:
    """``url_lists`` folder with ``all_{train,val,test}.txt`` in ``folder`` or its parent."""
    for base in (folder, folder.parent):
        d = base / "url_lists"
        if any((d / f"all_{s}.txt").is_file() for s in ("train", "val", "test")):
            return d
    return None


def read_url_list(path: Path) -> list[str]:
    """Story ids (SHA-1 of each non-blank URL line) of one ``all_*.txt`` file, in file order."""
    return [url_hash(line) for line in read_text(path).splitlines() if line.strip()]


def read_rows_file(path: str | Path) -> list[Story]:
    """Stories from a ``.jsonl``/``.json``/``.csv``/``.tsv`` file with ``article`` and
    ``highlights`` columns (``id`` optional: the 1-based row number otherwise)."""
    path = Path(path)
    _, rows = read_table(path, required=("article", "highlights"))
    return stories_from_rows(path, rows)


# ------------------------------------------------------------------------------ the preset


@dataclass(frozen=True)
class CnnDailyMailSource:
    """The data of ``cnn_dailymail`` (module docstring): row files, a folder of ``.story`` files
    or the hub dataset, as a :class:`~nnprune.tasks.summarization_data.SummarySource`."""

    hub: PresetHub = field(default_factory=lambda: PresetHub(HUB_DATASET, HUB_CONFIG))
    #: without URL lists, every k-th story (sorted by file name) goes to validation
    validation_every: int = 10

    def load(self, task: str, data: DataArgs, *, need_train: bool) -> SummarySplits:
        """The splits of the local files or the story folder given (module docstring), else of
        the hub dataset, which is only read when no local source is given."""
        if not data.uses_local_files:
            return self._load_hub(task, need_train=need_train)
        train, evals, info = self._load_stories(task, data, need_train=need_train)
        return SummarySplits(stories_dataset(train), stories_dataset(evals), info)

    def _load_stories(self, task: str, data: DataArgs, *, need_train: bool
                      ) -> tuple[list[Story] | None, list[Story], str]:
        """(train or ``None``, validation, how the folder was split or ``""``); the folder is
        split once, when a split is first read from it."""
        split: tuple[list[Story], list[Story], str] | None = None

        def folder_split() -> tuple[list[Story], list[Story], str]:
            nonlocal split
            if split is None:
                split = self._split_folder(task, data.data_dir, read_train=need_train)
            return split

        train: list[Story] | None = None
        if need_train:
            if data.train_file is not None:
                train = read_rows_file(data.train_file)
            elif data.data_dir is not None:
                train, _, info = folder_split()
                if not train:
                    raise NNPruneError(f"{task}: no training stories in {data.data_dir} "
                                       f"({info}); pass --train-file")
            else:
                raise NNPruneError(f"{task}: no training data: pass --train-file or "
                                   "--data-dir (a folder of .story files)")
        if data.validation_file is not None:
            evals = read_rows_file(data.validation_file)
        elif data.data_dir is not None:
            _, evals, info = folder_split()
            if not evals:
                raise NNPruneError(f"{task}: no validation stories in {data.data_dir} "
                                   f"({info}); pass --validation-file")
        else:
            raise NNPruneError(f"{task}: no evaluation data: pass --validation-file or "
                               "--data-dir (a folder of .story files)")
        return train, evals, "" if split is None else split[2]

    def _split_folder(self, task: str, folder: Path, *, read_train: bool = True
                      ) -> tuple[list[Story], list[Story], str]:
        """(train, validation) stories of a ``.story`` folder (see the module docstring), and how
        they were split; the training stories are only read when ``read_train`` (else ``[]``)."""
        if not folder.is_dir():
            raise NNPruneError(f"--data-dir {folder} is not a folder")
        files = find_story_files(folder)
        if not files:
            raise NNPruneError(f"{task}: no .story files in {folder}; pass a folder of "
                               "DeepMind .story files or --train-file/--validation-file "
                               "(jsonl/csv with article and highlights columns)")
        by_id = {f.stem: f for f in files}
        lists = find_url_lists(folder)
        if lists is not None:
            parts: dict[str, list[Path]] = {}
            notes: list[str] = []
            for split, fname in (("train", "all_train.txt"), ("validation", "all_val.txt")):
                ids = read_url_list(lists / fname) if (lists / fname).is_file() else []
                parts[split] = [by_id[i] for i in ids if i in by_id]
                notes.append(f"{split} {len(parts[split])} of {len(ids)} listed")
            info = f"split by {lists}: " + ", ".join(notes)
            train_files, val_files = parts["train"], parts["validation"]
        else:
            k = self.validation_every
            val_files = files[::k] if len(files) > 1 else []
            train_files = [f for i, f in enumerate(files) if i % k != 0]
            info = (f"no url_lists/all_{{train,val}}.txt in {folder} or its parent: "
                    f"{len(files)} stories sorted by file name, every {k}th "
                    f"(1st, {k + 1}th, ...) to validation ({len(val_files)}), the "
                    f"rest to training ({len(train_files)})")
        logger.info("%s: %s", task, info)
        return ([read_story_file(f) for f in train_files] if read_train else [],
                [read_story_file(f) for f in val_files], info)

    def _load_hub(self, task: str, *, need_train: bool) -> SummarySplits:
        def load(split: str) -> Any:
            ds = self.hub.load(task, split)
            check_columns(f"{self.hub.source_name}[{split}]", ("article", "highlights", "id"),
                          list(ds.column_names))
            return ds

        return SummarySplits(load("train") if need_train else None, load("validation"),
                             f"hub {self.hub.source_name}")


CNN_DAILYMAIL = SummarizationPreset(
    name="cnn_dailymail", source=CnnDailyMailSource(),
    pair_description="an article and highlights",
)

register_preset(CNN_DAILYMAIL, SummarizationTask)


def CnnDailyMailTask(generation: GenerationSettings | None = None) -> SummarizationTask:  # noqa: N802
    """The ``cnn_dailymail`` task (as ``get_task("cnn_dailymail")``) with ``generation``
    settings: the Python entry point ``docs/bart.md`` shows, kept now that the task is a preset
    of ``summarization`` rather than a class of its own."""
    return SummarizationTask(generation=generation, preset=CNN_DAILYMAIL)


__all__ = [
    "CNN_DAILYMAIL",
    "END_TOKENS",
    "HUB_CONFIG",
    "HUB_DATASET",
    "CnnDailyMailSource",
    "CnnDailyMailTask",
    "GenerationSettings",
    "find_story_files",
    "find_url_lists",
    "parse_story",
    "read_rows_file",
    "read_story_file",
    "read_url_list",
    "url_hash",
]
