"""Generic abstractive summarization: ``summarization``.

The ``cnn_dailymail`` adapter (:mod:`nnprune.tasks.cnn_dailymail`) for any (document, summary)
data, configured by ``--task-option key=value`` settings (:class:`SummarizationOptions`): the same
features, seq2seq distillation, beam-search generation and ROUGE scores. ``cnn_dailymail`` itself
is unchanged.

======================  ===========================================================================
option                  meaning (default)
======================  ===========================================================================
``text_column``         the document column (found by name: ``article``, ``document``, ``text``,
                        ``source``)
``summary_column``      the reference summary column (found by name: ``highlights``, ``summary``,
                        ``target``); a JSON list of sentences is joined by newlines
``source_prefix``       text put before every document (T5: ``summarize:``), joined to it by one
                        space unless it ends with whitespace, since ``--task-option`` values are
                        stripped (none)
``max_target_length``   summary tokens kept as ``labels`` (128)
``dataset``             a ``datasets.load_dataset`` name (hub id or local folder), used when no
                        local file is given
``dataset_config``      its configuration name (none)
``train_split``         its training split (``train``)
``validation_split``    its evaluation split (``validation``)
generation settings     ``num_beams``, ``max_length``, ``min_length``, ``length_penalty``,
                        ``no_repeat_ngram_size``, ``early_stopping``
                        (:class:`~nnprune.tasks.cnn_dailymail.GenerationSettings`; defaults are
                        BART's CNN/DM settings: 4 beams, 56 to 142 tokens, ...)
======================  ===========================================================================

Data sources, first match wins:

1. ``--train-file`` / ``--validation-file``: ``.csv``, ``.tsv``, ``.json`` or ``.jsonl`` rows
   (see :mod:`nnprune.tasks.io`; an ``id`` column is kept when present, else the row number);
2. ``--data-dir``: ``train.*`` and ``validation.*`` (else ``dev.*``, else ``test.*``) in that
   folder, with any of those extensions (two files for one name are an error);
3. ``--task-option dataset=NAME``: ``datasets.load_dataset(NAME, dataset_config, split=...)``.
   There is no default dataset, and giving both a local source and ``dataset`` is an error.

The columns are found per file or split, and the ones used are logged. Training examples with an
empty document or summary are dropped; ``max_train_samples`` / ``max_eval_samples`` then apply as
for ``cnn_dailymail``. Metrics (one split, ``validation``): ``rouge1``, ``rouge2`` (the main
metric), ``rougeL``, ``rougeLsum``, ``gen_len`` and ``eval_loss``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Optional

from nnprune.errors import NNPruneError
from nnprune.settings import apply_assignments
from nnprune.tasks.base import TASKS, DataArgs
from nnprune.tasks.cnn_dailymail import (
    CnnDailyMailTask,
    GenerationSettings,
    Story,
    stories_from_rows,
)
from nnprune.tasks.io import SUPPORTED_EXTENSIONS, read_table
from nnprune.tasks.sources import HubDatasetOptions, local_split_paths, pick_column

logger = logging.getLogger(__name__)

TASK_NAME = "summarization"

#: candidate column names, tried in order when the matching option is not given
TEXT_COLUMNS = ("article", "document", "text", "source")
SUMMARY_COLUMNS = ("highlights", "summary", "target")
#: file names (without extension) of the splits in a ``--data-dir``, in order of preference
TRAIN_STEMS = ("train",)
EVAL_STEMS = ("validation", "dev", "test")


@dataclass(frozen=True)
class SummarizationOptions(HubDatasetOptions):
    """The data settings of ``summarization`` (module docstring; the hub source settings are
    :class:`~nnprune.tasks.sources.HubDatasetOptions`'); the generation settings are a
    :class:`~nnprune.tasks.cnn_dailymail.GenerationSettings`. Empty strings mean "not given"."""

    task_name: ClassVar[str] = TASK_NAME

    text_column: str = ""
    summary_column: str = ""
    source_prefix: str = ""
    max_target_length: int = CnnDailyMailTask.max_target_length

    def __post_init__(self) -> None:
        text, summary = self.text_column.strip(), self.summary_column.strip()
        if text and text == summary:
            raise NNPruneError(f"{TASK_NAME}: text_column and summary_column are both {text!r}")
        if self.max_target_length < 1:
            raise NNPruneError(f"{TASK_NAME}: max_target_length must be >= 1, got "
                               f"{self.max_target_length}")
        super().__post_init__()

    @property
    def prefix(self) -> str:
        """What is put before each document: ``source_prefix`` plus a space unless it is empty
        or already ends with whitespace (``"summarize:"`` -> ``"summarize: "``)."""
        p = self.source_prefix
        return p if not p or p[-1].isspace() else p + " "


def _option_names() -> tuple[set[str], set[str]]:
    return ({f.name for f in fields(SummarizationOptions)},
            {f.name for f in fields(GenerationSettings)})


@TASKS.register(TASK_NAME)
class SummarizationTask(CnnDailyMailTask):
    """Summarization of any (document, summary) data with an encoder-decoder model: the
    ``cnn_dailymail`` adapter with the data settings of :class:`SummarizationOptions`.

    Features: ``input_ids``, ``attention_mask`` (the prefixed document, ``(batch, src_len)`` once
    collated) and ``labels`` (the summary, ``(batch, tgt_len)``, ``-100`` where padded).
    """

    name = TASK_NAME
    pair_description = "a text and a summary"

    def __init__(self, options: Optional[SummarizationOptions] = None,
                 generation: Optional[GenerationSettings] = None) -> None:
        super().__init__(generation)
        self.options = options if options is not None else SummarizationOptions()
        # Instance attributes shadow the cnn_dailymail class settings that the inherited
        # tokenization reads through self.
        self.source_prefix = self.options.prefix
        self.max_target_length = self.options.max_target_length

    def with_options(self, options: dict[str, str]) -> SummarizationTask:
        """This task with ``--task-option key=value`` settings: data settings
        (:class:`SummarizationOptions`) and generation settings; an unknown key is a one-line
        error listing the known ones."""
        if not options:
            return self
        data_keys, generation_keys = _option_names()
        unknown = sorted(set(options) - data_keys - generation_keys)
        if unknown:
            raise NNPruneError(f"unknown {TASK_NAME} option key {unknown[0]!r}; known: "
                               f"{', '.join(sorted(data_keys | generation_keys))}")
        data = {k: v for k, v in options.items() if k in data_keys}
        gen = {k: v for k, v in options.items() if k in generation_keys}
        return type(self)(
            apply_assignments(self.options, data, what=f"{TASK_NAME} option") if data
            else self.options,
            apply_assignments(self.generation, gen, what="generation setting") if gen
            else self.generation)

    # ------------------------------------------------------------------ data

    def _load_splits(self, data: DataArgs, *, need_train: bool) -> tuple[Any, Any]:
        """(train or ``None``, validation) as datasets with ``id``, ``article`` (the document)
        and ``highlights`` (the summary): the columns the inherited code reads."""
        self.options.use_hub(data)  # refuses both sources and none
        # local files: the parent turns what _load_stories reads into datasets
        return super()._load_splits(data, need_train=need_train)

    def _load_stories(self, data: DataArgs, *, need_train: bool
                      ) -> tuple[Optional[list[Story]], list[Story]]:
        folder = data.data_dir
        hint = ("; for a folder of DeepMind .story files use task cnn_dailymail"
                if folder is not None and folder.is_dir()
                and next(folder.glob("*.story"), None) is not None else "")
        train_path, eval_path = local_split_paths(
            self.name, data, need_train=need_train, train_stems=TRAIN_STEMS,
            eval_stems=EVAL_STEMS, exts=SUPPORTED_EXTENSIONS, hint=hint)
        train = self._read_file(train_path) if train_path is not None else None
        evals = self._read_file(eval_path)
        self.split_info = (f"train {train_path}, validation {eval_path}" if train_path is not None
                           else f"validation {eval_path}")
        return train, evals

    def _read_file(self, path: Path) -> list[Story]:
        header, rows = read_table(path)
        text_col, summary_col = self._columns(path, header)
        return stories_from_rows(path, rows, text_col, summary_col)

    def _columns(self, source: str | Path, header: list[str]) -> tuple[str, str]:
        """(document, summary) columns of a file or split with ``header``; logged."""
        opts = self.options
        text = pick_column(source, header, opts.text_column, TEXT_COLUMNS, "text_column")
        summary = pick_column(source, header, opts.summary_column, SUMMARY_COLUMNS,
                              "summary_column")
        if text == summary:
            raise NNPruneError(f"{source}: column {text!r} is both the text and the summary; "
                               "pass --task-option text_column=NAME and summary_column=NAME")
        logger.info("%s: %s: text column %r, summary column %r", self.name, source, text, summary)
        return text, summary

    def _load_hub(self, *, need_train: bool) -> tuple[Any, Any]:
        self.split_info = f"hub {self.options.source_name}"
        return self.options.load_splits(self.from_dataset, need_train=need_train)

    def from_dataset(self, ds: Any, where: str) -> Any:
        """One :class:`datasets.Dataset` split as the inherited code reads it: columns ``id``
        (the split's own ``id`` column, else the 1-based row number), ``article`` (the document)
        and ``highlights`` (the summary; a list of sentences joined by newlines)."""
        header = list(ds.column_names)
        text, summary = self._columns(where, header)
        joined = []
        for col in (text, summary):
            kind = _text_kind(ds.features.get(col))
            if kind is None:
                raise NNPruneError(f"{where}: column {col!r} holds {ds.features.get(col)}, "
                                   "expected text")
            if kind == "list":
                joined.append(col)
        keep_id = "id" in header and "id" not in (text, summary)
        ds = ds.select_columns([text, summary] + (["id"] if keep_id else []))
        # Through temporary names, so that e.g. text_column=highlights cannot collide.
        ds = ds.rename_columns({text: "__nnprune_text__", summary: "__nnprune_summary__"})
        ds = ds.rename_columns({"__nnprune_text__": "article", "__nnprune_summary__": "highlights"})
        renamed = {text: "article", summary: "highlights"}
        for col in (renamed[c] for c in joined):
            ds = ds.map(lambda batch, c=col: {c: ["\n".join(x or []) for x in batch[c]]},
                        batched=True, desc=f"joining {col}")
        if not keep_id:
            ds = ds.add_column("id", [str(i + 1) for i in range(len(ds))])
        if len(ds) == 0:
            raise NNPruneError(f"{where}: no examples")
        return ds


def _text_kind(feature: Any) -> Optional[str]:
    """``"text"`` for a string feature, ``"list"`` for a list of strings, else ``None``."""
    def is_string(f: Any) -> bool:
        return getattr(f, "dtype", None) in ("string", "large_string")

    if is_string(feature):
        return "text"
    inner = getattr(feature, "feature", None)
    if inner is not None and is_string(inner):
        return "list"
    return None


__all__ = [
    "EVAL_STEMS",
    "SUMMARY_COLUMNS",
    "TASK_NAME",
    "TEXT_COLUMNS",
    "TRAIN_STEMS",
    "SummarizationOptions",
    "SummarizationTask",
]
