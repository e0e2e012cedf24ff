"""The token-classification task adapter: readers, options, labels, sub-token alignment,
checkpoint label sets, word-level evaluation, and a tiny end-to-end fine-prune / evaluate /
compaction run on a CoNLL file written here."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import TOL, make_args, minilm_path, tiny_config

from nnprune.errors import NNPruneError
from nnprune.tasks import DataArgs, TaskAdapter, get_task
from nnprune.tasks.token_classification import (EvalSentences, TokenClassificationTask,
                                                read_conll)

TASK = "token-classification"
PEOPLE = ["alice", "bob", "carol", "dave"]
CITIES = ["paris", "berlin", "rome", "madrid"]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def conll(sentences: list[list[tuple[str, str]]], docstart: bool = True) -> str:
    """CoNLL-2003 layout: word, POS, chunk, NER tag; blank line after each sentence."""
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for sent in sentences:
        lines += [f"{w} NN I-NP {t}" for w, t in sent] + [""]
    return "\n".join(lines)


def toy_sentence(i: int) -> list[tuple[str, str]]:
    person, city = PEOPLE[i % 4], CITIES[(i // 4) % 4]
    if i % 3 == 0:
        return [(person, "B-PER"), ("smith", "I-PER"), ("visited", "O"), ("new", "B-LOC"),
                ("york", "I-LOC")]
    return [(person, "B-PER"), ("lives", "O"), ("in", "O"), (city, "B-LOC"), (".", "O")]


def write_toy_ner(folder: Path, n_train: int = 48, n_dev: int = 12) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "train.conll", conll([toy_sentence(i) for i in range(n_train)]))
    write(folder / "dev.txt", conll([toy_sentence(i + 5) for i in range(n_dev)]))
    return folder


@pytest.fixture(scope="module")
def ner_data(tmp_path_factory) -> Path:
    return write_toy_ner(tmp_path_factory.mktemp("ner"))


def save_token_model(path: Path, id2label: dict[int, str] | None = None, num_labels: int = 2,
                     base: bool = False) -> Path:
    """A tiny BERT (bare, or with a token-classification head) saved with the MiniLM tokenizer."""
    from transformers import AutoTokenizer, BertForTokenClassification, BertModel

    torch.manual_seed(0)
    if base:
        model = BertModel(tiny_config("bert"))
    elif id2label is not None:
        model = BertForTokenClassification(tiny_config(
            "bert", num_labels=len(id2label), id2label=id2label,
            label2id={v: k for k, v in id2label.items()}))
    else:
        model = BertForTokenClassification(tiny_config("bert", num_labels=num_labels))
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    return save_token_model(tmp_path_factory.mktemp("base") / "tiny-bert", base=True)


def tags_of(task: TokenClassificationTask, ds) -> list[list[str]]:
    """The label names of the labelled sub-tokens of every feature."""
    return [[task.labels[x] for x in row if x >= 0] for row in ds["labels"][:]]


# ----------------------------------------------------------------------------- registry, options


def test_registered_with_token_head_and_f1():
    task = get_task(TASK)
    assert isinstance(task, TokenClassificationTask) and isinstance(task, TaskAdapter)
    assert task.name == TASK and task.main_metric == "f1"
    assert task.head_suffix == "ForTokenClassification" and task.default_max_seq_length == 128


def test_task_options_are_typed_and_unknown_ones_refused():
    task = get_task(TASK, {"labels": "B-PER, I-PER,O", "label_all_tokens": "yes",
                           "tag_index": "-2", "tokens_column": "words"})
    opts = task.options
    assert opts.label_list == ["B-PER", "I-PER", "O"] and opts.label_all_tokens is True
    assert opts.tag_index == -2 and opts.tokens_column == "words"
    assert get_task(TASK).options.label_all_tokens is False
    for options, pattern in [
        ({"lables": "O"}, r"unknown token-classification option key 'lables'; known: .*labels"),
        ({"label_all_tokens": "maybe"}, "label_all_tokens expects a bool"),
        ({"tag_index": "0"}, "tag_index 0 is the word column"),
        ({"labels": "O,B-PER,O"}, "labels repeats O"),
        ({"labels": "O,,B-PER"}, "empty name"),
    ]:
        with pytest.raises(NNPruneError, match=pattern) as e:
            get_task(TASK, options)
        assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- readers


def test_read_conll_skips_docstart_and_splits_on_blank_lines(tmp_path):
    text = ("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\n"
            "-DOCSTART- -X- -X- O\nPeter NNP B-NP B-PER\r\nBlackburn\tNNP  I-NP I-PER")
    path = write(tmp_path / "x.conll", text)
    sents = read_conll(path)
    assert sents.words == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert sents.tags == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert read_conll(path, tag_index=1).tags == [["NNP", "VBZ"], ["NNP", "NNP"]]
    assert read_conll(path, tag_index=-2).tags[0] == ["B-NP", "B-VP"]

    with pytest.raises(NNPruneError, match=r"x\.conll: line 3 has 4 columns; tag_index 7"):
        read_conll(path, tag_index=7)
    bad = write(tmp_path / "bad.txt", "EU B-ORG\nrejects\n")
    with pytest.raises(NNPruneError, match=r"bad\.txt: line 2: expected a word and its tag"):
        read_conll(bad)
    with pytest.raises(NNPruneError, match=r"empty\.conll: no sentences"):
        read_conll(write(tmp_path / "empty.conll", "-DOCSTART- O\n\n"))


def test_json_records_found_by_name_or_configured(tmp_path):
    rows = [{"id": 0, "tokens": ["EU", "rejects"], "ner_tags": ["B-ORG", "O"]},
            {"id": 1, "tokens": [], "ner_tags": []},  # empty: skipped
            {"id": 2, "tokens": ["Peter"], "ner_tags": ["B-PER"]}]
    jsonl = write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in rows))
    sents = get_task(TASK).read_file(jsonl)
    assert sents.words == [["EU", "rejects"], ["Peter"]] and sents.tags[1] == ["B-PER"]

    other = [{"words": ["EU"], "tags": ["B-ORG"], "labels": ["x"]}]  # "tags" before "labels"
    js = write(tmp_path / "b.json", json.dumps({"data": other}))
    assert get_task(TASK).read_file(js).tags == [["B-ORG"]]
    custom = write(tmp_path / "c.json", json.dumps([{"toks": ["EU"], "ent": ["B-ORG"]}]))
    task = get_task(TASK, {"tokens_column": "toks", "tags_column": "ent"})
    assert task.read_file(custom).words == [["EU"]]
    with pytest.raises(NNPruneError, match=r"c\.json: no tokens column \(tried 'tokens', 'words'\); "
                                           r"found: toks, ent; pass --task-option "
                                           r"tokens_column=NAME"):
        get_task(TASK).read_file(custom)

    ids = write(tmp_path / "ids.jsonl", json.dumps({"tokens": ["EU", "x"], "ner_tags": [1, 0]}))
    with pytest.raises(NNPruneError, match="integer tag 1 without names: pass --task-option labels"):
        get_task(TASK).read_file(ids)
    assert get_task(TASK, {"labels": "O,B-ORG"}).read_file(ids).tags == [["B-ORG", "O"]]
    with pytest.raises(NNPruneError, match="tag id 1 is not one of the 1 names"):
        get_task(TASK, {"labels": "O"}).read_file(ids)

    ragged = write(tmp_path / "r.jsonl", json.dumps({"tokens": ["a", "b"], "ner_tags": ["O"]}))
    with pytest.raises(NNPruneError, match=r"r\.jsonl: line 1: 2 words but 1 tags"):
        get_task(TASK).read_file(ragged)
    with pytest.raises(NNPruneError, match=r"unsupported file type '\.csv'"):
        get_task(TASK).read_file(write(tmp_path / "d.csv", "a,b\n"))


def test_data_dir_finds_train_and_the_first_eval_file(tokenizer, tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    write(folder / "train.conll", conll([toy_sentence(0)]))
    write(folder / "test.txt", conll([toy_sentence(1)]))
    write(folder / "valid.jsonl", json.dumps({"tokens": ["bob"], "ner_tags": ["B-PER"]}))
    data = get_task(TASK).load_data(tokenizer, DataArgs(data_dir=folder))
    assert len(data.train) == 1 and list(data.eval) == ["validation"]
    assert data.eval_examples["validation"].tags == [["B-PER"]]  # valid before test

    (folder / "train.conll").unlink()
    with pytest.raises(NNPruneError, match=r"no training data: expected train\.\{conll,txt,tsv,"
                                           r"jsonl,json\} in .*d \(or pass --train-file\)"):
        get_task(TASK).load_data(tokenizer, DataArgs(data_dir=folder))
    # evaluation only needs the evaluation file
    data = get_task(TASK).load_data(tokenizer, DataArgs(data_dir=folder), need_train=False)
    assert data.train is None and len(data.eval["validation"]) == 1
    with pytest.raises(NNPruneError, match="no data: pass --data-dir, --train-file/"
                                           "--validation-file or --task-option dataset=NAME"):
        get_task(TASK).load_data(tokenizer, DataArgs(), need_train=False)
    # one source per run; two files for the chosen split name are ambiguous
    with pytest.raises(NNPruneError, match="both local data files and dataset=org/ner given"):
        get_task(TASK, {"dataset": "org/ner"}).load_data(tokenizer, DataArgs(data_dir=folder),
                                                         need_train=False)
    write(folder / "valid.conll", conll([toy_sentence(1)]))
    with pytest.raises(NNPruneError, match=r"2 candidate files in .*\(valid\.conll, valid\.jsonl\); "
                                           r"pass --validation-file"):
        get_task(TASK).load_data(tokenizer, DataArgs(data_dir=folder), need_train=False)


def test_slow_tokenizer_is_refused(tmp_path):
    slow = SimpleNamespace(is_fast=False, name_or_path="some/slow-model")
    with pytest.raises(NNPruneError, match="needs a fast tokenizer .*some/slow-model") as e:
        get_task(TASK).load_data(slow, DataArgs(validation_file=write(
            tmp_path / "d.conll", conll([toy_sentence(0)]))), need_train=False)
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- labels, alignment


def test_label_order_sorted_o_first_or_fixed_by_option(tokenizer, ner_data):
    args = DataArgs(data_dir=ner_data, max_seq_length=32)
    task = get_task(TASK)
    task.load_data(tokenizer, args)
    assert task.labels == ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
    fixed = "B-PER,I-PER,B-LOC,I-LOC,B-MISC,I-MISC,O"
    task = get_task(TASK, {"labels": fixed})
    data = task.load_data(tokenizer, args)
    assert task.labels == fixed.split(",")
    assert tags_of(task, data.eval["validation"])[0] == [t for _, t in toy_sentence(5)]
    with pytest.raises(NNPruneError, match=r"the data's tags \{B-LOC, B-PER, I-LOC, I-PER, O\} are "
                                           r"not all labels of --task-option labels \{B-PER, O\}: "
                                           r"\{B-LOC, I-LOC, I-PER\} unknown"):
        get_task(TASK, {"labels": "B-PER,O"}).load_data(tokenizer, args)


def test_first_sub_token_alignment_label_all_tokens_and_mask(tokenizer, tmp_path):
    words = ["Johnathan", "Smithersonville", "visited", "Paris"]
    tags = ["B-PER", "I-PER", "O", "B-LOC"]
    path = write(tmp_path / "x.conll", conll([list(zip(words, tags))]))
    args = DataArgs(train_file=path, validation_file=path, max_seq_length=32)
    task = get_task(TASK)
    data = task.load_data(tokenizer, args)
    assert task.labels == ["O", "B-LOC", "B-PER", "I-PER"]
    feat = data.train[0]
    # [CLS] john ##athan smith ##erson ##ville visited paris [SEP]
    enc = tokenizer(words, is_split_into_words=True)
    assert enc.word_ids() == [None, 0, 0, 1, 1, 1, 2, 3, None]
    assert feat["input_ids"] == enc["input_ids"]
    assert feat["labels"] == [-100, 2, -100, 3, -100, -100, 0, 1, -100]
    assert data.eval_examples["validation"].first_token == [[1, 3, 6, 7]]
    assert set(data.train.column_names) == {"input_ids", "token_type_ids", "attention_mask",
                                            "labels"}

    all_tokens = get_task(TASK, {"label_all_tokens": "true"})
    # inner sub-tokens of a B-PER word get I-PER; words are still scored at their first one
    assert all_tokens.load_data(tokenizer, args).train[0]["labels"] == [-100, 2, 3, 3, 3, 3, 0, 1,
                                                                        -100]

    short = DataArgs(train_file=path, validation_file=path, max_seq_length=8)
    batch = data.data_collator([data.train[0], get_task(TASK).load_data(tokenizer, short).train[0]])
    assert batch["labels"].shape == batch["input_ids"].shape == (2, 9)
    mask = task.distillation_mask(batch)
    assert mask.dtype == torch.bool and mask.shape == (2, 9)
    assert mask.sum(1).tolist() == [4, 3]  # the second sentence lost "Paris" to truncation
    assert task.distillation_mask({"input_ids": batch["input_ids"]}) is None


def test_truncated_words_count_as_predicted_o(tokenizer, tmp_path):
    """Perfect predictions on every word the model sees: the two words cut by truncation are
    predicted O, so "berlin" (B-LOC) is a missed entity."""
    sents = [[("alice", "B-PER"), ("smith", "I-PER"), ("visited", "O"), ("paris", "B-LOC"),
              (".", "O")],
             [("bob", "B-PER"), ("went", "O"), ("to", "O"), ("the", "O"), ("old", "O"),
              ("market", "O"), ("in", "O"), ("berlin", "B-LOC")]]
    path = write(tmp_path / "dev.conll", conll(sents))
    task = get_task(TASK)
    data = task.load_data(tokenizer, DataArgs(validation_file=path, max_seq_length=8),
                          need_train=False)
    info = data.eval_examples["validation"]
    assert isinstance(info, EvalSentences) and len(info) == 2
    assert info.first_token[1] == [1, 2, 3, 4, 5, 6, -1, -1] and info.num_unseen == 2

    ds = data.eval["validation"]
    logits = np.full((2, 8, len(task.labels)), -5.0, dtype=np.float32)
    for i, row in enumerate(ds["labels"][:]):
        for pos, label in enumerate(row):
            logits[i, pos, label if label >= 0 else 0] = 5.0
    logits[1, 7:] = -100.0  # the Trainer pads shorter features' logits with -100
    trainer = SimpleNamespace(model=None, predict=lambda d, metric_key_prefix: SimpleNamespace(
        predictions=logits, label_ids=None, metrics={f"{metric_key_prefix}_loss": 0.25}))
    metrics = task.evaluate(trainer, data)
    assert metrics["precision"] == 1.0 and metrics["recall"] == 0.75
    assert metrics["f1"] == pytest.approx(6 / 7) and metrics["accuracy"] == pytest.approx(12 / 13)
    assert metrics["f1_PER"] == 1.0 and metrics["f1_LOC"] == pytest.approx(2 / 3)
    assert metrics["eval_loss"] == 0.25
    preds = task.prediction_files()["predictions.json"]["validation"]
    assert preds[1][-2:] == ["O", "O"] and preds[0] == [t for _, t in sents[0]]

    with pytest.raises(NNPruneError, match=r"predictions of shape \(2, 8, 3\) do not fit"):
        task.word_predictions(logits[..., :3], info)


def test_hub_dataset_maps_classlabel_ids(tokenizer, monkeypatch):
    import datasets

    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    features = datasets.Features({"tokens": datasets.List(datasets.Value("string")),
                                  "ner_tags": datasets.List(datasets.ClassLabel(names=names)),
                                  "pos_tags": datasets.List(datasets.Value("int32"))})
    rows = {"tokens": [["alice", "visited", "paris"], ["bob"]], "ner_tags": [[1, 0, 3], [1]],
            "pos_tags": [[1, 2, 1], [1]]}
    dsd = datasets.DatasetDict({s: datasets.Dataset.from_dict(rows, features=features)
                                for s in ("train", "validation", "test")})
    calls = []

    def fake_load(name, config=None, split=None, **kw):
        calls.append((name, config, split))
        if name != "org/ner":
            raise ConnectionError("offline\nmore")
        if split not in dsd:  # as datasets says it
            raise ValueError(f'Unknown split "{split}". Should be one of {list(dsd)}.')
        return dsd[split]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    task = get_task(TASK, {"dataset": "org/ner", "dataset_config": "en",
                           "validation_split": "test"})
    data = task.load_data(tokenizer, DataArgs(max_seq_length=16))
    assert calls == [("org/ner", "en", "train"), ("org/ner", "en", "test")]
    assert task.labels == names  # the ClassLabel order
    assert data.eval_examples["validation"].tags[0] == ["B-PER", "O", "B-LOC"]
    assert tags_of(task, data.train)[0] == ["B-PER", "O", "B-LOC"]

    with pytest.raises(NNPruneError, match=r"org/ner\[train\]: missing column 'words' "
                                           r"\(tokens_column\)"):
        get_task(TASK, {"dataset": "org/ner", "tokens_column": "words"}).load_data(
            tokenizer, DataArgs())
    with pytest.raises(NNPruneError, match=r"could not load org/ner\[dev\] \(Unknown split "
                                           r"\"dev\". Should be one of \['train', 'validation', "
                                           r"'test'\]"):
        get_task(TASK, {"dataset": "org/ner", "validation_split": "dev"}).load_data(
            tokenizer, DataArgs())
    with pytest.raises(NNPruneError, match=r"could not load other\[train\] \(offline\); pass "
                                           "--data-dir") as e:
        get_task(TASK, {"dataset": "other"}).load_data(tokenizer, DataArgs())
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- checkpoint labels


def test_checkpoint_label_names_fix_the_ids_and_relabel_loaded_data(tokenizer, ner_data, tmp_path):
    ckpt_labels = ["B-PER", "O", "I-PER", "B-MISC", "B-LOC", "I-LOC"]
    ckpt = save_token_model(tmp_path / "ner", dict(enumerate(ckpt_labels)))
    args = DataArgs(data_dir=ner_data, max_seq_length=32)
    task = get_task(TASK)
    data = task.load_data(tokenizer, args)
    before = tags_of(task, data.train), tags_of(task, data.eval["validation"])
    model = task.build_model(str(ckpt))  # the workflows' order: data first, then the model
    assert task.labels == ckpt_labels and model.config.id2label == dict(enumerate(ckpt_labels))
    assert (tags_of(task, data.train), tags_of(task, data.eval["validation"])) == before
    assert model.classifier.out_features == 6

    # evaluate's order: check_checkpoint (config.json) first, then the data
    task = get_task(TASK)
    task.check_checkpoint(json.loads((ckpt / "config.json").read_text()), str(ckpt))
    data = task.load_data(tokenizer, args, need_train=False)
    assert task.labels == ckpt_labels and tags_of(task, data.eval["validation"]) == before[1]

    small = save_token_model(tmp_path / "per-only", {0: "O", 1: "B-PER", 2: "I-PER"})
    task = get_task(TASK)
    task.load_data(tokenizer, args)
    with pytest.raises(NNPruneError, match=r"checkpoint .*per-only has labels \{B-PER, I-PER, O\} "
                                           r"but the data's tags are \{B-LOC, B-PER, I-LOC, I-PER, "
                                           r"O\}: \{B-LOC, I-LOC\} unknown to it"):
        task.build_model(str(small))
    task = get_task(TASK)
    task.check_checkpoint(json.loads((small / "config.json").read_text()), str(small))
    with pytest.raises(NNPruneError, match=r"not all labels of checkpoint .*per-only"):
        task.load_data(tokenizer, args, need_train=False)
    with pytest.raises(NNPruneError, match=r"has labels \{B-PER, I-PER, O\} but --task-option "
                                           r"labels gives \{B-PER, O\}"):
        get_task(TASK, {"labels": "O,B-PER"}).check_checkpoint(
            json.loads((small / "config.json").read_text()), "x")


def test_unnamed_or_foreign_heads(tokenizer, ner_data, tmp_path, base_dir):
    args = DataArgs(data_dir=ner_data, max_seq_length=32)
    unnamed = save_token_model(tmp_path / "unnamed", num_labels=3)
    task = get_task(TASK)
    task.load_data(tokenizer, args)
    with pytest.raises(NNPruneError, match="has a token-classification head with 3 labels but "
                                           "the task has 5"):
        task.build_model(str(unnamed))
    assert task.build_model(str(unnamed), ignore_mismatched_sizes=True).num_labels == 5
    task = get_task(TASK)
    task.check_checkpoint(json.loads((unnamed / "config.json").read_text()), "u")
    with pytest.raises(NNPruneError, match="checkpoint u has a token-classification head with 3 "
                                           "unnamed labels but the data has 5"):
        task.load_data(tokenizer, args, need_train=False)

    with pytest.raises(NNPruneError, match=r"is a BertForSequenceClassification model; task "
                                           r"token-classification needs a \*ForTokenClassification"):
        get_task(TASK).check_checkpoint({"architectures": ["BertForSequenceClassification"]}, "s")
    # a base checkpoint gets a new head named after the data's labels
    task = get_task(TASK)
    task.load_data(tokenizer, args)
    model = task.build_model(str(base_dir))
    assert model.config.id2label == dict(enumerate(task.labels))
    with pytest.raises(NNPruneError, match="label set is unknown"):
        get_task(TASK).build_model(str(base_dir))


# ----------------------------------------------------------------------------- end to end


def _fine_prune(model: str, data: Path, out: Path, **kw):
    from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune

    base = dict(task=TASK, model=model, output_dir=out, data_dir=data, batch_size=8,
                learning_rate=5e-3, max_seq_length=32, logging_steps=5, save_steps=500, seed=3)
    base.update(kw)
    return fine_prune(make_args(FinePruneArgs, **base))


@pytest.fixture(scope="module")
def dense_run(base_dir, ner_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("dense") / "run"
    return out, _fine_prune(str(base_dir), ner_data, out, method="dense", max_steps=40)


def test_dense_fine_tuning_learns_the_toy_entities(dense_run):
    """A wrong sub-token alignment or label mapping would keep F1 far from 1."""
    out, result = dense_run
    m = result.metrics
    assert result.main_metric == "f1" and m["f1"] >= 0.9 and m["accuracy"] >= 0.9
    assert {"precision", "recall", "f1", "accuracy", "f1_PER", "f1_LOC", "eval_loss"} == set(m)
    preds = json.loads((out / "predictions.json").read_text())["validation"]
    assert len(preds) == 12 and [len(p) for p in preds] == [5] * 12
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]
    assert list(config["id2label"].values()) == ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]


def test_struct_fine_prune_distils_evaluates_and_compacts_exactly(dense_run, ner_data, tmp_path):
    from nnprune.pruning_core.checkpoint import load_model, save_checkpoint
    from nnprune.pruning_core.compact import compact_model, max_abs_diff, model_outputs
    from nnprune.workflows.evaluate import evaluate_checkpoint

    dense, _ = dense_run
    out = tmp_path / "struct"
    result = _fine_prune(str(dense), ner_data, out, method="struct", teacher=str(dense),
                         target_density=0.5, max_steps=10, save_steps=10)
    m = result.metrics
    assert abs(result.density - 0.5) < 0.05
    assert all(0.0 <= m[k] <= 1.0 for k in ("precision", "recall", "f1", "accuracy"))
    assert math.isfinite(m["eval_loss"])
    # the per-token distillation ran (a finite KL over the labelled sub-tokens) next to the task
    log = json.loads((out / "checkpoint-10" / "trainer_state.json").read_text())["log_history"]
    distill = [e["distill_loss"] for e in log if "distill_loss" in e]
    assert distill and all(math.isfinite(d) and d >= 0 for d in distill)

    masked_eval = evaluate_checkpoint(TASK, out, data_dir=ner_data)
    assert masked_eval.kind == "masked" and masked_eval.num_examples == 12
    assert masked_eval.metrics["f1"] == m["f1"]
    assert masked_eval.metrics["eval_loss"] == pytest.approx(m["eval_loss"], abs=1e-5)

    loaded = load_model(out)
    model = loaded.model.eval()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(out))
    inputs = dict(tokenizer([["alice", "smith", "visited", "new", "york"], ["bob", "lives"]],
                            is_split_into_words=True, padding=True, return_tensors="pt"))
    masked = model_outputs(model, inputs)
    assert masked["logits"].shape == (2, 7, 5)
    report = compact_model(model)
    assert report.changed and report.exact and report.params_after < report.params_before
    assert max_abs_diff(masked, model_outputs(model, inputs)) <= TOL

    compacted = save_checkpoint(model, tmp_path / "compact", config=None, tokenizer=tokenizer)
    compact_eval = evaluate_checkpoint(TASK, compacted, data_dir=ner_data, max_seq_length=32)
    assert compact_eval.kind == "compacted"
    assert compact_eval.metrics["f1"] == masked_eval.metrics["f1"]
    assert compact_eval.metrics["eval_loss"] == pytest.approx(masked_eval.metrics["eval_loss"],
                                                              abs=1e-4)
