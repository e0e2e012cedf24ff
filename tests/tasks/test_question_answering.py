"""The generic ``question-answering`` task (issue #13), of which ``squad`` / ``squad_v2`` are
presets (issue #23). Same features and metrics as ``squad`` / ``squad_v2`` on the same files,
custom column names for flat rows and hub datasets, the v2 option, one-line errors, presets as
data, and a fine-prune run."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import make_args, save_tiny_model

from nnprune.errors import NNPruneError
from nnprune.tasks import TASKS, DataArgs, get_task
from nnprune.registry import Registry
from nnprune.tasks.base import register_preset
from nnprune.tasks.qa_features import SquadEvalSet
from nnprune.tasks.question_answering import (QuestionAnsweringOptions, QuestionAnsweringPreset,
                                              QuestionAnsweringTask)
from nnprune.tasks.sources import PresetHub
from nnprune.tasks.squad import SQUAD_V1, SQUAD_V2
from nnprune.tasks.squad_format import read_squad_file

TASK = "question-answering"
LENGTH = 64  # short windows: the long context below is split into several features

LONG = ("The Normans were the people who in the 10th and 11th centuries gave their name to "
        "Normandy, a region in France. They were descended from Norse raiders and pirates from "
        "Denmark, Iceland and Norway who, under their leader Rollo, agreed to swear fealty to "
        "King Charles III of West Francia. Through generations of assimilation and mixing with "
        "the native Frankish and Roman-Gaulish populations, their descendants would gradually "
        "merge with the Carolingian-based cultures of West Francia.")
SHORT = "Paris is the capital of France. The Seine flows through Paris."


def qa(qid: str, question: str, context: str, answer: str | None) -> dict:
    if answer is None:
        return {"id": qid, "question": question, "answers": [], "is_impossible": True}
    return {"id": qid, "question": question,
            "answers": [{"text": answer, "answer_start": context.index(answer)}]}


QUESTIONS = [
    (LONG, "1", "In what country is Normandy located?", "France"),
    (LONG, "2", "When were the Normans in Normandy?", "10th and 11th centuries"),
    (LONG, "3", "Who was the leader of the Norse?", "Rollo"),
    (LONG, "4", "With which cultures did they merge?", "Carolingian-based cultures"),
    (SHORT, "5", "What is the capital of France?", "Paris"),
    (SHORT, "6", "Which river flows through Paris?", "The Seine"),
]
UNANSWERABLE = [(LONG, "7", "Who was the king of Denmark?", None),
                (SHORT, "8", "What is the capital of Spain?", None)]


def official(path: Path, questions=QUESTIONS) -> Path:
    """An official-layout SQuAD file: one paragraph per context, its questions in order."""
    paragraphs: dict[str, list[dict]] = {}
    for context, qid, question, answer in questions:
        paragraphs.setdefault(context, []).append(qa(qid, question, context, answer))
    data = [{"title": "T", "paragraphs": [{"context": c, "qas": q} for c, q in paragraphs.items()]}]
    path.write_text(json.dumps({"version": "1.1", "data": data}), encoding="utf-8")
    return path


def flat_rows(questions=QUESTIONS, *, names=("id", "question", "context", "answers"),
              as_list: bool = False) -> list[dict]:
    """One row per question with the given field names; answers as the hub's dict of lists, or
    (``as_list``) a list of ``{text, answer_start}``."""
    qid_k, q_k, c_k, a_k = names
    rows = []
    for context, qid, question, answer in questions:
        texts = [] if answer is None else [answer]
        starts = [] if answer is None else [context.index(answer)]
        answers = ([{"text": t, "answer_start": s} for t, s in zip(texts, starts)] if as_list
                   else {"text": texts, "answer_start": starts})
        rows.append({qid_k: qid, q_k: question, c_k: context, a_k: answers})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


class FakeTrainer:
    """Only what ``evaluate`` uses: ``predict`` returning (start, end) logits."""

    def __init__(self, start: np.ndarray, end: np.ndarray) -> None:
        self.out = SimpleNamespace(predictions=(start, end), label_ids=None, metrics={})

    def predict(self, ds, metric_key_prefix: str = "eval"):
        return self.out


def random_logits(n_features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded logits ``(n_features, LENGTH)``: some answers right, some wrong, some null."""
    gen = np.random.default_rng(seed)
    return gen.normal(size=(n_features, LENGTH)), gen.normal(size=(n_features, LENGTH))


def assert_same_data(a, b) -> None:
    """Two loads give identical train/eval features, examples and decoding metadata."""
    assert a.train.to_dict() == b.train.to_dict()
    assert a.eval["validation"].to_dict() == b.eval["validation"].to_dict()
    ea, eb = a.eval_examples["validation"], b.eval_examples["validation"]
    assert isinstance(ea, SquadEvalSet) and ea.examples == eb.examples
    fa, fb = ea.features, eb.features
    assert np.array_equal(fa.example_index, fb.example_index)
    assert np.array_equal(fa.cls_index, fb.cls_index)
    assert len(fa.offsets) == len(fb.offsets)
    assert all(np.array_equal(x, y) for x, y in zip(fa.offsets, fb.offsets))


# ----------------------------------------------------------------------------- options


def test_registered_with_squad_defaults():
    assert TASK in TASKS.names()
    task = get_task(TASK)
    assert isinstance(task, QuestionAnsweringTask) and task.preset is None
    assert task.name == TASK and not task.version_2 and task.file_version == "1.1"
    assert task.main_metric == "f1" and task.default_max_seq_length == 384
    assert task.head_suffix == "ForQuestionAnswering"
    squad = get_task("squad")
    for key in ("doc_stride", "n_best_size", "max_answer_length", "null_score_diff_threshold",
                "columns"):
        assert getattr(task, key) == getattr(squad, key), key
    v2 = get_task(TASK, {"version_2_with_negative": "yes", "null_score_diff_threshold": "-1.5",
                         "doc_stride": "32", "n_best_size": "5", "max_answer_length": "8"})
    assert v2.version_2 and v2.file_version == "2.0" and v2.null_score_diff_threshold == -1.5
    assert (v2.doc_stride, v2.n_best_size, v2.max_answer_length) == (32, 5, 8)
    # the Python API takes the options object
    api = QuestionAnsweringTask(QuestionAnsweringOptions(version_2_with_negative=True))
    assert api.version_2 and api.file_version == "2.0"
    # the presets keep their settings
    assert not SQUAD_V1.options.version_2_with_negative
    assert SQUAD_V2.options.version_2_with_negative
    assert get_task("squad").null_score_diff_threshold == 0.0
    assert get_task("squad_v2").null_score_diff_threshold == 0.0


def test_squad_is_a_preset_and_a_new_preset_is_data(tokenizer, tmp_path):
    """``squad`` / ``squad_v2`` are the generic adapter with a preset; registering another
    preset makes a named task with its own settings and refusal of options."""
    for name, preset in (("squad", SQUAD_V1), ("squad_v2", SQUAD_V2)):
        task = get_task(name)
        assert type(task) is QuestionAnsweringTask and task.preset is preset
        with pytest.raises(NNPruneError, match=f"task {name} takes no --task-option"):
            get_task(name, {"doc_stride": "32"})
    registry: Registry = Registry("task")
    preset = QuestionAnsweringPreset(
        name="myqa", hub=PresetHub("org/myqa"),
        options=QuestionAnsweringOptions(version_2_with_negative=True, max_answer_length=8))
    register_preset(preset, QuestionAnsweringTask, registry)
    assert "myqa" not in TASKS
    task = registry.get("myqa")()
    assert task.name == "myqa" and task.version_2 and task.max_answer_length == 8
    f = official(tmp_path / "dev.json", QUESTIONS[:2] + UNANSWERABLE)
    data = task.load_data(tokenizer, DataArgs(validation_file=f, max_seq_length=LENGTH),
                          need_train=False)
    assert [ex.has_answer for ex in data.eval_examples["validation"].examples] == [
        True, True, False, False]
    with pytest.raises(ValueError, match="options.dataset must stay empty"):
        QuestionAnsweringPreset(name="x", hub=PresetHub("org/x"),
                                options=QuestionAnsweringOptions(dataset="org/y"))


@pytest.mark.parametrize("options, match", [
    ({"version2": "true"}, r"unknown question-answering option key 'version2'; known: .*"
                           r"version_2_with_negative"),
    ({"version_2_with_negative": "maybe"}, r"version_2_with_negative expects a bool"),
    ({"question_column": " "}, r"question_column must not be empty"),
    ({"question_column": "text", "context_column": "text"},
     r"one column for several fields: text"),
    ({"dataset_config": "en"}, r"dataset_config=en needs dataset=NAME"),
    ({"validation_split": ""}, r"validation_split must not be empty"),
    ({"doc_stride": "-1"}, r"doc_stride must be >= 0, got -1"),
    ({"n_best_size": "0"}, r"n_best_size must be >= 1, got 0"),
    ({"max_answer_length": "x"}, r"max_answer_length expects an int"),
    ({"null_score_diff_threshold": "1"}, r"null_score_diff_threshold applies to unanswerable "
                                         r"questions; pass version_2_with_negative=true"),
    ({"version_2_with_negative": "1", "null_score_diff_threshold": "nan"},
     r"null_score_diff_threshold expects a finite number"),
])
def test_bad_options_are_one_line_errors(options, match):
    with pytest.raises(NNPruneError, match=match) as e:
        get_task(TASK, options)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------- same as squad / squad_v2


def test_same_features_and_metrics_as_squad_on_an_official_file(tokenizer, tmp_path):
    f = official(tmp_path / "dev.json")
    args = DataArgs(train_file=f, validation_file=f, max_seq_length=LENGTH)
    squad, generic = get_task("squad"), get_task(TASK)
    a, b = squad.load_data(tokenizer, args), generic.load_data(tokenizer, args)
    assert_same_data(a, b)
    n_feat = len(b.eval["validation"])
    assert n_feat > len(QUESTIONS)  # the long context overflows into several windows
    for start, end in (random_logits(n_feat, 0), random_logits(n_feat, 1)):
        got = generic.evaluate(FakeTrainer(start, end), b)
        assert got == squad.evaluate(FakeTrainer(start, end), a)
        assert set(got) == {"exact_match", "f1"}
        assert generic.prediction_files() == squad.prediction_files()
    # the gold spans as logits: every answer found
    start = np.zeros((len(b.train), LENGTH))
    end = np.zeros((len(b.train), LENGTH))
    start[np.arange(len(b.train)), b.train["start_positions"][:]] = 10.0
    end[np.arange(len(b.train)), b.train["end_positions"][:]] = 10.0
    assert generic.evaluate(FakeTrainer(start, end), b) == {"exact_match": 100.0, "f1": 100.0}
    assert set(generic.prediction_files()) == {"predictions.json"}


def test_v2_option_matches_squad_v2(tokenizer, tmp_path):
    f = official(tmp_path / "dev.json", QUESTIONS + UNANSWERABLE)
    args = DataArgs(train_file=f, validation_file=f, max_seq_length=LENGTH)
    with pytest.raises(NNPruneError, match=r"2 question\(s\) have no answer \(e\.g\. id 7\); "
                                           r"SQuAD v1\.1 needs one: pass --task-option "
                                           r"version_2_with_negative=true"):
        get_task(TASK).load_data(tokenizer, args)
    squad_v2 = get_task("squad_v2")
    generic = get_task(TASK, {"version_2_with_negative": "true"})
    a, b = squad_v2.load_data(tokenizer, args), generic.load_data(tokenizer, args)
    assert_same_data(a, b)
    start, end = random_logits(len(b.eval["validation"]), 2)
    got = generic.evaluate(FakeTrainer(start, end), b)
    assert got == squad_v2.evaluate(FakeTrainer(start, end), a)
    assert {"exact", "f1", "total", "HasAns_f1", "NoAns_f1", "best_f1",
            "best_f1_thresh"} <= set(got)
    assert got["total"] == len(QUESTIONS) + 2
    files = generic.prediction_files()
    assert files == squad_v2.prediction_files() and set(files) == {"predictions.json",
                                                                   "null_odds.json"}
    # a threshold of its own: at -1e9 every null-score difference is above it, every answer ""
    low = get_task(TASK, {"version_2_with_negative": "true", "null_score_diff_threshold": "-1e9"})
    low.evaluate(FakeTrainer(start, end), low.load_data(tokenizer, DataArgs(
        validation_file=f, max_seq_length=LENGTH), need_train=False))
    assert set(low.prediction_files()["predictions.json"].values()) == {""}


def test_data_dir_uses_the_version_of_the_option(tokenizer, tmp_path):
    v1, v2 = tmp_path / "v1.1", tmp_path / "v2.0"
    v1.mkdir()
    v2.mkdir()
    official(v1 / "train-v1.1.json")
    official(v1 / "dev-v1.1.json", QUESTIONS[:2])
    official(v2 / "train-v2.0.json", QUESTIONS + UNANSWERABLE)
    official(v2 / "dev-v2.0.json", QUESTIONS[:1] + UNANSWERABLE[:1])
    data = get_task(TASK).load_data(tokenizer, DataArgs(data_dir=tmp_path, max_seq_length=LENGTH))
    assert [ex.id for ex in data.eval_examples["validation"].examples] == ["1", "2"]
    data = get_task(TASK, {"version_2_with_negative": "true"}).load_data(
        tokenizer, DataArgs(data_dir=tmp_path, max_seq_length=LENGTH))
    assert [ex.id for ex in data.eval_examples["validation"].examples] == ["1", "7"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NNPruneError, match=r"question-answering: no training data: expected "
                                           r"train-v2\.0\.json or train\.json"):
        get_task(TASK, {"version_2_with_negative": "true"}).load_data(
            tokenizer, DataArgs(data_dir=empty))


# --------------------------------------------------------------------------- custom columns


def test_custom_columns_in_local_row_files(tokenizer, tmp_path):
    names = ("qid", "query", "passage", "gold")
    options = {"id_column": "qid", "question_column": "query", "context_column": "passage",
               "answers_column": "gold"}
    custom = write_jsonl(tmp_path / "custom.jsonl", flat_rows(names=names, as_list=True))
    as_json = tmp_path / "custom.json"
    as_json.write_text(json.dumps({"data": flat_rows(names=names)}), encoding="utf-8")
    reference = official(tmp_path / "dev.json")
    expected = read_squad_file(reference)
    for path in (custom, as_json):
        data = get_task(TASK, options).load_data(
            tokenizer, DataArgs(validation_file=path, max_seq_length=LENGTH), need_train=False)
        # titles aside (rows have none), the same examples as the official file
        got = data.eval_examples["validation"].examples
        assert [(e.id, e.question, e.context, e.answers, e.answer_starts) for e in got] == [
            (e.id, e.question, e.context, e.answers, e.answer_starts) for e in expected]
    # the default names do not fit these rows: one line naming the file and the field
    with pytest.raises(NNPruneError, match=r"custom\.jsonl: line 1 has no 'id'") as e:
        get_task(TASK).load_data(tokenizer, DataArgs(validation_file=custom), need_train=False)
    assert "\n" not in str(e.value)
    with pytest.raises(NNPruneError, match=r"custom\.json: data\[0\] has neither 'paragraphs' "
                                           r"\(official SQuAD layout\) nor 'context'"):
        get_task(TASK).load_data(tokenizer, DataArgs(validation_file=as_json), need_train=False)


def test_hub_dataset_with_custom_columns(tokenizer, tmp_path, monkeypatch):
    import datasets

    names = ("qid", "query", "passage", "gold")
    splits = {"train": datasets.Dataset.from_list(flat_rows(names=names, as_list=True)),
              "dev": datasets.Dataset.from_list(flat_rows(QUESTIONS[4:], names=names))}
    calls = []

    def fake_load(name, config=None, split=None, **kw):
        calls.append((name, config, split))
        if name != "org/qa":
            raise ConnectionError("offline\nmore")
        if split not in splits:
            raise ValueError(f'Unknown split "{split}". Should be one of {list(splits)}.')
        return splits[split]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    options = {"dataset": "org/qa", "dataset_config": "en", "validation_split": "dev",
               "id_column": "qid", "question_column": "query", "context_column": "passage",
               "answers_column": "gold"}
    task = get_task(TASK, options)
    data = task.load_data(tokenizer, DataArgs(max_seq_length=LENGTH))
    assert calls == [("org/qa", "en", "train"), ("org/qa", "en", "dev")]
    # the same features as the official file of the same questions
    f = official(tmp_path / "train.json")
    g = official(tmp_path / "dev.json", QUESTIONS[4:])
    ref = get_task("squad").load_data(tokenizer, DataArgs(train_file=f, validation_file=g,
                                                          max_seq_length=LENGTH))
    assert data.train.to_dict() == ref.train.to_dict()
    assert data.eval["validation"].to_dict() == ref.eval["validation"].to_dict()
    assert [ex.answers for ex in data.eval_examples["validation"].examples] == [["Paris"],
                                                                                ["The Seine"]]

    # a title column is kept; a missing title is ""
    titled = [dict(r, title=t) for r, t in zip(flat_rows(QUESTIONS[4:], names=names),
                                               ("Paris", None))]
    examples = task._from_hub_split(datasets.Dataset.from_list(titled), "hub[dev]")
    assert [ex.title for ex in examples] == ["Paris", ""]

    # errors: one line each, naming the split, the column and the option
    with pytest.raises(NNPruneError, match=r"org/qa/en\[train\]: missing column 'question' "
                                           r"\(question_column\); found: qid, query, passage, "
                                           r"gold; pass --task-option question_column=NAME") as e:
        get_task(TASK, {**options, "question_column": "question"}).load_data(tokenizer,
                                                                              DataArgs())
    assert "\n" not in str(e.value)
    with pytest.raises(NNPruneError, match=r"could not load org/qa/en\[validation\] \(Unknown "
                                           r"split"):
        get_task(TASK, {**options, "validation_split": "validation"}).load_data(
            tokenizer, DataArgs(), need_train=False)
    with pytest.raises(NNPruneError, match=r"question-answering: could not load other\[train\] "
                                           r"\(offline\); pass --data-dir") as e:
        get_task(TASK, {"dataset": "other"}).load_data(tokenizer, DataArgs())
    assert "\n" not in str(e.value)

    # unanswerable questions in a hub split: refused for v1.1, read with the v2 option
    splits["dev"] = datasets.Dataset.from_list(flat_rows(QUESTIONS[:1] + UNANSWERABLE,
                                                         names=names))
    with pytest.raises(NNPruneError, match=r"org/qa/en\[dev\]: 2 question\(s\) have no answer "
                                           r"\(e\.g\. id 7\).*version_2_with_negative=true"):
        get_task(TASK, options).load_data(tokenizer, DataArgs(), need_train=False)
    data = get_task(TASK, {**options, "version_2_with_negative": "true"}).load_data(
        tokenizer, DataArgs(max_seq_length=LENGTH), need_train=False)
    assert [ex.has_answer for ex in data.eval_examples["validation"].examples] == [True, False,
                                                                                   False]
    # an answer outside its context is caught, as in files
    bad = flat_rows(QUESTIONS[4:5], names=names)
    bad[0]["gold"]["answer_start"] = [999]
    splits["dev"] = datasets.Dataset.from_list(bad)
    with pytest.raises(NNPruneError, match=r"org/qa/en\[dev\]: row 1 \(id 5\): answer 0: "
                                           r"answer_start 999 is out of range"):
        get_task(TASK, options).load_data(tokenizer, DataArgs(), need_train=False)


def test_hub_dataset_from_a_local_folder(tokenizer, tmp_path, monkeypatch):
    """``dataset=`` a folder of JSON lines files, through the real ``datasets.load_dataset``:
    the hub's nested ``answers`` become a struct of lists."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    folder = tmp_path / "my_qa"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", flat_rows())
    write_jsonl(folder / "validation.jsonl", flat_rows(QUESTIONS[:2]))
    task = get_task(TASK, {"dataset": str(folder)})
    data = task.load_data(tokenizer, DataArgs(max_seq_length=LENGTH))
    ref = get_task("squad").load_data(tokenizer, DataArgs(
        train_file=official(tmp_path / "t.json"),
        validation_file=official(tmp_path / "d.json", QUESTIONS[:2]), max_seq_length=LENGTH))
    assert data.train.to_dict() == ref.train.to_dict()
    assert [ex.id for ex in data.eval_examples["validation"].examples] == ["1", "2"]


def test_source_errors(tokenizer, tmp_path):
    f = official(tmp_path / "dev.json")
    with pytest.raises(NNPruneError, match=r"question-answering: no data: pass --data-dir, "
                                           r"--train-file/--validation-file or --task-option "
                                           r"dataset=NAME"):
        get_task(TASK).load_data(tokenizer, DataArgs(), need_train=False)
    with pytest.raises(NNPruneError, match=r"both local data files and dataset=org/qa given"):
        get_task(TASK, {"dataset": "org/qa"}).load_data(tokenizer, DataArgs(validation_file=f),
                                                        need_train=False)
    with pytest.raises(NNPruneError, match=r"question-answering: no training data: pass "
                                           r"--train-file or --data-dir"):
        get_task(TASK).load_data(tokenizer, DataArgs(validation_file=f))


# ----------------------------------------------------------------------------- end to end


def test_fine_prune_with_the_v2_option(tmp_path):
    from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune

    train = official(tmp_path / "train.json", QUESTIONS + UNANSWERABLE)
    dev = official(tmp_path / "dev.json", QUESTIONS[:3] + UNANSWERABLE[:1])
    model = save_tiny_model(tmp_path / "qa", "bert", head="question-answering")
    out = tmp_path / "out"
    result = fine_prune(make_args(
        FinePruneArgs, task=TASK, model=str(model), output_dir=out, method="movement",
        max_steps=2, batch_size=4, max_seq_length=LENGTH, train_file=train,
        validation_file=dev, logging_steps=1, save_steps=1000,
        task_options={"version_2_with_negative": "true"}))
    assert result.main_metric == "f1" and result.steps == 2
    assert {"exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1"} <= set(result.metrics)
    assert result.metrics["total"] == 4
    assert sorted(Path(p).name for p in result.prediction_files) == ["null_odds.json",
                                                                    "predictions.json"]
    saved = json.loads((out / "nnprune_config.json").read_text())
    assert saved["task"] == TASK
    assert saved["training"]["task_options"] == {"version_2_with_negative": "true"}
