"""Span features and answer decoding of extractive question answering (``question-answering``
and its presets ``squad`` / ``squad_v2``): the Hugging Face ``run_qa.py`` recipe.

Preprocessing: question first (context first for tokenizers padding on the left),
``truncation="only_second"``, a long context split into several overlapping features
(``doc_stride`` tokens shared between neighbours), offsets kept for the evaluation features.
Training features carry ``start_positions``/``end_positions``: the tokens of the first gold
answer, or the CLS token when the question is unanswerable or the answer is not inside that
feature's window.

Post-processing (:func:`postprocess_predictions`): for every feature, the ``n_best_size`` (20)
largest start and end logits; spans of context tokens with ``start <= end`` and at most
``max_answer_length`` (30) tokens are candidates, scored ``start_logit + end_logit``; the best over
an example's features is mapped back to the context text through the offsets. The null score (CLS
start + end logit, the minimum over the example's features) is kept for SQuAD v2.0's
unanswerable questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nnprune.errors import NNPruneError
from nnprune.tasks.base import model_input_columns
from nnprune.tasks.squad_format import SquadExample

#: the recipe's defaults: tokens shared by neighbouring windows, start/end candidates per
#: feature, longest answer in tokens
DOC_STRIDE = 128
N_BEST_SIZE = 20
MAX_ANSWER_LENGTH = 30


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


# ------------------------------------------------------------------------------ preprocessing


def window_sizes(tokenizer: Any, max_seq_length: int,
                 doc_stride: int = DOC_STRIDE) -> tuple[int, int]:
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


def check_fast_tokenizer(tokenizer: Any) -> None:
    """Refuse (one line) a slow tokenizer: the features need its offset mappings."""
    if not getattr(tokenizer, "is_fast", True):
        raise NNPruneError(f"question answering needs a fast tokenizer (offset mappings); "
                           f"{type(tokenizer).__name__} is not one")


def _tokenize(tokenizer: Any, examples: list[SquadExample], max_seq_length: int,
              doc_stride: int) -> tuple[Any, bool]:
    """Tokenize question/context pairs into overflowing features; returns (encoding, q_first)."""
    check_fast_tokenizer(tokenizer)
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
                           doc_stride: int = DOC_STRIDE) -> Any:
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
                          doc_stride: int = DOC_STRIDE) -> tuple[Any, SquadFeatures]:
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
                            end_logits: np.ndarray, *, n_best_size: int = N_BEST_SIZE,
                            max_answer_length: int = MAX_ANSWER_LENGTH
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


__all__ = [
    "DOC_STRIDE",
    "MAX_ANSWER_LENGTH",
    "N_BEST_SIZE",
    "SquadEvalSet",
    "SquadFeatures",
    "check_fast_tokenizer",
    "postprocess_predictions",
    "prepare_eval_features",
    "prepare_train_features",
    "window_sizes",
]
