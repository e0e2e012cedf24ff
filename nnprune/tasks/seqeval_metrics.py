"""Entity-level precision, recall and F1 of tagged sentences, as ``seqeval`` computes them.

This is ``seqeval``'s default (non-strict, ``conlleval``-compatible) mode with ``average="micro"``
and the default ``zero_division="warn"``, reimplemented without the dependency:

* **Chunks** (:func:`get_entities`): a tag is split into a prefix (its first character: ``B``,
  ``I``, ``E``, ``S``, ``O``) and a type (what follows the first ``-``; ``"_"`` when nothing
  does, so ``O`` and bare ``B``/``I`` tags have type ``"_"``). A chunk ends before a ``B``/``S``
  or ``O`` that follows a ``B``/``I``, after any ``E`` or ``S``, and whenever the type changes;
  a chunk starts at every ``B`` and ``S``, at an ``I``/``E`` after ``O``, ``E`` or ``S``, and
  whenever the type changes. So, in IOB2 (BIO) data:

  - ``B-PER B-PER`` is two entities (a ``B`` always starts one);
  - ``O I-PER I-PER`` is one ``PER`` entity (an ``I`` after ``O`` starts one, conlleval's
    IOB1 reading);
  - ``B-PER I-LOC`` is a ``PER`` and a ``LOC`` entity (a change of type ends one and starts
    another);
  - an entity reaching the end of a sentence ends there: sentences are scored as if joined with
    an ``O`` between them, so no entity spans two sentences.

  IOBES tags (``E-``, ``S-``) are read exactly as seqeval reads them in this mode (not as its
  strict ``IOBES`` scheme would). Tags that are neither ``O`` nor prefixed (``PER``) are read
  with the same rules (prefix ``P``, type ``ER``), as seqeval does after warning about them;
  :func:`non_iob_tags` finds them so callers can warn.

* **Scores**: an entity is a ``(type, first word, last word)`` tuple over the sentences joined
  as above; a predicted entity is correct when the same tuple is in the gold set. Micro-averaged
  over types: ``precision = correct / predicted``, ``recall = correct / gold``,
  ``f1 = 2 p r / (p + r)``. A zero denominator gives 0.0, never NaN, as seqeval's default
  ``zero_division`` does (it also warns; this module does not): no predicted entities means
  precision 0, no gold entities means recall 0, and F1 is 0 when precision + recall is 0. So a
  set of all-``O`` sentences scores 0/0/0 even when the predictions are all ``O`` too.
  Per-type scores use the same rules, for every type found in the gold *or* the predicted tags.

* **Accuracy** is the fraction of words whose predicted tag equals the gold tag (seqeval's
  ``accuracy_score``; ``O`` words count); 0.0 when there are no words.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: (type, first word, last word), both ends inclusive, as seqeval's ``get_entities`` returns them
Entity = tuple[str, int, int]

_PREFIXES = ("B-", "I-", "E-", "S-")
_BARE = ("O", "B", "I", "E", "S")


def split_tag(tag: str) -> tuple[str, str]:
    """``(prefix, type)`` of ``tag`` as seqeval reads it: ``"B-PER"`` -> ``("B", "PER")``,
    ``"O"`` -> ``("O", "_")``, ``"B-PER-X"`` -> ``("B", "PER-X")``."""
    if not tag:
        raise ValueError("empty tag")
    return tag[0], tag[1:].split("-", maxsplit=1)[-1] or "_"


def non_iob_tags(tags: Iterable[str]) -> list[str]:
    """The tags seqeval warns about ("seems not to be NE tag"): neither ``O``/``B``/``I``/``E``/
    ``S`` nor starting with ``B-``/``I-``/``E-``/``S-``; sorted, unique."""
    return sorted({t for t in tags if t not in _BARE and not t.startswith(_PREFIXES)})


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    # A change of type ends any chunk ('.' is seqeval's "no chunk" marker, like 'O').
    return prev_tag not in ("O", ".") and prev_type != type_


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def get_entities(tags: Sequence[str]) -> list[Entity]:
    """The chunks of one sentence's ``tags`` (see the module docstring), in order.

    ``["B-PER", "I-PER", "O", "B-LOC"]`` -> ``[("PER", 0, 1), ("LOC", 3, 3)]``.
    """
    prev_tag, prev_type, begin = "O", "", 0
    chunks: list[Entity] = []
    # A trailing "O" closes an entity that reaches the end of the sentence.
    for i, chunk in enumerate([*tags, "O"]):
        tag, type_ = split_tag(chunk)
        if _end_of_chunk(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _start_of_chunk(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0  # seqeval's zero_division="warn": 0.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True)
class TypeScores:
    """Scores of one entity type; ``support`` is its number of gold entities."""

    precision: float
    recall: float
    f1: float
    support: int
    predicted: int
    correct: int


@dataclass(frozen=True)
class EntityScores:
    """Micro-averaged entity scores of a set of sentences, token accuracy, and per-type scores."""

    precision: float
    recall: float
    f1: float
    accuracy: float
    gold_entities: int
    predicted_entities: int
    correct_entities: int
    words: int
    per_type: dict[str, TypeScores] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """``precision``, ``recall``, ``f1``, ``accuracy`` and ``f1_<TYPE>`` for every type."""
        out = {"precision": self.precision, "recall": self.recall, "f1": self.f1,
               "accuracy": self.accuracy}
        out.update({f"f1_{name}": s.f1 for name, s in self.per_type.items()})
        return out


def entity_scores(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]
                  ) -> EntityScores:
    """Scores of predicted tags ``y_pred`` against gold tags ``y_true``: one list of tags per
    sentence, the same number of tags in both (see the module docstring)."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_pred)} predicted sentences for {len(y_true)} gold ones")
    flat_true: list[str] = []
    flat_pred: list[str] = []
    words = right = 0
    for s, (t, p) in enumerate(zip(y_true, y_pred)):
        if len(t) != len(p):
            raise ValueError(f"sentence {s}: {len(p)} predicted tags for {len(t)} gold tags")
        # seqeval joins the sentences with an "O" after each (so no entity spans two), and
        # its chunk state runs on across that "O": joining the same way keeps every odd
        # tag sequence scored as seqeval scores it.
        flat_true += [*t, "O"]
        flat_pred += [*p, "O"]
        words += len(t)
        right += sum(x == y for x, y in zip(t, p))
    gold: dict[str, set[tuple[int, int]]] = defaultdict(set)
    pred: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for name, a, b in get_entities(flat_true):
        gold[name].add((a, b))
    for name, a, b in get_entities(flat_pred):
        pred[name].add((a, b))
    per_type: dict[str, TypeScores] = {}
    for name in sorted(set(gold) | set(pred)):
        correct = len(gold[name] & pred[name])
        n_pred, n_gold = len(pred[name]), len(gold[name])
        p, r = _ratio(correct, n_pred), _ratio(correct, n_gold)
        per_type[name] = TypeScores(p, r, _f1(p, r), n_gold, n_pred, correct)
    correct = sum(s.correct for s in per_type.values())
    n_pred = sum(s.predicted for s in per_type.values())
    n_gold = sum(s.support for s in per_type.values())
    p, r = _ratio(correct, n_pred), _ratio(correct, n_gold)
    return EntityScores(p, r, _f1(p, r), _ratio(right, words), n_gold, n_pred, correct, words,
                        per_type)


__all__ = ["Entity", "EntityScores", "TypeScores", "entity_scores", "get_entities",
           "non_iob_tags", "split_tag"]
