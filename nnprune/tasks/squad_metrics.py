"""SQuAD scores, computed exactly as the official evaluation scripts do.

* v1.1 (``evaluate-v1.1.py``): :func:`squad_v1_evaluate` gives ``exact_match`` and ``f1`` in
  percent; each question scores the max over its gold answers; a question without a prediction
  scores 0 (the official script prints a message and counts it in the total).
* v2.0 (``evaluate-v2.0.py``): :func:`squad_v2_evaluate` gives ``exact``, ``f1``, ``total`` and
  the same restricted to answerable (``HasAns_*``) and unanswerable (``NoAns_*``) questions; with
  no-answer probabilities (here: null-score differences, as Google's BERT ``run_squad.py`` writes
  them to its ``null_odds`` file) also ``best_exact``/``best_exact_thresh`` and
  ``best_f1``/``best_f1_thresh``: the score when the no-answer threshold is chosen on the data.

The two scripts differ in one detail kept here: v2.0's F1 scores an empty prediction against an
empty gold answer as 1 (and either empty against a non-empty one as 0), and a gold answer that
normalises to the empty string is dropped (a question left with none has gold ``[""]``).

Gold answers are given as ``{question_id: [answer text, ...]}``; an empty list means unanswerable
(v2.0). Predictions are ``{question_id: text}``, ``""`` meaning "no answer".
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Mapping, Sequence

__all__ = [
    "compute_exact",
    "compute_f1",
    "exact_match_score",
    "f1_score",
    "find_best_thresh",
    "normalize_answer",
    "squad_v1_evaluate",
    "squad_v2_evaluate",
]

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (both scripts)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


# ------------------------------------------------------------------------------------- v1.1


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    """v1.1: normalised strings are equal."""
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_score(prediction: str, ground_truth: str) -> float:
    """v1.1: bag-of-tokens F1 of the normalised strings, in [0, 1]."""
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def squad_v1_evaluate(gold: Mapping[str, Sequence[str]],
                      predictions: Mapping[str, str]) -> dict[str, float]:
    """``{"exact_match": %, "f1": %}`` over every question of ``gold``.

    Each question needs at least one gold answer (v1.1 has no unanswerable questions).
    """
    if not gold:
        raise ValueError("no gold questions to score")
    exact = f1 = 0.0
    for qid, answers in gold.items():
        if not answers:
            raise ValueError(f"question {qid} has no gold answer (SQuAD v1.1 needs one)")
        if qid not in predictions:
            continue  # the official script counts it as 0
        pred = predictions[qid]
        exact += max(float(exact_match_score(pred, a)) for a in answers)
        f1 += max(f1_score(pred, a) for a in answers)
    return {"exact_match": 100.0 * exact / len(gold), "f1": 100.0 * f1 / len(gold)}


# ------------------------------------------------------------------------------------- v2.0


def _get_tokens(s: str) -> list[str]:
    return normalize_answer(s).split() if s else []


def compute_exact(a_gold: str, a_pred: str) -> int:
    """v2.0: 1 if the normalised strings are equal, else 0."""
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold: str, a_pred: str) -> float:
    """v2.0: like v1.1's F1, but empty vs empty is 1 and empty vs non-empty is 0."""
    gold_toks = _get_tokens(a_gold)
    pred_toks = _get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        # If either is no-answer, then F1 is 1 if they agree, 0 otherwise
        return float(gold_toks == pred_toks)
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def _raw_scores(gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str]
                ) -> tuple[dict[str, int], dict[str, float]]:
    exact_scores: dict[str, int] = {}
    f1_scores: dict[str, float] = {}
    for qid, answers in gold.items():
        gold_answers = [a for a in answers if normalize_answer(a)]
        if not gold_answers:
            # For unanswerable questions, only correct answer is empty string
            gold_answers = [""]
        if qid not in predictions:
            continue  # official: "Missing prediction for <id>", then skipped
        a_pred = predictions[qid]
        exact_scores[qid] = max(compute_exact(a, a_pred) for a in gold_answers)
        f1_scores[qid] = max(compute_f1(a, a_pred) for a in gold_answers)
    return exact_scores, f1_scores


def _apply_no_ans_threshold(scores: Mapping[str, float], na_probs: Mapping[str, float],
                            qid_to_has_ans: Mapping[str, bool], na_prob_thresh: float
                            ) -> dict[str, float]:
    new_scores: dict[str, float] = {}
    for qid, s in scores.items():
        pred_na = na_probs[qid] > na_prob_thresh
        new_scores[qid] = float(not qid_to_has_ans[qid]) if pred_na else s
    return new_scores


def _make_eval_dict(exact_scores: Mapping[str, float], f1_scores: Mapping[str, float],
                    qid_list: Sequence[str] | None = None) -> dict[str, float]:
    if qid_list is None:
        total = len(exact_scores)
        return {"exact": 100.0 * sum(exact_scores.values()) / total,
                "f1": 100.0 * sum(f1_scores.values()) / total, "total": total}
    total = len(qid_list)
    return {"exact": 100.0 * sum(exact_scores[k] for k in qid_list) / total,
            "f1": 100.0 * sum(f1_scores[k] for k in qid_list) / total, "total": total}


def find_best_thresh(preds: Mapping[str, str], scores: Mapping[str, float],
                     na_probs: Mapping[str, float], qid_to_has_ans: Mapping[str, bool]
                     ) -> tuple[float, float]:
    """The official search: ``(best score in %, threshold)``.

    Start from "every question answered null", then switch questions to their prediction in
    increasing ``na_probs`` order, keeping the best running score; the threshold is the
    ``na_probs`` value of the last question switched (0.0 if switching none is best). A question
    is answered with its prediction when ``na_probs[qid] <= threshold``.
    """
    num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k])
    cur_score = num_no_ans
    best_score = cur_score
    best_thresh = 0.0
    qid_list = sorted(na_probs, key=lambda k: na_probs[k])
    for qid in qid_list:
        if qid not in scores:
            continue
        if qid_to_has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1 if preds[qid] else 0
        cur_score += diff
        if cur_score > best_score:
            best_score = cur_score
            best_thresh = na_probs[qid]
    return 100.0 * best_score / len(scores), best_thresh


def squad_v2_evaluate(gold: Mapping[str, Sequence[str]], predictions: Mapping[str, str],
                      na_probs: Mapping[str, float] | None = None,
                      na_prob_thresh: float = 1.0) -> dict[str, float]:
    """Official v2.0 scores in percent (``total`` counts are ints).

    ``na_probs`` (optional, the script's ``--na-prob-file``): per question, larger means "more
    likely unanswerable"; a question is scored as a null answer when its value is
    ``> na_prob_thresh``, and the best-threshold search runs over these values. Without
    ``na_probs`` every value is 0, as in the script, and no ``best_*`` keys are returned.

    Passing the un-thresholded best non-null answer as ``predictions`` with null-score
    differences as ``na_probs`` and ``na_prob_thresh`` = the null threshold gives exactly the
    scores of thresholded predictions, plus a meaningful best-threshold search.
    """
    if not gold:
        raise ValueError("no gold questions to score")
    qid_to_has_ans = {qid: bool(answers) for qid, answers in gold.items()}
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    probs = dict(na_probs) if na_probs is not None else {k: 0.0 for k in predictions}
    exact_raw, f1_raw = _raw_scores(gold, predictions)
    if not exact_raw:
        raise ValueError("no predictions for any gold question")
    exact_thresh = _apply_no_ans_threshold(exact_raw, probs, qid_to_has_ans, na_prob_thresh)
    f1_thresh = _apply_no_ans_threshold(f1_raw, probs, qid_to_has_ans, na_prob_thresh)
    out: dict[str, float] = _make_eval_dict(exact_thresh, f1_thresh)
    # Like the script, the subsets are over all their gold questions (a missing prediction is
    # a KeyError there; here every gold question must have a prediction for the subsets).
    if has_ans_qids and all(k in exact_thresh for k in has_ans_qids):
        for k, v in _make_eval_dict(exact_thresh, f1_thresh, has_ans_qids).items():
            out[f"HasAns_{k}"] = v
    if no_ans_qids and all(k in exact_thresh for k in no_ans_qids):
        for k, v in _make_eval_dict(exact_thresh, f1_thresh, no_ans_qids).items():
            out[f"NoAns_{k}"] = v
    if na_probs is not None:
        best_exact, exact_thr = find_best_thresh(predictions, exact_raw, probs, qid_to_has_ans)
        best_f1, f1_thr = find_best_thresh(predictions, f1_raw, probs, qid_to_has_ans)
        out.update(best_exact=best_exact, best_exact_thresh=exact_thr,
                   best_f1=best_f1, best_f1_thresh=f1_thr)
    return out
