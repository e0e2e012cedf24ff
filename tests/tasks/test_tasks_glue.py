"""GLUE task adapters and the local file readers, on the real GLUE files and tiny generated ones."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, save_tiny_model

from nnprune.errors import NNPruneError
from nnprune.tasks import TASKS, DataArgs, TaskAdapter, TaskData, get_task
from nnprune.registry import Registry
from nnprune.tasks.base import register_preset
from nnprune.tasks.classification_data import PresetFiles, PresetReader, TextClassificationPreset
from nnprune.tasks.classification_metrics import ClassificationMetric, classification_scores
from nnprune.tasks.glue import MNLI, PRESETS
from nnprune.tasks.sources import PresetHub
from nnprune.tasks.text_classification import TextClassificationTask
from nnprune.tasks.io import read_dataset, read_rows, read_table

GLUE = SHARED_DATA / "glue"
INPUT_COLUMNS = {"input_ids", "token_type_ids", "attention_mask", "labels"}


def needs_glue() -> None:
    if not GLUE.is_dir():
        pytest.skip(f"{GLUE} not present")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def labels_of(ds) -> list[int]:
    return ds["labels"][:]


# ----------------------------------------------------------------------------- registry


def test_registry_has_the_four_glue_tasks():
    assert {"sst2", "mrpc", "qqp", "mnli"} <= set(TASKS.names())
    for preset in PRESETS:
        task = get_task(preset.name)
        # a GLUE task is the generic adapter configured by its preset, not a class of its own
        assert type(task) is TextClassificationTask and isinstance(task, TaskAdapter)
        assert task.preset is preset and task.name == preset.name
        assert task.labels == preset.labels


def test_unknown_task_lists_known_ones():
    with pytest.raises(NNPruneError, match="sst2") as e:
        get_task("nope")
    assert "'nope'" in str(e.value) and "mnli" in str(e.value)


# ----------------------------------------------------------------------------- real GLUE files


def test_sst2_dev_real(tokenizer):
    needs_glue()
    task = get_task("sst2")
    data = task.load_data(tokenizer, DataArgs(data_dir=GLUE / "SST-2"), need_train=False)
    assert isinstance(data, TaskData) and data.train is None
    assert list(data.eval) == ["validation"]
    dev = data.eval["validation"]
    assert len(dev) == 872 and sum(labels_of(dev)) == 444
    assert set(dev.column_names) == INPUT_COLUMNS
    assert task.main_metric == "accuracy"
    # first dev sentence: "it 's a charming and often affecting journey . " -> label 1
    assert "charming" in tokenizer.decode(dev[0]["input_ids"]) and dev[0]["labels"] == 1


def test_glue_root_dir_resolves_task_folder(tokenizer):
    needs_glue()
    data = get_task("sst2").load_data(tokenizer, DataArgs(data_dir=GLUE, max_eval_samples=5),
                                      need_train=False)
    assert len(data.eval["validation"]) == 5


def test_mrpc_dev_real_bom_and_quotes(tokenizer):
    needs_glue()
    header, rows = read_table(GLUE / "MRPC" / "dev.tsv")
    assert header == ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]  # BOM stripped
    assert len(rows) == 408
    # QUOTE_NONE keeps the unbalanced quote as text instead of swallowing following lines
    assert rows[0]["#2 String"].startswith('"The foodservice pie business')
    data = get_task("mrpc").load_data(tokenizer, DataArgs(data_dir=GLUE / "MRPC"),
                                      need_train=False)
    dev = data.eval["validation"]
    assert len(dev) == 408 and sum(labels_of(dev)) == sum(r["Quality"] == "1" for r in rows)
    assert 0 in dev[0]["token_type_ids"] and 1 in dev[0]["token_type_ids"]  # a sentence pair


def test_mnli_dev_matched_real(tokenizer):
    needs_glue()
    task = get_task("mnli")
    data = task.load_data(tokenizer, DataArgs(data_dir=GLUE / "MNLI"), need_train=False)
    assert list(data.eval) == ["validation_matched"]  # no dev_mismatched.tsv locally
    counts = Counter(labels_of(data.eval["validation_matched"]))
    assert counts == {0: 3479, 1: 3123, 2: 3213}  # entailment, neutral, contradiction
    assert task.main_metric == "accuracy"  # a single split keeps bare metric names


def test_missing_train_file_names_expected_file(tokenizer):
    needs_glue()
    with pytest.raises(NNPruneError, match=r"train\.tsv"):
        get_task("mnli").load_data(tokenizer, DataArgs(data_dir=GLUE / "MNLI"))


# ----------------------------------------------------------------------------- generic readers

ROWS = [{"sentence": "a good film", "label": "1"}, {"sentence": "a bad, \"bad\" film", "label": "0"}]


def _write_all_formats(tmp_path: Path) -> dict[str, Path]:
    tsv = write(tmp_path / "d.tsv", "\ufeffsentence\tlabel\na good film\t1\n\n"
                                    "a bad, \"bad\" film\t0\n")
    csv_ = write(tmp_path / "d.csv", 'sentence,label\r\na good film,1\r\n'
                                     '"a bad, ""bad"" film",0\r\n')
    js = write(tmp_path / "d.json", json.dumps({"version": 1, "data": ROWS}))
    jsl = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    return {"tsv": tsv, "csv": csv_, "json": js, "jsonl": jsl}


def test_readers_agree_across_formats(tmp_path):
    for fmt, path in _write_all_formats(tmp_path).items():
        assert read_rows(path, required=["sentence", "label"]) == ROWS, fmt
    plain_list = write(tmp_path / "list.json", json.dumps(ROWS))
    assert read_rows(plain_list) == ROWS
    ds = read_dataset(tmp_path / "d.tsv")
    assert ds.column_names == ["sentence", "label"] and len(ds) == 2


def test_csv_keeps_newlines_inside_quoted_fields(tmp_path):
    path = write(tmp_path / "x.csv", 'article,highlights\n"body","one\ntwo"\n')
    assert read_rows(path) == [{"article": "body", "highlights": "one\ntwo"}]


@pytest.mark.parametrize("name, text, pattern", [
    ("ragged.tsv", "a\tb\n1\t2\n3\n", r"ragged\.tsv: line 3 has 1 fields, header has 2"),
    ("bad.json", '[{"a": 1},\n {"a": 2,}]', r"bad\.json: invalid JSON at line 2"),
    ("bad.jsonl", '{"a": 1}\n\n{"a": \n', r"bad\.jsonl: invalid JSON at line 3"),
    ("empty.tsv", "\n \n", r"empty\.tsv: file is empty"),
    ("dupe.csv", "a,a\n1,2\n", r"duplicate column"),
    ("scalar.jsonl", '{"a": 1}\n[1]\n', r"line 2 is a JSON list, expected an object"),
    ("nodata.json", '{"rows": []}', r"under 'data'"),
    ("data.parquet", "x", r"unsupported file type '\.parquet'"),
])
def test_reader_errors_are_one_line_and_name_the_file(tmp_path, name, text, pattern):
    path = write(tmp_path / name, text)
    with pytest.raises(NNPruneError, match=pattern) as e:
        read_rows(path)
    assert "\n" not in str(e.value) and name in str(e.value)


def test_reader_missing_required_column(tmp_path):
    path = write(tmp_path / "train.csv", "a,b\n1,2\n")
    with pytest.raises(NNPruneError, match=r"train\.csv: missing column\(s\) 'label'; found: a, b"):
        read_rows(path, required=["a", "label"])


# ----------------------------------------------------------------------------- adapter on tiny files


def test_sst2_from_each_local_format(tokenizer, tmp_path):
    paths = _write_all_formats(tmp_path)
    for fmt, path in paths.items():
        data = get_task("sst2").load_data(
            tokenizer, DataArgs(train_file=path, validation_file=path, max_seq_length=16))
        assert labels_of(data.train) == [1, 0], fmt
        assert set(data.eval["validation"].column_names) == INPUT_COLUMNS
        assert all(len(x) <= 16 for x in data.eval["validation"]["input_ids"])


def test_mnli_hub_column_names_and_label_mapping(tokenizer, tmp_path):
    rows = [
        {"premise": "p0", "hypothesis": "h0", "label": "contradiction"},
        {"premise": "p1", "hypothesis": "h1", "label": 0},
        {"premise": "p2", "hypothesis": "h2", "label": "-"},  # no gold label: dropped
        {"premise": "p3", "hypothesis": "h3", "label": "1"},
    ]
    path = write(tmp_path / "mnli.jsonl", "\n".join(json.dumps(r) for r in rows))
    data = get_task("mnli").load_data(tokenizer, DataArgs(train_file=path, validation_file=path))
    assert labels_of(data.train) == [2, 0, 1] and list(data.eval) == ["validation"]

    bad = write(tmp_path / "bad.tsv", "sentence1\tsentence2\tgold_label\na\tb\tmaybe\n")
    with pytest.raises(NNPruneError, match=r"bad\.tsv: line 2: unknown label 'maybe'"):
        get_task("mnli").load_data(tokenizer, DataArgs(validation_file=bad), need_train=False)


def test_binary_label_out_of_range_and_missing_label(tokenizer, tmp_path):
    bad = write(tmp_path / "q.tsv", "question1\tquestion2\tis_duplicate\na\tb\t2\n")
    with pytest.raises(NNPruneError, match="unknown label '2'"):
        get_task("qqp").load_data(tokenizer, DataArgs(validation_file=bad), need_train=False)
    empty = write(tmp_path / "e.tsv", "sentence\tlabel\nfine\t\n")
    with pytest.raises(NNPruneError, match=r"e\.tsv: line 2 has no label"):
        get_task("sst2").load_data(tokenizer, DataArgs(validation_file=empty), need_train=False)


def test_missing_column_lists_found_columns(tokenizer, tmp_path):
    path = write(tmp_path / "dev.tsv", "text\ttarget\nhello\t1\n")
    with pytest.raises(NNPruneError, match=r"dev\.tsv: missing column 'sentence'.*found: text, "
                                           r"target"):
        get_task("sst2").load_data(tokenizer, DataArgs(validation_file=path), need_train=False)
    # columns are checked text, pair, label: the first one missing is named
    with pytest.raises(NNPruneError, match=r"missing column '#1 String' or 'sentence1' for task "
                                           r"mrpc"):
        get_task("mrpc").load_data(tokenizer, DataArgs(validation_file=path), need_train=False)
    jsonl = write(tmp_path / "dev.jsonl", '{"sentence": "a", "label": 1}\n{"sentence": "b"}\n')
    with pytest.raises(NNPruneError, match=r"dev\.jsonl: line 2: missing column\(s\) 'label'"):
        get_task("sst2").load_data(tokenizer, DataArgs(validation_file=jsonl), need_train=False)


def test_validation_file_only_needs_train_data(tokenizer, tmp_path):
    path = write(tmp_path / "dev.tsv", "sentence\tlabel\nhello\t1\n")
    with pytest.raises(NNPruneError, match="--train-file"):
        get_task("sst2").load_data(tokenizer, DataArgs(validation_file=path))


def test_max_samples_are_deterministic(tokenizer, tmp_path):
    lines = "".join(f"s{i}\t{i % 2}\n" for i in range(50))
    write(tmp_path / "train.tsv", "sentence\tlabel\n" + lines)
    write(tmp_path / "dev.tsv", "sentence\tlabel\n" + lines)

    def load(seed):
        data = get_task("sst2").load_data(tokenizer, DataArgs(
            data_dir=tmp_path, max_train_samples=10, max_eval_samples=7, seed=seed))
        return data.train["input_ids"][:], data.eval["validation"]["input_ids"][:]

    train_a, dev_a = load(1)
    train_b, dev_b = load(1)
    train_c, dev_c = load(2)
    assert len(train_a) == 10 and train_a == train_b and train_a != train_c
    first7 = get_task("sst2").load_data(tokenizer, DataArgs(data_dir=tmp_path),
                                        need_train=False).eval["validation"]["input_ids"][:7]
    assert dev_a == dev_b == dev_c == first7  # eval keeps file order whatever the seed


def test_mnli_two_dev_files_give_two_splits(tokenizer, tmp_path):
    body = "sentence1\tsentence2\tgold_label\na\tb\tneutral\nc\td\tentailment\n"
    write(tmp_path / "dev_matched.tsv", body)
    write(tmp_path / "dev_mismatched.tsv", body)
    task = get_task("mnli")
    data = task.load_data(tokenizer, DataArgs(data_dir=tmp_path), need_train=False)
    assert list(data.eval) == ["validation_matched", "validation_mismatched"]
    assert task.main_metric == "validation_matched_accuracy"


def test_hub_layout_conversion(tokenizer):
    import datasets

    feats = datasets.Features({"premise": datasets.Value("string"),
                               "hypothesis": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["entailment", "neutral",
                                                                   "contradiction"]),
                               "idx": datasets.Value("int32")})
    split = datasets.Dataset.from_dict(
        {"premise": ["a", "b", "c"], "hypothesis": ["d", "e", "f"], "label": [2, 0, -1],
         "idx": [0, 1, 2]}, features=feats)
    dsd = datasets.DatasetDict(train=split, validation_matched=split, validation_mismatched=split)
    train, evals = PresetReader(MNLI).from_hub_splits(dsd, need_train=True)
    # ClassLabel ids are the preset's class ids; -1 (unlabeled) dropped
    assert train.labels == ["contradiction", "entailment"] and train.text_b == ["d", "e"]
    assert list(evals) == ["validation_matched", "validation_mismatched"]


def test_compute_metrics_f1_positive_class():
    logits = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])  # preds 1, 1, 0, 0
    labels = np.array([1, 0, 1, 0])
    m = get_task("mrpc").compute_metrics(logits, labels)
    assert m == {"accuracy": 0.5, "f1": 0.5}
    assert set(get_task("sst2").compute_metrics(logits, labels)) == {"accuracy"}


def test_glue_metrics_are_the_generic_adapters():
    """A GLUE task reports the subset of ``text-classification``'s metrics its preset names:
    the same numbers, from one implementation."""
    gen = np.random.default_rng(0)
    logits, labels = gen.normal(size=(40, 2)), gen.integers(0, 2, size=40)
    generic = get_task("text-classification", {"labels": "negative,positive"})
    scores = generic.compute_metrics(logits, labels)
    assert scores == classification_scores(logits, labels)
    assert get_task("sst2").compute_metrics(logits, labels) == {"accuracy": scores["accuracy"]}
    assert get_task("mrpc").compute_metrics(logits, labels) == {"accuracy": scores["accuracy"],
                                                                "f1": scores["f1"]}


def test_a_new_preset_is_data_registered_under_its_name(tokenizer, tmp_path):
    """A named classification task needs no adapter class: a preset, registered, is one."""
    registry: Registry = Registry("task")
    preset = TextClassificationPreset(
        name="stars3", files=PresetFiles(collection="Demo", folder="STARS",
                                         hub=PresetHub("org/stars")),
        labels=("bad", "ok", "good"), text_columns=("review",), text_pair_columns=None,
        label_columns=("stars",),
        metrics=(ClassificationMetric.MACRO_F1, ClassificationMetric.ACCURACY))
    register_preset(preset, TextClassificationTask, registry)
    assert "stars3" not in TASKS  # the global registry is untouched
    task = registry.get("stars3")()
    assert task.name == "stars3" and task.main_metric == "macro_f1"
    folder = tmp_path / "STARS"  # found below the collection root, as GLUE's folders are
    folder.mkdir()
    write(folder / "train.tsv", "review\tstars\nmeh\tok\ngreat\t2\nawful\t0\n")
    write(folder / "dev.tsv", "review\tstars\nfine\tgood\n")
    data = task.load_data(tokenizer, DataArgs(data_dir=tmp_path))
    assert labels_of(data.train) == [1, 2, 0] and labels_of(data.eval["validation"]) == [2]
    assert set(task.compute_metrics(np.eye(3), np.array([0, 1, 1]))) == {"macro_f1", "accuracy"}
    with pytest.raises(NNPruneError, match="task stars3 takes no --task-option"):
        registry.get("stars3")().with_options({"labels": "a,b"})
    bad = write(tmp_path / "bad.tsv", "review\tstars\nx\t5\n")
    with pytest.raises(NNPruneError, match=r"bad\.tsv: line 2: unknown label '5'; expected one "
                                           r"of bad, ok, good \(or ids 0, 1, 2\)"):
        task.load_data(tokenizer, DataArgs(validation_file=bad), need_train=False)


def test_preset_declarations_are_checked():
    files = PresetFiles(collection="Demo", folder="D", hub=PresetHub("org/d"))
    common = dict(name="p", files=files, text_columns=("t",), text_pair_columns=None,
                  label_columns=("l",))
    with pytest.raises(ValueError, match="f1 .* needs 2 labels"):
        TextClassificationPreset(labels=("a", "b", "c"), metrics=(ClassificationMetric.F1,),
                                 **common)
    with pytest.raises(ValueError, match="pearson need a regression head"):
        TextClassificationPreset(labels=("a", "b"), metrics=(ClassificationMetric.PEARSON,),
                                 **common)
    with pytest.raises(ValueError, match="2 or more distinct"):
        TextClassificationPreset(labels=("a", "a"), **common)


# ----------------------------------------------------------------------------- model + trainer


def test_build_model_heads(tmp_path):
    two = save_tiny_model(tmp_path / "two", "bert", num_labels=2)
    model = get_task("sst2").build_model(str(two))
    assert model.config.id2label == {0: "negative", 1: "positive"}
    with pytest.raises(NNPruneError, match="needs 3"):
        get_task("mnli").build_model(str(two))
    model = get_task("mnli").build_model(str(two), ignore_mismatched_sizes=True)
    assert model.num_labels == 3


def _trainer(model, data, out_dir, **kw):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(out_dir), use_cpu=True, report_to=[],
                             per_device_train_batch_size=8, per_device_eval_batch_size=16,
                             save_strategy="no", logging_strategy="no", disable_tqdm=True,
                             seed=0, **kw)
    return Trainer(model=model, args=args, train_dataset=data.train,
                   data_collator=data.data_collator)


def test_end_to_end_sst2_train_and_evaluate(tokenizer, tiny_bert_dir, tmp_path):
    needs_glue()
    task = get_task("sst2")
    data = task.load_data(tokenizer, DataArgs(data_dir=GLUE / "SST-2", max_train_samples=16,
                                              max_eval_samples=32, max_seq_length=32))
    assert len(data.train) == 16
    model = task.build_model(str(tiny_bert_dir))
    trainer = _trainer(model, data, tmp_path / "run", max_steps=3, learning_rate=1e-3)
    trainer.train()
    metrics = task.evaluate(trainer, data)
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert np.isfinite(metrics["eval_loss"])
    assert task.main_metric in metrics


def test_evaluate_mnli_two_splits_with_trainer_subclass(tokenizer, tmp_path):
    from transformers import Trainer, TrainingArguments

    class LoudTrainer(Trainer):  # any subclass must work: evaluate() only calls predict()
        calls = 0

        def predict(self, *args, **kwargs):
            LoudTrainer.calls += 1
            return super().predict(*args, **kwargs)

    body = "sentence1\tsentence2\tgold_label\n" + "".join(
        f"p{i}\th{i}\t{lab}\n" for i, lab in enumerate(["neutral", "entailment", "contradiction"] * 3))
    write(tmp_path / "dev_matched.tsv", body)
    write(tmp_path / "dev_mismatched.tsv", body)
    task = get_task("mnli")
    data = task.load_data(tokenizer, DataArgs(data_dir=tmp_path), need_train=False)
    model = task.build_model(str(save_tiny_model(tmp_path / "m3", "bert", num_labels=3)))
    trainer = LoudTrainer(model=model, data_collator=data.data_collator,
                          args=TrainingArguments(output_dir=str(tmp_path / "o"), use_cpu=True,
                                                 report_to=[], disable_tqdm=True))
    metrics = task.evaluate(trainer, data)
    assert LoudTrainer.calls == 2
    assert {"validation_matched_accuracy", "validation_mismatched_accuracy",
            "validation_matched_loss", "validation_mismatched_loss"} == set(metrics)
    assert metrics["validation_matched_accuracy"] == metrics["validation_mismatched_accuracy"]
    assert task.main_metric in metrics
