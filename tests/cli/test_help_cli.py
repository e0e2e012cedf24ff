"""``--help``: paragraphs that reflow to the terminal's width, and one example per command."""

from __future__ import annotations

import inspect
import re

import pytest
from typer.testing import CliRunner

COMMANDS = ["fine-prune", "fill", "count-params", "bertarize", "evaluate", "speed", "export-onnx",
            "prune", "report", "latency-table"]


def _help(command: str, columns: int) -> str:
    from nnprune.cli.main import app

    res = CliRunner().invoke(app, [command, "--help"],
                             env={"COLUMNS": str(columns)})
    assert res.exit_code == 0, res.output
    return res.stdout


def _doc_paragraphs(command: str) -> list[str]:
    """The docstring's paragraphs, their hard line breaks joined."""
    from nnprune.cli.main import app

    info = next(i for i in app.registered_commands if i.name == command)
    doc = inspect.cleandoc(info.callback.__doc__)
    return [" ".join(ln.strip() for ln in p.splitlines()) for p in doc.split("\n\n")]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example(command):
    text = _help(command, 100)
    example = re.search(r"Example:\s+(nnprune .*)", text)
    assert example, text
    line = example[1].strip()
    assert line.startswith(f"nnprune {command} ") and len(line.split()) >= 3


def test_count_params_example_uses_json():
    assert "nnprune count-params runs/sst2-hybrid --json" in _help("count-params", 100)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_paragraphs_reflow(command):
    paragraphs = _doc_paragraphs(command)
    assert paragraphs and all("\n" not in p for p in paragraphs)
    # COLUMNS=200: the first paragraph (the summary sentence) on one line.
    wide = [ln.strip() for ln in _help(command, 200).splitlines()]
    assert len(paragraphs[0]) < 190 and paragraphs[0] in wide
    # Wide enough for any paragraph: each one is a line of its own, not broken where the
    # docstring's lines were.
    wider = [ln.strip() for ln in _help(command, 1000).splitlines()]
    for paragraph in paragraphs:
        assert paragraph in wider, paragraph
    # At 100 columns the lines are filled up to the width before they wrap.
    narrow = _help(command, 100).splitlines()
    start = next(i for i, ln in enumerate(narrow) if ln.strip() == paragraphs[0]) + 2
    block = []
    for ln in narrow[start:]:
        if not ln.strip() or ln.lstrip().startswith("╭"):
            break
        block.append(ln.rstrip())
    for ln, following in zip(block, block[1:]):
        # a line ends early only if the next word would not fit
        assert len(ln) + 1 + len(following.split()[0]) > 99, (ln, following)


def test_every_registered_command_reflows_its_paragraphs():
    """Commands registered without ``add_command`` (their own ``app.command``) reflow too."""
    from nnprune.cli.main import app

    for info in app.registered_commands:
        assert info.help and all("\n" not in p for p in info.help.split("\n\n")), info.name


def test_task_help_names_every_registered_task():
    from nnprune.cli.common import TASK_HELP
    from nnprune.tasks import TASKS

    missing = [name for name in TASKS.names() if name not in TASK_HELP]
    assert not missing, f"cli.common.TASK_HELP does not name {missing}"
