"""Abstractive summarization with encoder-decoder models (e.g. BART): ``summarization``, and its
preset ``cnn_dailymail`` (:mod:`nnprune.tasks.cnn_dailymail`).

Any (document, summary) data, configured by ``--task-option key=value`` settings
(:class:`SummarizationOptions`); a preset (:class:`SummarizationPreset`) brings its own data
source (:class:`~nnprune.tasks.summarization_data.SummarySource`), its defaults, and takes only
the generation settings as options.

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
                        (:class:`GenerationSettings`; defaults are
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
empty document or summary are dropped (the hub's CNN/DM train split has a few); then
``max_train_samples`` takes the first N after a shuffle with ``data.seed``, ``max_eval_samples``
the first N in order.

Lengths: sources are truncated to ``--max-seq-length`` tokens (default 1024, BART's positions;
never more than the tokenizer's ``model_max_length``), targets (``labels``) to
``max_target_length`` (128). Padded label positions are ``-100``, so the loss and the teacher
distillation (:meth:`SummarizationTask.distillation_mask`) ignore them.

Evaluation generates summaries with beam search (:class:`GenerationSettings`; defaults are BART's
CNN/DM settings: 4 beams, length 56 to 142, length penalty 2.0, no repeated trigram) and scores
them with ROUGE (:mod:`nnprune.tasks.summarization_metrics`). Metrics (one split,
``validation``): ``rouge1``, ``rouge2`` (the main metric), ``rougeL``, ``rougeLsum``, ``gen_len``
(mean generated tokens) and ``eval_loss`` (token-level cross-entropy of the references).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np
import torch

from nnprune.errors import NNPruneError
from nnprune.settings import apply_assignments
from nnprune.tasks.base import TASKS, DataArgs, TaskAdapter, TaskData, auto_config, auto_model
from nnprune.tasks.io import SUPPORTED_EXTENSIONS, read_table
from nnprune.tasks.sources import HubDatasetOptions, local_split_paths, pick_column
from nnprune.tasks.summarization_data import (Story, SummarySource, SummarySplits, progress_bars,
                                              stories_dataset, stories_from_rows)
from nnprune.tasks.summarization_metrics import rouge_scores

logger = logging.getLogger(__name__)

TASK_NAME = "summarization"

#: candidate column names, tried in order when the matching option is not given
TEXT_COLUMNS = ("article", "document", "text", "source")
SUMMARY_COLUMNS = ("highlights", "summary", "target")
#: file names (without extension) of the splits in a ``--data-dir``, in order of preference
TRAIN_STEMS = ("train",)
EVAL_STEMS = ("validation", "dev", "test")
#: summary tokens kept as ``labels`` unless told
MAX_TARGET_LENGTH = 128


# ------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class GenerationSettings:
    """Keyword arguments of ``model.generate`` used by evaluation (lengths in tokens)."""

    num_beams: int = 4
    max_length: int = 142
    min_length: int = 56
    length_penalty: float = 2.0
    no_repeat_ngram_size: int = 3
    early_stopping: bool = True

    def __post_init__(self) -> None:
        if self.num_beams < 1:
            raise NNPruneError(f"generation num_beams must be >= 1, got {self.num_beams}")
        if self.max_length < 2:
            raise NNPruneError(f"generation max_length must be >= 2, got {self.max_length}")
        if not 0 <= self.min_length <= self.max_length:
            raise NNPruneError(f"generation min_length must be in [0, max_length], got "
                               f"{self.min_length} (max_length {self.max_length})")
        if self.no_repeat_ngram_size < 0:
            raise NNPruneError("generation no_repeat_ngram_size must be >= 0")

    def kwargs(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class SummarizationOptions(HubDatasetOptions):
    """The data settings of ``summarization`` (module docstring; the hub source settings are
    :class:`~nnprune.tasks.sources.HubDatasetOptions`'); the generation settings are a
    :class:`GenerationSettings`. Empty strings mean "not given"."""

    task_name: ClassVar[str] = TASK_NAME

    text_column: str = ""
    summary_column: str = ""
    source_prefix: str = ""
    max_target_length: int = MAX_TARGET_LENGTH

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


@dataclass(frozen=True)
class SummarizationPreset:
    """A named ``summarization`` configuration (``cnn_dailymail``), registered under ``name``
    with :func:`~nnprune.tasks.base.register_preset`: where its data comes from (``source``),
    its source prefix, summary length and default generation settings, and how its examples
    are described in messages. A preset takes the generation settings as ``--task-option``,
    nothing else: its data is its definition."""

    name: str
    source: SummarySource
    #: what a training example needs, in the message when none has it
    pair_description: str = "a text and a summary"
    #: text put before every source document when it is tokenized (T5: ``"summarize: "``)
    source_prefix: str = ""
    max_target_length: int = MAX_TARGET_LENGTH
    generation: GenerationSettings = field(default_factory=GenerationSettings)


def _option_names() -> tuple[set[str], set[str]]:
    return ({f.name for f in fields(SummarizationOptions)},
            {f.name for f in fields(GenerationSettings)})


# ------------------------------------------------------------------------------ reading data


@dataclass(frozen=True)
class OptionsSource:
    """The data source of the generic task: the local files or hub dataset its options name
    (module docstring), documents and summaries in the columns they name or found by name."""

    options: SummarizationOptions

    def load(self, task: str, data: DataArgs, *, need_train: bool) -> SummarySplits:
        """The splits of the local files or of the hub dataset the options name (module
        docstring); giving both or neither is an error."""
        if self.options.use_hub(data):
            return SummarySplits(*self.options.load_splits(
                lambda ds, where: self.from_dataset(task, ds, where), need_train=need_train),
                f"hub {self.options.source_name}")
        folder = data.data_dir
        hint = ("; for a folder of DeepMind .story files use task cnn_dailymail"
                if folder is not None and folder.is_dir()
                and next(folder.glob("*.story"), None) is not None else "")
        train_path, eval_path = local_split_paths(
            task, data, need_train=need_train, train_stems=TRAIN_STEMS,
            eval_stems=EVAL_STEMS, exts=SUPPORTED_EXTENSIONS, hint=hint)
        train = self.read_file(task, train_path) if train_path is not None else None
        evals = self.read_file(task, eval_path)
        info = (f"train {train_path}, validation {eval_path}" if train_path is not None
                else f"validation {eval_path}")
        return SummarySplits(stories_dataset(train), stories_dataset(evals), info)

    def read_file(self, task: str, path: Path) -> list[Story]:
        """The stories of one local file, in the columns the options name (else found by
        name)."""
        header, rows = read_table(path)
        text_col, summary_col = self.columns(task, path, header)
        return stories_from_rows(path, rows, text_col, summary_col)

    def columns(self, task: str, source: str | Path, header: list[str]) -> tuple[str, str]:
        """(document, summary) columns of a file or split with ``header``; logged."""
        opts = self.options
        text = pick_column(source, header, opts.text_column, TEXT_COLUMNS, "text_column")
        summary = pick_column(source, header, opts.summary_column, SUMMARY_COLUMNS,
                              "summary_column")
        if text == summary:
            raise NNPruneError(f"{source}: column {text!r} is both the text and the summary; "
                               "pass --task-option text_column=NAME and summary_column=NAME")
        logger.info("%s: %s: text column %r, summary column %r", task, source, text, summary)
        return text, summary

    def from_dataset(self, task: str, ds: Any, where: str) -> Any:
        """One :class:`datasets.Dataset` split as the adapter reads it: columns ``id`` (the
        split's own ``id`` column, else the 1-based row number), ``article`` (the document) and
        ``highlights`` (the summary; a list of sentences joined by newlines)."""
        header = list(ds.column_names)
        text, summary = self.columns(task, where, header)
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


def _has_text(batch: dict[str, list[Any]]) -> list[bool]:
    """Which rows of a batch have both a non-blank document and a non-blank summary."""
    return [bool(a and str(a).strip()) and bool(h and str(h).strip())
            for a, h in zip(batch["article"], batch["highlights"])]


# ------------------------------------------------------------------------------ evaluation


@dataclass
class SummaryReferences:
    """Gold summaries of one evaluation split, parallel to its features
    (``TaskData.eval_examples[split]``)."""

    ids: list[str]
    highlights: list[str]

    def __len__(self) -> int:
        return len(self.ids)


# ------------------------------------------------------------------------------ the task


@TASKS.register(TASK_NAME)
class SummarizationTask(TaskAdapter):
    """Summarization of (document, summary) data with an encoder-decoder model (module
    docstring), configured by :class:`SummarizationOptions` or a :class:`SummarizationPreset`.

    Features: ``input_ids``, ``attention_mask`` (the prefixed document, ``(batch, src_len)`` once
    collated) and ``labels`` (the summary, ``(batch, tgt_len)``, ``-100`` where padded), padded
    per batch by :class:`transformers.DataCollatorForSeq2Seq`. Metrics (one split,
    ``"validation"``): ``rouge1``, ``rouge2``, ``rougeL``, ``rougeLsum``, ``gen_len`` and
    ``eval_loss``. :attr:`split_info` says where the last :meth:`load_data` found its splits.
    """

    name = TASK_NAME
    main_metric = "rouge2"
    evaluates_by_generation = True
    #: source tokens when the user does not say (BART's 1024 positions)
    default_max_seq_length = 1024

    def __init__(self, options: Optional[SummarizationOptions] = None,
                 generation: Optional[GenerationSettings] = None,
                 preset: Optional[SummarizationPreset] = None) -> None:
        if preset is not None and options is not None:
            raise ValueError(f"task {preset.name} is a preset: it takes no data options")
        #: the named configuration this task is (``cnn_dailymail``), ``None`` for the generic task
        self.preset = preset
        self.options = options if options is not None else SummarizationOptions()
        self.source: SummarySource
        if preset is not None:
            self.name = preset.name
            self.source = preset.source
            self.source_prefix = preset.source_prefix
            self.max_target_length = preset.max_target_length
            self.pair_description = preset.pair_description
            default_generation = preset.generation
        else:
            self.source = OptionsSource(self.options)
            self.source_prefix = self.options.prefix
            self.max_target_length = self.options.max_target_length
            self.pair_description = "a text and a summary"
            default_generation = GenerationSettings()
        self.generation = generation if generation is not None else default_generation
        self.split_info: str = ""
        self._tokenizer: Any = None

    def with_options(self, options: dict[str, str]) -> SummarizationTask:
        """This task with ``--task-option key=value`` settings: data settings
        (:class:`SummarizationOptions`, not for a preset) and generation settings; an unknown
        key is a one-line error listing the known ones."""
        if not options:
            return self
        if self.preset is not None:
            return type(self)(generation=apply_assignments(self.generation, options,
                                                           what="generation setting"),
                              preset=self.preset)
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

    def load_data(self, tokenizer: Any, data: DataArgs, *, need_train: bool = True) -> TaskData:
        """Load, subsample and tokenize the train split (if ``need_train``) and ``validation``.

        ``max_train_samples`` takes the first N after a shuffle with ``data.seed``;
        ``max_eval_samples`` the first N in order. Training examples with an empty article or
        no highlights are dropped (the hub's train split has a few). ``TaskData.train`` is
        ``None`` when ``need_train`` is false.
        """
        splits = self.source.load(self.name, data, need_train=need_train)
        self.split_info = splits.info
        train, evals = splits.train, splits.validation
        if train is not None:
            with progress_bars(len(train)):
                train = train.filter(_has_text, batched=True)
            if len(train) == 0:
                raise NNPruneError(f"{self.name}: no training example has both "
                                   f"{self.pair_description}")
            if data.max_train_samples is not None and data.max_train_samples < len(train):
                order = np.random.default_rng(data.seed).permutation(len(train))
                train = train.select(order[: data.max_train_samples].tolist())
        if data.max_eval_samples is not None and data.max_eval_samples < len(evals):
            evals = evals.select(range(data.max_eval_samples))
        if len(evals) == 0:
            raise NNPruneError(f"{self.name}: the validation split is empty")

        from transformers import DataCollatorForSeq2Seq

        self._tokenizer = tokenizer
        max_source = self.source_length(tokenizer, data.max_seq_length)
        refs = SummaryReferences([str(i) for i in evals["id"][:]], list(evals["highlights"][:]))
        return TaskData(
            train=None if train is None else self._tokenize(tokenizer, train, max_source),
            eval={"validation": self._tokenize(tokenizer, evals, max_source)},
            eval_examples={"validation": refs},
            data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100),
        )

    def source_length(self, tokenizer: Any, max_seq_length: int) -> int:
        """``max_seq_length``, capped at the tokenizer's ``model_max_length`` when it has one."""
        limit = getattr(tokenizer, "model_max_length", None)
        if isinstance(limit, int) and 0 < limit < 1_000_000 and limit < max_seq_length:
            logger.warning("%s: sources truncated to %d tokens (the tokenizer's "
                           "model_max_length), not %d", self.name, limit, max_seq_length)
            return limit
        return max_seq_length

    def _tokenize(self, tokenizer: Any, ds: Any, max_source: int) -> Any:
        max_target = self.max_target_length
        prefix = self.source_prefix

        def encode(batch: dict[str, list[str]]) -> dict[str, Any]:
            sources = [prefix + a for a in batch["article"]] if prefix else batch["article"]
            enc = tokenizer(sources, max_length=max_source, truncation=True)
            target = tokenizer(text_target=batch["highlights"], max_length=max_target,
                               truncation=True)
            # Only what the model consumes (no token_type_ids: BART's forward has none).
            return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                    "labels": target["input_ids"]}

        with progress_bars(len(ds)):
            return ds.map(encode, batched=True, batch_size=1000,
                          remove_columns=ds.column_names, desc="tokenizing")

    # ----------------------------------------------------------------- model

    def build_model(self, model_name_or_path: str, **kwargs: Any) -> torch.nn.Module:
        """``AutoModelForSeq2SeqLM`` (an encoder-decoder with an LM head, e.g. BART)."""
        from transformers import AutoModelForSeq2SeqLM

        config = auto_config(model_name_or_path)
        if not getattr(config, "is_encoder_decoder", False):
            raise NNPruneError(f"{self.name} needs an encoder-decoder model (e.g. "
                               f"facebook/bart-base); {model_name_or_path} is a "
                               f"{config.model_type!r} model")
        return auto_model(AutoModelForSeq2SeqLM, model_name_or_path, **kwargs)

    def distillation_logits(self, outputs: Any) -> tuple[torch.Tensor, ...]:
        """Decoder logits ``(batch, tgt_len, vocab)``."""
        return (outputs.logits,)

    def distillation_mask(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Non-padded target positions ``(batch, tgt_len)``: ``labels != -100``."""
        labels = inputs.get("labels")
        return None if labels is None else labels != -100

    # ---------------------------------------------------------------- metric

    def evaluate(self, trainer: Any, data: TaskData) -> dict[str, float]:
        """Generate summaries of every eval split with ``trainer.model`` and score them.

        Runs ``model.generate`` itself in batches of ``trainer.args.per_device_eval_batch_size``
        on the model's device (no ``Seq2SeqTrainer`` needed), so a plain or pruning ``Trainer``
        works. Keys are the bare metric names with one split, ``"<split>_<metric>"`` otherwise.
        """
        model = trainer.model
        tokenizer = getattr(trainer, "processing_class", None) or self._tokenizer
        if tokenizer is None:
            raise NNPruneError(f"{self.name}: evaluation needs the tokenizer to decode summaries")
        batch_size = int(getattr(trainer.args, "per_device_eval_batch_size", 8) or 8)
        collator = data.data_collator
        if collator is None:
            from transformers import DataCollatorForSeq2Seq

            collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)
        splits = list(data.eval)
        results: dict[str, float] = {}
        for split, ds in data.eval.items():
            refs = data.eval_examples.get(split)
            if not isinstance(refs, SummaryReferences):
                raise TypeError(f"TaskData.eval_examples[{split!r}] must be SummaryReferences")
            preds, gen_len, loss = self.generate(model, tokenizer, ds, collator, batch_size)
            metrics = rouge_scores(preds, refs.highlights)
            metrics["gen_len"] = gen_len
            metrics["eval_loss" if len(splits) == 1 else "loss"] = loss
            for key, value in metrics.items():
                results[key if len(splits) == 1 else f"{split}_{key}"] = value
        return results

    def generate(self, model: torch.nn.Module, tokenizer: Any, ds: Any, collator: Any,
                 batch_size: int) -> tuple[list[str], float, float]:
        """(decoded summaries, mean generated tokens, token-level loss of the labels) of ``ds``."""
        try:
            device = next(model.parameters()).device
        except StopIteration:  # pragma: no cover - a model always has parameters
            device = torch.device("cpu")
        pad = getattr(tokenizer, "pad_token_id", None)
        was_training = model.training
        model.eval()
        preds: list[str] = []
        lengths: list[int] = []
        loss_sum, tokens = 0.0, 0
        try:
            with torch.inference_mode():
                for start in range(0, len(ds), batch_size):
                    rows = ds[start: start + batch_size]
                    features = [dict(zip(rows, values)) for values in zip(*rows.values())]
                    batch = {k: v.to(device) for k, v in collator(features).items()
                             if isinstance(v, torch.Tensor)}
                    labels = batch.pop("labels", None)
                    batch.pop("decoder_input_ids", None)
                    if labels is not None:
                        n = int((labels != -100).sum())
                        if n:
                            out = model(**batch, labels=labels)
                            loss_sum += float(out.loss) * n
                            tokens += n
                    generated = model.generate(
                        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        do_sample=False, **self.generation.kwargs())
                    generated = generated.cpu()
                    for seq in generated:
                        keep = seq != pad if pad is not None else torch.ones_like(seq, dtype=bool)
                        lengths.append(int(keep.sum()))
                    preds += [t.strip() for t in tokenizer.batch_decode(
                        generated, skip_special_tokens=True, clean_up_tokenization_spaces=True)]
        finally:
            model.train(was_training)
        gen_len = float(np.mean(lengths)) if lengths else 0.0
        return preds, gen_len, (loss_sum / tokens if tokens else float("nan"))


__all__ = [
    "EVAL_STEMS",
    "MAX_TARGET_LENGTH",
    "SUMMARY_COLUMNS",
    "TASK_NAME",
    "TEXT_COLUMNS",
    "TRAIN_STEMS",
    "GenerationSettings",
    "OptionsSource",
    "SummarizationOptions",
    "SummarizationPreset",
    "SummarizationTask",
    "SummaryReferences",
]
