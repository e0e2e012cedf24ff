"""ROUGE, the metric of ``summarization`` and of its preset ``cnn_dailymail``.

:func:`rouge_scores` gives ROUGE-1/2/L/Lsum F-measures x 100, averaged over documents, with the
Porter stemmer (``rouge-score``: ``pip install 'nnprune[summarization]'``). For ROUGE-Lsum the
prediction and the reference are split into sentences (:func:`sentences`: at newlines and after
``.``, ``!`` or ``?`` followed by whitespace, not with nltk's punkt) and newline-joined.
"""

from __future__ import annotations

import re

from nnprune.errors import NNPruneError

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


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


__all__ = ["ROUGE_KEYS", "rouge_scores", "sentences"]
