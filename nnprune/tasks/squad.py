"""SQuAD: ``squad`` (v1.1) and ``squad_v2`` (v2.0, with unanswerable questions).

Both are presets of the generic ``question-answering`` adapter
(:class:`~nnprune.tasks.question_answering.QuestionAnsweringTask`), declared here as data
(:class:`~nnprune.tasks.question_answering.QuestionAnsweringPreset`): the SQuAD version, the hub
dataset and what a v1.1 run suggests for unanswerable questions. The rest is the generic
adapter's: the SQuAD format (:mod:`nnprune.tasks.squad_format`), features and decoding
(:mod:`nnprune.tasks.qa_features`) and the official metrics (:mod:`nnprune.tasks.squad_metrics`).

Data: ``--train-file`` / ``--validation-file`` (an official SQuAD JSON file, or one question per
row); ``--data-dir`` with ``train-v1.1.json`` and ``dev-v1.1.json`` (``-v2.0`` for ``squad_v2``),
or ``train.json`` and ``dev.json`` / ``validation.json`` (``.jsonl`` too), in the folder or its
``v1.1`` / ``v2.0`` subfolder; else the hub datasets ``rajpurkar/squad`` / ``rajpurkar/squad_v2``.

Metrics: v1.1 ``exact_match`` and ``f1``; v2.0 ``exact``, ``f1``, ``total``, ``HasAns_*``,
``NoAns_*`` at the null-score threshold 0.0, and ``best_exact`` / ``best_f1`` with their
thresholds. ``main_metric`` is ``"f1"``.
"""

from __future__ import annotations

from nnprune.tasks.base import register_preset
from nnprune.tasks.question_answering import (QuestionAnsweringOptions, QuestionAnsweringPreset,
                                              QuestionAnsweringTask)
from nnprune.tasks.sources import PresetHub

SQUAD_V1 = QuestionAnsweringPreset(
    name="squad", hub=PresetHub("rajpurkar/squad"),
    v2_hint="use task squad_v2",
)
SQUAD_V2 = QuestionAnsweringPreset(
    name="squad_v2", hub=PresetHub("rajpurkar/squad_v2"),
    options=QuestionAnsweringOptions(version_2_with_negative=True),
)

#: the SQuAD presets, each registered under its name
PRESETS = (SQUAD_V1, SQUAD_V2)

for _preset in PRESETS:
    register_preset(_preset, QuestionAnsweringTask)


__all__ = ["PRESETS", "SQUAD_V1", "SQUAD_V2"]
