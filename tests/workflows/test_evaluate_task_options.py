"""``evaluate`` uses the task options a checkpoint was trained with (recorded in its
``nnprune_config.json``): custom text-classification columns after a real fine-prune run, SQuAD
v2.0 semantics for a question-answering checkpoint (also from a fill output's stages), explicit
``--task-option`` keys winning, and a recorded hub source giving way to local files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_args, minilm_path, save_tiny_model, tiny_config

from nnprune.errors import NNPruneError
from nnprune.workflows.evaluate import (evaluate_checkpoint, evaluation_task_options,
                                        training_task_options)

QA = "question-answering"
CONTEXT = "Paris is the capital of France. The Seine flows through Paris."
#: (id, question, answer or None: unanswerable)
QUESTIONS = [("1", "What is the capital of France?", "Paris"),
             ("2", "Which river flows through Paris?", "The Seine"),
             ("3", "What is the capital of Spain?", None)]
V2 = {"version_2_with_negative": "true"}


def write_config(folder: Path, info: dict) -> Path:
    (folder / "nnprune_config.json").write_text(json.dumps(info), encoding="utf-8")
    return folder


def squad_file(path: Path) -> Path:
    """An official-layout SQuAD file of :data:`QUESTIONS` (one unanswerable: v2.0 only)."""
    qas = [{"id": qid, "question": q, "is_impossible": a is None,
            "answers": [] if a is None else [{"text": a, "answer_start": CONTEXT.index(a)}]}
           for qid, q, a in QUESTIONS]
    data = [{"title": "T", "paragraphs": [{"context": CONTEXT, "qas": qas}]}]
    path.write_text(json.dumps({"version": "2.0", "data": data}), encoding="utf-8")
    return path


def test_recorded_options_are_found_where_each_workflow_writes_them(tmp_path):
    def training_task_options_of(info: dict) -> dict:
        return training_task_options(write_config(tmp_path, info), QA)

    fine_prune = {"task": QA, "training": {"task_options": V2}}
    assert training_task_options_of(fine_prune) == V2
    # a fill output: its own record first, else the latest stage that has some
    fill = {"task": QA, "training": {"task_options": {}},
            "stages": [{"stage": "prune", "checkpoint": "p", "training": {"task_options": V2}},
                       {"stage": "fill", "checkpoint": "f", "training": {"task_options": {}}}]}
    assert training_task_options_of(fill) == V2
    again = {"stage": "fill", "checkpoint": "g", "training": {"task_options": {"n_best_size": "5"}}}
    later = dict(fill, stages=fill["stages"] + [again])
    assert training_task_options_of(later) == {"n_best_size": "5"}
    prune = {"task": QA, "training": {"max_seq_length": 64}, "post_training": {
        "method": "fisher+search", "options": {"task_options": V2}, "calibration_examples": 64,
        "max_seq_length": 64, "kept": {}, "flops": {}, "predicted_speedup": 2.0,
        "speed_setting": {}}}
    assert training_task_options_of(prune) == V2
    # another task's options, or none at all, are not taken
    assert training_task_options_of({"task": "squad_v2", "training": {"task_options": V2}}) == {}
    assert training_task_options_of({"task": QA}) == {}


def test_explicit_keys_win_and_local_files_replace_a_recorded_hub_source(tmp_path):
    write_config(tmp_path, {"task": QA, "training": {"task_options": {
        **V2, "dataset": "org/qa", "dataset_config": "en", "validation_split": "dev",
        "n_best_size": "5"}}})
    options, recorded = evaluation_task_options(tmp_path, QA, {"n_best_size": "7"},
                                                local_data=True)
    assert options == {**V2, "n_best_size": "7"} and recorded == V2
    options, _ = evaluation_task_options(tmp_path, QA, None, local_data=False)
    assert options["dataset"] == "org/qa" and options["n_best_size"] == "5"
    # an explicit source is the user's choice: kept, so the task refuses both sources
    options, _ = evaluation_task_options(tmp_path, QA, {"dataset": "x"}, local_data=True)
    assert options["dataset"] == "x"


def test_question_answering_checkpoint_evaluates_as_v2_without_repeating_the_option(tmp_path):
    qa_model = save_tiny_model(tmp_path / "qa", "bert", head="question-answering")
    dev = squad_file(tmp_path / "dev.json")
    # without a record the task is SQuAD v1.1, which refuses unanswerable questions
    with pytest.raises(NNPruneError, match=r"have no answer .*version_2_with_negative=true"):
        evaluate_checkpoint(QA, qa_model, validation_file=dev, max_seq_length=64)

    # a fill output whose prune stage recorded the option (and a hub source, replaced by dev)
    write_config(qa_model, {"task": QA, "training": {"task_options": {}, "max_seq_length": 64},
                            "stages": [{"stage": "prune", "training": {"task_options": {
                                **V2, "dataset": "org/qa"}}}]})
    result = evaluate_checkpoint(QA, qa_model, validation_file=dev, batch_size=2)
    assert result.max_seq_length == 64 and result.num_examples == 3
    assert {"exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1"} <= set(result.metrics)
    assert result.metrics["total"] == 3

    # an explicit option wins over the recorded one
    with pytest.raises(NNPruneError, match=r"have no answer"):
        evaluate_checkpoint(QA, qa_model, validation_file=dev,
                            task_options={"version_2_with_negative": "false"})
    # a recorded option the task refuses says where it came from
    write_config(qa_model, {"task": QA, "training": {"task_options": {"version2": "true"}}})
    with pytest.raises(NNPruneError, match=r"unknown question-answering option key 'version2'.*"
                                           r"recorded in .*nnprune_config\.json: version2; "
                                           r"override with --task-option"):
        evaluate_checkpoint(QA, qa_model, validation_file=dev)


def test_text_classification_checkpoint_keeps_its_custom_columns(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune

    base = tmp_path / "base"
    AutoModel.from_config(tiny_config("bert")).save_pretrained(base)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(base)
    rows = [f"a {word} film\t{stars}" for word, stars in
            [("great", "good"), ("awful", "bad"), ("moving", "good"), ("dull", "bad")] * 4]
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.tsv").write_text("body\tstars\n" + "\n".join(rows) + "\n")
    (data / "dev.tsv").write_text("body\tstars\n" + "\n".join(rows[:6]) + "\n")
    options = {"text_column": "body", "label_column": "stars"}
    out = tmp_path / "run"
    trained = fine_prune(make_args(
        FinePruneArgs, task="text-classification", model=str(base), output_dir=out,
        data_dir=data, method="movement", max_steps=2, batch_size=8, learning_rate=1e-3,
        max_seq_length=16, logging_steps=1, save_steps=1000, seed=0, task_options=options))

    again = evaluate_checkpoint("text-classification", out, data_dir=data)
    assert again.max_seq_length == 16 and again.num_examples == 6
    assert again.metrics["accuracy"] == pytest.approx(trained.metrics["accuracy"])
    # explicit keys win, the other recorded ones stay
    with pytest.raises(NNPruneError, match=r"dev\.tsv: missing column 'score' \(label_column\)"):
        evaluate_checkpoint("text-classification", out, data_dir=data,
                            task_options={"label_column": "score"})
