"""Token classification (named entities, chunks, parts of speech): ``token-classification``.

Data sources, first match wins (see :meth:`TokenClassificationTask.load_data` and
:mod:`nnprune.tasks.sources`):

1. ``--train-file`` / ``--validation-file``;
2. ``--data-dir``: ``train.<ext>`` for training and the first of ``dev``, ``validation``,
   ``valid``, ``test`` (``.<ext>``) for evaluation, ``<ext>`` one of :data:`DATA_EXTENSIONS`
   (two files for the chosen name are an error);
3. a hub dataset, ``--task-option dataset=NAME`` (with ``dataset_config``, ``train_split``,
   ``validation_split``), loaded with ``datasets.load_dataset(NAME, dataset_config,
   split=...)``; used only when no local source is given, so a run with local files never
   touches the network. Giving both a local source and ``dataset`` is an error.

File formats, by extension:

* CoNLL (``.conll``, ``.txt``, ``.tsv``): one word per line, columns separated by spaces or tabs,
  the word first and its tag in column ``tag_index`` (0-based; negative counts from the end;
  default ``-1``, the last column, where CoNLL-2003 keeps its NER tags). Blank lines end a
  sentence; ``-DOCSTART-`` lines are skipped (and end a sentence too).
* JSON records (``.json``: a list, or ``{"data": [...]}``; ``.jsonl``: one per line), each with a
  list of words and a list of tags of the same length. The columns are ``tokens_column`` /
  ``tags_column`` when set, else the first present of :data:`TOKENS_COLUMNS` /
  :data:`TAGS_COLUMNS`. The same names pick a hub dataset's columns.

Tags are strings, or integer ids when their names are known: a hub dataset's ``ClassLabel``
names, else ``--task-option labels=...`` (names in id order).

Labels (the model's classes, in id order), first match wins: the label names of the checkpoint's
token-classification head (:meth:`~TokenClassificationTask.check_checkpoint` or
:meth:`~TokenClassificationTask.build_model`; generic ``LABEL_<i>`` names do not count);
``labels=``; a hub dataset's ``ClassLabel`` names; else the tags of the training and evaluation
data, sorted, with ``O`` first. A tag of the data outside the label set is a one-line error naming
both sets.

Features: the words are tokenized with ``is_split_into_words=True`` by a *fast* tokenizer (its
``word_ids`` map sub-tokens to words), truncated to ``--max-seq-length`` tokens. A word's label
goes to its first sub-token; its other sub-tokens get ``-100`` (ignored by the loss and the
distillation), or with ``label_all_tokens=true`` the word's label too (a ``B-X`` word's inner
sub-tokens get ``I-X`` when that label exists, so sub-token sequences stay valid BIO). Special
tokens and padding are ``-100``.

Evaluation maps each word to the prediction at its first sub-token; a word without one (cut off by
truncation, or a character the tokenizer drops entirely) counts as predicted ``O``, so truncation
lowers recall instead of silently shrinking the evaluation set. Metrics
(:mod:`nnprune.tasks.seqeval_metrics`): entity-level ``precision``, ``recall`` and ``f1`` as
``seqeval`` computes them by default (micro-averaged over entity types), word ``accuracy``,
``f1_<TYPE>`` per entity type, and ``eval_loss`` (over the labelled sub-tokens).

Task options (``--task-option key=value``, :class:`TokenClassificationOptions`): ``tokens_column``,
``tags_column``, ``tag_index`` (-1), ``labels`` (comma-separated), ``label_all_tokens`` (false),
``dataset``, ``dataset_config``, ``train_split`` (``train``), ``validation_split``
(``validation``). Any other key is refused.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np
import torch

from nnprune.errors import NNPruneError
from nnprune.settings import apply_assignments
from nnprune.tasks.base import (TASKS, DataArgs, TaskAdapter, TaskData, add_label_names,
                                auto_config, auto_model, model_input_columns, named_labels,
                                predict_split)
from nnprune.tasks.io import column_values, error_line, places, read_table, read_text, shown
from nnprune.tasks.sources import HubDatasetOptions, local_split_paths, pick_column
from nnprune.tasks.seqeval_metrics import entity_scores, non_iob_tags

logger = logging.getLogger(__name__)

CONLL_EXTENSIONS: tuple[str, ...] = (".conll", ".txt", ".tsv")
JSON_EXTENSIONS: tuple[str, ...] = (".jsonl", ".json")
#: data file extensions, in the order a ``--data-dir`` is searched
DATA_EXTENSIONS: tuple[str, ...] = CONLL_EXTENSIONS + JSON_EXTENSIONS
TRAIN_STEMS: tuple[str, ...] = ("train",)
#: evaluation file names (without extension) in a ``--data-dir``, the first found is used
EVAL_STEMS: tuple[str, ...] = ("dev", "validation", "valid", "test")
#: default column names of the words and of the tags (JSON records and hub datasets)
TOKENS_COLUMNS: tuple[str, ...] = ("tokens", "words")
TAGS_COLUMNS: tuple[str, ...] = ("ner_tags", "tags", "labels")
OUTSIDE = "O"
DOCSTART = "-DOCSTART-"
IGNORE = -100  # the label id the loss (and the distillation mask) ignores

_FIELDS = re.compile(r"[ \t]+")


# ------------------------------------------------------------------------------ options


@dataclass(frozen=True)
class TokenClassificationOptions(HubDatasetOptions):
    """``--task-option`` settings of ``token-classification`` (see the module docstring); the
    hub source settings are :class:`~nnprune.tasks.sources.HubDatasetOptions`'."""

    task_name: ClassVar[str] = "token-classification"

    tokens_column: Optional[str] = None
    tags_column: Optional[str] = None
    tag_index: int = -1
    labels: Optional[str] = None  # comma-separated label names, in id order
    label_all_tokens: bool = False

    def __post_init__(self) -> None:
        if self.tag_index == 0:
            raise NNPruneError("token-classification tag_index 0 is the word column; the tag "
                               "is in another one (default -1: the last)")
        for key in ("tokens_column", "tags_column"):
            value = getattr(self, key)
            if value is not None and not str(value).strip():
                raise NNPruneError(f"token-classification {key} must not be empty")
        super().__post_init__()
        self.label_list  # noqa: B018  (validates labels=)

    @property
    def label_list(self) -> Optional[list[str]]:
        """``labels=`` as a list of names, or ``None`` when not set."""
        if self.labels is None:
            return None
        names = [n.strip() for n in str(self.labels).split(",")]
        if not any(names):
            return None
        if not all(names):
            raise NNPruneError(f"token-classification labels has an empty name: {self.labels!r}")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise NNPruneError(f"token-classification labels repeats {', '.join(dupes)}")
        return names


# ------------------------------------------------------------------------------ examples


@dataclass
class TaggedSentences:
    """The words and tags of one split: ``words[i][j]`` is word ``j`` of sentence ``i``,
    ``tags[i][j]`` its tag; ``source`` names the file or hub split in messages."""

    words: list[list[str]]
    tags: list[list[str]]
    source: str = ""

    def __len__(self) -> int:
        return len(self.words)

    def take(self, idx: Any) -> TaggedSentences:
        idx = list(idx)
        return TaggedSentences([self.words[i] for i in idx], [self.tags[i] for i in idx],
                               self.source)

    def tag_set(self) -> set[str]:
        return {t for sent in self.tags for t in sent}


@dataclass
class EvalSentences:
    """What evaluation needs beside the features of one split (``TaskData.eval_examples``).

    ``tags[i]``: the gold tag of every word of sentence ``i``; ``first_token[i][j]``: the
    position of word ``j``'s first sub-token in feature ``i``, ``-1`` when the word has none
    (cut by truncation, or dropped by the tokenizer): it then counts as predicted ``O``.
    """

    tags: list[list[str]]
    first_token: list[list[int]]

    def __len__(self) -> int:
        return len(self.tags)

    @property
    def num_words(self) -> int:
        return sum(len(t) for t in self.tags)

    @property
    def num_unseen(self) -> int:
        """Words without a sub-token in the features (predicted ``O``)."""
        return sum(p < 0 for row in self.first_token for p in row)


def _fmt(names: Any) -> str:
    return "{" + ", ".join(shown(n) for n in sorted(names)) + "}"


def read_conll(path: str | Path, tag_index: int = -1) -> TaggedSentences:
    """Sentences of a CoNLL-style file (see the module docstring); raises :class:`NNPruneError`
    naming the file and line of anything malformed."""
    path = Path(path)
    words: list[list[str]] = []
    tags: list[list[str]] = []
    cur_w: list[str] = []
    cur_t: list[str] = []

    def flush() -> None:
        if cur_w:
            words.append(list(cur_w))
            tags.append(list(cur_t))
            cur_w.clear()
            cur_t.clear()

    # split("\n"), not splitlines(): the latter also breaks inside a word at U+2028, U+0085...
    for lineno, line in enumerate(read_text(path).split("\n"), start=1):
        line = line.strip(" \t\r")
        if not line:
            flush()
            continue
        fields = _FIELDS.split(line)
        if fields[0] == DOCSTART:
            flush()
            continue
        if len(fields) < 2:
            raise NNPruneError(f"{path}: line {lineno}: expected a word and its tag, got "
                               f"{shown(repr(line))}")
        idx = tag_index if tag_index >= 0 else len(fields) + tag_index
        if not 1 <= idx < len(fields):
            raise NNPruneError(f"{path}: line {lineno} has {len(fields)} columns; tag_index "
                               f"{tag_index} is not a tag column")
        cur_w.append(fields[0])
        cur_t.append(fields[idx])
    flush()
    if not words:
        raise NNPruneError(f"{path}: no sentences")
    return TaggedSentences(words, tags, str(path))


def _tag_name(raw: Any, names: Optional[list[str]], where: str) -> str:
    if isinstance(raw, str):
        if not raw:
            raise NNPruneError(f"{where}: empty tag")
        return raw
    if isinstance(raw, (int, np.integer)) and not isinstance(raw, bool):
        if names is None:
            raise NNPruneError(f"{where}: integer tag {raw} without names: pass --task-option "
                               "labels=NAME0,NAME1,... (the names in id order)")
        if not 0 <= int(raw) < len(names):
            raise NNPruneError(f"{where}: tag id {raw} is not one of the {len(names)} names "
                               f"{', '.join(names)}")
        return names[int(raw)]
    raise NNPruneError(f"{where}: a tag must be a string or an integer id, got {raw!r}")


def make_sentences(source: str, words: list[Any], tags: list[Any],
                   names: Optional[list[str]] = None, rows: Optional[list[str]] = None
                   ) -> TaggedSentences:
    """Validated sentences from parallel per-row lists of words and raw tags (strings, or ids
    named by ``names``); errors name row ``i`` by ``rows[i]`` (its line in a file), else
    1-based; empty rows are skipped."""
    out_w: list[list[str]] = []
    out_t: list[list[str]] = []
    for i, (w, t) in enumerate(zip(words, tags)):
        where = f"{source}: {rows[i] if rows is not None else f'row {i + 1}'}"
        if not isinstance(w, (list, tuple)) or not isinstance(t, (list, tuple)):
            raise NNPruneError(f"{where}: words and tags must be lists")
        if len(w) != len(t):
            raise NNPruneError(f"{where}: {len(w)} words but {len(t)} tags")
        if not w:
            continue
        if not all(isinstance(x, str) for x in w):
            raise NNPruneError(f"{where}: every word must be a string")
        out_w.append(list(w))
        out_t.append([_tag_name(x, names, where) for x in t])
    if not out_w:
        raise NNPruneError(f"{source}: no sentences")
    return TaggedSentences(out_w, out_t, source)


def _relabel(ds: Any, mapping: list[int]) -> Any:
    """``ds`` with every label id ``i >= 0`` replaced by ``mapping[i]``."""
    if ds is None:
        return None
    new = [[mapping[x] if x >= 0 else x for x in row] for row in ds["labels"][:]]
    return ds.remove_columns("labels").add_column("labels", new)


# ------------------------------------------------------------------------------ the task


@TASKS.register("token-classification")
class TokenClassificationTask(TaskAdapter):
    """Token classification: NER and the like (see the module docstring).

    Features: ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the tokenizer makes
    them), each a variable-length list per sentence, plus ``labels`` (a label id per sub-token,
    ``-100`` where ignored); :class:`transformers.DataCollatorForTokenClassification` pads them to
    ``(batch, seq)``. One evaluation split, ``"validation"``.

    :attr:`labels` holds the label names in id order once known (after :meth:`check_checkpoint`
    of a checkpoint that names them, :meth:`load_data` or :meth:`build_model`).
    """

    name = "token-classification"
    main_metric = "f1"
    default_max_seq_length = 128
    head_suffix = "ForTokenClassification"

    def __init__(self, options: Optional[TokenClassificationOptions] = None) -> None:
        self.options = options if options is not None else TokenClassificationOptions()
        self.labels: Optional[list[str]] = None
        self._checkpoint_labels: Optional[tuple[list[str], str]] = None  # (names, where)
        self._checkpoint_size: Optional[tuple[int, str]] = None  # unnamed head: (n, where)
        self._class_names: Optional[list[str]] = None  # a hub dataset's ClassLabel names
        self._data: Optional[TaskData] = None  # the last load_data's, relabelled if needed
        self._data_tags: set[str] = set()
        self._predictions: dict[str, list[list[str]]] = {}

    def with_options(self, options: dict[str, str]) -> "TokenClassificationTask":
        """This task with ``--task-option key=value`` settings (unknown keys refused)."""
        if not options:
            return self
        return type(self)(apply_assignments(self.options, options,
                                            what="token-classification option"))

    # ------------------------------------------------------------------ data

    def load_data(self, tokenizer: Any, data: DataArgs, *, need_train: bool = True) -> TaskData:
        """Load, label, subsample and tokenize the train split (if ``need_train``) and the
        evaluation split.

        The label set is fixed from all the data (before subsampling), so ``max_train_samples``
        never changes the model's classes. ``max_train_samples`` takes the first N sentences
        after a shuffle with ``data.seed``; ``max_eval_samples`` the first N in file order.
        Training sentences left without any labelled sub-token are dropped (their loss would be
        NaN). ``TaskData.train`` is ``None`` when ``need_train`` is false.
        """
        self._check_tokenizer(tokenizer)
        train, evals = self._load_sentences(data, need_train=need_train)
        self._data_tags = evals.tag_set() | (train.tag_set() if train is not None else set())
        self.labels = self._resolve_labels(self._data_tags, need_train=need_train)
        if train is not None and data.max_train_samples is not None \
                and data.max_train_samples < len(train):
            order = np.random.default_rng(data.seed).permutation(len(train))
            train = train.take(order[: data.max_train_samples].tolist())
        if data.max_eval_samples is not None and data.max_eval_samples < len(evals):
            evals = evals.take(range(data.max_eval_samples))

        from transformers import DataCollatorForTokenClassification

        train_ds = None
        if train is not None:
            train_ds, _ = self._features(tokenizer, train, data.max_seq_length, training=True)
        eval_ds, eval_info = self._features(tokenizer, evals, data.max_seq_length, training=False)
        if eval_info.num_unseen:
            logger.warning("%s: %d of %d evaluation words have no sub-token within "
                           "--max-seq-length %d (or none at all) and count as predicted %s",
                           self.name, eval_info.num_unseen, eval_info.num_words,
                           data.max_seq_length, OUTSIDE)
        self._data = TaskData(
            train=train_ds, eval={"validation": eval_ds}, eval_examples={"validation": eval_info},
            data_collator=DataCollatorForTokenClassification(tokenizer,
                                                             label_pad_token_id=IGNORE))
        return self._data

    def _check_tokenizer(self, tokenizer: Any) -> None:
        if not getattr(tokenizer, "is_fast", False):
            where = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
            raise NNPruneError(f"{self.name} needs a fast tokenizer (its word_ids map sub-tokens "
                               f"to words); {where} loads a slow {type(tokenizer).__name__}")

    def _load_sentences(self, data: DataArgs, *, need_train: bool
                        ) -> tuple[Optional[TaggedSentences], TaggedSentences]:
        if self.options.use_hub(data):
            return self.options.load_splits(self._from_hub_split, need_train=need_train)
        train_path, eval_path = local_split_paths(
            self.name, data, need_train=need_train, train_stems=TRAIN_STEMS,
            eval_stems=EVAL_STEMS, exts=DATA_EXTENSIONS)
        train = self.read_file(train_path) if train_path is not None else None
        logger.info("%s: evaluating on %s", self.name, eval_path)
        return train, self.read_file(eval_path)

    def read_file(self, path: str | Path) -> TaggedSentences:
        """The sentences of a CoNLL or JSON file (by extension; see the module docstring)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in CONLL_EXTENSIONS:
            return read_conll(path, self.options.tag_index)
        if suffix not in JSON_EXTENSIONS:
            raise NNPruneError(f"{path}: unsupported file type {suffix or '(none)'!r} for "
                               f"{self.name}; expected one of {', '.join(DATA_EXTENSIONS)}")
        header, rows = read_table(path)
        opts = self.options
        col_w = pick_column(path, header, opts.tokens_column, TOKENS_COLUMNS, "tokens_column")
        col_t = pick_column(path, header, opts.tags_column, TAGS_COLUMNS, "tags_column")
        words, tags = column_values(path, rows, (col_w, col_t))
        return make_sentences(str(path), words, tags, opts.label_list, places(rows))

    def _from_hub_split(self, ds: Any, where: str) -> TaggedSentences:
        import datasets

        opts = self.options
        found = list(ds.column_names)
        col_w = pick_column(where, found, opts.tokens_column, TOKENS_COLUMNS, "tokens_column")
        col_t = pick_column(where, found, opts.tags_column, TAGS_COLUMNS, "tags_column")
        feature = ds.features.get(col_t)
        inner = feature[0] if isinstance(feature, list) and feature else \
            getattr(feature, "feature", None)
        names = opts.label_list
        if isinstance(inner, datasets.ClassLabel):
            names = list(inner.names)  # the ids mean what the dataset says
            self._class_names = names
        # [:] materialises a list; a datasets Column reads Arrow once per indexed item
        return make_sentences(where, ds[col_w][:], ds[col_t][:], names)

    def _resolve_labels(self, tags: set[str], *, need_train: bool) -> list[str]:
        """The label names in id order (see the module docstring), checked against ``tags``."""
        opt = self.options.label_list
        if self._checkpoint_labels is not None:
            labels, where = self._checkpoint_labels
            what = f"checkpoint {where}"
        elif opt is not None:
            labels, what = opt, "--task-option labels"
        elif self._class_names is not None:
            labels, what = self._class_names, "the dataset's ClassLabel"
        else:
            labels = sorted(tags, key=lambda t: (t != OUTSIDE, t))
            what = "the data"
        unknown = tags - set(labels)
        if unknown:
            raise NNPruneError(f"{self.name}: the data's tags {_fmt(tags)} are not all labels of "
                               f"{what} {_fmt(labels)}: {_fmt(unknown)} unknown")
        if self._checkpoint_size is not None and self._checkpoint_labels is None:
            n, where = self._checkpoint_size
            if n != len(labels):
                raise NNPruneError(f"checkpoint {where} has a token-classification head with {n} "
                                   f"unnamed labels but {what} has {len(labels)} "
                                   f"{_fmt(labels)}; pass --task-option labels=... in the head's "
                                   "order")
            if opt is None:
                logger.warning("%s: checkpoint %s does not name its labels; assuming the order %s",
                               self.name, where, ", ".join(labels))
        odd = non_iob_tags(labels)
        if odd:
            logger.warning("%s: tags %s are not IOB tags (O, B-X, I-X, ...); entity scores read "
                           "them as seqeval does, word accuracy is the meaningful metric",
                           self.name, ", ".join(odd[:10]))
        logger.info("%s: %d labels (%s): %s", self.name, len(labels), what, ", ".join(labels))
        if not need_train and what == "the data":
            logger.warning("%s: label order taken from the evaluation data; a checkpoint trained "
                           "with other labels needs --task-option labels=...", self.name)
        return list(labels)

    def _features(self, tokenizer: Any, sents: TaggedSentences, max_len: int, *,
                  training: bool) -> tuple[Any, EvalSentences]:
        """Tokenized features of ``sents`` and their word alignment (see the class docstring)."""
        import datasets

        try:
            enc = tokenizer(sents.words, is_split_into_words=True, truncation=True,
                            max_length=max_len)
        except (ValueError, TypeError) as e:
            raise NNPruneError(f"{self.name}: the tokenizer refused pre-split words "
                               f"({error_line(e)}); a "
                               "byte-level BPE tokenizer (RoBERTa, GPT-2) needs "
                               "add_prefix_space=True") from e
        assert self.labels is not None
        label_id = {t: i for i, t in enumerate(self.labels)}
        # the label of a word's inner sub-tokens with label_all_tokens: B-X -> I-X when it exists
        inner = [label_id.get("I-" + t[2:], i) if t.startswith("B-") else i
                 for i, t in enumerate(self.labels)]
        all_tokens = self.options.label_all_tokens
        labels: list[list[int]] = []
        first_token: list[list[int]] = []
        for i, tags in enumerate(sents.tags):
            ids = [label_id[t] for t in tags]
            row: list[int] = []
            first = [-1] * len(tags)
            prev = None
            for pos, w in enumerate(enc.word_ids(i)):
                if w is None:
                    row.append(IGNORE)
                elif w != prev:
                    row.append(ids[w])
                    first[w] = pos
                else:
                    row.append(inner[ids[w]] if all_tokens else IGNORE)
                prev = w
            labels.append(row)
            first_token.append(first)
        columns = model_input_columns(tokenizer, enc)
        columns["labels"] = labels
        keep = list(range(len(labels)))
        if training:
            keep = [i for i, row in enumerate(labels) if any(x != IGNORE for x in row)]
            if len(keep) < len(labels):
                logger.warning("%s: %d training sentences have no labelled sub-token and are "
                               "dropped", self.name, len(labels) - len(keep))
            if not keep:
                raise NNPruneError(f"{sents.source}: no training sentence has a labelled "
                                   "sub-token")
            columns = {k: [v[i] for i in keep] for k, v in columns.items()}
        return datasets.Dataset.from_dict(columns), EvalSentences(
            [sents.tags[i] for i in keep], [first_token[i] for i in keep])

    # ----------------------------------------------------------------- model

    def check_checkpoint(self, config: dict[str, Any], where: str) -> None:
        """Refuse a checkpoint with another head; remember the label names of a
        token-classification head (they fix the label ids), or its size when it has no names.
        A label set that does not hold the data's tags, or differs from ``labels=``, is a
        one-line error naming both sets."""
        super().check_checkpoint(config, where)
        archs = [str(a) for a in config.get("architectures") or []]
        if not any(a.endswith(self.head_suffix) for a in archs):
            return
        names = named_labels(config.get("id2label"))
        if names is not None:
            self._adopt_checkpoint_labels(list(names), where)
        else:
            n = config.get("num_labels") or len(config.get("id2label") or {}) or None
            if n is not None:
                self._checkpoint_size = (int(n), where)

    def _adopt_checkpoint_labels(self, names: list[str], where: str) -> None:
        """Make a checkpoint's label names the label ids. Data loaded before (the workflows
        load the data, then build the model) is relabelled in place in its ``TaskData``."""
        opt = self.options.label_list
        if opt is not None and set(opt) != set(names):
            raise NNPruneError(f"checkpoint {where} has labels {_fmt(names)} but --task-option "
                               f"labels gives {_fmt(opt)}")
        self._checkpoint_labels = (list(names), where)
        if self.labels is None or self.labels == names:
            self.labels = list(names)
            return
        unknown = self._data_tags - set(names)
        if unknown:
            raise NNPruneError(f"checkpoint {where} has labels {_fmt(names)} but the data's tags "
                               f"are {_fmt(self._data_tags)}: {_fmt(unknown)} unknown to it")
        # ids of labels outside the checkpoint occur in no feature (all data tags are in it)
        mapping = [names.index(t) if t in names else IGNORE for t in self.labels]
        if self._data is not None:
            self._data.train = _relabel(self._data.train, mapping)
            self._data.eval = {k: _relabel(v, mapping) for k, v in self._data.eval.items()}
        logger.info("%s: label ids follow checkpoint %s: %s", self.name, where, ", ".join(names))
        self.labels = list(names)

    def build_model(self, model_name_or_path: str, **kwargs: Any) -> torch.nn.Module:
        """``AutoModelForTokenClassification`` with one class per label, ``id2label`` named.

        A base checkpoint (or one with another task's head) gets a freshly initialised
        classifier. A token-classification checkpoint keeps its head: when it names its labels,
        they become the label ids (the loaded data is relabelled; a data tag it does not know is
        an error naming both sets); when it does not, its size must match. ``kwargs`` go to
        ``from_pretrained`` (``ignore_mismatched_sizes=True`` replaces a head of another size).
        """
        from transformers import AutoModelForTokenClassification

        config = auto_config(model_name_or_path)
        archs = [str(a) for a in getattr(config, "architectures", None) or []]
        has_head = any(a.endswith(self.head_suffix) for a in archs)
        replace_head = bool(kwargs.get("ignore_mismatched_sizes"))
        if has_head and not replace_head:
            names = named_labels(getattr(config, "id2label", None))
            if names is not None:
                self._adopt_checkpoint_labels(list(names), str(model_name_or_path))
        if self.labels is None:
            self.labels = self.options.label_list
        if self.labels is None:
            raise NNPruneError(f"{self.name}: the label set is unknown: load the data first or "
                               "pass --task-option labels=...")
        n = len(self.labels)
        if has_head and not replace_head and int(config.num_labels) != n:
            raise NNPruneError(f"{model_name_or_path} has a token-classification head with "
                               f"{config.num_labels} labels but the task has {n} "
                               f"{_fmt(self.labels)}; start from a base checkpoint or load with "
                               "ignore_mismatched_sizes=True to replace the head")
        if archs and not has_head:
            # another task's head may share the classifier's name with another shape
            kwargs.setdefault("ignore_mismatched_sizes", True)
        add_label_names(kwargs, self.labels)
        return auto_model(AutoModelForTokenClassification, model_name_or_path, **kwargs)

    def distillation_logits(self, outputs: Any) -> tuple[torch.Tensor, ...]:
        """Per-token logits ``(batch, seq, num_labels)``."""
        return (outputs.logits,)

    def distillation_mask(self, inputs: dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        """Labelled sub-tokens ``(batch, seq)``: ``labels != -100`` (no special tokens, no
        padding, and no inner sub-tokens unless ``label_all_tokens``)."""
        labels = inputs.get("labels")
        return None if labels is None else labels != IGNORE

    # ---------------------------------------------------------------- metric

    def evaluate(self, trainer: Any, data: TaskData) -> dict[str, float]:
        """Predict the evaluation split with ``trainer.predict`` and score it per word (see the
        module docstring). Keys: ``precision``, ``recall``, ``f1``, ``accuracy``, ``f1_<TYPE>``
        and ``eval_loss``."""
        self._check_model_labels(getattr(trainer, "model", None))
        results: dict[str, float] = {}
        self._predictions = {}
        for split, ds in data.eval.items():
            info = data.eval_examples.get(split)
            if not isinstance(info, EvalSentences):
                raise TypeError(f"TaskData.eval_examples[{split!r}] must be EvalSentences")
            logits, _, loss = predict_split(trainer, ds, split)
            preds = self.word_predictions(logits, info)
            self._predictions[split] = preds
            metrics = entity_scores(info.tags, preds).metrics()
            if loss is not None:
                metrics["eval_loss"] = loss
            several = len(data.eval) > 1
            results.update({f"{split}_{k}" if several else k: v for k, v in metrics.items()})
        return results

    def word_predictions(self, logits: np.ndarray, info: EvalSentences) -> list[list[str]]:
        """The predicted tag of every word: the arg-max label of ``logits``
        ``(n, seq, num_labels)`` at the word's first sub-token; ``O`` for a word without one."""
        assert self.labels is not None
        if logits.ndim != 3 or logits.shape[0] != len(info) or logits.shape[-1] != len(self.labels):
            raise NNPruneError(f"{self.name}: predictions of shape {tuple(logits.shape)} do not "
                               f"fit {len(info)} sentences and {len(self.labels)} labels")
        ids = logits.argmax(axis=-1)
        seq = ids.shape[1]
        labels = self.labels
        return [[labels[ids[i, p]] if 0 <= p < seq else OUTSIDE for p in firsts]
                for i, firsts in enumerate(info.first_token)]

    def _check_model_labels(self, model: Any) -> None:
        # A model whose head names other labels (or orders them otherwise) would be scored
        # against the wrong names without an error.
        names = named_labels(getattr(getattr(model, "config", None), "id2label", None))
        if names is not None and self.labels is not None and list(names) != self.labels:
            raise NNPruneError(f"the model's labels ({', '.join(names)}) are not the task's "
                               f"({', '.join(self.labels)}) in the same order")

    def prediction_files(self) -> dict[str, Any]:
        """``predictions.json``: ``{split: [[predicted tag of each word] of each sentence]}``,
        sentences in file order (after ``max_eval_samples``)."""
        return {"predictions.json": self._predictions} if self._predictions else {}


__all__ = [
    "CONLL_EXTENSIONS",
    "DATA_EXTENSIONS",
    "EVAL_STEMS",
    "JSON_EXTENSIONS",
    "TAGS_COLUMNS",
    "TOKENS_COLUMNS",
    "TRAIN_STEMS",
    "EvalSentences",
    "TaggedSentences",
    "TokenClassificationOptions",
    "TokenClassificationTask",
    "make_sentences",
    "read_conll",
]
