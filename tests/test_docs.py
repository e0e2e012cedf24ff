"""The documentation is part of the product: the docs site builds with ``mkdocs build --strict``
(its CLI and API references written from the code), every ``nnprune ...`` command line shown in
the README, the docs pages, the quickstart and the commands' own ``--help`` examples parses with the
real command-line app, every relative link and image exists, and the README stays a landing page."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest
import typer

from tests.conftest import REPO

DOCS = REPO / "docs"
README = REPO / "README.md"
QUICKSTART = REPO / "scripts" / "quickstart.sh"
MARKDOWN = [README, *sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.parts)]
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
PLACEHOLDER = "PLACEHOLDER"


# --------------------------------------------------------------------------- command lines
class CommandLine(NamedTuple):
    where: str  # file:line
    args: list[str]  # after "nnprune"
    elided: bool  # the line shows "..." for options left out: missing required ones are fine


def shell_blocks(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(first line number, lines) of every shell code block of a markdown file; a shell script
    is one block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".sh":
        yield 1, lines
        return
    start, info, block = None, "", []
    for i, line in enumerate(lines, 1):
        fence = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", line)
        if fence and start is None:
            start, info, block = i + 1, fence.group(2).lower(), []
        elif fence and start is not None:
            if info in SHELL_FENCES:
                yield start, block
            start = None
        elif start is not None:
            block.append(line)


def replace_command_substitutions(text: str) -> str:
    """``$(...)`` (nested parentheses too) becomes the placeholder: its output is unknown here."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$(", i):
            depth, j = 0, i + 1
            while j < len(text):
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                if depth == 0:
                    break
                j += 1
            out.append(PLACEHOLDER)
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


VAR = re.compile(r"\$\{(\w+)(?:\[@\])?\}|\$(\w+|@)")
ARRAY_ASSIGN = re.compile(r"\b([A-Za-z_]\w*)=\(([^()]*)\)")
OPERATORS = {"&&", "||", ";", "|", "(", ")", "&"}


def expand(token: str, variables: dict[str, str]) -> list[str]:
    """Shell words of ``token`` after variable expansion: a token that is one variable expands to
    its words (as an unquoted or ``"${array[@]}"`` use does); a variable inside a longer token to
    its text; unknown variables to the placeholder; ``$@`` to nothing."""
    whole = VAR.fullmatch(token)
    if whole:
        name = whole.group(1) or whole.group(2)
        if name == "@":
            return []
        return shlex.split(variables[name]) if name in variables else [PLACEHOLDER]
    return [VAR.sub(lambda m: variables.get(m.group(1) or m.group(2), PLACEHOLDER), token)]


def command_lines(path: Path) -> Iterator[CommandLine]:
    """Every ``nnprune`` invocation in ``path``'s shell code: continuation lines joined, comments
    and env prefixes dropped, variables assigned earlier in the file expanded, ``torchrun`` /
    ``accelerate launch`` / ``python -m nnprune`` included."""
    variables: dict[str, str] = {}
    for start, block in shell_blocks(path):
        logical: list[tuple[int, str]] = []
        for offset, line in enumerate(block):
            if logical and logical[-1][1].endswith("\\"):
                logical[-1] = (logical[-1][0], logical[-1][1][:-1] + " " + line.strip())
            else:
                logical.append((start + offset, line))
        for number, line in logical:
            line = replace_command_substitutions(line)
            for name, value in ARRAY_ASSIGN.findall(line):
                variables[name] = " ".join(w for token in shlex.split(value) for w in expand(token, variables))
            line = ARRAY_ASSIGN.sub(" ", line)
            try:
                lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
                lexer.whitespace_split, lexer.commenters = True, "#"
                tokens = list(lexer)
            except ValueError:  # an unbalanced quote: not a command line
                continue
            segment: list[str] = []
            for token in [*tokens, ";"]:
                if token not in OPERATORS:
                    segment.append(token)
                    continue
                invocation = nnprune_args(segment, variables)
                if invocation is not None:
                    args = [a for a in invocation if a != "..."]
                    yield CommandLine(f"{path.relative_to(REPO)}:{number}", args, "..." in invocation)
                segment = []


def nnprune_args(words: list[str], variables: dict[str, str]) -> list[str] | None:
    """The arguments after ``nnprune`` if these shell words run it; records assignments."""
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
        name, _, value = words[0].partition("=")
        if len(words) == 1:  # a plain assignment (NAME=value): remember it, expanded
            variables[name] = VAR.sub(lambda m: variables.get(m.group(1) or m.group(2), PLACEHOLDER), value)
        words = words[1:]
    if not words:
        return None
    if words[0] == "nnprune":
        rest = words[1:]
    elif "-m" in words and words.index("-m") + 1 < len(words) and words[words.index("-m") + 1] == "nnprune" \
            and words[0] in ("torchrun", "accelerate", "python", "python3", sys.executable):
        rest = words[words.index("-m") + 2:]
    else:
        return None
    return [word for token in rest for word in expand(token, variables)]


def cli_group():
    from nnprune.cli.main import app

    return typer.main.get_command(app)


def parse(args: list[str], elided: bool) -> None:
    """Parse ``nnprune ARGS`` with the real click command (types converted, required checked),
    without running it."""
    group = cli_group()
    if not args or args[0].startswith("-"):
        try:
            group.make_context("nnprune", list(args), resilient_parsing=False)
        except typer.Exit:  # --help, --version: eager options that end the parse
            pass
        return
    parent = group.make_context("nnprune", [], resilient_parsing=True)
    command = group.commands.get(args[0])
    assert command is not None, f"no command {args[0]!r}; commands: {', '.join(group.commands)}"
    try:
        command.make_context(args[0], list(args[1:]), parent=parent, resilient_parsing=False)
    except typer.Exit:
        pass
    except typer.TyperException as exc:
        if elided and type(exc).__name__ == "MissingParameter":
            return
        raise AssertionError(f"nnprune {shlex.join(args)}: {exc}") from None


def documented_command_lines() -> list[CommandLine]:
    return [c for path in [*MARKDOWN, QUICKSTART] for c in command_lines(path)]


def help_examples() -> list[CommandLine]:
    """The example at the end of every command's ``--help``."""
    out = []
    for name, command in cli_group().commands.items():
        epilog = (command.epilog or "").strip()
        if epilog.startswith("Example:"):
            words = shlex.split(epilog.removeprefix("Example:"), comments=True)
            assert words[:2] == ["nnprune", name], f"{name}'s --help example runs {words[:2]}"
            out.append(CommandLine(f"nnprune {name} --help", words[1:], "..." in words))
    return out


def test_the_extractor_finds_what_a_reader_would_run():
    """A guard on the extractor itself: continuation lines, variables, torchrun and comments."""
    lines = list(command_lines(README)) + list(command_lines(QUICKSTART))
    assert len(lines) >= 5
    quick = [c.args for c in command_lines(QUICKSTART)]
    assert [a[0] for a in quick] == ["fine-prune", "prune", "speed"]
    prune = quick[1]
    # the array "${speed[@]}" and "${data[@]}" expanded to their words
    assert "--latency-threads" in prune and "--data-dir" in prune and "--target-speedup" in prune


@pytest.mark.parametrize("line", documented_command_lines() + help_examples(), ids=lambda c: c.where)
def test_command_line_parses_with_the_real_cli(line):
    parse(line.args, line.elided)


def test_a_wrong_command_line_is_caught():
    """The check fails on what a reader would hit: an unknown flag, a missing argument, a bad
    number, an unknown command."""
    for args in (["prune", "ckpt", "sst2", "--output-dir", "o", "--no-such-flag"],
                 ["prune", "ckpt", "--output-dir", "o"],
                 ["prune", "ckpt", "sst2", "--output-dir", "o", "--then-fill", "many"],
                 ["no-such-command"]):
        with pytest.raises(AssertionError):
            parse(args, elided=False)


# ------------------------------------------------------------------------------------ links
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
IMG = re.compile(r"<img[^>]+src=\"([^\"]+)\"")


def prose(path: Path) -> str:
    """The markdown without its code blocks and inline code (links there are not links)."""
    text = re.sub(r"^(```|~~~).*?^\1", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_and_images_exist(path):
    text = prose(path)
    targets = LINK.findall(text) + IMG.findall(text)
    missing = []
    for target in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor in the same page
        file = target.split("#", 1)[0]
        if not (path.parent / file).exists():
            missing.append(target)
    assert not missing, f"{path.relative_to(REPO)} links to missing files: {missing}"


# ---------------------------------------------------------------------------------- README
def test_readme_is_a_landing_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_test_command_is_what_ci_runs():
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1].strip()
    assert ci == "python -m pytest -q tests"
    shell = [line.split("#")[0].strip() for _, block in shell_blocks(README) for line in block]
    assert ci in shell and "bash scripts/quickstart.sh" in shell


def test_readme_and_tasks_page_name_every_task():
    from nnprune.tasks import TASKS

    for page in (README, DOCS / "tasks.md"):
        text = page.read_text(encoding="utf-8")
        missing = [name for name in TASKS.names() if f"`{name}`" not in text]
        assert not missing, f"{page.relative_to(REPO)} does not name the tasks {missing}"


#: How the README names each supported model_type; a new type needs a name here and in both pages.
ARCHITECTURE_NAMES = {
    "bert": "BERT", "roberta": "RoBERTa", "xlm-roberta": "XLM-RoBERTa", "distilbert": "DistilBERT",
    "electra": "ELECTRA", "mpnet": "MPNet", "deberta-v2": "DeBERTa-v2", "modernbert": "ModernBERT",
    "bart": "BART", "mbart": "mBART", "t5": "T5", "mt5": "mT5",
}


def test_readme_and_architectures_page_name_every_architecture():
    from nnprune.pruning_core.architectures import ARCHITECTURES

    unnamed = set(ARCHITECTURES) - set(ARCHITECTURE_NAMES)
    assert not unnamed, f"new model types {unnamed}: name them here, in README.md and docs/architectures.md"
    readme = README.read_text(encoding="utf-8")
    page = (DOCS / "architectures.md").read_text(encoding="utf-8")
    for model_type in ARCHITECTURES:
        assert re.search(rf"\b{re.escape(ARCHITECTURE_NAMES[model_type])}\b", readme), model_type
        assert f"`{model_type}`" in page, model_type


def test_quickstart_reads_fields_the_commands_write():
    """The quickstart's last line is made from the JSON of prune and speed: the fields it reads
    are fields of those results."""
    from nnprune import SpeedReport, records

    script = QUICKSTART.read_text()
    read = set(re.findall(r"pruned\[\"(\w+)\"\]", script))
    assert read and read <= {f.name for f in dataclasses.fields(records.PruneResult)}
    row_fields = set(re.findall(r"b1\['(\w+)'\]", script)) | {"batch_size"}
    row_type = typing_row_type(SpeedReport)
    assert row_fields <= {f.name for f in dataclasses.fields(row_type)}


#: The quickstart's last line, as its summary prints it (f-string fields as patterns).
QUICKSTART_LINE = (r"\d+\.\d\dx faster at batch 1 \(measured, 128 tokens, 1 thread; asked for 2x\), "
                   r"\d+/\d+ heads and [\d,]+/[\d,]+ FFN dims kept, "
                   r"accuracy \d+\.\d\d \(its dense model: \d+\.\d\d, [+-]\d+\.\d\d\)")


def test_readme_shows_the_quickstart_line_it_prints():
    """The README's quickstart line is one the script prints now (not an older script's)."""
    script = QUICKSTART.read_text()
    for fragment in ("x faster at batch 1 (measured, 128 tokens, 1 thread; asked for 2x), ",
                     " FFN dims kept, ", "accuracy ", " (its dense model: "):
        assert fragment in script, fragment
    for page in (README, DOCS / "getting-started.md"):
        assert re.search(rf"^{QUICKSTART_LINE}$", page.read_text(encoding="utf-8"), re.M), page.name


def typing_row_type(report_type):
    """The dataclass of a :class:`SpeedReport`'s rows."""
    import typing

    hints = typing.get_type_hints(report_type)
    (row,) = typing.get_args(hints["rows"])
    return row


def test_quickstart_is_strict_bash():
    text = QUICKSTART.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    subprocess.run(["bash", "-n", str(QUICKSTART)], check=True)
    if shutil.which("shellcheck") is None:  # CI installs it (.ci/run)
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    res = subprocess.run(["shellcheck", "--shell=bash", str(QUICKSTART)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


# ------------------------------------------------------------------------------- the site
@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """``mkdocs build --strict`` of the whole site, offline: a broken link, anchor, page, marker
    or docstring fails it."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f",
                           str(REPO / "mkdocs.yml"), "-d", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out


def page_text(site: Path, page: str) -> str:
    html = (site / page / "index.html").read_text(encoding="utf-8")
    return re.sub(r"<[^>]+>", " ", html)


def test_docs_site_builds_strict(site):
    assert (site / "index.html").is_file() and (site / "tradeoff_sst2.png").is_file()
    assert not (site / "hooks").exists()  # the build hooks are not published


def test_cli_reference_is_generated_from_the_app(site):
    text = page_text(site, "reference/cli")
    assert "nnprune:cli" not in text
    group = cli_group()
    for name, command in group.commands.items():
        if command.hidden:  # internal (a sweep's worker): not documented
            assert f"nnprune {name}" not in text, name
            continue
        assert f"nnprune {name}" in text, name
        for param in command.params:
            for opt in param.opts if param.param_type_name == "option" else []:
                assert opt in text, f"{name} {opt}"


def test_command_pages_show_their_options(site):
    """Every command has its page (docs/commands/NAME.md), which shows its generated options."""
    group = cli_group()
    for name, command in group.commands.items():
        if command.hidden:
            continue
        page = DOCS / "commands" / f"{name}.md"
        assert page.is_file(), f"no page for nnprune {name}: write docs/commands/{name}.md"
        assert f"<!-- nnprune:cli {name} -->" in page.read_text(encoding="utf-8"), name
        text = page_text(site, f"commands/{name}")
        for param in command.params:
            if param.param_type_name == "option":
                assert param.opts[0] in text, f"{name} {param.opts[0]}"


def test_api_reference_documents_every_public_name(site):
    import nnprune

    html = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    for name in nnprune.__all__:
        if name == "__version__":
            continue
        assert re.search(rf"id=\"[\w.]*\b{re.escape(name)}\"", html), name
