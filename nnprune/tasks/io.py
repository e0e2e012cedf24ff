"""Readers for local data files: ``.tsv``, ``.csv``, ``.json`` and ``.jsonl``.

Every reader returns a list of ``{column: value}`` rows (or a :class:`datasets.Dataset` via
:func:`read_dataset`). Each row is a :class:`Row`, a ``dict`` that also knows where it is in its
file (:func:`place`: ``line 17``; ``line 3, item 1`` in a JSON list), so that a later check of
its values (a label, a column a JSON row lacks) names the line too. Anything malformed raises
:class:`NNPruneError` with a one-line message that names the file, the line and the problem, e.g.
``dev.tsv: line 17 has 3 fields, header has 5``; user text quoted in a message is escaped
(:func:`shown`) so the message stays one line.

Format rules:

* ``.tsv``: tab separated, header line required, read with ``csv.QUOTE_NONE`` because GLUE files
  contain unbalanced ``"`` characters that are part of the text.
* ``.csv``: comma separated with standard quoting, so quoted fields may span lines (CNN/DM
  highlights); header line required. Quoting is strict: an unterminated quote or text after a
  closing quote is an error naming the line, not a field that silently swallows the rest.
* ``.json``: a list of objects, or an object whose ``"data"`` key holds that list.
* ``.jsonl``: one object per non-blank line.

A ``delimiter`` given to :func:`read_table` overrides the field separator of ``.tsv`` / ``.csv``
files and lets ``.txt`` files be read the same way (standard quoting, but none for a tab).

All files are decoded as UTF-8; a leading byte-order mark is dropped (GLUE MRPC has one). Bytes
that are not UTF-8 (a Latin-1 or Windows-1252 export) are an error naming the line and column;
Windows line ends (CRLF) read as plain ones. Blank lines between rows are skipped.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import io
import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from nnprune.errors import NNPruneError

#: extensions :func:`read_rows` understands, in the order a data directory is searched
SUPPORTED_EXTENSIONS: tuple[str, ...] = (".tsv", ".csv", ".jsonl", ".json")



class Row(dict):  # type: ignore[type-arg]
    """One row of a file, ``{column: value}``, that also knows its place in the file:
    :attr:`where` (``"line 17"``; ``"line 3, item 1"`` for an item of a JSON list), which
    :func:`place` reads (rows of other origins, e.g. a hub split's, are named by index)."""

    __slots__ = ("where",)

    def __init__(self, values: Any = (), where: str = "") -> None:
        super().__init__(values)
        self.where = where


def place(rows: Sequence[Any], i: int) -> str:
    """Where row ``i`` of ``rows`` is: its :attr:`Row.where`, else ``row <i + 1>``."""
    return getattr(rows[i], "where", "") or f"row {i + 1}"


def places(rows: Sequence[Any]) -> list[str]:
    """:func:`place` of every row."""
    return [place(rows, i) for i in range(len(rows))]


def shown(value: Any, limit: int = 80) -> str:
    """``value`` as a message quotes it, on one line and short: text that prints as itself is
    kept, other text (a line break, a tab, a control character in a column name or a label)
    and other values are given as their ``repr``; past ``limit`` characters it is cut
    (``...``)."""
    text = value if isinstance(value, str) and value.isprintable() else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def read_rows(path: str | Path, *, required: Sequence[str] = ()) -> list[Row]:
    """Read a local data file into a list of rows.

    ``required`` names columns every row must have; if one is absent the error lists the columns
    that were found. Raises :class:`NNPruneError` for an unsupported extension, an unreadable or
    empty file, a ragged delimited line, invalid JSON, or a JSON item that is not an object.
    A delimited file with only a header gives ``[]``.
    """
    return read_table(path, required=required)[1]


def read_table(path: str | Path, *, required: Sequence[str] = (),
               delimiter: str | None = None) -> tuple[list[str], list[Row]]:
    """Like :func:`read_rows` but also returns the column names.

    For ``.tsv``/``.csv`` the columns are the header (known even without data rows); for JSON
    they are the keys of the first row, in order. ``delimiter`` (one character): the field
    separator of ``.tsv``, ``.csv`` and ``.txt`` files instead of the extension's; a line with
    another number of fields than the header is then an error naming it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    supported = SUPPORTED_EXTENSIONS + ((".txt",) if delimiter is not None else ())
    if suffix not in supported:
        raise NNPruneError(f"{path}: unsupported file type {suffix or '(none)'!r}; "
                           f"expected one of {', '.join(supported)}")
    text = read_text(path)
    if not text.strip():
        raise NNPruneError(f"{path}: file is empty")
    if suffix in (".tsv", ".csv", ".txt"):
        header, rows = _parse_delimited(
            path, text, delimiter or ("\t" if suffix == ".tsv" else ","),
            named=delimiter is not None)
        check_columns(path, required, header)
        return header, rows
    items = _parse_jsonl(path, text) if suffix == ".jsonl" else _parse_json(path, text)
    rows = _check_json_rows(path, items, required)
    return (list(rows[0]) if rows else []), rows


def read_dataset(path: str | Path, *, required: Sequence[str] = ()) -> Any:
    """Like :func:`read_rows` but returns a :class:`datasets.Dataset` (one column per key)."""
    import datasets
    import pyarrow as pa

    rows = read_rows(path, required=required)
    try:
        return datasets.Dataset.from_list(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as e:
        # Arrow needs one type per column; JSON rows mixing e.g. numbers and strings end here.
        raise NNPruneError(f"{path}: columns have mixed value types ({error_line(e)})") from e


def column_values(path: str | Path, rows: Sequence[Row], columns: Sequence[str | None]
                  ) -> list[list[Any] | None]:
    """The values of each of ``columns`` over ``rows`` (read from ``path``), ``None`` for a
    ``None`` column. JSON rows need not share keys (delimited rows do: the reader checks field
    counts), so a row without one of the columns is an error naming it (1-based)."""
    names = [c for c in columns if c is not None]
    if Path(path).suffix.lower() in (".json", ".jsonl"):
        for i, row in enumerate(rows):
            check_columns(path, names, list(row), where=place(rows, i))
    return [None if c is None else [r[c] for r in rows] for c in columns]


def as_text(value: Any) -> str:
    """A text cell as the tokenizer needs it: ``None`` (JSON null, an empty question in QQP)
    is ``""``, other non-strings their ``str``."""
    return "" if value is None else value if isinstance(value, str) else str(value)


def as_texts(source: "str | Path", values: Sequence[Any], where: Sequence[str]) -> list[str]:
    """:func:`as_text` of every one of ``values`` (a text column of ``source``, row ``i`` at
    ``where[i]``); a JSON list or object where text is wanted is a one-line error naming its
    row."""
    for i, value in enumerate(values):
        if isinstance(value, (list, dict)):
            raise NNPruneError(f"{source}: {where[i]}: a text is a JSON {json_type(value)}, "
                               "expected a string")
    return [as_text(v) for v in values]


def check_columns(path: str | Path, required: Iterable[str], found: Sequence[str],
                  where: str = "") -> None:
    """Raise :class:`NNPruneError` naming the ``required`` columns missing from ``found``."""
    missing = [c for c in required if c not in found]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        prefix = f"{path}: {where}: " if where else f"{path}: "
        raise NNPruneError(f"{prefix}missing column(s) {names}; found: {column_list(found)}")


def column_list(names: Iterable[Any]) -> str:
    """Column names for a message, on one line: ``a, b, c`` (``(none)`` when there are none)."""
    return ", ".join(shown(n) for n in names) or "(none)"


def read_text(path: Path) -> str:
    """The text of the file ``path``, decoded as UTF-8 (a leading byte-order mark dropped); a file
    that cannot be read or is not UTF-8 is a one-line error naming it (and the line and column
    of the first byte that is not UTF-8)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise NNPruneError(f"{path}: cannot read ({e.strerror or e})") from e
    return decode_utf8(path, raw)


def decode_utf8(path: "str | Path", raw: bytes) -> str:
    """``raw`` (the bytes of ``path``) decoded as UTF-8, a leading byte-order mark dropped (it
    would otherwise glue itself to the first column name); else a one-line error naming the
    line and column of the first byte that is not UTF-8."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise NNPruneError(f"{path}: UTF-16 text (it starts with a UTF-16 byte-order mark); "
                           "re-save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise NNPruneError(f"{path}: line {line} column {column}: not valid UTF-8 (byte "
                           f"0x{raw[e.start]:02x}; a Latin-1 or Windows-1252 file?); re-save "
                           "it as UTF-8") from None


def _parse_delimited(path: Path, text: str, delimiter: str, *,
                     named: bool = False) -> tuple[list[str], list[Row]]:
    """``named``: the delimiter was chosen by the user, and a ragged line's error names it."""
    # newline="" hands csv the raw line ends, so quoted CSV fields may hold line breaks.
    stream = io.StringIO(text, newline="")
    # QUOTE_NONE for a tab: in GLUE TSVs a '"' is literal text, often unbalanced. Otherwise
    # strict: an unterminated quote would silently swallow the rest of the file into one field.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(stream, delimiter=delimiter, quoting=quoting, strict=quoting != csv.QUOTE_NONE)
    _raise_field_limit()
    header: list[str] | None = None
    rows: list[Row] = []
    start = 1  # the line the record being read starts on (a quoted field may span lines)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise NNPruneError(f"{path}: line {start}: {_csv_problem(e)}") from None
        line, start = start, reader.line_num + 1
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # blank line
        if header is None:
            header = [h.strip() for h in fields]
            dupes = sorted({h for h in header if header.count(h) > 1})
            if dupes:
                raise NNPruneError(f"{path}: line {line}: duplicate column name(s) in header: "
                                   f"{', '.join(repr(d) for d in dupes)}")
            continue
        if len(fields) != len(header):
            raise NNPruneError(f"{path}: line {line} has {len(fields)} fields, "
                               f"header has {len(header)}"
                               + (f" (delimiter {delimiter!r})" if named else ""))
        rows.append(Row(zip(header, fields), f"line {line}"))
    if header is None:  # only blank lines; read_text's check makes this unreachable in practice
        raise NNPruneError(f"{path}: file is empty")
    return header, rows


def _csv_problem(e: csv.Error) -> str:
    """The csv module's message in a user's words."""
    msg = error_line(e)
    if "unexpected end of data" in msg:
        return "a quoted field is never closed (unbalanced '\"')"
    if "expected after" in msg:
        return f"{msg} (a quoted field must end at its closing quote; write a '\"' inside one as '\"\"')"
    return msg


def _raise_field_limit() -> None:
    # The csv default of 128 KiB per field is too small for some long documents (CNN/DM).
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 10


def _parse_json(path: Path, text: str) -> list[tuple[str, Any]]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise NNPruneError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: "
                           f"{e.msg}") from None
    except RecursionError:
        raise NNPruneError(f"{path}: JSON nested too deeply") from None
    if isinstance(obj, dict):
        if "data" not in obj:
            raise NNPruneError(f"{path}: a JSON object must hold its rows under 'data'; "
                               f"found keys: {column_list(obj)}")
        obj = obj["data"]
    if not isinstance(obj, list):
        raise NNPruneError(f"{path}: expected a JSON list of objects (or {{\"data\": [...]}}), "
                           f"got {type(obj).__name__}")
    lines = json_item_lines(text)
    if len(lines) != len(obj):  # not found (cannot happen for valid JSON): name the items alone
        lines = [0] * len(obj)
    return [(f"line {line}, item {i}" if line else f"item {i}", item)
            for i, (line, item) in enumerate(zip(lines, obj))]


_WS = re.compile(r"[ \t\n\r]*")


def json_item_lines(text: str) -> list[int]:
    """The 1-based line on which each item of a JSON list starts: the top-level list of
    ``text`` (valid JSON), or the list under its top-level ``"data"`` key (the last one, as
    :func:`json.loads` keeps it); ``[]`` when there is no such list."""
    decoder = json.JSONDecoder()
    breaks = [m.start() for m in re.finditer("\n", text)]

    def skip(i: int) -> int:
        return _WS.match(text, i).end()  # type: ignore[union-attr]

    i = skip(0)
    if text.startswith("{", i):
        found = None
        i = skip(i + 1)
        while i < len(text) and text[i] != "}":
            key, i = decoder.raw_decode(text, i)
            i = skip(skip(i) + 1)  # the ':'
            if key == "data":
                found = i
            _, i = decoder.raw_decode(text, i)
            i = skip(i)
            if text.startswith(",", i):
                i = skip(i + 1)
        if found is None:
            return []
        i = found
    if not text.startswith("[", i):
        return []
    lines: list[int] = []
    i = skip(i + 1)
    while i < len(text) and text[i] != "]":
        lines.append(bisect.bisect_left(breaks, i) + 1)
        _, i = decoder.raw_decode(text, i)
        i = skip(i)
        if text.startswith(",", i):
            i = skip(i + 1)
    return lines


def _parse_jsonl(path: Path, text: str) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    # split("\n"), not splitlines(): the latter also breaks on U+2028 etc. inside JSON strings
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            items.append((f"line {lineno}", json.loads(line)))
        except json.JSONDecodeError as e:
            raise NNPruneError(f"{path}: invalid JSON at line {lineno} column {e.colno}: "
                               f"{e.msg}") from None
        except RecursionError:
            raise NNPruneError(f"{path}: line {lineno}: JSON nested too deeply") from None
    return items


def _check_json_rows(path: Path, items: list[tuple[str, Any]],
                     required: Sequence[str]) -> list[Row]:
    """Each item must be an object holding the ``required`` keys; ``where`` locates it."""
    for where, item in items:
        if not isinstance(item, dict):
            raise NNPruneError(f"{path}: {where} is a JSON {json_type(item)}, expected an object")
        check_columns(path, required, list(item), where=where)
    if not items:
        raise NNPruneError(f"{path}: no rows")
    return [Row(item, where) for where, item in items]


def json_type(value: Any) -> str:
    """The JSON name of the type of a decoded JSON ``value`` (``object``, ``list``, ...)."""
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"
            }.get(type(value), "number")


def error_line(e: BaseException) -> str:
    """The first line of exception ``e``'s message (its type name when it has none), for
    one-line errors that quote another library's failure."""
    msg = str(e).strip()
    return msg.splitlines()[0] if msg else type(e).__name__
