"""GLUE sentence(-pair) classification: ``sst2``, ``mrpc``, ``qqp`` and ``mnli``.

Each task is a preset of the generic ``text-classification`` adapter
(:class:`~nnprune.tasks.text_classification.TextClassificationTask`), declared here as data
(:class:`~nnprune.tasks.classification_data.TextClassificationPreset`): its columns, labels,
files, hub configuration and metrics. Reading, label handling, the model head and the metrics are
the generic adapter's (see :mod:`nnprune.tasks.classification_data` for the data sources of a
preset).

Data: ``--train-file`` / ``--validation-file``; ``--data-dir`` a GLUE task folder
(``train.tsv``, ``dev.tsv``; MNLI ``dev_matched.tsv`` and ``dev_mismatched.tsv``) or its parent
holding it (``SST-2``, ``MRPC``, ``QQP``, ``MNLI``); else the hub dataset ``nyu-mll/glue`` (the
canonical id of ``glue``).

Metrics: ``accuracy`` for every task, plus ``f1`` of the positive class (id 1) for MRPC and QQP.
With one evaluation split the keys are the bare metric names (``"accuracy"``); with several (MNLI
matched + mismatched) they are ``"<split>_<metric>"``.
"""

from __future__ import annotations

from dataclasses import replace

from nnprune.tasks.base import register_preset
from nnprune.tasks.classification_data import PresetFiles, TextClassificationPreset
from nnprune.tasks.classification_metrics import ClassificationMetric
from nnprune.tasks.sources import PresetHub
from nnprune.tasks.text_classification import TextClassificationTask

HUB_DATASET = "nyu-mll/glue"

#: what MRPC and QQP report: paraphrase classes are unbalanced, so F1 is their headline score too
_ACCURACY_F1 = (ClassificationMetric.ACCURACY, ClassificationMetric.F1)


def _files(config: str, folder: str) -> PresetFiles:
    """The GLUE layout of task ``config`` (its hub configuration) in folder ``folder``:
    ``train.tsv`` and ``dev.tsv``."""
    return PresetFiles(collection="GLUE", folder=folder, hub=PresetHub(HUB_DATASET, config))


SST2 = TextClassificationPreset(
    name="sst2", files=_files("sst2", "SST-2"),
    text_columns=("sentence",), text_pair_columns=None, label_columns=("label",),
    labels=("negative", "positive"),
)
MRPC = TextClassificationPreset(
    name="mrpc", files=_files("mrpc", "MRPC"),
    text_columns=("#1 String", "sentence1"), text_pair_columns=("#2 String", "sentence2"),
    label_columns=("Quality", "label"), labels=("not_equivalent", "equivalent"),
    metrics=_ACCURACY_F1,
)
QQP = TextClassificationPreset(
    name="qqp", files=_files("qqp", "QQP"),
    text_columns=("question1",), text_pair_columns=("question2",),
    label_columns=("is_duplicate", "label"), labels=("not_duplicate", "duplicate"),
    metrics=_ACCURACY_F1,
)
MNLI = TextClassificationPreset(
    name="mnli",
    files=replace(_files("mnli", "MNLI"),
                  eval_files=(("validation_matched", "dev_matched.tsv"),
                              ("validation_mismatched", "dev_mismatched.tsv")),
                  hub_eval_splits=("validation_matched", "validation_mismatched")),
    text_columns=("sentence1", "premise"), text_pair_columns=("sentence2", "hypothesis"),
    # gold_label first: GLUE's MNLI files also carry the five annotator columns label1..label5
    label_columns=("gold_label", "label"), labels=("entailment", "neutral", "contradiction"),
    # a few MNLI examples have no gold label (annotators did not agree): they are left out
    drop_unlabeled=True,
)

#: the GLUE presets, each registered under its name
PRESETS = (SST2, MRPC, QQP, MNLI)

for _preset in PRESETS:
    register_preset(_preset, TextClassificationTask)


__all__ = ["HUB_DATASET", "MNLI", "MRPC", "PRESETS", "QQP", "SST2"]
