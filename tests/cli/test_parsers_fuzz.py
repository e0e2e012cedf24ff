"""Property-based tests (Hypothesis) of the settings parsers behind the command line: ``--set``
(pruning config fields), ``--task-option`` (task settings) and ``--config`` files (YAML, JSON).

Any input is either taken (and a value written as text reads back as that value) or refused with
a one-line :class:`NNPruneError` naming the option or the file (and the line of a syntax error),
never another exception; a YAML file cannot make the parser build Python objects or run code.
The command itself turns such an error into one ``error:`` line and exit code 2, even when the
message quotes text that looks like console markup.

Examples per property: the Hypothesis profile of ``tests/conftest.py`` ("ci", a few hundred);
``NNPRUNE_HYPOTHESIS_PROFILE=deep`` runs thousands, ``NNPRUNE_FUZZ_EXAMPLES=N`` exactly N, e.g.
``NNPRUNE_HYPOTHESIS_PROFILE=deep python -m pytest -q tests/cli/test_parsers_fuzz.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import typing
from typing import Any

import pytest
import yaml
from conftest import written
from hypothesis import given
from hypothesis import strategies as st

import nnprune
from nnprune.errors import NNPruneError
from nnprune.settings import coerce, field_types, load_config_file, parse_assignments
from nnprune.tasks import get_task
from nnprune.tasks.question_answering import QuestionAnsweringOptions
from nnprune.tasks.summarization import GenerationSettings, SummarizationOptions
from nnprune.tasks.text_classification import TextClassificationOptions
from nnprune.tasks.token_classification import TokenClassificationOptions
from nnprune.workflows.fine_prune import FinePruneArgs, resolve_config

SETTINGS = [nnprune.PruningConfig, TextClassificationOptions, TokenClassificationOptions,
            QuestionAnsweringOptions, SummarizationOptions, GenerationSettings]
PRUNING_KEYS = sorted(field_types(nnprune.PruningConfig))
TASKS = ["text-classification", "token-classification", "question-answering", "summarization",
         "cnn_dailymail", "sst2", "squad"]
TASK_KEYS = sorted({k for c in SETTINGS[1:] for k in field_types(c)})

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
# what a user types after key=: numbers, words the parsers know, anything
VALUE_TEXT = (TEXT | st.sampled_from(["0", "1", "-1", "0.5", "1e-3", "nan", "inf", "-inf", "none",
                                      "null", "true", "no", "head", "32x32", "ffn_dim", "topk",
                                      "sigmoid_threshold", "l1", "O,B-X", ",", "1_000", "٣"])
              | st.floats().map(repr) | st.integers().map(str))
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(TEXT, c, max_size=3),
                    max_leaves=5)


def one_line(exc: NNPruneError, *names: str) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg and "\r" not in msg, msg
    assert len(msg) < 2000, msg[:200]
    for name in names:
        assert name in msg, (name, msg)
    return msg


# ------------------------------------------------------------------------------ key=value


@given(items=st.lists(TEXT | st.tuples(TEXT, VALUE_TEXT).map("=".join), max_size=5),
       option=st.sampled_from(["--set", "--task-option"]))
def test_key_value_items_are_parsed_or_refused_naming_the_option(items, option):
    try:
        got = parse_assignments(items, option=option)
    except NNPruneError as e:
        one_line(e, option)
        assert any("=" not in i or not i.partition("=")[0].strip() for i in items)
        return
    expected = {}
    for item in items:
        key, _, value = item.partition("=")
        expected[key.strip().replace("-", "_")] = value.strip()
    assert got == expected


def _text_of(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


@st.composite
def typed_fields(draw) -> tuple[type, str, Any]:
    """(settings class, field, a value of the field's type) for the int, float and bool fields."""
    cls = draw(st.sampled_from(SETTINGS))
    kinds = {}
    for k, t in field_types(cls).items():
        base = next((a for a in typing.get_args(t) if a is not type(None)), t)  # Optional[X]: X
        if base in (int, float, bool):
            kinds[k] = base
    key = draw(st.sampled_from(sorted(kinds)))
    value = draw({int: st.integers(), float: st.floats(allow_nan=False, allow_infinity=False),
                  bool: st.booleans()}[kinds[key]])
    return cls, key, value


@given(case=typed_fields(), spaces=st.sampled_from(["", " ", "\t"]))
def test_a_value_written_as_text_reads_back(case, spaces):
    cls, key, value = case
    text = spaces + (str(value).lower() if isinstance(value, bool) else _text_of(value)) + spaces
    got = coerce(cls, key, text)
    assert got == value and type(got) is type(value)
    assert coerce(cls, key, value) == value  # the typed value (a YAML or JSON file's) too


@given(cls=st.sampled_from(SETTINGS), key=st.sampled_from(PRUNING_KEYS + TASK_KEYS) | TEXT,
       value=VALUE_TEXT | JSON)
def test_any_key_and_value_is_taken_or_refused(cls, key, value):
    try:
        got = coerce(cls, key, value)
    except NNPruneError as e:
        one_line(e)
        return
    assert key in field_types(cls)
    if isinstance(got, float):
        assert math.isfinite(got)  # nan / inf would slip past every range check


@given(method=st.sampled_from(sorted(nnprune.METHODS)),
       overrides=st.dictionaries(st.sampled_from(PRUNING_KEYS) | TEXT, VALUE_TEXT | JSON,
                                 max_size=3))
def test_pruning_overrides_build_a_valid_config_or_are_refused(method, overrides):
    try:
        config = nnprune.method_config(method, teacher="t", overrides=overrides)
    except NNPruneError as e:
        one_line(e)
        return
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        assert not isinstance(value, (list, dict)), (f.name, value)
        if isinstance(value, float):
            assert math.isfinite(value), (f.name, value)


@given(task=st.sampled_from(TASKS),
       options=st.dictionaries(st.sampled_from(TASK_KEYS) | TEXT, VALUE_TEXT, max_size=3))
def test_task_options_build_a_task_or_are_refused(task, options):
    try:
        get_task(task, options)
    except NNPruneError as e:
        one_line(e)


# ------------------------------------------------------------------------------ config files


SETTING_VALUES = (st.none() | st.booleans() | st.integers()
                  | st.floats(allow_nan=False, allow_infinity=False) | TEXT
                  | st.lists(TEXT, max_size=3))


@given(data=st.dictionaries(TEXT, SETTING_VALUES, max_size=5), kind=st.sampled_from(["yaml", "json"]),
       bom=st.booleans(), crlf=st.booleans())
def test_config_files_read_back_as_written(data, kind, bom, crlf):
    # PyYAML writes NEL / U+2028 / U+2029 raw with allow_unicode, then reads them as line
    # breaks: its own round trip fails there, so those are written escaped
    raw_ok = not any(c in json.dumps(data, ensure_ascii=False) for c in "\x85\u2028\u2029")
    text = (yaml.safe_dump(data, allow_unicode=raw_ok) if kind == "yaml"
            else json.dumps(data, indent=2, ensure_ascii=False))
    if crlf:
        text = text.replace("\n", "\r\n")  # both formats escape line breaks inside strings
    raw = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    with written(f"c.{kind}", raw) as path:
        try:
            got = load_config_file(path)
        except NNPruneError as e:
            one_line(e, str(path))
            assert not data  # an empty mapping is written as "{}" (YAML), which is no settings
            return
    assert got == data


@given(raw=st.binary(max_size=200) | TEXT.map(str.encode) | JSON.map(lambda v: json.dumps(v).encode()),
       suffix=st.sampled_from([".yaml", ".yml", ".json", ".cfg"]))
def test_any_config_file_is_read_or_refused_naming_it(raw, suffix):
    with written(f"c{suffix}", raw) as path:
        try:
            got = load_config_file(path)
        except NNPruneError as e:
            one_line(e, str(path))
            return
    assert isinstance(got, dict) and all(isinstance(k, str) for k in got)


@given(lines=st.lists(st.sampled_from(["a: 1", "b: [1, 2]", "c: x", "# note", ""]), max_size=4),
       bad=st.sampled_from(["d: [1, 2", "e: {", "f: 'open", "  - g: 1\nh", "i: j: k", "\t- x"]))
def test_a_yaml_syntax_error_names_its_line(lines, bad):
    text = "\n".join(lines + [bad, "z: 1"])
    with written("c.yaml", text.encode()) as path:
        with pytest.raises(NNPruneError) as e:
            load_config_file(path)
    msg = one_line(e.value, str(path))
    assert "line " in msg and "not valid YAML" in msg


@pytest.mark.parametrize("payload", [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/apply:builtins.open ['{marker}', 'w']",
    "!!python/name:os.system",
    "!!python/object/new:pathlib.Path ['{marker}']",
])
def test_yaml_tags_build_no_python_objects(tmp_path, payload):
    marker = tmp_path / "marker"
    path = tmp_path / "c.yaml"
    path.write_text("temperature: " + payload.format(marker=marker) + "\n")
    with pytest.raises(NNPruneError) as e:
        load_config_file(path)
    one_line(e.value, str(path))
    assert not marker.exists()


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    # nine levels of nine aliases: 9**9 strings once expanded; the value is refused without it
    levels = ["&a0 [" + ", ".join(["lol"] * 9) + "]"]
    levels += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("teacher: [" + ", ".join(levels) + "]\n")
    args = FinePruneArgs(task="sst2", model="m", output_dir=tmp_path / "out", config_file=path)
    start = time.perf_counter()
    with pytest.raises(NNPruneError) as e:
        resolve_config(args, method="hybrid-nt")
    assert time.perf_counter() - start < 10
    assert "teacher expects a str" in one_line(e.value, str(path))


@given(file_settings=st.dictionaries(st.sampled_from(PRUNING_KEYS) | TEXT, SETTING_VALUES | JSON,
                                     max_size=3),
       sets=st.lists(st.tuples(st.sampled_from(PRUNING_KEYS) | TEXT, VALUE_TEXT).map("=".join),
                     max_size=2),
       method=st.none() | st.sampled_from(sorted(nnprune.METHODS)))
def test_config_file_and_set_reach_a_config_or_a_one_line_error(file_settings, sets, method):
    # what `fine-prune --config FILE --set k=v` resolves before any model or data is read
    with written("c.json", json.dumps(file_settings).encode()) as path:
        args = FinePruneArgs(task="sst2", model="m", output_dir=path.parent / "out", method=method,
                             teacher="t", config_file=path, overrides=tuple(sets))
        try:
            config = resolve_config(args, method=method or "hybrid-nt")
        except NNPruneError as e:
            one_line(e)
            return
    assert isinstance(config, nnprune.PruningConfig)


# ------------------------------------------------------------------------------ the command


def test_the_command_prints_one_error_line_even_for_markup_like_text(tmp_path, tiny_dir, capsys):
    # a --set key and a config file key that look like console markup, a value that is no
    # number: each one `error:` line and exit code 2 before any data is read or anything written
    from conftest import write_toy_sst2

    from nnprune.cli.main import main

    (tmp_path / "c.yaml").write_text("'[/x]': 1\ntemperature: [1, 2]\n")
    data = write_toy_sst2(tmp_path / "data", n_train=8, n_dev=4)
    cases = [
        (["--set", "[/bold]=1"], "[/bold]"),
        (["--set", "target_density=abc"], "target_density expects a float, got 'abc'"),
        (["--set", "temperature=nan"], "temperature expects a finite number"),
        (["--config", str(tmp_path / "c.yaml")], "[/x]"),
    ]
    for extra, needle in cases:
        with pytest.raises(SystemExit) as e:
            main(["fine-prune", "sst2", "--model", str(tiny_dir), "--output-dir",
                  str(tmp_path / "out"), "--data-dir", str(data), *extra])
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert e.value.code == 2, err[-2000:]
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
        assert not (tmp_path / "out").exists()
