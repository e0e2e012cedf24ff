"""Property-based tests (Hypothesis) of every data reader: TSV, CSV, JSON, JSONL, CoNLL, SQuAD JSON.

Each reader either reads a file right (a valid file written from generated data reads back as that
data, wherever it has a byte-order mark, Windows line ends, blank lines, unicode text and labels,
extra columns or huge fields) or refuses it with a one-line :class:`NNPruneError` that names the
file and, where it has one, the line (malformed rows, missing or extra fields, wrong JSON types,
Latin-1 bytes, unbalanced quotes, random bytes). Never another exception.

Examples per property: the Hypothesis profile of ``tests/conftest.py`` ("ci", a few hundred);
``NNPRUNE_HYPOTHESIS_PROFILE=deep`` runs thousands, ``NNPRUNE_FUZZ_EXAMPLES=N`` exactly N, e.g.
``NNPRUNE_HYPOTHESIS_PROFILE=deep python -m pytest -q tests/tasks/test_readers_fuzz.py``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import written
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nnprune.errors import NNPruneError
from nnprune.tasks import get_task
from nnprune.tasks.base import DataArgs
from nnprune.tasks.cnn_dailymail import read_rows_file
from nnprune.tasks.io import read_table
from nnprune.tasks.squad_format import SquadColumns, read_squad_file
from nnprune.tasks.token_classification import read_conll

# The slower properties (tokenizing through a task) run a quarter of the profile's examples.
FEW = settings(max_examples=max(10, settings.default.max_examples // 4))


# ------------------------------------------------------------------------------ helpers


def refused(path: Path, exc: NNPruneError, line: int | None = None) -> str:
    """``exc`` is a one-line error naming ``path`` (and ``line`` when given); its message."""
    msg = str(exc)
    assert "\n" not in msg and "\r" not in msg, msg
    assert msg.startswith(f"{path}: ") or f" {path}" in msg or msg.startswith(str(path)), msg
    if line is not None:
        assert re.search(rf"\bline {line}\b", msg), (line, msg)
    return msg


def read_or_refuse(fn, path: Path, *args: Any, **kwargs: Any) -> Any:
    """``fn(path, ...)``'s result, or ``None`` after checking its error is one line naming
    ``path``; any other exception fails the test."""
    try:
        return fn(path, *args, **kwargs)
    except NNPruneError as e:
        refused(path, e)
        return None


def lines_before(text: str, offset: int) -> int:
    """The 1-based line of ``offset`` in ``text``, line ends as csv counts them (\\r\\n, \\r, \\n)."""
    return len(re.findall(r"\r\n|\r|\n", text[:offset])) + 1


def encode(text: str, bom: bool) -> bytes:
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


# Unicode text with everything but surrogates (not encodable): accents, CJK, emoji, controls,
# U+2028 / U+0085 (line breaks to str.splitlines, not to the readers).
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
# A cell of a tab-separated file: no tab and no line end (nothing quotes them in a TSV).
TSV_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\t\r\n"),
                   max_size=30)


def names(cell: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """2-4 distinct column names as a header keeps them: stripped, not empty, not a BOM first."""
    name = cell.map(str.strip).filter(lambda s: s != "" and not s.startswith("\ufeff"))
    return st.lists(name, min_size=2, max_size=4, unique=True)


@st.composite
def tables(draw, cell: st.SearchStrategy[str]) -> tuple[list[str], list[dict[str, str]]]:
    header = draw(names(cell))
    rows = draw(st.lists(st.fixed_dictionaries({h: cell for h in header}), max_size=6))
    return header, rows


LINE_ENDS = st.sampled_from(["\n", "\r\n"])
BLANK = st.sampled_from(["", "  "])


@st.composite
def delimited_files(draw, delimiter: str) -> tuple[str, list[str], list[dict[str, str]], list[int]]:
    """(text, header, rows, the line each row starts on) of a valid TSV or CSV file, with blank
    lines here and there and the chosen line ends."""
    header, rows = draw(tables(TSV_TEXT if delimiter == "\t" else ANY_TEXT))
    end = draw(LINE_ENDS)
    buf = io.StringIO()
    if delimiter == "\t":
        writer = csv.writer(buf, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar=None,
                            lineterminator=end, quotechar=None)
    else:
        # csv.writer leaves a field with a lone \r unquoted unless \r ends its lines: quote all
        lone_cr = any("\r" in v for v in [*header, *(v for r in rows for v in r.values())])
        quote_all = lone_cr or draw(st.booleans())
        writer = csv.writer(buf, lineterminator=end,
                            quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    writer.writerow(header)
    starts = []
    for row in rows:
        for _ in range(draw(st.integers(0, 2))):
            buf.write(draw(BLANK) + end)
        starts.append(lines_before(buf.getvalue(), len(buf.getvalue())))
        writer.writerow([row[h] for h in header])
    text = buf.getvalue()
    if draw(st.booleans()):
        text = text[: -len(end)]  # no line end after the last row
    return text, header, rows, starts


def json_values(max_leaves: int = 6) -> st.SearchStrategy[Any]:
    scalars = (st.none() | st.booleans() | st.integers(-10**12, 10**12)
               | st.floats(allow_nan=False, allow_infinity=False) | ANY_TEXT)
    return st.recursive(scalars, lambda c: st.lists(c, max_size=3)
                        | st.dictionaries(ANY_TEXT, c, max_size=3), max_leaves=max_leaves)


# ------------------------------------------------------------------------------ TSV / CSV


@pytest.mark.parametrize("suffix, delimiter", [(".tsv", "\t"), (".csv", ",")])
@given(data=st.data(), bom=st.booleans())
def test_delimited_files_read_back_as_written(suffix, delimiter, data, bom):
    text, header, rows, starts = data.draw(delimited_files(delimiter))
    with written(f"data{suffix}", encode(text, bom)) as path:
        got_header, got = read_table(path)
    assert got_header == header
    assert [dict(r) for r in got] == rows
    assert [r.where for r in got] == [f"line {n}" for n in starts]


@pytest.mark.parametrize("suffix, delimiter", [(".tsv", "\t"), (".csv", ",")])
@given(data=st.data(), extra=st.booleans())
def test_a_ragged_row_is_refused_naming_its_line(suffix, delimiter, data, extra):
    text, header, rows, starts = data.draw(delimited_files(delimiter))
    assume(rows)
    k = data.draw(st.integers(0, len(rows) - 1))
    assume(not any(c in v for v in [*header, *rows[k].values()] for c in "\r\n"))
    lines = re.split(r"(\r\n|\r|\n)", text)  # line i at 2 * i, its line end after it
    # row k (on one line) written with one field more, or one fewer
    values = [rows[k][h] for h in header] + ["x"] if extra else [rows[k][h] for h in header[:-1]]
    assume(len(values) > 1 or values[0].strip())  # a blank line is skipped, not a row
    if delimiter == "\t":
        line = "\t".join(values)
    else:
        buf = io.StringIO()
        csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="").writerow(values)
        line = buf.getvalue()
    lines[2 * (starts[k] - 1)] = line
    with written(f"data{suffix}", "".join(lines).encode()) as path:
        with pytest.raises(NNPruneError) as e:
            read_table(path)
    refused(path, e.value, starts[k])


@given(rows=st.lists(st.sampled_from(["a,b", "", "x,y"]), max_size=4),
       first=st.booleans(), after=st.text("ab,\n", max_size=20))
def test_an_unbalanced_csv_quote_is_refused_naming_its_line(rows, first, after):
    # a field that opens a quote and never closes it, on line len(rows) + 2
    before = "a,b\n" + "".join(r + "\n" for r in rows) + ("" if first else "x,")
    with written("data.csv", (before + '"never closed' + after).encode()) as path:
        with pytest.raises(NNPruneError) as e:
            read_table(path)
    assert "never closed" in refused(path, e.value, len(rows) + 2)


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl", ".json", ".txt"])
@given(raw=st.binary(max_size=200) | ANY_TEXT.map(str.encode))
def test_random_bytes_are_read_or_refused_in_one_line(suffix, raw):
    def read(path: Path) -> Any:
        return read_table(path, delimiter="|" if suffix == ".txt" else None)

    read_or_refuse(read, Path("/nonexistent") / f"x{suffix}")  # a missing file too
    with written(f"x{suffix}", raw) as path:
        read_or_refuse(read, path)


@given(raw=ANY_TEXT.map(str.encode) | st.binary(max_size=100),
       delimiter=st.characters(exclude_categories=("Cs",), exclude_characters='"\r\n'),
       suffix=st.sampled_from([".txt", ".tsv", ".csv"]))
def test_any_delimiter_reads_or_refuses(raw, delimiter, suffix):
    # text-classification's delimiter option: any one character but a quote or a line end
    with written(f"x{suffix}", raw) as path:
        got = read_or_refuse(read_table, path, delimiter=delimiter)
    if got is not None:
        header, rows = got
        assert all(list(r) == header for r in rows)


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl", ".conll"])
@given(data=st.data())
def test_latin1_bytes_are_refused_naming_line_and_column(suffix, data):
    # a file saved as Latin-1 (Windows-1252): its first non-ASCII character is the bad byte
    before = data.draw(st.lists(st.text("abc\t ,", max_size=8), min_size=1, max_size=4))
    line = len(before)
    column = len(before[-1]) + 1
    text = "\n".join(before) + data.draw(st.sampled_from("éàüñ£°±æ")) + "rest\nmore\n"
    with written(f"x{suffix}", text.encode("latin-1")) as path:
        reader = read_conll if suffix == ".conll" else read_table
        with pytest.raises(NNPruneError) as e:
            reader(path)
    msg = refused(path, e.value, line)
    assert f"column {column}" in msg and "UTF-8" in msg


def test_huge_fields_read_back():
    # past the csv module's default limit of 128 KiB per field
    big = "x" * 300_000 + "é"
    for suffix, text in ((".tsv", f"a\tb\n{big}\t1\n"), (".csv", f'a,b\n"{big}\n{big}",1\n'),
                         (".jsonl", json.dumps({"a": big, "b": 1}) + "\n")):
        with written(f"big{suffix}", text.encode()) as path:
            _, rows = read_table(path)
        assert len(rows) == 1 and rows[0]["a"] in (big, f"{big}\n{big}")


# ------------------------------------------------------------------------------ JSON / JSONL


@st.composite
def json_files(draw) -> tuple[str, list[dict[str, Any]], list[int]]:
    """(text, rows, the line each row starts on) of a valid ``.json`` file: a list of objects or
    ``{"data": [...]}`` among other keys, spread over lines as a person or a tool writes it."""
    rows = draw(st.lists(st.dictionaries(ANY_TEXT, json_values(4), max_size=4), max_size=5))
    space = st.sampled_from(["", " ", "\n", "\r\n", "\n  ", "\t"])
    ascii_only = draw(st.booleans())
    parts = ["[", draw(space)]
    starts = []
    for i, row in enumerate(rows):
        if i:
            parts += [",", draw(space)]
        starts.append("".join(parts).count("\n") + 1)
        indent = draw(st.sampled_from([None, 1, 2]))
        parts.append(json.dumps(row, indent=indent, ensure_ascii=ascii_only))
    parts += [draw(space), "]"]
    listing = "".join(parts)
    if draw(st.booleans()):
        return listing, rows, starts
    # {"data": [...]} with other keys around it, on lines of their own
    before = draw(st.dictionaries(ANY_TEXT.filter(lambda k: k != "data"), json_values(3),
                                  max_size=2))
    head = "{\n" + "".join(f"{json.dumps(k)}: {json.dumps(v)},\n" for k, v in before.items())
    head += '"data": '
    shift = head.count("\n")
    return head + listing + "\n}", rows, [n + shift for n in starts]


@given(data=json_files(), bom=st.booleans(), crlf=st.booleans())
def test_json_files_read_back_as_written(data, bom, crlf):
    text, rows, starts = data
    if crlf:
        text = text.replace("\n", "\r\n")  # JSON strings escape their line breaks: only whitespace
    with written("data.json", encode(text, bom)) as path:
        result = read_or_refuse(read_table, path)
    if not rows:
        assert result is None  # no rows is an error
        return
    header, got = result
    assert [dict(r) for r in got] == rows and header == list(rows[0])
    assert [r.where for r in got] == [f"line {n}, item {i}" for i, n in enumerate(starts)]


@given(rows=st.lists(st.dictionaries(ANY_TEXT, json_values(), max_size=4), min_size=1, max_size=5),
       blanks=st.lists(st.integers(0, 2), min_size=5, max_size=5), end=LINE_ENDS, bom=st.booleans())
def test_jsonl_files_read_back_as_written(rows, blanks, end, bom):
    lines, starts = [], []
    for row, gap in zip(rows, blanks):
        lines += [""] * gap
        starts.append(len(lines) + 1)
        lines.append(json.dumps(row, ensure_ascii=False))
    with written("data.jsonl", encode(end.join(lines) + end, bom)) as path:
        _, got = read_table(path)
    assert [dict(r) for r in got] == rows
    assert [r.where for r in got] == [f"line {n}" for n in starts]


@given(rows=st.lists(st.fixed_dictionaries({"a": ANY_TEXT}), min_size=1, max_size=5),
       data=st.data())
def test_a_bad_jsonl_line_is_refused_naming_it(rows, data):
    lines = [json.dumps(r) for r in rows]
    k = data.draw(st.integers(0, len(lines) - 1))
    bad = data.draw(st.sampled_from(["not json", lines[k][:-1], "[1, 2]", '"text"', "3", "null"]))
    lines[k] = bad
    with written("data.jsonl", "\n".join(lines).encode()) as path:
        with pytest.raises(NNPruneError) as e:
            read_table(path)
    refused(path, e.value, k + 1)


@given(rows=st.lists(st.dictionaries(ANY_TEXT, json_values(3), max_size=3), min_size=1, max_size=5),
       item=json_values(3).filter(lambda v: not isinstance(v, dict)), pick=st.integers(0, 10),
       wrapped=st.booleans())
def test_a_json_item_that_is_no_object_is_refused_naming_its_line(rows, item, pick, wrapped):
    k = pick % len(rows)
    rows[k] = item
    # one item a line: item k on line k + 2 ("[" on line 1; "{" and "data" first when wrapped)
    text = "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]"
    if wrapped:
        text = '{\n"data":\n' + text + "\n}"
    with written("data.json", text.encode()) as path:
        with pytest.raises(NNPruneError) as e:
            read_table(path)
    assert f"item {k} " in refused(path, e.value, k + 2 + 2 * wrapped)


@given(top=json_values(8))
def test_any_json_document_is_read_or_refused(top):
    for suffix in (".json", ".jsonl"):
        with written(f"x{suffix}", json.dumps(top).encode()) as path:
            result = read_or_refuse(read_table, path)
        if result is not None:
            assert all(isinstance(r, dict) for r in result[1])


def test_deeply_nested_json_is_refused_in_one_line():
    for suffix in (".json", ".jsonl"):
        with written(f"deep{suffix}", b"[" * 100_000) as path:
            with pytest.raises(NNPruneError) as e:
                read_table(path)
        refused(path, e.value)


# ------------------------------------------------------------------------------ tasks on files


LABEL = st.text(st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1,
                max_size=8).map(str.strip).filter(bool)


@FEW
@given(data=st.data(), suffix=st.sampled_from([".tsv", ".csv", ".jsonl", ".json"]),
       bom=st.booleans(), end=LINE_ENDS)
def test_text_classification_reads_unicode_labels(tokenizer, data, suffix, bom, end):
    label_set = data.draw(st.lists(LABEL.filter(lambda s: "\t" not in s), min_size=2,
                                   max_size=4, unique=True))
    texts = data.draw(st.lists(TSV_TEXT, min_size=2, max_size=6))
    labels = [label_set[i % len(label_set)] for i in range(len(texts))]
    rows = [{"text": t, "label": lab} for t, lab in zip(texts, labels)]
    if suffix in (".json", ".jsonl"):
        body = (json.dumps(rows, indent=1) if suffix == ".json"
                else end.join(json.dumps(r) for r in rows))
    else:
        buf = io.StringIO()
        kw = {"delimiter": "\t", "quoting": csv.QUOTE_NONE, "quotechar": None} if suffix == ".tsv" else {}
        w = csv.writer(buf, lineterminator=end, **kw)
        w.writerow(["text", "label"])
        w.writerows([[r["text"], r["label"]] for r in rows])
        body = buf.getvalue()
    with written(f"dev{suffix}", encode(body, bom)) as path:
        task = get_task("text-classification")
        got = task.load_data(tokenizer, DataArgs(validation_file=path), need_train=False)
    ids = got.eval["validation"]["labels"]
    assert sorted(task.labels) == sorted(set(labels[:len(label_set)]) | set(labels))
    assert [task.labels[i] for i in ids] == labels


@FEW
@given(data=st.data(), wrong=json_values().filter(lambda v: isinstance(v, (list, dict, bool))
                                                  or v is None))
def test_text_classification_wrong_json_types_are_refused_naming_the_line(tokenizer, data, wrong):
    rows = [{"text": f"t{i}", "label": ["a", "b"][i % 2]} for i in range(4)]
    k = data.draw(st.integers(0, 3))
    column = data.draw(st.sampled_from(["text", "label"]))
    assume(not (column == "text" and (wrong is None or isinstance(wrong, bool))))  # "" / "True"
    rows[k][column] = wrong
    with written("dev.jsonl", "\n".join(json.dumps(r) for r in rows).encode()) as path:
        task = get_task("text-classification")
        try:
            task.load_data(tokenizer, DataArgs(validation_file=path), need_train=False)
        except NNPruneError as e:
            refused(path, e, k + 1)
        else:
            # a boolean label is a label ("true"); only then may the file be read
            assert column == "label" and isinstance(wrong, bool)


@FEW
@given(data=st.data(), wrong=json_values().filter(lambda v: not isinstance(v, str)))
def test_preset_reader_refuses_wrong_labels_naming_the_line(tokenizer, data, wrong):
    rows = [{"sentence": f"s{i}", "label": i % 2} for i in range(4)]
    k = data.draw(st.integers(0, 3))
    rows[k]["label"] = wrong
    with written("dev.json", json.dumps(rows, indent=1).encode()) as path:
        try:
            got = get_task("sst2").load_data(tokenizer, DataArgs(validation_file=path),
                                             need_train=False)
        except NNPruneError as e:
            # item k's object starts on line 2 + 4k with indent=1 (4 lines an object)
            refused(path, e, 2 + 4 * k)
        else:  # an id of a label (1, 1.0, True) reads as that label
            assert got.eval["validation"]["labels"][k] in (0, 1)


@given(data=st.data(), suffix=st.sampled_from([".jsonl", ".csv", ".json"]))
def test_summaries_read_back_or_refused_naming_the_line(data, suffix):
    n = data.draw(st.integers(1, 4))
    stories = [(data.draw(ANY_TEXT), data.draw(st.lists(ANY_TEXT, min_size=1, max_size=3)))
               for _ in range(n)]
    if suffix == ".csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(["article", "highlights"])
        w.writerows([[a, "\n".join(h)] for a, h in stories])
        text = buf.getvalue()
    else:
        rows = [{"article": a, "highlights": h if data.draw(st.booleans()) else "\n".join(h)}
                for a, h in stories]
        text = (json.dumps(rows) if suffix == ".json" else "\n".join(json.dumps(r) for r in rows))
    with written(f"s{suffix}", text.encode()) as path:
        got = read_rows_file(path)
    assert [(s.article, s.highlights) for s in got] == [(a, "\n".join(h)) for a, h in stories]
    # a wrong type in one row: refused, naming its line
    k = data.draw(st.integers(0, n - 1))
    wrong = data.draw(json_values().filter(lambda v: not isinstance(v, str) and not (
        isinstance(v, list) and all(isinstance(x, str) for x in v))))
    rows = [{"article": a, "highlights": "\n".join(h)} for a, h in stories]
    rows[k][data.draw(st.sampled_from(["article", "highlights"]))] = wrong
    with written("bad.jsonl", "\n".join(json.dumps(r) for r in rows).encode()) as path:
        with pytest.raises(NNPruneError) as e:
            read_rows_file(path)
    refused(path, e.value, k + 1)


TOKEN = st.text(st.characters(exclude_categories=("Cs",), exclude_characters=" \t\r\n"),
                min_size=1, max_size=8).filter(lambda w: w != "-DOCSTART-")


@given(sentences=st.lists(st.lists(st.tuples(TOKEN, TOKEN), min_size=1, max_size=5),
                          min_size=1, max_size=4),
       data=st.data(), end=LINE_ENDS, bom=st.booleans())
def test_conll_files_read_back_as_written(sentences, data, end, bom):
    extra = data.draw(st.integers(0, 2))  # columns between the word and its tag (POS, chunk)
    sep = data.draw(st.sampled_from([" ", "\t", "  ", " \t"]))
    lines = ["-DOCSTART- -X- O O", ""] if data.draw(st.booleans()) else []
    for sent in sentences:
        for word, tag in sent:
            lines.append(sep.join([word] + ["X"] * extra + [tag]))
        lines += [""] * data.draw(st.integers(1, 2))
    with written("train.conll", encode(end.join(lines), bom)) as path:
        got = read_conll(path)
    assert got.words == [[w for w, _ in s] for s in sentences]
    assert got.tags == [[t for _, t in s] for s in sentences]


@given(sentences=st.lists(st.lists(st.tuples(TOKEN, TOKEN), min_size=1, max_size=4),
                          min_size=1, max_size=3), data=st.data())
def test_a_conll_line_without_a_tag_is_refused_naming_it(sentences, data):
    lines = []
    for sent in sentences:
        lines += [f"{w} {t}" for w, t in sent] + [""]
    k = data.draw(st.sampled_from([i for i, ln in enumerate(lines) if ln]))
    lines[k] = lines[k].split(" ")[0]  # the word alone
    with written("dev.conll", "\n".join(lines).encode()) as path:
        with pytest.raises(NNPruneError) as e:
            read_conll(path)
    refused(path, e.value, k + 1)


@given(raw=st.binary(max_size=200) | ANY_TEXT.map(str.encode),
       tag_index=st.integers(-4, 4))
def test_random_conll_bytes_are_read_or_refused(raw, tag_index):
    with written("x.conll", raw) as path:
        read_or_refuse(read_conll, path, tag_index)


@given(rows=st.lists(st.lists(st.tuples(TOKEN, TOKEN), max_size=4), min_size=1, max_size=4),
       data=st.data())
def test_token_classification_json_records(rows, data):
    records = [{"tokens": [w for w, _ in r], "ner_tags": [t for _, t in r]} for r in rows]
    task = get_task("token-classification")
    with written("dev.jsonl", "\n".join(json.dumps(r) for r in records).encode()) as path:
        got = read_or_refuse(task.read_file, path)
    kept = [r for r in rows if r]
    if not kept:
        assert got is None  # no sentences: an error
    else:
        assert got.words == [[w for w, _ in r] for r in kept]
        assert got.tags == [[t for _, t in r] for r in kept]
    # a wrong type in one record: refused naming its line
    k = data.draw(st.integers(0, len(records) - 1))
    column = data.draw(st.sampled_from(["tokens", "ner_tags"]))
    records[k][column] = data.draw(json_values().filter(
        lambda v: not isinstance(v, list) or any(not isinstance(x, str) for x in v)))
    assume(records[k][column] != [] or column == "tokens")
    with written("bad.jsonl", "\n".join(json.dumps(r) for r in records).encode()) as path:
        try:
            task.read_file(path)
        except NNPruneError as e:
            refused(path, e, k + 1)
        else:  # integer tags with names, an empty record: not these
            raise AssertionError(records[k])


# ------------------------------------------------------------------------------ SQuAD


@st.composite
def squad_articles(draw) -> list[dict[str, Any]]:
    """Official SQuAD articles whose answers are spans of their context (some unanswerable)."""
    counter = iter(range(10**6))
    articles = []
    for _ in range(draw(st.integers(1, 2))):
        paragraphs = []
        for _ in range(draw(st.integers(1, 2))):
            context = draw(ANY_TEXT.filter(lambda s: s.strip()))
            qas = []
            for _ in range(draw(st.integers(1, 3))):
                answers = []
                for _ in range(draw(st.integers(0, 2))):
                    start = draw(st.integers(0, len(context) - 1))
                    end = draw(st.integers(start + 1, len(context)))
                    answers.append({"text": context[start:end], "answer_start": start})
                qas.append({"id": f"q{next(counter)}{draw(ANY_TEXT)}",
                            "question": draw(ANY_TEXT.filter(lambda s: s.strip())),
                            "answers": answers, "is_impossible": not answers})
            paragraphs.append({"context": context, "qas": qas})
        articles.append({"title": draw(ANY_TEXT), "paragraphs": paragraphs})
    return articles


def flat(articles: list[dict[str, Any]]) -> list[tuple]:
    return [(qa["id"], a["title"], p["context"], qa["question"],
             [x["text"] for x in qa["answers"]], [x["answer_start"] for x in qa["answers"]])
            for a in articles for p in a["paragraphs"] for qa in p["qas"]]


def as_tuples(examples) -> list[tuple]:
    return [(e.id, e.title, e.context, e.question, e.answers, e.answer_starts) for e in examples]


@given(articles=squad_articles(), bom=st.booleans(), indent=st.sampled_from([None, 2]))
def test_official_squad_files_read_back_as_written(articles, bom, indent):
    text = json.dumps({"version": "1.1", "data": articles}, indent=indent, ensure_ascii=False)
    with written("dev-v1.1.json", encode(text, bom)) as path:
        assert as_tuples(read_squad_file(path)) == flat(articles)


@given(articles=squad_articles(), suffix=st.sampled_from([".jsonl", ".json"]), end=LINE_ENDS)
def test_squad_rows_read_back_as_written(articles, suffix, end):
    cols = SquadColumns(question="q", context="ctx")
    rows = [{"id": i, "title": t, "ctx": c, "q": q, "answers": {"text": a, "answer_start": s}}
            for i, t, c, q, a, s in flat(articles)]
    text = end.join(json.dumps(r) for r in rows) if suffix == ".jsonl" else json.dumps(rows)
    with written(f"dev{suffix}", text.encode()) as path:
        assert as_tuples(read_squad_file(path, cols)) == flat(articles)


def _paths(obj: Any, at: tuple = ()) -> list[tuple]:
    """Every path (keys and indexes) into a JSON document."""
    out = [at]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, at + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, at + (i,))
    return out


@given(articles=squad_articles(), data=st.data())
def test_corrupted_squad_files_are_read_or_refused(articles, data):
    doc: Any = {"data": articles}
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(_paths(doc)))
        if not where:
            doc = data.draw(json_values())
            continue
        parent = doc
        for key in where[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()):
            del parent[where[-1]]  # a key or an item missing
        else:
            parent[where[-1]] = data.draw(json_values())  # a wrong type or value
    for suffix, text in ((".json", json.dumps(doc)),
                         (".jsonl", "\n".join(json.dumps(r) for r in doc)
                          if isinstance(doc, list) else json.dumps(doc))):
        with written(f"dev{suffix}", text.encode()) as path:
            got = read_or_refuse(read_squad_file, path)
        for ex in got or ():
            for text_, start in zip(ex.answers, ex.answer_starts):
                assert 0 <= start and start + len(text_) <= len(ex.context)


@given(raw=st.binary(max_size=200) | ANY_TEXT.map(str.encode))
def test_random_squad_bytes_are_read_or_refused(raw):
    for suffix in (".json", ".jsonl"):
        with written(f"x{suffix}", raw) as path:
            read_or_refuse(read_squad_file, path)
