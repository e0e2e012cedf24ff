"""MkDocs hook: the reference pages are written from the code at build time, never by hand.

A page asks for generated text with a marker comment on a line of its own:

- ``<!-- nnprune:cli -->``: every command of the Typer app ``nnprune.cli.main.app`` (usage, help,
  arguments, options with their defaults, the example), read through its click command;
- ``<!-- nnprune:cli COMMAND -->``: the arguments and options of one command;
- ``<!-- nnprune:api -->``: a mkdocstrings block for every public name (``nnprune.__all__``),
  grouped by job, each documented at the module that defines it (``import nnprune`` exports them
  lazily, so the names are resolved here, not by griffe);
- ``<!-- nnprune:methods -->``: the method presets of ``nnprune.METHODS``.

An unknown marker or command name fails the build: a page cannot silently lose its reference.
Nothing generated is committed.
"""

from __future__ import annotations

import re
from typing import Any

MARKER = re.compile(r"^<!-- nnprune:(?P<kind>[a-z]+)(?: (?P<arg>[\w-]+))? -->$", re.MULTILINE)

#: The public names by job, in the order docs/python-api.md introduces them; a public name missing
#: here is still documented, under "Other names".
API_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Fine-pruning in any training loop", (
        "attach_masks", "FinePruning", "PruningCallback", "distillation_loss", "METHODS",
        "method_config", "PruningConfig", "check_speedup_target", "LatencySetting")),
    ("Post-training pruning", ("prune", "PostTrainingResult", "check_prune_targets")),
    ("Shrinking and shipping", (
        "bertarize", "compact", "CompactResult", "expand", "save_pretrained", "refill", "fill", "prepare_fill",
        "PreparedFill", "FillInit", "export_onnx", "OnnxExport", "load_onnx", "OrtModel",
        "onnx_metadata", "quantize_int8")),
    ("Checkpoints and run records", (
        "load_pretrained", "load_config", "inspect_checkpoint", "CheckpointInfo", "CheckpointKind",
        "bertarize_checkpoint", "BertarizeResult", "records")),
    ("Measuring", (
        "count_parameters", "ParamCount", "count_flops", "FlopCount", "latency_table",
        "LatencyTable", "measure_speed", "SpeedReport", "check_speedup", "SpeedCheck")),
    ("Errors", ("NNPruneError",)),
)


class ReferenceError(Exception):
    """A marker the hook cannot expand (the build stops on it)."""


def cli_group() -> Any:
    """The click group Typer builds from ``nnprune.cli.main.app`` (what ``nnprune`` runs)."""
    import typer

    from nnprune.cli.main import app

    return typer.main.get_command(app)


def command_context(group: Any, name: str) -> Any:
    """A parsing context of ``nnprune NAME`` with no arguments (for usage and help records)."""
    parent = group.make_context("nnprune", [], resilient_parsing=True)
    return group.commands[name].make_context(name, [], parent=parent, resilient_parsing=True)


def cell(text: str) -> str:
    """Text for one markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def command_params(name: str) -> str:
    """The arguments and options of ``nnprune NAME`` as markdown tables."""
    group = cli_group()
    command = group.commands.get(name)
    if command is None:
        raise ReferenceError(f"no command {name!r}; commands: {', '.join(group.commands)}")
    ctx = command_context(group, name)
    args, opts = [], []
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        row = f"| `{cell(names)}` | {cell(help_text)} |"
        (args if param.param_type_name == "argument" else opts).append(row)
    out = []
    if args:
        out += ["| argument | |", "|---|---|", *args, ""]
    if opts:
        out += ["| option | |", "|---|---|", *opts, ""]
    return "\n".join(out)


def command_section(name: str) -> str:
    """One command: usage, help paragraphs, parameters, the example of its ``--help``."""
    group = cli_group()
    command = group.commands[name]
    ctx = command_context(group, name)
    usage = " ".join(["nnprune", name, *command.collect_usage_pieces(ctx)])
    parts = [f"## `nnprune {name}`", "", f"```text\n{usage}\n```", "", command.help or "", "",
             command_params(name)]
    epilog = (command.epilog or "").strip()
    if epilog.startswith("Example:"):
        parts += ["Example:", "", f"```bash\n{epilog.removeprefix('Example:').strip()}\n```", ""]
    elif epilog:
        parts += [epilog, ""]
    return "\n".join(parts)


def cli_reference() -> str:
    group = cli_group()
    ctx = group.make_context("nnprune", [], resilient_parsing=True)
    lines = [f"```text\n{' '.join(['nnprune', *group.collect_usage_pieces(ctx)])}\n```", "",
             group.help or "", "", "| command | |", "|---|---|"]
    shown = [name for name, command in group.commands.items() if not command.hidden]
    for name in shown:
        lines.append(f"| [`{name}`](#nnprune-{name}) | {cell(group.commands[name].get_short_help_str(200))} |")
    lines.append("")
    return "\n".join(lines + [command_section(name) for name in shown])


def api_reference() -> str:
    """mkdocstrings blocks for every name in ``nnprune.__all__``, at its defining module."""
    import nnprune

    public = [n for n in nnprune.__all__ if n != "__version__"]
    placed = {n for _, names in API_GROUPS for n in names}
    unknown = placed - set(public)
    if unknown:
        raise ReferenceError(f"API_GROUPS names what nnprune.__all__ does not: {sorted(unknown)}")
    groups = [(title, [n for n in names if n in public]) for title, names in API_GROUPS]
    rest = [n for n in public if n not in placed]
    if rest:
        groups.append(("Other names", rest))
    out = []
    for title, names in groups:
        out += [f"## {title}", ""]
        for name in names:
            out += [f"::: {defining_path(name, getattr(nnprune, name))}", "    options:",
                    "      heading_level: 3", "      show_root_full_path: false", ""]
    return "\n".join(out)


def defining_path(name: str, obj: Any) -> str:
    """Where the source defines the public ``name``: a module is itself (``records``), a class or
    function says its module; an instance (``METHODS``) is looked for in the modules that bind it,
    the one whose source assigns it (not one that imports it)."""
    import inspect
    import sys

    if inspect.ismodule(obj):
        return obj.__name__
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return f"{obj.__module__}.{obj.__qualname__}"
    assignment = re.compile(rf"^{re.escape(name)}\b[^=\n]*=", re.MULTILINE)
    for module_name, module in sorted(sys.modules.items()):
        if module_name.startswith("nnprune.") and vars(module).get(name) is obj:
            if assignment.search(inspect.getsource(module)):
                return f"{module_name}.{name}"
    raise ReferenceError(f"cannot find the module that defines nnprune.{name}")


def methods_table() -> str:
    import nnprune

    rows = ["| method | what it prunes | teacher |", "|---|---|---|"]
    for name in nnprune.METHODS.names():
        method = nnprune.METHODS.get(name)
        rows.append(f"| `{name}` | {cell(method.summary)} | {'required' if method.needs_teacher else ''} |")
    return "\n".join(rows) + "\n"


def expand(markdown: str) -> str:
    def one(match: re.Match) -> str:
        kind, arg = match["kind"], match["arg"]
        if kind == "cli":
            return command_params(arg) if arg else cli_reference()
        if kind == "api" and not arg:
            return api_reference()
        if kind == "methods" and not arg:
            return methods_table()
        raise ReferenceError(f"unknown marker {match.group(0)}")

    return MARKER.sub(one, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    try:
        return expand(markdown)
    except ReferenceError as exc:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"{page.file.src_uri}: {exc}") from exc
