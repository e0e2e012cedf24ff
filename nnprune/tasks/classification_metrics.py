"""The metrics of ``text-classification`` and of its presets (the GLUE tasks): accuracy and F1 of
classifiers, Pearson / Spearman correlation and MSE of regressors.

:func:`classification_scores` computes every metric that applies to one evaluation split; a
preset reports the subset it names (:class:`ClassificationMetric`), so each value has one
definition whichever task reports it.
"""

from __future__ import annotations

import enum
import logging
import math

import numpy as np

logger = logging.getLogger(__name__)


class ClassificationMetric(str, enum.Enum):
    """A metric key of the results (the ``str`` value is the key written to the results)."""

    #: fraction of class predictions equal to the label
    ACCURACY = "accuracy"
    #: F1 of the positive class (the second label); two-label tasks only
    F1 = "f1"
    #: mean F1 over the classes present in the labels or the predictions
    MACRO_F1 = "macro_f1"
    #: regression: Pearson correlation of predictions and scores
    PEARSON = "pearson"
    #: regression: Spearman rank correlation
    SPEARMAN = "spearman"
    #: regression: mean squared error
    MSE = "mse"


#: the metrics of a regression head (one output); the others need class logits
REGRESSION_METRICS = (ClassificationMetric.PEARSON, ClassificationMetric.SPEARMAN,
                      ClassificationMetric.MSE)


def accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``preds`` ``(n,)`` equal to ``labels`` ``(n,)``."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    return float((preds == labels).mean()) if labels.size else 0.0


def class_f1(preds: np.ndarray, labels: np.ndarray, cls: int) -> float:
    """F1 of class ``cls``: ``2tp / (2tp + fp + fn)``; 0.0 when ``tp`` is 0."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    tp = float(((preds == cls) & (labels == cls)).sum())
    fp = float(((preds == cls) & (labels != cls)).sum())
    fn = float(((preds != cls) & (labels == cls)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def macro_f1(preds: np.ndarray, labels: np.ndarray) -> float:
    """Mean :func:`class_f1` over the classes present in ``labels`` or ``preds`` (both ``(n,)``);
    a class neither predicted nor present is left out, as scikit-learn's ``average="macro"``
    does without ``labels=``."""
    classes = np.union1d(np.asarray(preds), np.asarray(labels))
    if classes.size == 0:
        return 0.0
    return float(np.mean([class_f1(preds, labels, int(c)) for c in classes]))


def mean_squared_error(preds: np.ndarray, labels: np.ndarray) -> float:
    """``mean((preds - labels)^2)`` over ``(n,)`` arrays."""
    diff = np.asarray(preds, dtype=np.float64) - np.asarray(labels, dtype=np.float64)
    return float(np.mean(diff * diff)) if diff.size else 0.0


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of ``x`` and ``y`` ``(n,)``; 0.0 when either is constant (the
    correlation is undefined there; 0.0 keeps the results JSON and comparable)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 2:
        return 0.0
    xm, ym = x - x.mean(), y - y.mean()
    denom = math.sqrt(float((xm * xm).sum()) * float((ym * ym).sum()))
    if denom == 0.0:
        logger.debug("pearson: constant input, correlation reported as 0.0")
        return 0.0
    return float(np.clip((xm * ym).sum() / denom, -1.0, 1.0))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` ``(n,)``; tied values share the mean of their ranks
    (``[10, 20, 20, 30]`` -> ``[1, 2.5, 2.5, 4]``)."""
    x = np.asarray(x)
    n = x.size
    order = np.argsort(x, kind="mergesort")
    ordered = x[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]] if n else np.zeros(0, dtype=bool)
    group = np.cumsum(starts) - 1  # (n,) tie group of each sorted position
    bounds = np.r_[np.flatnonzero(starts), n]  # first sorted position of each group, then n
    # a group covering sorted positions i..j-1 has ranks i+1..j, mean (i + 1 + j) / 2
    mean_rank = (bounds[:-1] + 1 + bounds[1:]) / 2.0
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation: :func:`pearson` of the :func:`average_ranks`."""
    return pearson(average_ranks(x), average_ranks(y))


def classification_scores(logits: np.ndarray, labels: np.ndarray, *,
                          regression: bool = False) -> dict[str, float]:
    """Every metric of one split that applies, keyed by :class:`ClassificationMetric` value.

    ``logits``: ``(n, num_labels)`` class logits, or for ``regression`` ``(n, 1)`` / ``(n,)``
    scores; ``labels``: ``(n,)`` class ids in the model's order, or scores. Classification:
    ``accuracy``, ``macro_f1`` and, with two labels, ``f1`` of the positive class (id 1);
    regression: ``pearson``, ``spearman`` and ``mse``.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits {logits.shape} do not match labels {labels.shape}")
    if regression:
        preds = logits.reshape(logits.shape[0], -1)[:, 0].astype(np.float64)
        scores = labels.reshape(-1).astype(np.float64)
        return {ClassificationMetric.PEARSON.value: pearson(preds, scores),
                ClassificationMetric.SPEARMAN.value: spearman(preds, scores),
                ClassificationMetric.MSE.value: mean_squared_error(preds, scores)}
    if logits.ndim != 2:
        raise ValueError(f"logits {logits.shape} are not (n, num_labels)")
    preds = logits.argmax(axis=-1)
    out = {ClassificationMetric.ACCURACY.value: accuracy(preds, labels),
           ClassificationMetric.MACRO_F1.value: macro_f1(preds, labels)}
    if logits.shape[1] == 2:
        # the positive class: the second label (1 of 0,1; positive of negative,positive)
        out[ClassificationMetric.F1.value] = class_f1(preds, labels, 1)
    return out


__all__ = [
    "REGRESSION_METRICS",
    "ClassificationMetric",
    "accuracy",
    "average_ranks",
    "class_f1",
    "classification_scores",
    "macro_f1",
    "mean_squared_error",
    "pearson",
    "spearman",
]
