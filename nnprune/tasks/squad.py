"""Extractive question answering: ``squad`` (SQuAD v1.1) and ``squad_v2`` (SQuAD v2.0).

Data sources, first match wins (see :meth:`SquadTask.load_data`):

1. ``--train-file`` / ``--validation-file``: an official SQuAD JSON file
   (``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question", "answers":
   [{"text", "answer_start"}], "is_impossible"?}]}]}]}``), or one question per row as the hub
   writes it (``.jsonl``, or a JSON list / ``{"data": [...]}`` of rows with ``id``, ``question``,
   ``context``, ``answers: {"text": [...], "answer_start": [...]}``, optional ``title``);
2. ``--data-dir``: a folder with ``train-v1.1.json`` and ``dev-v1.1.json`` (``-v2.0`` for
   ``squad_v2``), or ``train.json`` and ``dev.json`` / ``validation.json`` (``.jsonl`` too); a
   folder holding a ``v1.1`` / ``v2.0`` subfolder with those files also works;
3. the hub datasets ``rajpurkar/squad`` / ``rajpurkar/squad_v2``, used only when no local source
   is given, so a run with local files never touches the network.

Preprocessing is the Hugging Face ``run_qa.py`` recipe: question first (context first for
tokenizers padding on the left), ``truncation="only_second"``, a long context split into several
overlapping features (``doc_stride`` tokens shared between neighbours), offsets kept for the
evaluation features. Training features carry ``start_positions``/``end_positions``: the tokens of
the first gold answer, or the CLS token when the question is unanswerable or the answer is not
inside that feature's window.

Post-processing: for every feature, the ``n_best_size`` (20) largest start and end logits;
spans of context tokens with ``start <= end`` and at most ``max_answer_length`` (30) tokens are
candidates, scored ``start_logit + end_logit``; the best over an example's features is mapped back
to the context text through the offsets. v2.0 also takes the null score (CLS start + end logit,
the minimum over the example's features) and answers ``""`` when ``null - best non-null`` is
above ``null_score_diff_threshold`` (0.0). Metrics: :mod:`nnprune.tasks.squad_metrics`.

The generic ``question-answering`` task (:mod:`nnprune.tasks.question_answering`) is these
adapters configured by ``--task-option`` settings, for any data in the SQuAD format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnprune.errors import NNPruneError
from nnprune.tasks.base import TASKS, DataArgs, TaskAdapter, TaskData, model_input_columns
from nnprune.tasks.io import error_line, read_text
from nnprune.tasks.sources import missing_data_message
from nnprune.tasks.squad_metrics import squad_v1_evaluate, squad_v2_evaluate

HUB_DATASETS = {"squad": "rajpurkar/squad", "squad_v2": "rajpurkar/squad_v2"}
SQUAD_EXTENSIONS = (".json", ".jsonl")


@dataclass
class SquadExample:
    """One question on one paragraph; ``answers`` empty means unanswerable (v2.0)."""

    id: str
    title: str
    context: str
    question: str
    answers: list[str]
    answer_starts: list[int]

    @property
    def has_answer(self) -> bool:
        return bool(self.answers)


@dataclass(frozen=True)
class SquadColumns:
    """Names of the fields of a one-question row (files of rows, hub datasets).

    The defaults are the hub's SQuAD columns; the official layout (articles, paragraphs, qas)
    always uses its own names. ``title`` is optional in a row.
    """

    id: str = "id"
    question: str = "question"
    context: str = "context"
    answers: str = "answers"
    title: str = "title"


#: the hub's SQuAD column names
DEFAULT_COLUMNS = SquadColumns()


@dataclass
class SquadFeatures:
    """What post-processing needs about the evaluation features, parallel to their rows.

    ``offsets[f]`` is ``(n_tokens, 2)`` character spans in the context of feature ``f``'s tokens,
    ``-1`` for tokens that are not context (question, special tokens).
    """

    example_index: np.ndarray  # (n_features,) index into the examples
    offsets: list[np.ndarray]
    cls_index: np.ndarray  # (n_features,)

    def __len__(self) -> int:
        return len(self.example_index)


@dataclass
class SquadEvalSet:
    """Raw evaluation examples and their features' metadata (``TaskData.eval_examples[split]``)."""

    examples: list[SquadExample]
    features: SquadFeatures

    def gold(self) -> dict[str, list[str]]:
        return {ex.id: list(ex.answers) for ex in self.examples}


# ------------------------------------------------------------------------------ reading files


def read_squad_file(path: str | Path, columns: SquadColumns = DEFAULT_COLUMNS
                    ) -> list[SquadExample]:
    """Read an official SQuAD JSON file or a file of one-question rows (see module docstring).

    ``columns`` names the fields of a row (the official layout has fixed names). Raises
    :class:`NNPruneError` with a one-line message naming the file and the problem.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SQUAD_EXTENSIONS:
        raise NNPruneError(f"{path}: unsupported file type {suffix or '(none)'!r} for SQuAD; "
                           "expected .json (official SQuAD layout) or .jsonl")
    text = read_text(path)
    if not text.strip():
        raise NNPruneError(f"{path}: file is empty")
    if suffix == ".jsonl":
        rows: list[tuple[str, Any]] = []
        for lineno, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    rows.append((f"line {lineno}", json.loads(line)))
                except json.JSONDecodeError as e:
                    raise NNPruneError(f"{path}: invalid JSON at line {lineno} column {e.colno}: "
                                       f"{e.msg}") from e
        return _finish(path, [_row_example(path, where, row, columns) for where, row in rows])
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise NNPruneError(f"{path}: not valid JSON (line {e.lineno} column {e.colno}: "
                           f"{e.msg})") from e
    if isinstance(obj, dict):
        if "data" not in obj:
            keys = ", ".join(map(str, obj)) or "(none)"
            raise NNPruneError(f"{path}: not a SQuAD file: no 'data' list; found keys: {keys}")
        data = obj["data"]
    else:
        data = obj
    if not isinstance(data, list):
        raise NNPruneError(f"{path}: 'data' is a JSON {_json_type(data)}, expected a list of "
                           "articles")
    if not data:
        raise NNPruneError(f"{path}: 'data' is empty: no articles")
    first = data[0]
    if isinstance(first, dict) and "paragraphs" in first:
        examples: list[SquadExample] = []
        for i, article in enumerate(data):
            examples.extend(_article_examples(path, f"data[{i}]", article))
        return _finish(path, examples)
    if isinstance(first, dict) and columns.context in first:
        return _finish(path, [_row_example(path, f"data[{i}]", row, columns)
                              for i, row in enumerate(data)])
    raise NNPruneError(f"{path}: data[0] has neither 'paragraphs' (official SQuAD layout) nor "
                       f"{columns.context!r} (one question per row)")


def read_squad_rows(source: str, rows: list[dict[str, Any]],
                    columns: SquadColumns = DEFAULT_COLUMNS) -> list[SquadExample]:
    """Examples of one-question ``rows`` (e.g. a hub split's), checked like a file's rows;
    errors name ``source`` and the 1-based row."""
    return _finish(source, [_row_example(source, f"row {i + 1}", row, columns)
                            for i, row in enumerate(rows)])


def _json_type(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"
            }.get(type(value), "number")


def _need(path: str | Path, where: str, obj: Any, key: str, kind: type | tuple[type, ...],
          kind_name: str) -> Any:
    if not isinstance(obj, dict):
        raise NNPruneError(f"{path}: {where} is a JSON {_json_type(obj)}, expected an object")
    if key not in obj:
        raise NNPruneError(f"{path}: {where} has no {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise NNPruneError(f"{path}: {where}: {key!r} is a JSON {_json_type(value)}, "
                           f"expected {kind_name}")
    return value


def _article_examples(path: Path, where: str, article: Any) -> list[SquadExample]:
    paragraphs = _need(path, where, article, "paragraphs", list, "a list")
    title = article.get("title", "")
    title = title if isinstance(title, str) else str(title)
    out: list[SquadExample] = []
    for j, par in enumerate(paragraphs):
        pwhere = f"{where}.paragraphs[{j}]"
        context = _need(path, pwhere, par, "context", str, "a string")
        if not context.strip():
            raise NNPruneError(f"{path}: {pwhere} has an empty 'context'")
        qas = _need(path, pwhere, par, "qas", list, "a list")
        for k, qa in enumerate(qas):
            qwhere = f"{pwhere}.qas[{k}]"
            qid = _question_id(path, qwhere, qa)
            qwhere = f"{qwhere} (id {qid})"
            question = _question(path, qwhere, qa)
            raw = _need(path, qwhere, qa, "answers", list, "a list")
            answers: list[tuple[Any, Any]] = []
            for a, ans in enumerate(raw):
                awhere = f"{qwhere}.answers[{a}]"
                if not isinstance(ans, dict):
                    raise NNPruneError(f"{path}: {awhere} is a JSON {_json_type(ans)}, "
                                       "expected an object")
                for key in ("text", "answer_start"):
                    if key not in ans:
                        raise NNPruneError(f"{path}: {awhere} has no {key!r}")
                answers.append((ans["text"], ans["answer_start"]))
            out.append(_example(path, qwhere, qid, title, context, question, answers))
    return out


def _row_example(path: str | Path, where: str, row: Any,
                 columns: SquadColumns = DEFAULT_COLUMNS) -> SquadExample:
    qid = _question_id(path, where, row, columns.id)
    where = f"{where} (id {qid})"
    question = _question(path, where, row, columns.question)
    context = _need(path, where, row, columns.context, str, "a string")
    if not context.strip():
        raise NNPruneError(f"{path}: {where} has an empty {columns.context!r}")
    raw = _need(path, where, row, columns.answers, (dict, list), "an object or a list")
    if isinstance(raw, dict):  # the hub layout: {"text": [...], "answer_start": [...]}
        texts, starts = raw.get("text"), raw.get("answer_start")
        if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
            raise NNPruneError(f"{path}: {where}: {columns.answers!r} must hold lists 'text' and "
                               "'answer_start' of the same length")
        answers = list(zip(texts, starts))
    else:
        answers = []
        for a, ans in enumerate(raw):
            if not isinstance(ans, dict) or "text" not in ans or "answer_start" not in ans:
                raise NNPruneError(f"{path}: {where}.answers[{a}] must be an object with 'text' "
                                   "and 'answer_start'")
            answers.append((ans["text"], ans["answer_start"]))
    title = row.get(columns.title, "")
    return _example(path, where, qid, title if isinstance(title, str) else str(title), context,
                    question, answers)


def _question_id(path: str | Path, where: str, qa: Any, key: str = "id") -> str:
    qid = _need(path, where, qa, key, (str, int), "a string")
    qid = str(qid)
    if not qid:
        raise NNPruneError(f"{path}: {where} has an empty {key!r}")
    return qid


def _question(path: str | Path, where: str, qa: Any, key: str = "question") -> str:
    question = _need(path, where, qa, key, str, "a string")
    if not question.strip():
        raise NNPruneError(f"{path}: {where} has an empty {key!r}")
    return question


def _example(path: str | Path, where: str, qid: str, title: str, context: str, question: str,
             answers: list[tuple[Any, Any]]) -> SquadExample:
    texts: list[str] = []
    starts: list[int] = []
    for a, (text, start) in enumerate(answers):
        if not isinstance(text, str) or not text:
            raise NNPruneError(f"{path}: {where}: answer {a} has an empty or non-string 'text'")
        if isinstance(start, bool) or not isinstance(start, int):
            raise NNPruneError(f"{path}: {where}: answer {a}: 'answer_start' {start!r} is not an "
                               "integer")
        if start < 0 or start + len(text) > len(context):
            raise NNPruneError(f"{path}: {where}: answer {a}: answer_start {start} is out of range "
                               f"for a {len(text)}-character answer in a {len(context)}-character "
                               "context")
        texts.append(text)
        starts.append(start)
    return SquadExample(qid, title, context, question, texts, starts)


def _finish(path: str | Path, examples: list[SquadExample]) -> list[SquadExample]:
    if not examples:
        raise NNPruneError(f"{path}: no questions")
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise NNPruneError(f"{path}: duplicate question id {ex.id!r}")
        seen.add(ex.id)
    return examples


# ------------------------------------------------------------------------------ preprocessing


def window_sizes(tokenizer: Any, max_seq_length: int, doc_stride: int = 128) -> tuple[int, int]:
    """``(stride, max_question_tokens)`` for ``max_seq_length``.

    The stride is ``doc_stride`` but at most a third of the length (384 -> 128, 128 -> 42). The
    tokenizer needs every feature's context window to be longer than the stride, so questions are
    cut to ``max_seq_length - special tokens - stride - 1`` tokens (252 at 384: SQuAD questions
    are never cut there).
    """
    stride = max(0, min(doc_stride, max_seq_length // 3))
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    max_query = max_seq_length - specials - stride - 1
    if max_query < 1:
        raise NNPruneError(f"--max-seq-length {max_seq_length} leaves no room for a question and "
                           "a context window; use at least 16")
    return stride, max_query


def _check_tokenizer(tokenizer: Any) -> None:
    if not getattr(tokenizer, "is_fast", True):
        raise NNPruneError(f"question answering needs a fast tokenizer (offset mappings); "
                           f"{type(tokenizer).__name__} is not one")


def _tokenize(tokenizer: Any, examples: list[SquadExample], max_seq_length: int,
              doc_stride: int) -> tuple[Any, bool]:
    """Tokenize question/context pairs into overflowing features; returns (encoding, q_first)."""
    _check_tokenizer(tokenizer)
    stride, max_query = window_sizes(tokenizer, max_seq_length, doc_stride)
    # Some questions start with lots of whitespace, which only wastes tokens.
    questions = [ex.question.lstrip() for ex in examples]
    q_enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    for i, ids in enumerate(q_enc["input_ids"]):
        if len(ids) > max_query:
            questions[i] = questions[i][: q_enc["offset_mapping"][i][max_query - 1][1]]
    contexts = [ex.context for ex in examples]
    q_first = getattr(tokenizer, "padding_side", "right") == "right"
    enc = tokenizer(
        questions if q_first else contexts,
        contexts if q_first else questions,
        truncation="only_second" if q_first else "only_first",
        max_length=max_seq_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    return enc, q_first


def _cls_index(tokenizer: Any, input_ids: list[int]) -> int:
    cls_id = getattr(tokenizer, "cls_token_id", None)
    return input_ids.index(cls_id) if cls_id is not None and cls_id in input_ids else 0


def _context_span(seq_ids: list[int | None], ctx: int) -> tuple[int, int]:
    """First and last token index of the context in one feature."""
    first = next(i for i, s in enumerate(seq_ids) if s == ctx)
    last = len(seq_ids) - 1 - next(i for i, s in enumerate(reversed(seq_ids)) if s == ctx)
    return first, last


def prepare_train_features(tokenizer: Any, examples: list[SquadExample], max_seq_length: int,
                           doc_stride: int = 128) -> Any:
    """A :class:`datasets.Dataset` of model inputs plus ``start_positions``/``end_positions``.

    The positions are the tokens of the first gold answer, or the CLS token when the example has
    no answer or the answer is not entirely inside the feature's window.
    """
    import datasets

    enc, q_first = _tokenize(tokenizer, examples, max_seq_length, doc_stride)
    ctx = 1 if q_first else 0
    starts: list[int] = []
    ends: list[int] = []
    for i, offsets in enumerate(enc["offset_mapping"]):
        cls = _cls_index(tokenizer, enc["input_ids"][i])
        ex = examples[enc["overflow_to_sample_mapping"][i]]
        if not ex.has_answer:
            starts.append(cls)
            ends.append(cls)
            continue
        start_char = ex.answer_starts[0]
        end_char = start_char + len(ex.answers[0])
        first, last = _context_span(enc.sequence_ids(i), ctx)
        if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
            starts.append(cls)
            ends.append(cls)
            continue
        s = first
        while s <= last and offsets[s][0] <= start_char:
            s += 1
        e = last
        while e >= first and offsets[e][1] >= end_char:
            e -= 1
        starts.append(s - 1)
        ends.append(e + 1)
    columns = model_input_columns(tokenizer, enc)
    columns["start_positions"] = starts
    columns["end_positions"] = ends
    return datasets.Dataset.from_dict(columns)


def prepare_eval_features(tokenizer: Any, examples: list[SquadExample], max_seq_length: int,
                          doc_stride: int = 128) -> tuple[Any, SquadFeatures]:
    """Model inputs (a :class:`datasets.Dataset`) and the offsets that map tokens to text."""
    import datasets

    enc, q_first = _tokenize(tokenizer, examples, max_seq_length, doc_stride)
    ctx = 1 if q_first else 0
    offsets: list[np.ndarray] = []
    cls_index: list[int] = []
    for i, offs in enumerate(enc["offset_mapping"]):
        arr = np.asarray(offs, dtype=np.int32).reshape(-1, 2)
        seq_ids = enc.sequence_ids(i)
        arr[[s != ctx for s in seq_ids]] = -1
        offsets.append(arr)
        cls_index.append(_cls_index(tokenizer, enc["input_ids"][i]))
    features = SquadFeatures(np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64),
                             offsets, np.asarray(cls_index, dtype=np.int64))
    return datasets.Dataset.from_dict(model_input_columns(tokenizer, enc)), features


# ---------------------------------------------------------------------------- post-processing


def postprocess_predictions(eval_set: SquadEvalSet, start_logits: np.ndarray,
                            end_logits: np.ndarray, *, n_best_size: int = 20,
                            max_answer_length: int = 30
                            ) -> tuple[dict[str, str], dict[str, float]]:
    """Best non-null answer text and null-score difference of every example.

    ``start_logits``/``end_logits``: ``(n_features, seq)``, rows in feature order (longer than a
    feature's tokens when padded; the extra positions are ignored). Returns ``(texts, diffs)``:
    ``texts[id]`` is the best-scoring valid span's text (``""`` if no span is valid) and
    ``diffs[id] = null score - best span score`` (``inf`` without a valid span), where the null
    score is the minimum over the example's features of ``start[cls] + end[cls]``. v1.1 uses the
    texts; v2.0 answers ``""`` where the difference is above its threshold.
    """
    feats = eval_set.features
    start_logits = np.asarray(start_logits)
    end_logits = np.asarray(end_logits)
    if start_logits.shape[0] != len(feats) or end_logits.shape[0] != len(feats):
        raise ValueError(f"got logits for {start_logits.shape[0]}/{end_logits.shape[0]} features, "
                         f"expected {len(feats)}")
    n_ex = len(eval_set.examples)
    best_score = np.full(n_ex, -np.inf)
    best_span = np.full((n_ex, 2), -1, dtype=np.int64)
    null_score = np.full(n_ex, np.inf)
    for f in range(len(feats)):
        ex = int(feats.example_index[f])
        offs = feats.offsets[f]
        n = min(len(offs), start_logits.shape[1])
        s_log = start_logits[f, :n].astype(np.float64)
        e_log = end_logits[f, :n].astype(np.float64)
        cls = int(feats.cls_index[f])
        if cls < n:
            null_score[ex] = min(null_score[ex], s_log[cls] + e_log[cls])
        # the same candidate order as run_qa.py, so ties resolve the same way
        s_idx = np.argsort(s_log)[-1: -n_best_size - 1: -1]
        e_idx = np.argsort(e_log)[-1: -n_best_size - 1: -1]
        ok = (offs[s_idx, 0] >= 0)[:, None] & (offs[e_idx, 0] >= 0)[None, :]
        length = e_idx[None, :] - s_idx[:, None] + 1
        ok &= (length >= 1) & (length <= max_answer_length)
        if not ok.any():
            continue
        scores = np.where(ok, s_log[s_idx][:, None] + e_log[e_idx][None, :], -np.inf)
        k = int(np.argmax(scores))
        score = float(scores.flat[k])
        if score > best_score[ex]:
            best_score[ex] = score
            si, ei = s_idx[k // len(e_idx)], e_idx[k % len(e_idx)]
            best_span[ex] = (offs[si, 0], offs[ei, 1])
    texts: dict[str, str] = {}
    diffs: dict[str, float] = {}
    for i, example in enumerate(eval_set.examples):
        a, b = best_span[i]
        texts[example.id] = example.context[a:b] if a >= 0 else ""
        diffs[example.id] = float(null_score[i] - best_score[i]) if a >= 0 else float("inf")
    return texts, diffs


# ------------------------------------------------------------------------------------ adapters


class SquadTask(TaskAdapter):
    """SQuAD v1.1 extractive QA (see the module docstring for data, features and decoding).

    Metrics (official v1.1 script): ``exact_match`` and ``f1`` in percent; ``main_metric`` is
    ``"f1"``. After :meth:`evaluate`, :attr:`last_predictions` holds ``{question id: answer}``
    and :attr:`last_null_score_diffs` the null-score differences; :meth:`prediction_files`
    gives them as the official scripts' files.
    """

    name = "squad"
    main_metric = "f1"
    version_2 = False
    #: the file version in official names: train-v1.1.json, dev-v1.1.json
    file_version = "1.1"
    #: sequence length the adapter is meant for (the runner's generic default is 128)
    default_max_seq_length = 384
    doc_stride = 128
    n_best_size = 20
    max_answer_length = 30
    #: v2.0: answer "" when null score - best span score > this
    null_score_diff_threshold = 0.0
    #: field names of one-question rows in local files
    columns = DEFAULT_COLUMNS
    #: what a v1.1 run met with unanswerable questions should do instead
    v2_hint = "use task squad_v2"

    def __init__(self) -> None:
        self.last_predictions: dict[str, str] = {}
        self.last_null_score_diffs: dict[str, float] = {}

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

        _check_tokenizer(tokenizer)
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
        if not data.uses_local_files:
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
        import datasets

        hub = HUB_DATASETS[self.name]
        try:
            dsd = datasets.load_dataset(hub)
        except Exception as e:  # offline, no cache, hub down: all fixable by pointing at files
            raise NNPruneError(f"{self.name}: could not load hub dataset {hub} "
                               f"({error_line(e)}); pass --data-dir or "
                               "--train-file/--validation-file") from e
        return (self._from_hub_split(dsd["train"], f"{hub}[train]") if need_train else None,
                self._from_hub_split(dsd["validation"], f"{hub}[validation]"))

    def _from_hub_split(self, ds: Any, where: str) -> list[SquadExample]:
        cols = {c: ds[c][:] for c in ("id", "title", "context", "question", "answers")}
        examples = [
            SquadExample(str(qid), title or "", context, question, list(ans["text"]),
                         [int(s) for s in ans["answer_start"]])
            for qid, title, context, question, ans in zip(
                cols["id"], cols["title"], cols["context"], cols["question"], cols["answers"])]
        if not self.version_2 and any(not ex.has_answer for ex in examples):
            raise NNPruneError(f"{where}: has unanswerable questions; {self.v2_hint}")
        return examples

    # ----------------------------------------------------------------- model

    head_suffix = "ForQuestionAnswering"
    prune_tune = True  # nnprune prune: least squares gave the SQuAD v1.1 split +1.2 F1 at 1.5x

    def build_model(self, model_name_or_path: str, **kwargs: Any) -> torch.nn.Module:
        """``AutoModelForQuestionAnswering`` (a base checkpoint gets a fresh span head)."""
        from transformers import AutoModelForQuestionAnswering

        return AutoModelForQuestionAnswering.from_pretrained(model_name_or_path, **kwargs)

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
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


@TASKS.register("squad")
class SquadV1Task(SquadTask):
    pass


@TASKS.register("squad_v2")
class SquadV2Task(SquadTask):
    """SQuAD v2.0: like ``squad`` plus unanswerable questions.

    Metrics (official v2.0 script, null-score differences as no-answer probabilities):
    ``exact``, ``f1``, ``total``, ``HasAns_*``, ``NoAns_*`` at ``null_score_diff_threshold``, and
    ``best_exact``/``best_exact_thresh``, ``best_f1``/``best_f1_thresh``. ``main_metric`` is
    ``"f1"`` (at the fixed threshold; ``best_f1`` picks the threshold on the evaluation data).
    """

    name = "squad_v2"
    version_2 = True
    file_version = "2.0"


__all__ = [
    "DEFAULT_COLUMNS",
    "HUB_DATASETS",
    "SquadColumns",
    "SquadEvalSet",
    "SquadExample",
    "SquadFeatures",
    "SquadTask",
    "SquadV1Task",
    "SquadV2Task",
    "postprocess_predictions",
    "prepare_eval_features",
    "prepare_train_features",
    "read_squad_file",
    "read_squad_rows",
    "window_sizes",
]
