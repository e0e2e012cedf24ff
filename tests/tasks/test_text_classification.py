"""The generic ``text-classification`` task: options, columns, label sets and orders, checkpoint
label checks, metrics on hand-computed values, regression, and a tiny fine-prune run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_args, minilm_path, save_tiny_model, tiny_config

from nnprune.errors import NNPruneError
from nnprune.tasks import TASKS, DataArgs, TaskAdapter, get_task
from nnprune.tasks.classification_data import sort_labels
from nnprune.tasks.classification_metrics import (accuracy, average_ranks, class_f1, macro_f1,
                                                  mean_squared_error, pearson, spearman)
from nnprune.tasks.text_classification import LabelOrderCollator, TextClassificationTask

TASK = "text-classification"
INPUT_COLUMNS = {"input_ids", "token_type_ids", "attention_mask", "labels"}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, rows: list[dict]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


def task(**options: str) -> TextClassificationTask:
    t = get_task(TASK, options)
    assert isinstance(t, TextClassificationTask)
    return t


def load(t, tokenizer, train: Path | None, dev: Path, **kw):
    return t.load_data(tokenizer, DataArgs(train_file=train, validation_file=dev,
                                           max_seq_length=32, **kw), need_train=train is not None)


def labels_of(ds) -> list:
    return ds["labels"][:]


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def save_base_model(path: Path, seed: int = 0) -> Path:
    """A tiny BERT without a task head (architectures: BertModel), with the MiniLM tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    AutoModel.from_config(tiny_config("bert")).save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(path)
    return path


def save_named_head(path: Path, names: list[str]) -> Path:
    """A tiny BERT classifier whose config names its labels ``names`` (in that order)."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    config = tiny_config("bert", id2label=dict(enumerate(names)),
                         label2id={n: i for i, n in enumerate(names)})
    AutoModelForSequenceClassification.from_config(config).save_pretrained(path)
    return path


# ----------------------------------------------------------------------------- registry + options


def test_registered_with_options_and_refuses_unknown_ones():
    t = get_task(TASK)
    assert TASK in TASKS.names() and isinstance(t, TaskAdapter)
    assert t.name == TASK and t.main_metric == "accuracy" and t.labels is None
    r = task(regression="yes", text_column="body")
    assert r.regression and r.main_metric == "pearson" and r.options.text_column == "body"
    assert task(labels=" neg , pos ").labels == ("neg", "pos")
    assert task(delimiter="tab").options.delimiter_char == "\t"
    with pytest.raises(NNPruneError, match=r"unknown text-classification option key 'colum'; "
                                           r"known: dataset, dataset_config, delimiter") as e:
        task(colum="x")
    one_line_error(e)


@pytest.mark.parametrize("options, pattern", [
    ({"regression": "maybe"}, "regression expects a bool, got 'maybe'"),
    ({"labels": "a"}, "names one label"),
    ({"labels": "a,,b"}, "empty label name"),
    ({"labels": "a,b,a"}, "repeats a"),
    ({"regression": "true", "labels": "a,b"}, "drop labels="),
    ({"dataset_config": "sst2"}, "needs dataset=NAME"),
    ({"delimiter": "ab"}, "delimiter must be one character"),
    ({"train_split": " "}, "train_split must not be empty"),
])
def test_bad_options_are_one_line_errors(options, pattern):
    with pytest.raises(NNPruneError, match=pattern) as e:
        task(**options)
    one_line_error(e)


# ----------------------------------------------------------------------------- columns


def test_column_defaults_single_text_and_pair(tokenizer, tmp_path):
    single = write(tmp_path / "s.tsv", "id\tsentence\tlabel\n1\tgood\tpos\n2\tbad\tneg\n")
    t = task()
    data = load(t, tokenizer, single, single)
    assert set(data.train.column_names) == INPUT_COLUMNS
    assert 1 not in data.train[0]["token_type_ids"]  # one text
    assert t.labels == ("neg", "pos") and labels_of(data.train) == [1, 0]

    pair = jsonl(tmp_path / "p.jsonl", [
        {"premise": "a man sleeps", "hypothesis": "a man rests", "gold_label": "entailment"},
        {"premise": "a dog runs", "hypothesis": "a cat sits", "gold_label": "neutral"}])
    data = load(task(), tokenizer, pair, pair)
    assert 1 in data.eval["validation"][0]["token_type_ids"]  # a pair
    assert "rests" in tokenizer.decode(data.eval["validation"][0]["input_ids"])


def test_explicit_columns_and_no_pair(tokenizer, tmp_path):
    path = write(tmp_path / "d.csv", "body,extra,sentence2,y\n"
                                     "\"fine, really\",ctx one,second,b\nawful,ctx two,second,a\n")
    t = task(text_column="body", text_pair_column="extra", label_column="y")
    ex = t.load_data(tokenizer, DataArgs(train_file=path, validation_file=path)).eval["validation"]
    assert tokenizer.decode(ex[0]["input_ids"], skip_special_tokens=True) == "fine, really ctx one"
    assert labels_of(ex) == [1, 0]
    # found by name when not named: sentence2 is a pair column ...
    t = task(text_column="body", label_column="y")
    assert "second" in tokenizer.decode(load(t, tokenizer, path, path).train[0]["input_ids"])
    # ... unless text_pair_column=none
    t = task(text_column="body", label_column="y", text_pair_column="none")
    assert 1 not in load(t, tokenizer, path, path).train[0]["token_type_ids"]


@pytest.mark.parametrize("options, pattern", [
    ({}, r"d\.tsv: no text column \(tried 'text', 'sentence', .*\); found: body, stars; "
         r"pass --task-option text_column=NAME"),
    ({"text_column": "body"}, r"no label column \(tried 'label', .*found: body, stars"),
    ({"text_column": "body", "label_column": "score"},
     r"d\.tsv: missing column 'score' \(label_column\); found: body, stars"),
    ({"text_column": "body", "label_column": "stars", "text_pair_column": "other"},
     r"missing column 'other' \(text_pair_column\); found: body, stars"),
])
def test_missing_columns_name_the_columns_found(tokenizer, tmp_path, options, pattern):
    path = write(tmp_path / "d.tsv", "body\tstars\nnice\t5\n")
    with pytest.raises(NNPruneError, match=pattern) as e:
        load(task(**options), tokenizer, path, path)
    one_line_error(e)


def test_json_row_missing_a_column_and_pair_mismatch(tokenizer, tmp_path):
    bad = jsonl(tmp_path / "dev.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}])
    with pytest.raises(NNPruneError, match=r"dev\.jsonl: line 2: missing column\(s\) 'label'"):
        load(task(), tokenizer, None, bad)
    train = write(tmp_path / "train.tsv", "sentence1\tsentence2\tlabel\na\tb\tx\nc\td\ty\n")
    dev = write(tmp_path / "dev.tsv", "sentence1\tlabel\na\tx\n")
    with pytest.raises(NNPruneError, match=r"train\.tsv has text pairs but .*dev\.tsv single"):
        load(task(), tokenizer, train, dev)


# ----------------------------------------------------------------------------- labels


def test_labels_sorted_from_training_data_numerically_when_numbers(tokenizer, tmp_path):
    rows = [{"text": f"t{i}", "label": lab} for i, lab in enumerate([10, 2, "1", 2.0, 10])]
    path = jsonl(tmp_path / "n.jsonl", rows)
    t = task()
    data = load(t, tokenizer, path, path)
    assert t.labels == ("1", "2", "10")  # JSON 2.0 is "2"; numbers sort as numbers
    assert labels_of(data.train) == [2, 1, 0, 1, 2]
    assert sort_labels(["b", "10", "a"]) == ("10", "a", "b")  # not all numbers: as text
    assert sort_labels(["-1", "0.5", "-2"]) == ("-2", "-1", "0.5")

    words = write(tmp_path / "w.tsv", "text\tlabel\nx\tsports\ny\tart\nz\tnews\n")
    t = task()
    assert labels_of(load(t, tokenizer, words, words).train) == [2, 0, 1]
    assert t.labels == ("art", "news", "sports") and t.labels_source.endswith("w.tsv")


def test_labels_option_fixes_the_order(tokenizer, tmp_path):
    words = write(tmp_path / "w.tsv", "text\tlabel\nx\tsports\ny\tart\nz\tnews\n")
    t = task(labels="sports,news,art")
    data = load(t, tokenizer, words, words)
    assert labels_of(data.train) == [0, 2, 1] and t.labels == ("sports", "news", "art")
    # a label set may be larger than the labels seen in the data
    t = task(labels="sports,news,art,weather")
    assert labels_of(load(t, tokenizer, words, words).eval["validation"]) == [0, 2, 1]
    with pytest.raises(NNPruneError, match=r"w\.tsv: line 3: label 'art' is not in the label set "
                                           r"\(sports, news\) of --task-option labels") as e:
        load(task(labels="sports,news"), tokenizer, words, words)
    one_line_error(e)


def test_eval_label_outside_the_training_labels(tokenizer, tmp_path):
    train = write(tmp_path / "train.csv", "text,label\na,x\nb,y\n")
    dev = write(tmp_path / "dev.csv", "text,label\na,x\nb,z\n")
    with pytest.raises(NNPruneError, match=r"dev\.csv: line 3: label 'z' is not in the label set "
                                           r"\(x, y\) of .*train\.csv") as e:
        load(task(), tokenizer, train, dev)
    one_line_error(e)


@pytest.mark.parametrize("text, pattern", [
    ("text,label\na,x\nb,\n", r"line 3 has no label"),
    ("text,label\na,x\nb,x\n", r"has one label \(x\); a classifier needs at least 2"),
])
def test_bad_labels(tokenizer, tmp_path, text, pattern):
    path = write(tmp_path / "t.csv", text)
    with pytest.raises(NNPruneError, match=pattern) as e:
        load(task(), tokenizer, path, path)
    one_line_error(e)


def test_evaluation_only_takes_labels_from_eval_data_with_warning(tokenizer, tmp_path, caplog):
    dev = write(tmp_path / "dev.tsv", "text\tlabel\na\tb\nc\ta\n")
    t = task()
    with caplog.at_level("WARNING", logger="nnprune.tasks.text_classification"):
        data = load(t, tokenizer, None, dev)
    assert data.train is None and t.labels == ("a", "b")
    assert "label order taken from the evaluation data" in caplog.text


# ----------------------------------------------------------------------------- data sources


def test_data_dir_finds_train_and_validation_or_dev(tokenizer, tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    write(folder / "train.csv", "text,label\na,x\nb,y\nc,x\n")
    jsonl(folder / "dev.jsonl", [{"text": "d", "label": "y"}])
    data = task().load_data(tokenizer, DataArgs(data_dir=folder, max_train_samples=2, seed=1))
    assert len(data.train) == 2 and labels_of(data.eval["validation"]) == [1]
    write(folder / "validation.tsv", "text\tlabel\nd\ty\n")
    with pytest.raises(NNPruneError, match=r"2 candidate files in .*\(validation\.tsv, dev\.jsonl\); "
                                           r"pass --validation-file"):
        task().load_data(tokenizer, DataArgs(data_dir=folder))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NNPruneError, match=r"no training data: expected train\.\{tsv,csv,jsonl,"
                                           r"json\} in .*empty \(or pass --train-file\)"):
        task().load_data(tokenizer, DataArgs(data_dir=empty))


def test_delimiter_option(tokenizer, tmp_path):
    semi = write(tmp_path / "train.txt", 'text;label\n"a; b";x\nc;y\n')
    t = task(delimiter=";")
    data = load(t, tokenizer, semi, semi)
    assert labels_of(data.train) == [0, 1]
    assert tokenizer.decode(data.train[0]["input_ids"], skip_special_tokens=True) == "a ; b"
    # with the delimiter option, train.txt is found in a data dir
    write(tmp_path / "dev.txt", "text;label\nc;y\n")
    data = task(delimiter=";").load_data(tokenizer, DataArgs(data_dir=tmp_path))
    assert len(data.train) == 2
    ragged = write(tmp_path / "r.csv", "text|label\na|x|z\n")
    with pytest.raises(NNPruneError, match=r"r\.csv: line 2 has 3 fields, header has 2 "
                                           r"\(delimiter '\|'\)"):
        load(task(delimiter="|"), tokenizer, None, ragged)


def test_hub_source_plumbing_and_refusals(tokenizer, tmp_path, monkeypatch):
    import datasets

    local = write(tmp_path / "d.tsv", "text\tlabel\na\tx\n")
    with pytest.raises(NNPruneError, match="both local data files and dataset=some/data") as e:
        load(task(dataset="some/data"), tokenizer, local, local)
    one_line_error(e)
    with pytest.raises(NNPruneError, match=r"no data: pass --data-dir, --train-file/"
                                           r"--validation-file or --task-option dataset=NAME"):
        task().load_data(tokenizer, DataArgs())

    # load_dataset on a local folder: the same code path as a hub id, without the network
    folder = tmp_path / "hub"
    folder.mkdir()
    write(folder / "train.csv", "sentence,label\ngood,pos\nbad,neg\nfine,pos\n")
    write(folder / "validation.csv", "sentence,label\nok,pos\n")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    t = task(dataset=str(folder))
    data = t.load_data(tokenizer, DataArgs(max_seq_length=16))
    assert t.labels == ("neg", "pos") and labels_of(data.train) == [1, 0, 1]
    with pytest.raises(NNPruneError, match=r"could not load .*\[nope\] .*pass --data-dir") as e:
        task(dataset=str(folder), validation_split="nope").load_data(tokenizer, DataArgs())
    one_line_error(e)


def test_hub_class_label_names_give_the_order(tokenizer):
    import datasets

    feats = datasets.Features({"question1": datasets.Value("string"),
                               "question2": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["no", "yes", "maybe"])})
    ds = datasets.Dataset.from_dict({"question1": ["a", "b"], "question2": ["c", None],
                                     "label": [2, 0]}, features=feats)
    t = task()
    ex = t.from_dataset(ds, "hub[train]")
    assert ex.labels == ["maybe", "no"] and ex.label_names == ("no", "yes", "maybe")
    assert ex.text_b == ["c", ""]
    t._settle_labels(ex, ex)
    assert t.labels == ("no", "yes", "maybe")  # ClassLabel order, not sorted
    unlabeled = datasets.Dataset.from_dict({"question1": ["a"], "question2": ["c"],
                                            "label": [-1]}, features=feats)
    with pytest.raises(NNPruneError, match=r"hub\[test\]: row 1 has no label"):
        task().from_dataset(unlabeled, "hub[test]")


# ----------------------------------------------------------------------------- metrics


def test_classification_metrics_hand_checked():
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, 0])
    # class 0: tp 1 fp 1 fn 1 -> 2/4; class 1: tp 2 fp 1 fn 0 -> 4/5; class 2: tp 1 fn 1 -> 2/3
    assert class_f1(preds, labels, 0) == pytest.approx(0.5)
    assert class_f1(preds, labels, 1) == pytest.approx(0.8)
    assert class_f1(preds, labels, 2) == pytest.approx(2 / 3)
    assert macro_f1(preds, labels) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert accuracy(preds, labels) == pytest.approx(4 / 6)
    # a class neither present nor predicted does not count: (2/3 + 2/3) / 2
    assert macro_f1(np.array([0, 1, 1]), np.array([0, 0, 1])) == pytest.approx(2 / 3)

    t = task(labels="a,b,c")
    logits = np.eye(3)[preds] + 0.1
    m = t.compute_metrics(logits, labels)
    assert m == pytest.approx({"accuracy": 4 / 6, "macro_f1": (0.5 + 0.8 + 2 / 3) / 3})


def test_binary_metrics_positive_class_is_the_second_label():
    labels = np.array([1, 0, 1, 0, 1])
    preds = np.array([1, 1, 0, 0, 1])  # positive: tp 2, fp 1, fn 1 -> 4/6
    m = task(labels="no,yes").compute_metrics(np.eye(2)[preds], labels)
    # negative class: tp 1, fp 1, fn 1 -> 2/4
    assert m == pytest.approx({"accuracy": 0.6, "f1": 2 / 3, "macro_f1": (2 / 3 + 0.5) / 2})
    # nothing positive predicted or present: F1 0.0, not a division by zero
    m = task(labels="no,yes").compute_metrics(np.eye(2)[[0, 0]], np.array([0, 0]))
    assert m == {"accuracy": 1.0, "macro_f1": 1.0, "f1": 0.0}


def test_regression_metrics_hand_checked_including_ties():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([2.0, 4.0, 5.0, 9.0])
    # deviations (-1.5, -.5, .5, 1.5) and (-3, -1, 0, 4): 11 / sqrt(5 * 26)
    assert pearson(x, y) == pytest.approx(11 / math.sqrt(130))
    assert spearman(x, y) == pytest.approx(1.0)
    assert mean_squared_error(x, y) == pytest.approx((1 + 4 + 4 + 25) / 4)
    assert average_ranks(np.array([10, 20, 20, 30])).tolist() == [1, 2.5, 2.5, 4]
    assert average_ranks(np.array([3, 1, 3, 3])).tolist() == [3, 1, 3, 3]
    # ranks (1, 2.5, 2.5, 4) vs (1, 3, 2, 4): 4.5 / sqrt(4.5 * 5)
    assert spearman(np.array([10, 20, 20, 30]), np.array([1, 3, 2, 4])) == \
        pytest.approx(math.sqrt(0.9))
    assert pearson(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])) == 0.0  # constant
    assert pearson(-x, y) == pytest.approx(-11 / math.sqrt(130))

    t = task(regression="true")
    m = t.compute_metrics(x.reshape(-1, 1), y)
    assert m == pytest.approx({"pearson": 11 / math.sqrt(130), "spearman": 1.0, "mse": 8.5})


# ----------------------------------------------------------------------------- regression data


def test_regression_labels(tokenizer, tmp_path):
    path = jsonl(tmp_path / "r.jsonl", [{"sentence1": "a", "sentence2": "b", "label": 4.5},
                                        {"sentence1": "c", "sentence2": "d", "label": "0.25"}])
    t = task(regression="true")
    data = load(t, tokenizer, path, path)
    assert labels_of(data.train) == [4.5, 0.25] and t.labels is None and t.num_labels == 1
    batch = data.data_collator([data.train[0], data.train[1]])
    assert batch["labels"].dtype == torch.float32 and batch["input_ids"].shape[0] == 2
    bad = write(tmp_path / "bad.tsv", "text\tlabel\na\t1\nb\thigh\n")
    with pytest.raises(NNPruneError, match=r"bad\.tsv: line 3: label 'high' is not a number "
                                           r"\(regression=true needs numeric labels\)") as e:
        load(task(regression="true"), tokenizer, None, bad)
    one_line_error(e)
    inf = write(tmp_path / "inf.tsv", "text\tlabel\na\tinf\n")
    with pytest.raises(NNPruneError, match="not a finite number"):
        load(task(regression="true"), tokenizer, None, inf)


def test_regression_trains_and_evaluates(tokenizer, tmp_path):
    from transformers import Trainer, TrainingArguments

    rows = [{"text": f"score {i}", "label": i / 4} for i in range(12)]
    path = jsonl(tmp_path / "r.jsonl", rows)
    t = task(regression="true")
    data = load(t, tokenizer, path, path)
    model = t.build_model(str(save_base_model(tmp_path / "base")))
    assert model.num_labels == 1 and model.config.problem_type == "regression"
    args = TrainingArguments(output_dir=str(tmp_path / "o"), use_cpu=True, report_to=[],
                             per_device_train_batch_size=4, max_steps=2, save_strategy="no",
                             logging_strategy="no", disable_tqdm=True, learning_rate=1e-3)
    trainer = Trainer(model=model, args=args, train_dataset=data.train,
                      data_collator=data.data_collator)
    trainer.train()
    m = t.evaluate(trainer, data)
    assert set(m) == {"pearson", "spearman", "mse", "eval_loss"}
    assert m["eval_loss"] == pytest.approx(m["mse"], rel=1e-4)  # MSE loss, float32 vs float64
    assert t.main_metric == "pearson"
    out = model(**{k: v for k, v in data.data_collator([data.train[0]]).items()})
    assert t.distillation_logits(out)[0].shape == (1, 1)


# ----------------------------------------------------------------------------- model + label order


def test_build_model_names_the_labels_and_distils_all_logits(tokenizer, tmp_path):
    base = save_base_model(tmp_path / "base")
    path = write(tmp_path / "d.tsv", "text\tlabel\na\tz\nb\ty\nc\tx\n")
    t = task()
    with pytest.raises(NNPruneError, match="label set is not known yet"):
        t.build_model(str(base))
    data = load(t, tokenizer, path, path)
    model = t.build_model(str(base))
    assert model.config.id2label == {0: "x", 1: "y", 2: "z"}
    batch = data.data_collator([data.train[i] for i in range(3)])
    out = model(**batch)
    assert t.distillation_logits(out)[0].shape == (3, 3)
    # a checkpoint with unnamed labels (LABEL_0, LABEL_1) of another count is refused
    two = save_tiny_model(tmp_path / "two", "bert", num_labels=2)
    with pytest.raises(NNPruneError, match=r"has 2 labels but text-classification has 3 "
                                           r"\(x, y, z\)") as e:
        t.build_model(str(two))
    one_line_error(e)
    assert t.build_model(str(two), ignore_mismatched_sizes=True).num_labels == 3


def test_checkpoint_label_order_is_used(tokenizer, tmp_path):
    ckpt = save_named_head(tmp_path / "named", ["z", "x", "y"])
    path = write(tmp_path / "d.tsv", "text\tlabel\na\tx\nb\ty\nc\tz\n")
    # order known before the data (evaluate, prune: check_checkpoint runs first)
    t = task()
    t.check_checkpoint(json.loads((ckpt / "config.json").read_text()), str(ckpt))
    assert t.labels == ("z", "x", "y") and t.labels_source == f"checkpoint {ckpt}"
    assert labels_of(load(t, tokenizer, None, path).eval["validation"]) == [1, 2, 0]

    # data first, model second (fine-prune): the collator maps the data's ids to the model's
    t = task()
    data = load(t, tokenizer, path, path)
    assert labels_of(data.train) == [0, 1, 2] and t.labels == ("x", "y", "z")
    model = t.build_model(str(ckpt))
    assert model.config.id2label == {0: "z", 1: "x", 2: "y"} and t.labels == ("z", "x", "y")
    assert isinstance(data.data_collator, LabelOrderCollator)
    batch = data.data_collator([data.train[i] for i in range(3)])
    assert batch["labels"].tolist() == [1, 2, 0]  # x, y, z in the checkpoint's order

    # labels= with the same set but another order: the checkpoint's head wins
    t = task(labels="x,y,z")
    t.build_model(str(ckpt))
    assert t.labels == ("z", "x", "y")

    # a model built with a fresh head pins the order: a teacher in another order is refused
    t = task()
    load(t, tokenizer, path, path)
    base = save_base_model(tmp_path / "base")
    t.build_model(str(base))
    with pytest.raises(NNPruneError, match=r"checkpoint T orders its labels \(z, x, y\) unlike "
                                           r"the model built from .*base \(x, y, z\)") as e:
        t.check_checkpoint(json.loads((ckpt / "config.json").read_text()), "T")
    one_line_error(e)


@pytest.mark.parametrize("options, data, pattern", [
    ({}, "text\tlabel\na\tx\nb\tw\nc\tz\n",
     r"checkpoint .*named has labels \(z, x, y\) but .*d\.tsv has \(w, x, z\)"),
    ({"labels": "x,y"}, None,
     r"checkpoint .*named has labels \(z, x, y\) but --task-option labels has \(x, y\)"),
])
def test_checkpoint_with_another_label_set_is_refused(tokenizer, tmp_path, options, data, pattern):
    ckpt = save_named_head(tmp_path / "named", ["z", "x", "y"])
    t = task(**options)
    if data is not None:
        path = write(tmp_path / "d.tsv", data)
        load(t, tokenizer, path, path)
    config = json.loads((ckpt / "config.json").read_text())
    with pytest.raises(NNPruneError, match=pattern) as e:
        t.check_checkpoint(config, str(ckpt))
    one_line_error(e)
    with pytest.raises(NNPruneError, match=pattern):
        t.build_model(str(ckpt))


def test_check_checkpoint_refusals():
    named = {"architectures": ["BertForSequenceClassification"],
             "id2label": {"0": "neg", "1": "pos"}}
    t = task()
    t.check_checkpoint(named, "A")
    # a second checkpoint (a teacher) with the same labels in another order would not line up
    other = {**named, "id2label": {"0": "pos", "1": "neg"}}
    with pytest.raises(NNPruneError, match=r"checkpoint B orders its labels \(pos, neg\) unlike "
                                           r"checkpoint A \(neg, pos\)"):
        t.check_checkpoint(other, "B")
    regression = {"architectures": ["BertForSequenceClassification"], "problem_type": "regression",
                  "id2label": {"0": "LABEL_0"}}
    with pytest.raises(NNPruneError, match="regression head .* regression=true"):
        task().check_checkpoint(regression, "R")
    task(regression="true").check_checkpoint(regression, "R")
    with pytest.raises(NNPruneError, match="classification head with 2 labels; regression=true"):
        task(regression="true").check_checkpoint(named, "A")
    with pytest.raises(NNPruneError, match=r"BertForQuestionAnswering model; task "
                                           r"text-classification needs a \*ForSequenceClass"):
        task().check_checkpoint({"architectures": ["BertForQuestionAnswering"]}, "Q")


# ----------------------------------------------------------------------------- workflow + CLI


def test_fine_prune_three_labels_then_evaluate(tokenizer, tmp_path):
    from nnprune.workflows.evaluate import evaluate_checkpoint
    from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune

    words = {"sports": ["goal", "match"], "art": ["paint", "museum"], "news": ["report", "today"]}
    rows = [f"the {words[lab][i % 2]} again\t{lab}" for i in range(8) for lab in words]
    write(tmp_path / "train.tsv", "sentence\tlabel\n" + "\n".join(rows) + "\n")
    write(tmp_path / "dev.tsv", "sentence\tlabel\n" + "\n".join(rows[:9]) + "\n")
    out = tmp_path / "run"
    result = fine_prune(make_args(
        FinePruneArgs, task=TASK, model=str(save_base_model(tmp_path / "base")), output_dir=out,
        data_dir=tmp_path, method="movement", max_steps=4, batch_size=8, learning_rate=1e-3,
        max_seq_length=16, logging_steps=2, save_steps=4, seed=0,
        task_options={"labels": "sports,news,art"}))
    assert result.main_metric == "accuracy" and result.steps == 4
    assert {"accuracy", "macro_f1", "eval_loss"} <= set(result.metrics)
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "sports", "1": "news", "2": "art"}
    saved = json.loads((out / "nnprune_config.json").read_text())
    assert saved["training"]["task_options"] == {"labels": "sports,news,art"}

    # evaluate without labels=: the checkpoint's order is taken, whatever the file's order
    shuffled = write(tmp_path / "shuffled.tsv",
                     "sentence\tlabel\n" + "\n".join(reversed(rows[:9])) + "\n")
    again = evaluate_checkpoint(TASK, out, validation_file=shuffled, max_seq_length=16)
    assert again.metrics["accuracy"] == pytest.approx(result.metrics["accuracy"])


def test_cli_help_and_task_option_plumbing(tmp_path, capsys):
    from typer.testing import CliRunner

    from nnprune.cli.main import app, main

    res = CliRunner().invoke(app, ["fine-prune", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "--task-option" in res.output
    bad = write(tmp_path / "d.tsv", "body\tstars\nnice\t5\n")
    with pytest.raises(SystemExit) as e:
        main(["fine-prune", TASK, "--model", "M", "--output-dir", str(tmp_path / "o"),
              "--task-option", "labels=a,b", "--task-option", "colour=red"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown text-classification option key 'colour'" in " ".join(err.split())
    with pytest.raises(SystemExit):
        main(["evaluate", TASK, str(save_named_head(tmp_path / "named", ["a", "b"])),
              "--validation-file", str(bad), "--tokenizer", minilm_path(),
              "--task-option", "text_column=body"])
    err = " ".join(capsys.readouterr().err.split())
    assert "no label column (tried 'label'" in err and "found: body, stars" in err
