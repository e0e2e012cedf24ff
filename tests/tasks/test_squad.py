"""SQuAD v1.1 / v2.0 adapters: official metrics, preprocessing and decoding round trips on real
dev questions, file errors, fine-pruning end to end and the ``evaluate`` command."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import SHARED_DATA, load_benchmark, make_args, save_tiny_model

from nnprune.errors import NNPruneError
from nnprune.tasks import TASKS, DataArgs, get_task
from nnprune.tasks.qa_features import (
    SquadEvalSet,
    postprocess_predictions,
    prepare_eval_features,
    window_sizes,
)
from nnprune.tasks.question_answering import QuestionAnsweringTask
from nnprune.tasks.squad import SQUAD_V1, SQUAD_V2
from nnprune.tasks.squad_format import read_squad_file
from nnprune.tasks.squad_metrics import (
    compute_exact,
    compute_f1,
    exact_match_score,
    f1_score,
    find_best_thresh,
    normalize_answer,
    squad_v1_evaluate,
    squad_v2_evaluate,
)
from nnprune.workflows.training import write_prediction_files

SQUAD = SHARED_DATA / "squad"
DEV_V1 = SQUAD / "v1.1" / "dev-v1.1.json"
DEV_V2 = SQUAD / "v2.0" / "dev-v2.0.json"


def needs(path: Path) -> None:
    if not path.is_file():
        pytest.skip(f"{path} not present")


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def squad_file(path: Path, paragraphs: list[dict], title: str = "T") -> Path:
    return write_json(path, {"version": "1.1", "data": [{"title": title,
                                                          "paragraphs": paragraphs}]})


def qa(qid: str, question: str, context: str, answer: str | None) -> dict:
    if answer is None:
        return {"id": qid, "question": question, "answers": [], "is_impossible": True}
    return {"id": qid, "question": question,
            "answers": [{"text": answer, "answer_start": context.index(answer)}]}


def _whole_words(context: str, start: int, text: str) -> bool:
    end = start + len(text)
    return (start == 0 or not context[start - 1].isalnum()) and \
        (end == len(context) or not context[end].isalnum())


def subset_of(src: Path, n_questions: int, *, v2: bool) -> dict:
    """The longest paragraphs of ``src`` with their questions, about ``n_questions`` in all, as
    an official file. Only questions whose gold answers the recipe can reproduce: on word
    boundaries (tokens cannot split "1990s") and the first one short (< 30 tokens)."""
    obj = json.loads(src.read_text(encoding="utf-8"))
    paragraphs = [(a["title"], p) for a in obj["data"] for p in a["paragraphs"]]
    paragraphs.sort(key=lambda tp: -len(tp[1]["context"]))
    data, total = [], 0
    for title, p in paragraphs:
        qas = [q for q in p["qas"]
               if all(_whole_words(p["context"], a["answer_start"], a["text"])
                      for a in q["answers"])
               and (not q["answers"] or len(q["answers"][0]["text"].split()) <= 10)][:4]
        if v2 and not any(not q["answers"] for q in qas):
            continue  # make sure unanswerable questions are in
        data.append({"title": title, "paragraphs": [{"context": p["context"], "qas": qas}]})
        total += len(qas)
        if total >= n_questions:
            break
    return {"version": obj["version"], "data": data}


def gold_logits(train_ds, length: int, big: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """One-hot logits at the gold start/end token of every feature (CLS where out of window)."""
    sp = np.asarray(train_ds["start_positions"][:])
    ep = np.asarray(train_ds["end_positions"][:])
    start = np.zeros((len(sp), length))
    end = np.zeros((len(sp), length))
    start[np.arange(len(sp)), sp] = big
    end[np.arange(len(sp)), ep] = big
    return start, end


def gold_answers(path: Path) -> dict[str, list[str]]:
    """``{question id: gold answer texts}`` of an official SQuAD file, read as the official
    evaluation scripts read it."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return {q["id"]: [a["text"] for a in q["answers"]]
            for article in data for p in article["paragraphs"] for q in p["qas"]}


def check_prediction_files(folder: Path, dataset: Path, metrics: dict, *, v2: bool) -> None:
    """``predictions.json`` (and, v2, ``null_odds.json``) in ``folder`` cover every question of
    ``dataset``, and the official formulas on them give exactly the reported scores (v2: at
    no-answer threshold 0, as evaluate-v2.0.py --na-prob-file null_odds.json
    --na-prob-thresh 0)."""
    gold = gold_answers(dataset)
    preds = json.loads((folder / "predictions.json").read_text(encoding="utf-8"))
    assert set(preds) == set(gold) and all(isinstance(t, str) for t in preds.values())
    if not v2:
        assert not (folder / "null_odds.json").exists()
        assert squad_v1_evaluate(gold, preds) == {k: metrics[k] for k in ("exact_match", "f1")}
        return
    odds = json.loads((folder / "null_odds.json").read_text(encoding="utf-8"))
    assert set(odds) == set(gold) and all(isinstance(v, float) for v in odds.values())
    assert all(preds[q] == "" for q in gold if odds[q] > 0)  # the answers are thresholded
    got = squad_v2_evaluate(gold, preds, na_probs=odds, na_prob_thresh=0.0)
    keys = [k for k in got if not k.startswith("best_")]  # best_*: over unthresholded answers
    assert {"exact", "f1", "total", "HasAns_f1", "NoAns_f1"} <= set(keys)
    assert {k: got[k] for k in keys} == {k: metrics[k] for k in keys}


class FakeTrainer:
    """Only what ``evaluate`` uses: ``predict`` returning (start, end) logits."""

    def __init__(self, start: np.ndarray, end: np.ndarray) -> None:
        self.out = SimpleNamespace(predictions=(start, end), label_ids=None, metrics={})

    def predict(self, ds, metric_key_prefix: str = "eval"):
        return self.out


# -------------------------------------------------------------------------------- metrics


def test_normalize_answer_articles_punctuation_case_whitespace():
    assert normalize_answer("The  Quick, brown FOX!") == "quick brown fox"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theory of an\tanswer.") == "theory of answer"  # whole words only
    assert normalize_answer("  ") == ""
    assert exact_match_score("the Denver Broncos.", "Denver broncos")
    assert compute_exact("A cat", "cat") == 1


def test_v1_f1_partial_overlap_and_max_over_gold_answers():
    # pred 3 tokens, gold 4 tokens, 2 shared: P = 2/3, R = 1/2, F1 = 4/7
    assert f1_score("red green blue", "green blue yellow black") == pytest.approx(4 / 7)
    assert f1_score("Broncos", "Denver Broncos") == pytest.approx(2 / 3)
    assert f1_score("", "Denver") == 0.0
    gold = {"q1": ["Paris", "the city of Paris"],  # exact on the first gold answer
            "q2": ["Denver Broncos", "Broncos team of Denver"],  # partial: max(2/3, 2/5*...)
            "q3": ["42"]}  # no prediction -> 0, still counted
    preds = {"q1": "the city of paris", "q2": "Broncos"}
    m = squad_v1_evaluate(gold, preds)
    assert m["exact_match"] == pytest.approx(100 / 3)
    # q2: vs "denver broncos" 2/3; vs "broncos team of denver" P=1, R=1/4 -> 0.4; max = 2/3
    assert m["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0) / 3)


def test_v2_empty_answers():
    assert compute_f1("", "") == 1.0 and compute_exact("", "") == 1
    assert compute_f1("", "something") == 0.0 and compute_f1("Paris", "") == 0.0
    gold = {"a": ["Paris"], "n1": [], "n2": [], "t": ["The"]}  # "The" normalises to nothing
    preds = {"a": "Paris", "n1": "", "n2": "Lyon", "t": ""}
    m = squad_v2_evaluate(gold, preds)
    assert m["exact"] == pytest.approx(75.0) and m["f1"] == pytest.approx(75.0)
    assert m["total"] == 4 and m["HasAns_total"] == 2 and m["NoAns_total"] == 2
    assert m["HasAns_exact"] == 100.0  # "t" has an answer that counts as "" -> "" is right
    assert m["NoAns_exact"] == 50.0
    assert "best_f1" not in m


def test_v2_threshold_search_picks_the_right_threshold():
    gold = {"a": ["right"], "b": ["right"], "c": [], "d": []}
    preds = {"a": "right", "b": "wrong", "c": "x", "d": "y"}
    na = {"a": 0.1, "d": 0.2, "b": 0.5, "c": 0.7}
    # all null: 2/4; +a (0.1): 3/4 best; +d: 2/4; +b: 2/4; +c: 1/4
    assert find_best_thresh(preds, {"a": 1, "b": 0, "c": 0, "d": 0}, na,
                            {"a": True, "b": True, "c": False, "d": False}) == (75.0, 0.1)
    m = squad_v2_evaluate(gold, preds, na_probs=na, na_prob_thresh=0.3)
    # at 0.3: a, d answered (a right, d wrong); b, c null (b wrong, c right)
    assert m["exact"] == 50.0 and m["HasAns_exact"] == 50.0 and m["NoAns_exact"] == 50.0
    assert m["best_exact"] == 75.0 and m["best_exact_thresh"] == 0.1
    assert m["best_f1"] == 75.0 and m["best_f1_thresh"] == 0.1
    # without na_probs every prediction stands (the official default)
    assert squad_v2_evaluate(gold, preds)["exact"] == 25.0


# ----------------------------------------------------------------------- features, decoding


def test_registry_and_defaults():
    assert {"squad", "squad_v2"} <= set(TASKS.names())
    v1, v2 = get_task("squad"), get_task("squad_v2")
    # presets of the generic adapter, not classes of their own
    assert type(v1) is QuestionAnsweringTask and type(v2) is QuestionAnsweringTask
    assert v1.preset is SQUAD_V1 and v2.preset is SQUAD_V2
    assert not v1.version_2 and v2.version_2
    assert v1.main_metric == v2.main_metric == "f1"
    assert v1.default_max_seq_length == 384


def test_window_sizes(tokenizer):
    assert window_sizes(tokenizer, 384) == (128, 252)  # the run_qa.py recipe, questions uncut
    assert window_sizes(tokenizer, 128) == (42, 82)
    stride, max_query = window_sizes(tokenizer, 16)
    assert 0 <= stride < 16 - 3 - max_query


def test_v1_round_trip_on_real_long_contexts(tokenizer, tmp_path):
    needs(DEV_V1)
    f = write_json(tmp_path / "dev.json", subset_of(DEV_V1, 20, v2=False))
    task = get_task("squad")
    data = task.load_data(tokenizer, DataArgs(train_file=f, validation_file=f,
                                              max_seq_length=128))
    eval_set = data.eval_examples["validation"]
    n_ex, n_feat = len(eval_set.examples), len(data.eval["validation"])
    assert n_ex >= 20 and n_feat > 2 * n_ex  # long contexts: several features each
    assert len(data.train) == n_feat and set(data.eval["validation"].column_names) == {
        "input_ids", "token_type_ids", "attention_mask"}
    assert max(len(ids) for ids in data.eval["validation"]["input_ids"][:]) == 128
    # every example has a feature holding its answer
    sp = np.asarray(data.train["start_positions"][:])
    found = {int(eval_set.features.example_index[i]) for i in np.flatnonzero(sp != 0)}
    assert found == set(range(n_ex))
    start, end = gold_logits(data.train, 128)
    metrics = task.evaluate(FakeTrainer(start, end), data)
    assert metrics == {"exact_match": 100.0, "f1": 100.0}
    ex = eval_set.examples[0]
    assert task.last_predictions[ex.id] == ex.answers[0]
    assert set(task.prediction_files()) == {"predictions.json"}
    write_prediction_files(task.prediction_files(), tmp_path / "preds")
    check_prediction_files(tmp_path / "preds", f, metrics, v2=False)


def test_v2_round_trip_with_unanswerable(tokenizer, tmp_path):
    needs(DEV_V2)
    f = write_json(tmp_path / "dev.json", subset_of(DEV_V2, 20, v2=True))
    task = get_task("squad_v2")
    data = task.load_data(tokenizer, DataArgs(train_file=f, validation_file=f,
                                              max_seq_length=128))
    examples = data.eval_examples["validation"].examples
    assert any(not ex.has_answer for ex in examples) and any(ex.has_answer for ex in examples)
    start, end = gold_logits(data.train, 128)
    m = task.evaluate(FakeTrainer(start, end), data)
    for key in ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1",
                "best_exact", "best_f1"):
        assert m[key] == 100.0, key
    assert m["total"] == len(examples)
    assert all(task.last_predictions[ex.id] == "" for ex in examples if not ex.has_answer)
    assert all(task.last_null_score_diffs[ex.id] == -20.0 for ex in examples if ex.has_answer)
    assert set(task.prediction_files()) == {"predictions.json", "null_odds.json"}
    write_prediction_files(task.prediction_files(), tmp_path / "preds")
    check_prediction_files(tmp_path / "preds", f, m, v2=True)


def test_postprocess_rules_on_a_hand_made_feature(tokenizer):
    context = "one two three four five six"
    ex = example_for(context, "two three")
    eval_set = SquadEvalSet([ex], prepare_eval_features(tokenizer, [ex], 64)[1])
    offs = eval_set.features.offsets[0]
    ctx = np.flatnonzero(offs[:, 0] >= 0)
    assert len(ctx) == 6  # one token per word
    start = np.zeros((1, 64))
    end = np.zeros((1, 64))
    start[0, 1] = 50  # a question token: never a valid start
    start[0, ctx[3]] = 5
    end[0, ctx[1]] = 9  # with start "four": end before start, refused
    end[0, ctx[4]] = 6
    texts, diffs = postprocess_predictions(eval_set, start, end)
    assert texts[ex.id] == "four five"
    assert diffs[ex.id] == pytest.approx(0.0 - 11.0)  # null (CLS) score - best span score
    # answers longer than max_answer_length are refused: best 1-token span is "two" (0 + 9)
    texts, _ = postprocess_predictions(eval_set, start, end, max_answer_length=1)
    assert texts[ex.id] == "two"


def example_for(context: str, answer: str):
    from nnprune.tasks.squad_format import SquadExample

    return SquadExample("x", "t", context, "Which letters?", [answer], [context.index(answer)])


def test_long_question_is_cut_not_a_tokenizer_panic(tokenizer):
    from nnprune.tasks.qa_features import prepare_train_features
    from nnprune.tasks.squad_format import SquadExample

    context = " ".join(f"w{i}" for i in range(300))
    ex = SquadExample("q", "t", context, "why " * 200, ["w250"], [context.index("w250")])
    ds = prepare_train_features(tokenizer, [ex], 64)
    assert len(ds) > 1 and max(len(x) for x in ds["input_ids"][:]) <= 64
    assert any(s != 0 for s in ds["start_positions"][:])


# --------------------------------------------------------------------------------- files


CTX = "Paris is the capital of France."
GOOD_QA = qa("1", "Capital?", CTX, "Paris")


@pytest.mark.parametrize("content, name, match", [
    ("{not json", "bad.json", r"bad\.json: not valid JSON \(line 1"),
    (json.dumps({"version": "1.1"}), "nodata.json", r"no 'data' list; found keys: version"),
    (json.dumps({"data": {"a": 1}}), "d.json", r"'data' is a JSON object, expected a list"),
    (json.dumps({"data": []}), "d.json", r"'data' is empty"),
    (json.dumps({"data": [{"title": "x"}]}), "d.json", r"data\[0\] has neither 'paragraphs'"),
    (json.dumps({"data": [{"title": "x", "paragraphs": [{"context": CTX, "qas": [
        {"question": "Capital?", "answers": []}]}]}]}), "d.json",
     r"data\[0\]\.paragraphs\[0\]\.qas\[0\] has no 'id'"),
    (json.dumps({"data": [{"title": "x", "paragraphs": [{"context": CTX, "qas": [
        {"id": "7", "answers": []}]}]}]}), "d.json", r"qas\[0\] \(id 7\) has no 'question'"),
    (json.dumps({"data": [{"title": "x", "paragraphs": [{"context": CTX, "qas": [
        {"id": "7", "question": "Q?", "answers": [{"text": "France", "answer_start": 99}]}]}]}]}),
     "d.json", (r"\(id 7\): answer 0: answer_start 99 is out of range for a 6-character "
                r"answer in a 31-character context")),
    (json.dumps({"data": [{"title": "x", "paragraphs": [{"context": CTX, "qas": [
        {"id": "7", "question": "Q?", "answers": [{"text": "Paris", "answer_start": "0"}]}]}]}]}),
     "d.json", r"'answer_start' '0' is not an integer"),
    (json.dumps({"data": [{"title": "x", "paragraphs": [{"context": CTX, "qas": [
        GOOD_QA, GOOD_QA]}]}]}), "d.json", r"duplicate question id '1'"),
    (json.dumps({"data": [{"title": "x", "paragraphs": [{"context": CTX}]}]}), "d.json",
     r"paragraphs\[0\] has no 'qas'"),
    ("a,b\n1,2\n", "d.csv", r"unsupported file type '\.csv' for SQuAD"),
    ("", "d.json", r"file is empty"),
    ('{"id": "1", "question": "Q?", "context": "c"}\n', "d.jsonl",
     r"line 1 \(id 1\) has no 'answers'"),
])
def test_malformed_files_one_line_errors(tmp_path, content, name, match):
    f = tmp_path / name
    f.write_text(content, encoding="utf-8")
    with pytest.raises(NNPruneError, match=match) as e:
        read_squad_file(f)
    assert "\n" not in str(e.value) and str(f) in str(e.value)


def test_v1_refuses_unanswerable_and_v2_accepts(tmp_path, tokenizer):
    f = squad_file(tmp_path / "d.json", [{"context": CTX, "qas": [
        GOOD_QA, qa("2", "Largest moon?", CTX, None)]}])
    with pytest.raises(NNPruneError, match=r"1 question\(s\) have no answer \(e.g. id 2\).*squad_v2"):
        get_task("squad").load_data(tokenizer, DataArgs(validation_file=f), need_train=False)
    data = get_task("squad_v2").load_data(tokenizer, DataArgs(validation_file=f),
                                          need_train=False)
    assert [ex.has_answer for ex in data.eval_examples["validation"].examples] == [True, False]


def test_hub_layout_rows_and_data_dir_names(tmp_path, tokenizer):
    rows = [{"id": "1", "title": "t", "context": CTX, "question": "Capital?",
             "answers": {"text": ["Paris"], "answer_start": [0]}},
            {"id": "2", "context": CTX, "question": "Country?",
             "answers": [{"text": "France", "answer_start": 24}]}]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    write_json(tmp_path / "dev-v1.1.json", {"data": rows})  # rows under "data" work too
    task = get_task("squad")
    data = task.load_data(tokenizer, DataArgs(data_dir=tmp_path, max_seq_length=384))
    assert len(data.train) == 2 and len(data.eval["validation"]) == 2
    assert all(s > 0 for s in data.train["start_positions"][:])
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(NNPruneError, match=r"squad_v2: no training data: expected "
                                           r"train-v2\.0\.json or train\.json"):
        get_task("squad_v2").load_data(tokenizer, DataArgs(data_dir=empty))


def test_shared_squad_root_resolves_version_folder(tokenizer):
    needs(DEV_V1)
    data = get_task("squad").load_data(tokenizer, DataArgs(data_dir=SQUAD, max_eval_samples=3,
                                                           max_seq_length=384),
                                       need_train=False)
    assert len(data.eval_examples["validation"].examples) == 3


def test_hub_rows_and_offline_hub_error(tokenizer, monkeypatch):
    import datasets

    ds = datasets.Dataset.from_dict({
        "id": ["a", "b"], "title": ["t", "t"], "context": [CTX, CTX],
        "question": ["Capital?", "Moon?"],
        "answers": [{"text": ["Paris"], "answer_start": [0]}, {"text": [], "answer_start": []}]})
    examples = get_task("squad_v2")._from_hub_split(ds, "hub[validation]")
    assert [(ex.id, ex.answers, ex.answer_starts) for ex in examples] == [
        ("a", ["Paris"], [0]), ("b", [], [])]
    with pytest.raises(NNPruneError, match="unanswerable questions; use task squad_v2"):
        get_task("squad")._from_hub_split(ds, "hub[validation]")

    def offline(*args, **kwargs):
        raise ConnectionError("no network\nmore")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(NNPruneError, match=r"squad: could not load hub dataset rajpurkar/squad "
                                           r"\(no network\); pass --data-dir"):
        get_task("squad").load_data(tokenizer, DataArgs(), need_train=False)


# ------------------------------------------------------------------------- split script


def test_split_squad_by_article(tmp_path, capsys):
    needs(DEV_V1)
    mod = load_benchmark("split_squad")
    assert mod.main([str(DEV_V1), "--out", str(tmp_path)]) == 0
    assert "36 articles" in capsys.readouterr().out
    train = json.loads((tmp_path / "train-v1.1.json").read_text())["data"]
    dev = json.loads((tmp_path / "dev-v1.1.json").read_text())["data"]
    assert len(train) == 36 and len(dev) == 12
    assert not {a["title"] for a in train} & {a["title"] for a in dev}
    nq = [sum(len(p["qas"]) for a in part for p in a["paragraphs"]) for part in (train, dev)]
    assert sum(nq) == 10570
    summary = json.loads((tmp_path / "split.json").read_text())
    assert summary["train"]["questions"] == nq[0] and summary["eval"]["questions"] == nq[1]
    assert mod.split_squad(DEV_V1, tmp_path / "again")["eval"]["titles"] == summary["eval"]["titles"]

    # v2 after v1.1: v2's evaluation articles are exactly v1.1's that v2 has, so nothing a v1.1
    # model trained on is evaluated
    needs(DEV_V2)
    v2 = mod.split_squad(DEV_V2, tmp_path / "v2", eval_like=tmp_path / "split.json")
    assert set(v2["eval"]["titles"]) <= set(summary["eval"]["titles"])
    assert not set(v2["eval"]["titles"]) & {a["title"] for a in train}
    assert (v2["train"]["articles"], v2["eval"]["articles"]) == (25, 10)
    assert mod.main([str(DEV_V2), "--out", str(tmp_path / "bad"), "--eval-like", str(DEV_V2)]) == 2
    assert "not a split.json" in capsys.readouterr().err


# --------------------------------------------------------------------- fine-prune, evaluate


def test_fine_prune_then_evaluate_command(tmp_path):
    from nnprune.cli.main import main
    from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune

    context = ("The Normans were the people who in the 10th and 11th centuries gave their name "
               "to Normandy, a region in France. They were descended from Norse raiders and "
               "pirates from Denmark, Iceland and Norway. ") * 3
    questions = [("In what country is Normandy located?", "France"),
                 ("When were the Normans in Normandy?", "10th and 11th centuries"),
                 ("From which countries did the Norse originate?", "Denmark, Iceland and Norway"),
                 ("Who gave their name to Normandy?", "The Normans")]
    qas = [qa(str(i), q, context, a) for i, (q, a) in enumerate(questions)]
    train = squad_file(tmp_path / "train.json", [{"context": context, "qas": qas}] * 1)
    dev = squad_file(tmp_path / "dev.json", [{"context": context, "qas": qas[:3]}])
    model = save_tiny_model(tmp_path / "qa", "bert", head="question-answering")
    out = tmp_path / "out"
    result = fine_prune(make_args(FinePruneArgs, 
        task="squad", model=str(model), output_dir=out, method="movement", max_steps=3,
        batch_size=4, max_seq_length=64, train_file=train, validation_file=dev,
        logging_steps=1, save_steps=1000))
    assert result.main_metric == "f1" and result.steps == 3
    assert set(result.metrics) == {"exact_match", "f1"}
    assert 0.0 <= result.metrics["f1"] <= 100.0
    # the answers beside the results, kept by the final save
    assert result.prediction_files == [str(out / "predictions.json")]
    check_prediction_files(out, dev, result.metrics, v2=False)
    assert json.loads((out / "nnprune_results.json").read_text())["prediction_files"] == \
        result.prediction_files

    report = tmp_path / "eval.json"
    preds = tmp_path / "eval-preds"
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "squad", str(out), "--validation-file", str(dev),
              "--batch-size", "8", "--json-file", str(report), "--predictions-dir", str(preds)])
    assert e.value.code == 0
    got = json.loads(report.read_text())
    assert got["kind"] == "masked" and got["max_seq_length"] == 64  # the training length
    assert got["num_examples"] == 3 and got["num_features"] > 3
    # the same masked model, the same features: the same score as at the end of fine-pruning
    assert got["metrics"]["f1"] == pytest.approx(result.metrics["f1"])
    assert got["predictions_file"] == str(preds / "predictions.json")
    assert got["prediction_files"] == [got["predictions_file"]]
    check_prediction_files(preds, dev, got["metrics"], v2=False)

    # compacted (bertarized with --compact): loaded through nnprune.load_pretrained
    from nnprune.pruning_core.bertarize import bertarize

    bertarize(out, tmp_path / "compact", compact=True)
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "squad", str(tmp_path / "compact"), "--validation-file", str(dev),
              "--json-file", str(report)])
    assert e.value.code == 0
    compacted = json.loads(report.read_text())
    assert compacted["kind"] == "compacted"
    assert compacted["predictions_file"] is None  # no --predictions-dir: no files
    assert compacted["metrics"]["f1"] == pytest.approx(result.metrics["f1"], abs=1e-6)

    # a classification checkpoint cannot serve squad: one line, exit 2
    sst = save_tiny_model(tmp_path / "sst", "bert")
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "squad", str(sst), "--validation-file", str(dev)])
    assert e.value.code == 2


def test_evaluate_command_on_glue(tmp_path, capsys):
    from nnprune.cli.main import main

    ckpt = save_tiny_model(tmp_path / "sst", "bert")
    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\na fine film\t1\na dull story\t0\nboring\t0\n")
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "sst2", str(ckpt), "--validation-file", str(dev), "--json",
              "--predictions-dir", str(tmp_path / "preds")])
    assert e.value.code == 0
    got = json.loads(capsys.readouterr().out)
    # classification has no prediction files: nothing written
    assert got["predictions_file"] is None and got["prediction_files"] == []
    assert not (tmp_path / "preds").exists()
    assert got["kind"] == "plain" and got["main_metric"] == "accuracy"
    assert got["max_seq_length"] == 128 and got["num_examples"] == 3
    assert 0.0 <= got["metrics"]["accuracy"] <= 1.0


def test_squad_v2_hybrid_with_teacher_then_fill(tmp_path, capsys):
    """The Hybrid Filled recipe on SQuAD v2: fine-prune distils the teacher's start *and* end
    logits (one KL term each, over every token of the feature), then ``fill`` compacts and
    fine-tunes the QA model and reports the v2 breakdown."""
    import nnprune as trainer_mod  # the commands' trainer distils through nnprune.distillation_loss
    from nnprune.cli.main import main
    from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune

    context = ("The Normans were the people who in the 10th and 11th centuries gave their name "
               "to Normandy, a region in France. They were descended from Norse raiders and "
               "pirates from Denmark, Iceland and Norway. ") * 2
    questions = [("In what country is Normandy located?", "France"),
                 ("When were the Normans in Normandy?", "10th and 11th centuries"),
                 ("Who ruled the Normans in 1500?", None),
                 ("What is the capital of Norway?", None)]
    qas = [qa(str(i), q, context, a) for i, (q, a) in enumerate(questions)]
    data = squad_file(tmp_path / "qa.json", [{"context": context, "qas": qas}])
    teacher = save_tiny_model(tmp_path / "teacher", "bert", head="question-answering")
    files = {"train_file": data, "validation_file": data}

    calls: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    real_kl = trainer_mod.distillation_loss

    def recording_kl(student, teacher_logits, temperature, mask=None):
        calls.append((tuple(student.shape), tuple(teacher_logits.shape)))
        return real_kl(student, teacher_logits, temperature, mask)

    pruned = tmp_path / "pruned"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer_mod, "distillation_loss", recording_kl)
        result = fine_prune(make_args(FinePruneArgs, 
            task="squad_v2", model=str(teacher), teacher=str(teacher), output_dir=pruned,
            method="hybrid", max_steps=2, batch_size=4, max_seq_length=48, logging_steps=1,
            save_steps=1000, **files))
    assert result.steps == 2
    # two steps x (start, end), each (batch, seq_len) against a teacher of the same shape
    assert len(calls) == 4 and all(s == t and s[-1] == 48 for s, t in calls)
    assert {"HasAns_f1", "NoAns_f1", "best_f1", "best_f1_thresh"} <= set(result.metrics)
    check_prediction_files(pruned, data, result.metrics, v2=True)

    capsys.readouterr()  # fine_prune's own log lines
    with pytest.raises(SystemExit) as e:
        main(["fill", str(pruned), "squad_v2", "--teacher", str(teacher),
              "--output-dir", str(tmp_path / "filled"), "--max-steps", "2", "--batch-size", "4",
              "--train-file", str(data), "--validation-file", str(data), "--json"])
    assert e.value.code == 0
    got = json.loads(capsys.readouterr().out)
    assert got["steps"] == 2 and got["heads_kept"] <= got["heads_original"]
    assert got["metrics"]["NoAns_total"] == 2 and got["metrics"]["HasAns_total"] == 2
    filled = tmp_path / "filled"
    assert got["prediction_files"] == [str(filled / "predictions.json"),
                                       str(filled / "null_odds.json")]
    check_prediction_files(filled, data, got["metrics"], v2=True)
    config = json.loads((tmp_path / "filled" / "config.json").read_text())
    assert config["architectures"] == ["BertForQuestionAnswering"]
