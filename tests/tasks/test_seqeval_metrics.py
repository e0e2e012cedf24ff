"""Entity-level scores (seqeval's default mode) on hand-checked tag sequences."""

from __future__ import annotations

import math

import pytest

from nnprune.tasks.seqeval_metrics import entity_scores, get_entities, non_iob_tags, split_tag


@pytest.mark.parametrize("tags, entities", [
    # seqeval's docstring example
    (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 1), ("LOC", 3, 3)]),
    # adjacent entities of one type: a B- always starts a new one
    (["B-PER", "B-PER"], [("PER", 0, 0), ("PER", 1, 1)]),
    (["B-PER", "I-PER", "B-PER", "I-PER"], [("PER", 0, 1), ("PER", 2, 3)]),
    # broken entities: an I- after O starts one; a change of type ends one and starts another
    (["O", "I-PER", "I-PER", "O"], [("PER", 1, 2)]),
    (["I-PER"], [("PER", 0, 0)]),
    (["B-PER", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 1)]),
    (["B-PER", "I-PER", "I-LOC", "I-LOC"], [("PER", 0, 1), ("LOC", 2, 3)]),
    # nested-looking: the outer ORG is cut in two by the LOC
    (["B-ORG", "I-ORG", "B-LOC", "I-ORG"], [("ORG", 0, 1), ("LOC", 2, 2), ("ORG", 3, 3)]),
    # an entity reaching the end of the sentence
    (["O", "O", "B-LOC", "I-LOC"], [("LOC", 2, 3)]),
    (["O", "O"], []),
    ([], []),
    # IOBES tags, read as seqeval's default mode reads them
    (["S-PER", "B-LOC", "E-LOC", "E-LOC"], [("PER", 0, 0), ("LOC", 1, 2), ("LOC", 3, 3)]),
    (["B-PER", "I-PER", "E-PER", "I-PER"], [("PER", 0, 2), ("PER", 3, 3)]),
    # bare prefixes have type "_"; unprefixed tags are split like any other (seqeval warns)
    (["B", "I", "O", "I"], [("_", 0, 1), ("_", 3, 3)]),
    (["PER", "PER", "O"], [("ER", 0, 1)]),
])
def test_get_entities_hand_checked(tags, entities):
    assert get_entities(tags) == entities


def test_split_tag_and_non_iob_tags():
    assert split_tag("B-PER") == ("B", "PER")
    assert split_tag("O") == ("O", "_")
    assert split_tag("I-ORG-X") == ("I", "ORG-X")
    assert non_iob_tags(["O", "B-PER", "I-PER", "NN", "S", "E-X", "NN", "VB"]) == ["NN", "VB"]
    with pytest.raises(ValueError):
        split_tag("")


def test_seqeval_docstring_example_micro_and_per_type():
    y_true = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    y_pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    s = entity_scores(y_true, y_pred)
    assert (s.precision, s.recall, s.f1) == (0.5, 0.5, 0.5)
    assert s.accuracy == pytest.approx(0.8)
    assert (s.gold_entities, s.predicted_entities, s.correct_entities, s.words) == (2, 2, 1, 10)
    assert s.metrics() == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "accuracy": s.accuracy,
                           "f1_MISC": 0.0, "f1_PER": 1.0}
    assert s.per_type["PER"].support == 1 and s.per_type["MISC"].predicted == 1


def test_micro_average_counts_entities_over_types():
    # gold: PER(0,1), LOC(3,3), LOC(5,5); predicted: PER(0,1) right, LOC(3,4) wrong, ORG(5,5) wrong
    y_true = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-LOC"]]
    y_pred = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "B-ORG"]]
    s = entity_scores(y_true, y_pred)
    assert (s.precision, s.recall) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    assert s.f1 == pytest.approx(1 / 3)
    assert s.per_type["ORG"].support == 0 and s.per_type["ORG"].f1 == 0.0
    assert s.per_type["LOC"].recall == 0.0 and s.per_type["PER"].f1 == 1.0


def test_broken_prediction_matches_only_the_same_span():
    # "I-PER I-PER" after O is one PER entity, equal to gold "B-PER I-PER"
    s = entity_scores([["O", "B-PER", "I-PER"]], [["O", "I-PER", "I-PER"]])
    assert s.f1 == 1.0 and s.accuracy == pytest.approx(2 / 3)
    # "B-PER B-PER" is two entities, neither equal to gold "B-PER I-PER"
    s = entity_scores([["B-PER", "I-PER"]], [["B-PER", "B-PER"]])
    assert (s.precision, s.recall, s.f1) == (0.0, 0.0, 0.0)


def test_entities_never_span_sentences():
    s = entity_scores([["O", "B-PER"], ["I-PER", "O"]], [["O", "B-PER"], ["I-PER", "O"]])
    assert s.gold_entities == 2 and s.f1 == 1.0


def test_all_o_and_empty_give_zero_not_nan():
    # no gold and no predicted entities: seqeval's zero_division default gives 0, not NaN
    s = entity_scores([["O", "O"], ["O"]], [["O", "O"], ["O"]])
    assert (s.precision, s.recall, s.f1, s.accuracy) == (0.0, 0.0, 0.0, 1.0)
    assert s.metrics() == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "accuracy": 1.0}
    # gold entities, none predicted / predicted entities, none gold
    s = entity_scores([["B-PER"]], [["O"]])
    assert (s.precision, s.recall, s.f1) == (0.0, 0.0, 0.0)
    s = entity_scores([["O"]], [["B-PER"]])
    assert (s.precision, s.recall, s.f1) == (0.0, 0.0, 0.0)
    s = entity_scores([], [])
    assert s.words == 0 and not any(math.isnan(v) for v in s.metrics().values())


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="sentence 0"):
        entity_scores([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="1 predicted sentences for 2"):
        entity_scores([["O"], ["O"]], [["O"]])
