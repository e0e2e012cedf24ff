"""Readers for local data files: ``.tsv``, ``.csv``, ``.json`` and ``.jsonl``.

Every reader returns a list of ``{column: value}`` rows (or a :class:`datasets.Dataset` via
:func:`read_dataset`). Anything malformed raises :class:`NNPruneError` with a one-line message that
names the file and the problem, e.g. ``dev.tsv: line 17 has 3 fields, header has 5``.

Format rules:

* ``.tsv``: tab separated, header line required, read with ``csv.QUOTE_NONE`` because GLUE files
  contain unbalanced ``"`` characters that are part of the text.
* ``.csv``: comma separated with standard quoting, so quoted fields may span lines (CNN/DM
  highlights); header line required.
* ``.json``: a list of objects, or an object whose ``"data"`` key holds that list.
* ``.jsonl``: one object per non-blank line.

A ``delimiter`` given to :func:`read_table` overrides the field separator of ``.tsv`` / ``.csv``
files and lets ``.txt`` files be read the same way (standard quoting, but none for a tab).

All files are decoded as UTF-8; a leading byte-order mark is dropped (GLUE MRPC has one).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from nnprune.errors import NNPruneError

#: extensions :func:`read_rows` understands, in the order a data directory is searched
SUPPORTED_EXTENSIONS: tuple[str, ...] = (".tsv", ".csv", ".jsonl", ".json")

Row = dict[str, Any]


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
            check_columns(path, names, list(row), where=f"row {i + 1}")
    return [None if c is None else [r[c] for r in rows] for c in columns]


def as_text(value: Any) -> str:
    """A text cell as the tokenizer needs it: ``None`` (JSON null, an empty question in QQP)
    is ``""``, other non-strings their ``str``."""
    return "" if value is None else value if isinstance(value, str) else str(value)


def check_columns(path: str | Path, required: Iterable[str], found: Sequence[str],
                  where: str = "") -> None:
    """Raise :class:`NNPruneError` naming the ``required`` columns missing from ``found``."""
    missing = [c for c in required if c not in found]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        prefix = f"{path}: {where}: " if where else f"{path}: "
        raise NNPruneError(f"{prefix}missing column(s) {names}; found: {', '.join(found)}")


def read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise NNPruneError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        # utf-8-sig drops a leading BOM, which would otherwise glue itself to the first column name
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise NNPruneError(f"{path}: not valid UTF-8 (byte offset {e.start})") from e


def _parse_delimited(path: Path, text: str, delimiter: str, *,
                     named: bool = False) -> tuple[list[str], list[Row]]:
    """``named``: the delimiter was chosen by the user, and a ragged line's error names it."""
    # newline="" hands csv the raw line ends, so quoted CSV fields may hold line breaks.
    stream = io.StringIO(text, newline="")
    # QUOTE_NONE for a tab: in GLUE TSVs a '"' is literal text, often unbalanced.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(stream, delimiter=delimiter, quoting=quoting)
    _raise_field_limit()
    try:
        header: list[str] | None = None
        rows: list[Row] = []
        for fields in reader:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # blank line
            if header is None:
                header = [h.strip() for h in fields]
                dupes = sorted({h for h in header if header.count(h) > 1})
                if dupes:
                    raise NNPruneError(f"{path}: duplicate column name(s) in header: "
                                       f"{', '.join(repr(d) for d in dupes)}")
                continue
            if len(fields) != len(header):
                raise NNPruneError(f"{path}: line {reader.line_num} has {len(fields)} fields, "
                                   f"header has {len(header)}"
                                   + (f" (delimiter {delimiter!r})" if named else ""))
            rows.append(dict(zip(header, fields)))
    except csv.Error as e:
        raise NNPruneError(f"{path}: line {reader.line_num}: {e}") from e
    if header is None:  # only blank lines; read_text's check makes this unreachable in practice
        raise NNPruneError(f"{path}: file is empty")
    return header, rows


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
                           f"{e.msg}") from e
    if isinstance(obj, dict):
        if "data" not in obj:
            keys = ", ".join(map(str, obj)) or "(none)"
            raise NNPruneError(f"{path}: a JSON object must hold its rows under 'data'; "
                               f"found keys: {keys}")
        obj = obj["data"]
    if not isinstance(obj, list):
        raise NNPruneError(f"{path}: expected a JSON list of objects (or {{\"data\": [...]}}), "
                           f"got {type(obj).__name__}")
    return [(f"item {i}", item) for i, item in enumerate(obj)]


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
                               f"{e.msg}") from e
    return items


def _check_json_rows(path: Path, items: list[tuple[str, Any]],
                     required: Sequence[str]) -> list[Row]:
    """Each item must be an object holding the ``required`` keys; ``where`` locates it."""
    for where, item in items:
        if not isinstance(item, dict):
            raise NNPruneError(f"{path}: {where} is a JSON {type(item).__name__}, "
                               "expected an object")
        check_columns(path, required, list(item), where=where)
    if not items:
        raise NNPruneError(f"{path}: no rows")
    return [item for _, item in items]


def error_line(e: BaseException) -> str:
    """The first line of exception ``e``'s message (its type name when it has none), for
    one-line errors that quote another library's failure."""
    msg = str(e).strip()
    return msg.splitlines()[0] if msg else type(e).__name__
