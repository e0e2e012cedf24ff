"""The ``nnprune`` command line: one Typer app, commands in their own modules, one error boundary."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Annotated, Optional, Sequence

import typer
from typer.core import TyperCommand
from rich.markup import escape

from nnprune.cli.common import (NNPruneCommand, NNPruneGroup, console, err_console, paragraphs,
                                setup_logging)
from nnprune.errors import NNPruneError
from nnprune.launch import is_main_process

app = typer.Typer(
    name="nnprune", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    cls=NNPruneGroup,
    rich_markup_mode="rich",  # help paragraphs reflow to the terminal (common.add_command)
    help="Prune transformers while fine-tuning, into models that are physically smaller and faster.")



def _print_version(value: bool) -> None:
    if value:
        import nnprune

        console.print(f"nnprune {nnprune.__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option(
        "--version", "-V", callback=_print_version, is_eager=True,
        help="Print nnprune's version and exit.")] = None,
) -> None:
    """Prune transformers while fine-tuning, into models that are physically smaller and faster."""


# Each module defines register(app) adding its command(s).
COMMAND_MODULES = ("fine_prune", "prune", "fill", "count_params", "speed", "export_onnx", "bertarize", "evaluate", "report", "latency_table", "sweep")

for _name in COMMAND_MODULES:
    importlib.import_module(f"nnprune.cli.{_name}").register(app)
# Every command's help from its docstring with the hard line breaks joined: paragraphs reflow.
for _info in app.registered_commands:
    if _info.help is None and _info.callback is not None:
        _info.help = paragraphs(_info.callback.__doc__)
    if _info.cls in (None, TyperCommand):  # capitalised arguments, switches without <bool>
        _info.cls = NNPruneCommand


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point: user errors become one red line and exit code 2; bugs keep their traceback."""
    # Tokenizers' fork warning and TF/flax probing are noise for a CLI.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    setup_logging()
    if not is_main_process():
        # Under torchrun every process runs the command: one prints the results and the JSON
        # (two JSON documents on one stdout parse as neither); the others say only what goes wrong.
        console.quiet = True
        logging.getLogger("nnprune").setLevel(logging.WARNING)
    try:
        rc = app(args=list(argv) if argv is not None else None, standalone_mode=False)
    except NNPruneError as exc:
        # escaped: a message quoting user text ("[/x]", a column name) is not console markup
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        err_console.print("[red]aborted[/]")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:
        # Usage errors (bad option, missing argument) from Typer's own click.
        explain_json_flag(exc, list(argv) if argv is not None else sys.argv[1:])
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/]")
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)


def explain_json_flag(exc: Exception, args: Sequence[str]) -> None:
    """``--json FILE`` and ``--json -`` of earlier versions now leave an unexpected argument:
    say what replaced them."""
    message = getattr(exc, "message", None)
    if "--json" in args and isinstance(message, str) and "unexpected extra argument" in message:
        exc.message = (f"{message}; --json is a flag now (JSON on stdout): write a file with "  # type: ignore[attr-defined]
                       "--json-file PATH")


if __name__ == "__main__":  # pragma: no cover
    main()
