"""The SQuAD data format, read by ``question-answering`` and its presets ``squad`` / ``squad_v2``.

Two layouts are read (:func:`read_squad_file`):

* the official SQuAD JSON file: ``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id",
  "question", "answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}``;
* one question per row as the hub writes it (``.jsonl``, or a JSON list / ``{"data": [...]}`` of
  rows with ``id``, ``question``, ``context``, ``answers: {"text": [...], "answer_start": [...]}``,
  optional ``title``; the row field names are :class:`SquadColumns`).

Every example is checked (ids unique and non-empty, questions non-empty, answers inside their
context); a problem is a one-line :class:`~nnprune.errors.NNPruneError` naming the file (or split)
and the place in it. An example without answers is unanswerable (SQuAD v2.0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnprune.errors import NNPruneError
from nnprune.tasks.io import column_list, json_type, read_text, shown

SQUAD_EXTENSIONS = (".json", ".jsonl")


@dataclass
class SquadExample:
    """One question on one paragraph; ``answers`` empty means unanswerable (v2.0)."""

    id: str
    title: str
    context: str
    question: str
    answers: list[str]
    answer_starts: list[int]

    @property
    def has_answer(self) -> bool:
        return bool(self.answers)


@dataclass(frozen=True)
class SquadColumns:
    """Names of the fields of a one-question row (files of rows, hub datasets).

    The defaults are the hub's SQuAD columns; the official layout (articles, paragraphs, qas)
    always uses its own names. ``title`` is optional in a row.
    """

    id: str = "id"
    question: str = "question"
    context: str = "context"
    answers: str = "answers"
    title: str = "title"


#: the hub's SQuAD column names
DEFAULT_COLUMNS = SquadColumns()


# ------------------------------------------------------------------------------ reading files


def read_squad_file(path: str | Path, columns: SquadColumns = DEFAULT_COLUMNS
                    ) -> list[SquadExample]:
    """Read an official SQuAD JSON file or a file of one-question rows (see module docstring).

    ``columns`` names the fields of a row (the official layout has fixed names). Raises
    :class:`NNPruneError` with a one-line message naming the file and the problem.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SQUAD_EXTENSIONS:
        raise NNPruneError(f"{path}: unsupported file type {suffix or '(none)'!r} for SQuAD; "
                           "expected .json (official SQuAD layout) or .jsonl")
    text = read_text(path)
    if not text.strip():
        raise NNPruneError(f"{path}: file is empty")
    if suffix == ".jsonl":
        rows: list[tuple[str, Any]] = []
        for lineno, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    rows.append((f"line {lineno}", json.loads(line)))
                except json.JSONDecodeError as e:
                    raise NNPruneError(f"{path}: invalid JSON at line {lineno} column {e.colno}: "
                                       f"{e.msg}") from None
                except RecursionError:
                    raise NNPruneError(f"{path}: line {lineno}: JSON nested too deeply") from None
        return _finish(path, [_row_example(path, where, row, columns) for where, row in rows])
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise NNPruneError(f"{path}: not valid JSON (line {e.lineno} column {e.colno}: "
                           f"{e.msg})") from None
    except RecursionError:
        raise NNPruneError(f"{path}: JSON nested too deeply") from None
    if isinstance(obj, dict):
        if "data" not in obj:
            raise NNPruneError(f"{path}: not a SQuAD file: no 'data' list; found keys: "
                               f"{column_list(obj)}")
        data = obj["data"]
    else:
        data = obj
    if not isinstance(data, list):
        raise NNPruneError(f"{path}: 'data' is a JSON {_json_type(data)}, expected a list of "
                           "articles")
    if not data:
        raise NNPruneError(f"{path}: 'data' is empty: no articles")
    first = data[0]
    if isinstance(first, dict) and "paragraphs" in first:
        examples: list[SquadExample] = []
        for i, article in enumerate(data):
            examples.extend(_article_examples(path, f"data[{i}]", article))
        return _finish(path, examples)
    if isinstance(first, dict) and columns.context in first:
        return _finish(path, [_row_example(path, f"data[{i}]", row, columns)
                              for i, row in enumerate(data)])
    raise NNPruneError(f"{path}: data[0] has neither 'paragraphs' (official SQuAD layout) nor "
                       f"{columns.context!r} (one question per row)")


def read_squad_rows(source: str, rows: list[dict[str, Any]],
                    columns: SquadColumns = DEFAULT_COLUMNS) -> list[SquadExample]:
    """Examples of one-question ``rows`` (e.g. a hub split's), checked like a file's rows;
    errors name ``source`` and the 1-based row."""
    return _finish(source, [_row_example(source, f"row {i + 1}", row, columns)
                            for i, row in enumerate(rows)])


_json_type = json_type


def _need(path: str | Path, where: str, obj: Any, key: str, kind: type | tuple[type, ...],
          kind_name: str) -> Any:
    if not isinstance(obj, dict):
        raise NNPruneError(f"{path}: {where} is a JSON {_json_type(obj)}, expected an object")
    if key not in obj:
        raise NNPruneError(f"{path}: {where} has no {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise NNPruneError(f"{path}: {where}: {key!r} is a JSON {_json_type(value)}, "
                           f"expected {kind_name}")
    return value


def _article_examples(path: Path, where: str, article: Any) -> list[SquadExample]:
    paragraphs = _need(path, where, article, "paragraphs", list, "a list")
    title = article.get("title", "")
    title = title if isinstance(title, str) else str(title)
    out: list[SquadExample] = []
    for j, par in enumerate(paragraphs):
        pwhere = f"{where}.paragraphs[{j}]"
        context = _need(path, pwhere, par, "context", str, "a string")
        if not context.strip():
            raise NNPruneError(f"{path}: {pwhere} has an empty 'context'")
        qas = _need(path, pwhere, par, "qas", list, "a list")
        for k, qa in enumerate(qas):
            qwhere = f"{pwhere}.qas[{k}]"
            qid = _question_id(path, qwhere, qa)
            qwhere = f"{qwhere} (id {shown(qid)})"
            question = _question(path, qwhere, qa)
            raw = _need(path, qwhere, qa, "answers", list, "a list")
            answers: list[tuple[Any, Any]] = []
            for a, ans in enumerate(raw):
                awhere = f"{qwhere}.answers[{a}]"
                if not isinstance(ans, dict):
                    raise NNPruneError(f"{path}: {awhere} is a JSON {_json_type(ans)}, "
                                       "expected an object")
                for key in ("text", "answer_start"):
                    if key not in ans:
                        raise NNPruneError(f"{path}: {awhere} has no {key!r}")
                answers.append((ans["text"], ans["answer_start"]))
            out.append(_example(path, qwhere, qid, title, context, question, answers))
    return out


def _row_example(path: str | Path, where: str, row: Any,
                 columns: SquadColumns = DEFAULT_COLUMNS) -> SquadExample:
    qid = _question_id(path, where, row, columns.id)
    where = f"{where} (id {shown(qid)})"
    question = _question(path, where, row, columns.question)
    context = _need(path, where, row, columns.context, str, "a string")
    if not context.strip():
        raise NNPruneError(f"{path}: {where} has an empty {columns.context!r}")
    raw = _need(path, where, row, columns.answers, (dict, list), "an object or a list")
    if isinstance(raw, dict):  # the hub layout: {"text": [...], "answer_start": [...]}
        texts, starts = raw.get("text"), raw.get("answer_start")
        if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
            raise NNPruneError(f"{path}: {where}: {columns.answers!r} must hold lists 'text' and "
                               "'answer_start' of the same length")
        answers = list(zip(texts, starts))
    else:
        answers = []
        for a, ans in enumerate(raw):
            if not isinstance(ans, dict) or "text" not in ans or "answer_start" not in ans:
                raise NNPruneError(f"{path}: {where}.answers[{a}] must be an object with 'text' "
                                   "and 'answer_start'")
            answers.append((ans["text"], ans["answer_start"]))
    title = row.get(columns.title, "")
    return _example(path, where, qid, title if isinstance(title, str) else str(title), context,
                    question, answers)


def _question_id(path: str | Path, where: str, qa: Any, key: str = "id") -> str:
    qid = _need(path, where, qa, key, (str, int), "a string")
    qid = str(qid)
    if not qid:
        raise NNPruneError(f"{path}: {where} has an empty {key!r}")
    return qid


def _question(path: str | Path, where: str, qa: Any, key: str = "question") -> str:
    question = _need(path, where, qa, key, str, "a string")
    if not question.strip():
        raise NNPruneError(f"{path}: {where} has an empty {key!r}")
    return question


def _example(path: str | Path, where: str, qid: str, title: str, context: str, question: str,
             answers: list[tuple[Any, Any]]) -> SquadExample:
    texts: list[str] = []
    starts: list[int] = []
    for a, (text, start) in enumerate(answers):
        if not isinstance(text, str) or not text:
            raise NNPruneError(f"{path}: {where}: answer {a} has an empty or non-string 'text'")
        if isinstance(start, bool) or not isinstance(start, int):
            raise NNPruneError(f"{path}: {where}: answer {a}: 'answer_start' {start!r} is not an "
                               "integer")
        if start < 0 or start + len(text) > len(context):
            raise NNPruneError(f"{path}: {where}: answer {a}: answer_start {start} is out of range "
                               f"for a {len(text)}-character answer in a {len(context)}-character "
                               "context")
        texts.append(text)
        starts.append(start)
    return SquadExample(qid, title, context, question, texts, starts)


def _finish(path: str | Path, examples: list[SquadExample]) -> list[SquadExample]:
    if not examples:
        raise NNPruneError(f"{path}: no questions")
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise NNPruneError(f"{path}: duplicate question id {ex.id!r}")
        seen.add(ex.id)
    return examples


def hub_split_examples(ds: Any) -> list[SquadExample]:
    """The examples of a split of the hub's SQuAD datasets (``rajpurkar/squad``,
    ``rajpurkar/squad_v2``), read as the hub stores them: its own column names, trusted as
    published (no per-row checks)."""
    cols = {c: ds[c][:] for c in ("id", "title", "context", "question", "answers")}
    return [SquadExample(str(qid), title or "", context, question, list(ans["text"]),
                         [int(s) for s in ans["answer_start"]])
            for qid, title, context, question, ans in zip(
                cols["id"], cols["title"], cols["context"], cols["question"], cols["answers"])]


__all__ = [
    "DEFAULT_COLUMNS",
    "SQUAD_EXTENSIONS",
    "SquadColumns",
    "SquadExample",
    "hub_split_examples",
    "read_squad_file",
    "read_squad_rows",
]
