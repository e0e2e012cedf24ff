"""Abstractive summarization on CNN/DailyMail: ``cnn_dailymail`` (seq2seq, e.g. BART).

Data sources, first match wins (see :meth:`CnnDailyMailTask.load_data`):

1. ``--train-file`` / ``--validation-file``: ``.jsonl``, ``.json``, ``.csv`` (or ``.tsv``) rows with
   ``article`` and ``highlights`` columns (an ``id`` column is kept when present); the
   highlights of one article are separated by newlines, as the hub's 3.0.0 release writes them
   (a quoted ``.csv`` field may span lines);
2. ``--data-dir``: a folder of DeepMind ``.story`` files (searched recursively when the folder
   itself holds none, so ``cnn/stories`` and ``dailymail/stories`` below it are found). The
   split comes from ``url_lists/all_{train,val,test}.txt`` in the folder or its parent (a story's
   file name is the SHA-1 of its URL, as in the standard preprocessing); without URL lists the
   stories are sorted by file name and every :attr:`~CnnDailyMailTask.validation_every`-th one
   (the 1st, 11th, ...) goes to validation, the rest to training; the split used is logged and
   kept in :attr:`~CnnDailyMailTask.split_info`;
3. the hub dataset ``abisee/cnn_dailymail`` (config ``3.0.0``), used only when no local source is
   given, so a run with local files never touches the network.

A ``.story`` file is parsed like the hub's 3.0.0 builder (See et al.'s ``make_datafiles.py``
without lower-casing): lines stripped, ``" ."`` appended to lines not ending in punctuation or a
closing quote, the article is its non-empty lines before the first ``@highlight`` joined by
spaces, the highlights are the non-empty lines after it joined by ``"\\n"``.

Lengths: sources are truncated to ``--max-seq-length`` tokens (default
:attr:`~CnnDailyMailTask.default_max_seq_length` = 1024, BART's positions; never more than the
tokenizer's ``model_max_length``), targets (``labels``) to
:attr:`~CnnDailyMailTask.max_target_length` = 128 tokens. Padded label positions are ``-100``,
so the loss and the teacher distillation (:meth:`~CnnDailyMailTask.distillation_mask`) ignore
them.

Evaluation generates summaries with beam search (:class:`GenerationSettings`; defaults are
BART's CNN/DM settings: 4 beams, length 56 to 142, length penalty 2.0, no repeated trigram) and
scores them with ``rouge-score`` (``pip install 'nnprune[summarization]'``): ROUGE-1/2/L/Lsum
F-measures x 100, averaged over articles, with the Porter stemmer. For ROUGE-Lsum the prediction
and the reference are split into sentences (at newlines and after ``.``, ``!`` or ``?`` followed
by whitespace) and newline-joined. Also reported: ``gen_len`` (mean generated tokens) and
``eval_loss`` (token-level cross-entropy of the references).

Generation settings are task options: ``--task-option num_beams=2 --task-option max_length=60``
on ``nnprune fine-prune`` / ``evaluate`` / ``fill``, or in Python
``CnnDailyMailTask(generation=GenerationSettings(num_beams=2))``.

The generic ``summarization`` task (:mod:`nnprune.tasks.summarization`) is this adapter for any
(document, summary) data: columns, a source prefix and hub datasets as ``--task-option``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnprune.errors import NNPruneError
from nnprune.settings import apply_assignments
from nnprune.tasks.base import TASKS, DataArgs, TaskAdapter, TaskData
from nnprune.tasks.io import check_columns, error_line, read_table, read_text

logger = logging.getLogger(__name__)

HUB_DATASET = "abisee/cnn_dailymail"
HUB_CONFIG = "3.0.0"
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")

#: the standard preprocessing appends " ." to lines that do not end with one of these
END_TOKENS = (".", "!", "?", "...", "'", "`", '"', "\u2019", "\u201d", ")")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


# ------------------------------------------------------------------------------ generation


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


# ------------------------------------------------------------------------------ reading data


@dataclass
class Story:
    """One article and its highlights (newline-separated, one highlight per line)."""

    id: str
    article: str
    highlights: str


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


def stories_from_rows(path: str | Path, rows: list[dict[str, Any]], text_column: str = "article",
                      summary_column: str = "highlights") -> list[Story]:
    """Stories from the ``rows`` read from ``path`` (:func:`nnprune.tasks.io.read_table`): the
    document in ``text_column``, the summary in ``summary_column`` (a JSON list of sentences is
    joined by newlines), ``id`` optional (the 1-based row number otherwise)."""
    if not rows:
        raise NNPruneError(f"{path}: no examples (only a header)")
    out: list[Story] = []
    for i, row in enumerate(rows):
        check_columns(path, (text_column, summary_column), list(row), where=f"row {i + 1}")
        article, highlights = row[text_column], row[summary_column]
        if isinstance(highlights, list):  # a JSON list of highlight sentences
            highlights = "\n".join(str(h) for h in highlights)
        for name, value in ((text_column, article), (summary_column, highlights)):
            if not isinstance(value, str):
                raise NNPruneError(f"{path}: row {i + 1}: {name!r} is not a string")
        out.append(Story(str(row.get("id", i + 1)), article, highlights))
    return out


def sentences(text: str) -> list[str]:
    """Sentences of ``text``: split at newlines and after ``.``/``!``/``?`` + whitespace."""
    out: list[str] = []
    for line in text.splitlines():
        out += [s.strip() for s in _SENTENCE_END.split(line) if s.strip()]
    return out


def rouge_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L/Lsum F-measures x 100 of ``predictions`` against ``references``."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise NNPruneError("ROUGE needs the rouge-score package: pip install "
                           "'nnprune[summarization]' (or rouge-score)") from None
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    sums = dict.fromkeys(ROUGE_KEYS, 0.0)
    for pred, ref in zip(predictions, references):
        # rougeLsum reads sentences from newlines; the other scores ignore them.
        scores = scorer.score("\n".join(sentences(ref)), "\n".join(sentences(pred)))
        for key in ROUGE_KEYS:
            sums[key] += scores[key].fmeasure
    n = max(1, len(predictions))
    return {key: 100.0 * value / n for key, value in sums.items()}


def _to_dataset(stories: list[Story]) -> Any:
    import datasets

    return datasets.Dataset.from_dict({"id": [s.id for s in stories],
                                       "article": [s.article for s in stories],
                                       "highlights": [s.highlights for s in stories]})


@contextlib.contextmanager
def _progress_bars(n: int) -> Iterator[None]:
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


def _has_text(batch: dict[str, list[Any]]) -> list[bool]:
    return [bool(a and str(a).strip()) and bool(h and str(h).strip())
            for a, h in zip(batch["article"], batch["highlights"])]


# ------------------------------------------------------------------------------ the task


@dataclass
class SummaryReferences:
    """Gold summaries of one evaluation split, parallel to its features
    (``TaskData.eval_examples[split]``)."""

    ids: list[str]
    highlights: list[str]

    def __len__(self) -> int:
        return len(self.ids)


@TASKS.register("cnn_dailymail")
class CnnDailyMailTask(TaskAdapter):
    """CNN/DailyMail summarization for encoder-decoder models (see the module docstring).

    Features: ``input_ids``, ``attention_mask`` (the article) and ``labels`` (the highlights),
    padded per batch by :class:`transformers.DataCollatorForSeq2Seq` (labels with ``-100``).
    Metrics (one split, ``"validation"``): ``rouge1``, ``rouge2``, ``rougeL``, ``rougeLsum``,
    ``gen_len`` and ``eval_loss``.
    """

    name = "cnn_dailymail"
    main_metric = "rouge2"
    evaluates_by_generation = True
    #: source tokens when the user does not say (BART's 1024 positions)
    default_max_seq_length = 1024
    #: target (highlights) tokens kept for the loss
    max_target_length = 128
    #: without URL lists, every k-th story (sorted by file name) goes to validation
    validation_every = 10
    #: default generation settings (``--task-option key=value`` and the constructor override them)
    generation = GenerationSettings()
    #: text put before every source document when it is tokenized (T5: ``"summarize: "``)
    source_prefix = ""
    #: what a training example needs, in the message when none has it
    pair_description = "an article and highlights"

    def __init__(self, generation: GenerationSettings | None = None) -> None:
        self.generation = generation if generation is not None else type(self).generation
        self.split_info: str = ""
        self._tokenizer: Any = None

    def with_options(self, options: dict[str, str]) -> "CnnDailyMailTask":
        """Generation settings from ``--task-option key=value`` (e.g. ``num_beams=2``)."""
        if not options:
            return self
        return type(self)(apply_assignments(self.generation, options, what="generation setting"))

    # ------------------------------------------------------------------ data

    def load_data(self, tokenizer: Any, data: DataArgs, *, need_train: bool = True) -> TaskData:
        """Load, subsample and tokenize the train split (if ``need_train``) and ``validation``.

        ``max_train_samples`` takes the first N after a shuffle with ``data.seed``;
        ``max_eval_samples`` the first N in order. Training examples with an empty article or
        no highlights are dropped (the hub's train split has a few). ``TaskData.train`` is
        ``None`` when ``need_train`` is false.
        """
        train, evals = self._load_splits(data, need_train=need_train)
        if train is not None:
            with _progress_bars(len(train)):
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

    @classmethod
    def source_length(cls, tokenizer: Any, max_seq_length: int) -> int:
        """``max_seq_length``, capped at the tokenizer's ``model_max_length`` when it has one."""
        limit = getattr(tokenizer, "model_max_length", None)
        if isinstance(limit, int) and 0 < limit < 1_000_000 and limit < max_seq_length:
            logger.warning("%s: sources truncated to %d tokens (the tokenizer's "
                           "model_max_length), not %d", cls.name, limit, max_seq_length)
            return limit
        return max_seq_length

    def _load_splits(self, data: DataArgs, *, need_train: bool) -> tuple[Any, Any]:
        """(train or ``None``, validation) as datasets with ``id``, ``article``, ``highlights``."""
        if not data.uses_local_files:
            return self._load_hub(need_train=need_train)
        train, evals = self._load_stories(data, need_train=need_train)
        return (None if train is None else _to_dataset(train)), _to_dataset(evals)

    def _load_stories(self, data: DataArgs, *, need_train: bool
                      ) -> tuple[list[Story] | None, list[Story]]:
        folder_split: tuple[list[Story], list[Story]] | None = None

        def from_folder() -> tuple[list[Story], list[Story]]:
            nonlocal folder_split
            if folder_split is None:
                folder_split = self._split_folder(data.data_dir, read_train=need_train)
            return folder_split

        train: list[Story] | None = None
        if need_train:
            if data.train_file is not None:
                train = read_rows_file(data.train_file)
            elif data.data_dir is not None:
                train = from_folder()[0]
                if not train:
                    raise NNPruneError(f"{self.name}: no training stories in {data.data_dir} "
                                       f"({self.split_info}); pass --train-file")
            else:
                raise NNPruneError(f"{self.name}: no training data: pass --train-file or "
                                   "--data-dir (a folder of .story files)")
        if data.validation_file is not None:
            evals = read_rows_file(data.validation_file)
        elif data.data_dir is not None:
            evals = from_folder()[1]
            if not evals:
                raise NNPruneError(f"{self.name}: no validation stories in {data.data_dir} "
                                   f"({self.split_info}); pass --validation-file")
        else:
            raise NNPruneError(f"{self.name}: no evaluation data: pass --validation-file or "
                               "--data-dir (a folder of .story files)")
        return train, evals

    def _split_folder(self, folder: Path, *, read_train: bool = True
                      ) -> tuple[list[Story], list[Story]]:
        """(train, validation) stories of a ``.story`` folder (see the module docstring); the
        training stories are only read when ``read_train`` (else ``[]``)."""
        if not folder.is_dir():
            raise NNPruneError(f"--data-dir {folder} is not a folder")
        files = find_story_files(folder)
        if not files:
            raise NNPruneError(f"{self.name}: no .story files in {folder}; pass a folder of "
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
            self.split_info = f"split by {lists}: " + ", ".join(notes)
            train_files, val_files = parts["train"], parts["validation"]
        else:
            k = self.validation_every
            val_files = files[::k] if len(files) > 1 else []
            train_files = [f for i, f in enumerate(files) if i % k != 0]
            self.split_info = (f"no url_lists/all_{{train,val}}.txt in {folder} or its parent: "
                               f"{len(files)} stories sorted by file name, every {k}th "
                               f"(1st, {k + 1}th, ...) to validation ({len(val_files)}), the "
                               f"rest to training ({len(train_files)})")
        logger.info("%s: %s", self.name, self.split_info)
        return ([read_story_file(f) for f in train_files] if read_train else [],
                [read_story_file(f) for f in val_files])

    def _load_hub(self, *, need_train: bool) -> tuple[Any, Any]:
        import datasets

        def load(split: str) -> Any:
            try:
                ds = datasets.load_dataset(HUB_DATASET, HUB_CONFIG, split=split)
            except Exception as e:  # offline, no cache, hub down: fixable by pointing at files
                raise NNPruneError(
                    f"{self.name}: could not load hub dataset {HUB_DATASET}/{HUB_CONFIG} "
                    f"({error_line(e)}); pass --data-dir or --train-file/--validation-file") from e
            check_columns(f"{HUB_DATASET}/{HUB_CONFIG}[{split}]", ("article", "highlights", "id"),
                          list(ds.column_names))
            return ds

        self.split_info = f"hub {HUB_DATASET}/{HUB_CONFIG}"
        return (load("train") if need_train else None), load("validation")

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

        with _progress_bars(len(ds)):
            return ds.map(encode, batched=True, batch_size=1000,
                          remove_columns=ds.column_names, desc="tokenizing")

    # ----------------------------------------------------------------- model

    def build_model(self, model_name_or_path: str, **kwargs: Any) -> torch.nn.Module:
        """``AutoModelForSeq2SeqLM`` (an encoder-decoder with an LM head, e.g. BART)."""
        from transformers import AutoConfig, AutoModelForSeq2SeqLM

        config = AutoConfig.from_pretrained(model_name_or_path)
        if not getattr(config, "is_encoder_decoder", False):
            raise NNPruneError(f"{self.name} needs an encoder-decoder model (e.g. "
                               f"facebook/bart-base); {model_name_or_path} is a "
                               f"{config.model_type!r} model")
        return AutoModelForSeq2SeqLM.from_pretrained(model_name_or_path, **kwargs)

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
    "END_TOKENS",
    "HUB_CONFIG",
    "HUB_DATASET",
    "ROUGE_KEYS",
    "CnnDailyMailTask",
    "GenerationSettings",
    "Story",
    "SummaryReferences",
    "find_story_files",
    "find_url_lists",
    "parse_story",
    "read_rows_file",
    "read_story_file",
    "read_url_list",
    "rouge_scores",
    "sentences",
    "stories_from_rows",
    "url_hash",
]
