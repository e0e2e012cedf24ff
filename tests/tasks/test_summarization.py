"""The generic ``summarization`` task (issue #13), of which ``cnn_dailymail`` is a preset (issue
#23), for any (document, summary) data. Columns by option or by name, a source prefix that reaches
the tokenized input, data folders and hub datasets, one-line errors, presets as data, and a
fine-prune run."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
from conftest import make_args, save_tiny_model

from nnprune.errors import NNPruneError
from nnprune.tasks import TASKS, DataArgs, get_task
from nnprune.registry import Registry
from nnprune.tasks.base import register_preset
from nnprune.tasks.cnn_dailymail import CNN_DAILYMAIL, CnnDailyMailTask
from nnprune.tasks.summarization import (GenerationSettings, SummarizationOptions,
                                         SummarizationPreset, SummarizationTask, SummaryReferences)
from nnprune.tasks.summarization_data import SummarySplits, stories_dataset, Story

TASK = "summarization"
LENGTH = 48
FAST_GENERATION = {"num_beams": "2", "max_length": "12", "min_length": "2",
                   "no_repeat_ngram_size": "0"}

DOCS = [
    ("The city council met on Monday to discuss the new park. Residents asked for more trees "
     "and a playground. The council agreed to fund both next year.",
     "Council agrees to fund trees and a playground.\nThe park opens next year."),
    ("A storm hit the coast overnight, cutting power to thousands of homes. Crews worked "
     "through the morning to restore it.", "Storm cuts power to thousands."),
    ("The local team won the final after extra time. Fans celebrated in the streets until late "
     "at night.", "Local team wins the final."),
    ("Scientists found a new species of frog in the rainforest. It is smaller than a coin.",
     "New tiny frog species found."),
    ("The library will stay open late during exams, the university said on Friday.",
     "Library opens late for exams."),
]


def write_rows(path: Path, rows: list[dict]) -> Path:
    """``rows`` as ``.csv``/``.tsv`` (header from the first row) or ``.json``/``.jsonl``; a
    ``.tsv`` cell cannot hold a line break: there they become spaces."""
    suffix = path.suffix
    if suffix == ".tsv":
        rows = [{k: v.replace("\n", " ") for k, v in r.items()} for r in rows]
    if suffix in (".csv", ".tsv"):
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]),
                               delimiter="\t" if suffix == ".tsv" else ",",
                               quoting=csv.QUOTE_NONE if suffix == ".tsv" else csv.QUOTE_MINIMAL)
            w.writeheader()
            w.writerows(rows)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def rows_of(text_col: str, summary_col: str, docs=DOCS, **extra) -> list[dict]:
    return [{text_col: d, summary_col: s, **{k: v[i] for k, v in extra.items()}}
            for i, (d, s) in enumerate(docs)]


# ----------------------------------------------------------------------------- options


def test_registered_with_cnn_dailymail_defaults():
    assert TASK in TASKS.names()
    task = get_task(TASK)
    assert isinstance(task, SummarizationTask) and task.preset is None
    assert task.name == TASK and task.main_metric == "rouge2"
    assert task.default_max_seq_length == 1024 and task.max_target_length == 128
    assert task.generation == GenerationSettings() and task.source_prefix == ""
    task = get_task(TASK, {"source_prefix": "summarize:", "max_target_length": "32",
                           **FAST_GENERATION, "early_stopping": "no"})
    assert task.source_prefix == "summarize: " and task.max_target_length == 32
    assert task.generation == GenerationSettings(num_beams=2, max_length=12, min_length=2,
                                                 no_repeat_ngram_size=0, early_stopping=False)
    # a prefix ending with whitespace is kept as given (Python API)
    api = SummarizationTask(SummarizationOptions(source_prefix="summarize:\t"))
    assert api.source_prefix == "summarize:\t" and api.generation == GenerationSettings()
    # the preset keeps its settings
    assert CNN_DAILYMAIL.source_prefix == "" and CNN_DAILYMAIL.max_target_length == 128
    assert get_task("cnn_dailymail").generation.num_beams == 4


def test_cnn_dailymail_is_a_preset_and_a_new_preset_is_data(tokenizer):
    """``cnn_dailymail`` is the generic adapter with a preset (the Python entry point
    ``CnnDailyMailTask`` included); a new preset brings its own source and defaults, and takes
    the generation settings only."""
    cnn = get_task("cnn_dailymail")
    assert type(cnn) is SummarizationTask and cnn.preset is CNN_DAILYMAIL
    api = CnnDailyMailTask(generation=GenerationSettings(num_beams=2))
    assert api.preset is CNN_DAILYMAIL and api.generation.num_beams == 2

    class Fixed:
        """A source of two fixed documents, whatever the data arguments."""

        def load(self, task, data, *, need_train):
            stories = [Story(str(i), d, s) for i, (d, s) in enumerate(DOCS[:2])]
            return SummarySplits(stories_dataset(stories) if need_train else None,
                                 stories_dataset(stories), f"{task}: fixed")

    registry: Registry = Registry("task")
    preset = SummarizationPreset(name="news2", source=Fixed(), source_prefix="summarize: ",
                                 max_target_length=8,
                                 generation=GenerationSettings(num_beams=1, min_length=0))
    register_preset(preset, SummarizationTask, registry)
    assert "news2" not in TASKS
    task = registry.get("news2")()
    assert task.name == "news2" and task.generation.num_beams == 1
    data = task.load_data(tokenizer, DataArgs(max_seq_length=LENGTH))
    assert task.split_info == "news2: fixed" and len(data.train) == 2
    assert data.eval["validation"][0]["input_ids"] == tokenizer(
        "summarize: " + DOCS[0][0], max_length=LENGTH, truncation=True)["input_ids"]
    assert all(len(x) <= 8 for x in data.eval["validation"]["labels"][:])
    assert task.with_options({"num_beams": "3"}).generation.num_beams == 3
    with pytest.raises(NNPruneError, match="unknown generation setting key 'text_column'"):
        task.with_options({"text_column": "body"})


@pytest.mark.parametrize("options, match", [
    ({"text": "x"}, r"unknown summarization option key 'text'; known: .*num_beams.*"
                    r"source_prefix.*text_column"),
    ({"text_column": "doc", "summary_column": "doc"},
     r"text_column and summary_column are both 'doc'"),
    ({"max_target_length": "0"}, r"max_target_length must be >= 1, got 0"),
    ({"max_target_length": "many"}, r"max_target_length expects an int"),
    ({"dataset_config": "3.0.0"}, r"dataset_config=3\.0\.0 needs dataset=NAME"),
    ({"train_split": " "}, r"train_split must not be empty"),
    ({"num_beams": "0"}, r"generation num_beams must be >= 1"),
    ({"min_length": "500"}, r"generation min_length must be in \[0, max_length\]"),
])
def test_bad_options_are_one_line_errors(options, match):
    with pytest.raises(NNPruneError, match=match) as e:
        get_task(TASK, options)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------- files


def test_same_features_as_cnn_dailymail_on_its_columns(tokenizer, tmp_path):
    f = write_rows(tmp_path / "data.csv", rows_of("article", "highlights", id=list("abcde")))
    args = DataArgs(train_file=f, validation_file=f, max_seq_length=LENGTH)
    a = get_task("cnn_dailymail").load_data(tokenizer, args)
    b = get_task(TASK).load_data(tokenizer, args)
    assert a.train.to_dict() == b.train.to_dict()
    assert a.eval["validation"].to_dict() == b.eval["validation"].to_dict()
    assert a.eval_examples == b.eval_examples
    assert b.eval_examples["validation"].ids == list("abcde")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json"])
def test_custom_columns_and_source_prefix_reach_the_tokenized_input(tokenizer, tmp_path,
                                                                    suffix):
    docs = DOCS if suffix != ".tsv" else [(d, s.replace("\n", " ")) for d, s in DOCS]
    f = write_rows(tmp_path / f"data{suffix}", rows_of("body", "abstract", docs))
    task = get_task(TASK, {"text_column": "body", "summary_column": "abstract",
                           "source_prefix": "summarize:", "max_target_length": "16"})
    data = task.load_data(tokenizer, DataArgs(train_file=f, validation_file=f,
                                              max_seq_length=LENGTH))
    prefix_ids = tokenizer("summarize:", add_special_tokens=False)["input_ids"]
    for ds in (data.train, data.eval["validation"]):
        assert set(ds.column_names) == {"input_ids", "attention_mask", "labels"}
    rows = data.eval["validation"]
    for row, (doc, summary) in zip(rows, docs):
        assert row["input_ids"] == tokenizer("summarize: " + doc, max_length=LENGTH,
                                             truncation=True)["input_ids"]
        assert row["input_ids"][1: 1 + len(prefix_ids)] == prefix_ids  # after [CLS]
        assert row["labels"] == tokenizer(text_target=summary, max_length=16,
                                          truncation=True)["input_ids"]
    refs = data.eval_examples["validation"]
    assert isinstance(refs, SummaryReferences)
    assert refs.highlights == [s for _, s in docs]  # the references are not prefixed
    assert refs.ids == ["1", "2", "3", "4", "5"]  # no id column: row numbers
    # without the prefix, the documents alone
    plain = get_task(TASK, {"text_column": "body", "summary_column": "abstract"}).load_data(
        tokenizer, DataArgs(validation_file=f, max_seq_length=LENGTH), need_train=False)
    assert plain.eval["validation"][0]["input_ids"] == tokenizer(
        docs[0][0], max_length=LENGTH, truncation=True)["input_ids"]


def test_columns_found_by_name_and_data_dir_layout(tokenizer, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="nnprune")
    # a "text" column too: "document" comes first among the names tried
    write_rows(tmp_path / "train.jsonl", rows_of("document", "summary",
                                                 text=["x"] * len(DOCS)))
    write_rows(tmp_path / "test.csv", rows_of("source", "target", DOCS[:2]))
    task = get_task(TASK)
    data = task.load_data(tokenizer, DataArgs(data_dir=tmp_path, max_seq_length=LENGTH))
    assert len(data.train) == len(DOCS) and len(data.eval["validation"]) == 2  # test.* at last
    assert "text column 'document', summary column 'summary'" in caplog.text
    assert "text column 'source', summary column 'target'" in caplog.text
    assert data.train[0]["input_ids"] == tokenizer(DOCS[0][0], max_length=LENGTH,
                                                   truncation=True)["input_ids"]
    # dev.* wins over test.*, validation.* over dev.*
    write_rows(tmp_path / "dev.json", rows_of("text", "summary", DOCS[:3]))
    assert len(task.load_data(tokenizer, DataArgs(data_dir=tmp_path), need_train=False)
               .eval["validation"]) == 3
    write_rows(tmp_path / "validation.tsv", rows_of("article", "highlights", DOCS[:4]))
    assert len(task.load_data(tokenizer, DataArgs(data_dir=tmp_path), need_train=False)
               .eval["validation"]) == 4
    write_rows(tmp_path / "validation.jsonl", rows_of("article", "highlights", DOCS[:1]))
    with pytest.raises(NNPruneError, match=r"summarization: 2 candidate files in .* "
                                           r"\(validation\.tsv, validation\.jsonl\); pass "
                                           r"--validation-file"):
        task.load_data(tokenizer, DataArgs(data_dir=tmp_path), need_train=False)


def test_file_and_source_errors(tokenizer, tmp_path):
    f = write_rows(tmp_path / "d.csv", rows_of("body", "abstract"))
    cases = [
        ({}, r"d\.csv: no text column \(tried 'article', 'document', 'text', 'source'\); found: "
             r"body, abstract; pass --task-option text_column=NAME"),
        ({"text_column": "body"}, r"d\.csv: no summary column \(tried 'highlights', 'summary', "
                                  r"'target'\); found: body, abstract"),
        ({"text_column": "content", "summary_column": "abstract"},
         r"d\.csv: missing column 'content' \(text_column\); found: body, abstract"),
        ({"dataset": "org/news"}, r"both local data files and dataset=org/news given"),
    ]
    for options, match in cases:
        with pytest.raises(NNPruneError, match=match) as e:
            get_task(TASK, options).load_data(tokenizer, DataArgs(validation_file=f),
                                              need_train=False)
        assert "\n" not in str(e.value)
    # text_column names the first summary column found by name
    same = write_rows(tmp_path / "s.csv", rows_of("summary", "other"))
    with pytest.raises(NNPruneError, match=r"s\.csv: column 'summary' is both the text and the "
                                           r"summary; pass --task-option text_column=NAME and "
                                           r"summary_column=NAME"):
        get_task(TASK, {"text_column": "summary"}).load_data(
            tokenizer, DataArgs(validation_file=same), need_train=False)
    rows = rows_of("article", "highlights")
    rows[2] = {"article": "no summary here"}
    bad = write_rows(tmp_path / "bad.jsonl", rows)
    with pytest.raises(NNPruneError, match=r"bad\.jsonl: line 3: missing column\(s\) "
                                           r"'highlights'; found: article"):
        get_task(TASK).load_data(tokenizer, DataArgs(validation_file=bad), need_train=False)
    with pytest.raises(NNPruneError, match=r"summarization: no data: pass --data-dir, "
                                           r"--train-file/--validation-file or --task-option "
                                           r"dataset=NAME"):
        get_task(TASK).load_data(tokenizer, DataArgs(), need_train=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "abc.story").write_text("Text.\n\n@highlight\n\nSummary\n")
    with pytest.raises(NNPruneError, match=r"no training data: expected "
                                           r"train\.\{tsv,csv,jsonl,json\} in .*empty \(or pass "
                                           r"--train-file\); for a folder of DeepMind \.story "
                                           r"files use task cnn_dailymail"):
        get_task(TASK).load_data(tokenizer, DataArgs(data_dir=empty))
    blank = write_rows(tmp_path / "blank.jsonl", [{"article": " ", "highlights": "x"}])
    with pytest.raises(NNPruneError, match=r"summarization: no training example has both a "
                                           r"text and a summary"):
        get_task(TASK).load_data(tokenizer, DataArgs(train_file=blank, validation_file=blank,
                                                     max_seq_length=LENGTH))


# ------------------------------------------------------------------------------- hub


def test_hub_dataset_columns_lists_and_ids(tokenizer, monkeypatch):
    import datasets

    def split(docs):
        # summaries as lists of sentences, no id column, an unrelated int column
        return datasets.Dataset.from_dict({
            "document": [d for d, _ in docs], "summary": [s.split("\n") for _, s in docs],
            "stars": list(range(len(docs)))})

    splits = {"train": split(DOCS), "validation": split(DOCS[:2])}
    calls = []

    def fake_load(name, config=None, split=None, **kw):
        calls.append((name, config, split))
        if name != "org/news":
            raise ConnectionError("offline\nmore")
        return splits[split]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    task = get_task(TASK, {"dataset": "org/news", "dataset_config": "v1",
                           "source_prefix": "summarize:"})
    data = task.load_data(tokenizer, DataArgs(max_seq_length=LENGTH))
    assert calls == [("org/news", "v1", "train"), ("org/news", "v1", "validation")]
    refs = data.eval_examples["validation"]
    assert refs.ids == ["1", "2"] and refs.highlights == [s for _, s in DOCS[:2]]
    assert "\n" in refs.highlights[0]  # the sentences joined by newlines
    assert len(data.train) == len(DOCS)
    assert data.eval["validation"][1]["input_ids"] == tokenizer(
        "summarize: " + DOCS[1][0], max_length=LENGTH, truncation=True)["input_ids"]
    assert task.split_info == "hub org/news/v1"

    # an own id column is kept; a text column swapped with a preset name does not collide
    splits["validation"] = datasets.Dataset.from_dict({
        "highlights": [d for d, _ in DOCS[:2]], "article": ["s1", "s2"], "id": [7, 8]})
    data = get_task(TASK, {"dataset": "org/news", "text_column": "highlights",
                           "summary_column": "article"}).load_data(
        tokenizer, DataArgs(max_seq_length=LENGTH), need_train=False)
    assert data.eval_examples["validation"].ids == ["7", "8"]
    assert data.eval_examples["validation"].highlights == ["s1", "s2"]

    splits["validation"] = split(DOCS[:2])
    with pytest.raises(NNPruneError, match=r"org/news\[validation\]: column 'stars' holds "
                                           r"Value\('int64'\), expected text"):
        get_task(TASK, {"dataset": "org/news", "summary_column": "stars"}).load_data(
            tokenizer, DataArgs(), need_train=False)
    with pytest.raises(NNPruneError, match=r"summarization: could not load other\[train\] "
                                           r"\(offline\); pass --data-dir") as e:
        get_task(TASK, {"dataset": "other"}).load_data(tokenizer, DataArgs())
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- end to end


def test_fine_prune_summarization_end_to_end(tmp_path):
    from nnprune.workflows.evaluate import evaluate_checkpoint
    from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune

    data = tmp_path / "data"
    data.mkdir()
    write_rows(data / "train.jsonl", rows_of("body", "abstract"))
    write_rows(data / "validation.csv", rows_of("body", "abstract", DOCS[:3]))
    model = save_tiny_model(tmp_path / "bart", "bart", head="seq2seq")
    options = {"text_column": "body", "summary_column": "abstract",
               "source_prefix": "summarize:", **FAST_GENERATION}
    out = tmp_path / "out"
    result = fine_prune(make_args(
        FinePruneArgs, task=TASK, model=str(model), output_dir=out, method="hybrid-nt",
        overrides=["attention_block=8x8"], max_steps=2, batch_size=2, max_seq_length=LENGTH,
        learning_rate=1e-3, data_dir=data, logging_steps=1, save_steps=1000,
        task_options=options))
    assert result.main_metric == "rouge2" and result.steps == 2
    m = result.metrics
    assert {"rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len", "eval_loss"} <= set(m)
    assert all(0.0 <= m[k] <= 100.0 for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"))
    assert 2 <= m["gen_len"] <= 12 and m["eval_loss"] > 0
    saved = json.loads((out / "nnprune_config.json").read_text())
    assert saved["task"] == TASK and saved["training"]["task_options"] == options
    ev = evaluate_checkpoint(TASK, out, data_dir=data, batch_size=2, task_options=options)
    assert ev.num_examples == 3 and ev.max_seq_length == LENGTH
    assert ev.metrics["rouge2"] == pytest.approx(m["rouge2"])
