"""Shared CLI pieces: consoles, tables, JSON output, quiet library logging."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

import typer
from rich.console import Console, ConsoleDimensions
from rich.table import Table
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from nnprune.errors import NNPruneError
from nnprune.io_utils import OVERWRITE_HELP
from nnprune.launch import is_main_process

#: Width of the consoles when their stream is not a terminal (logs, CI, pipes): wide enough that
#: no table is ever cut; rich only pads a table to its own width, never to this.
LOG_WIDTH = 10_000


def stream_is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a file
        return False


class CliConsole(Console):
    """A rich console that never truncates: on a terminal it has the terminal's width (tables
    fold their cells, :func:`make_table`); anywhere else (a log file, CI, a pipe) it is
    :data:`LOG_WIDTH` wide, so tables and lines come out whole, whatever ``COLUMNS`` says."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # rich fixes the width from COLUMNS when the console is made; decide at print time
        # instead (the stream may be replaced, and COLUMNS only matters on a terminal)
        self._fixed_width = kwargs.get("width") is not None
        if not self._fixed_width:
            self._width = None

    def _size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)  # type: ignore[attr-defined]
        if self._fixed_width or stream_is_terminal(self.file):
            return size
        return ConsoleDimensions(LOG_WIDTH, size.height)

    size = property(_size, Console.size.fset)  # type: ignore[assignment]


console = CliConsole()
err_console = CliConsole(stderr=True)


def quiet_libraries() -> None:
    """Keep transformers/datasets from printing weight-loading reports and advisory warnings."""
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:  # pragma: no cover - transformers always importable in practice
        pass
    logging.getLogger("datasets").setLevel(logging.ERROR)


class _NNPruneHandler(logging.StreamHandler):
    """Writes nnprune's log records to the *current* ``sys.stderr`` as plain lines."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property  # type: ignore[override]
    def stream(self):  # noqa: D401 - follows sys.stderr when it is replaced (tests, redirection)
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _DropOnnxQuantAdvice(logging.Filter):
    """onnxruntime's quantizer logs advice to pre-process on the root logger at WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not ("onnxruntime" in record.pathname and record.levelno < logging.ERROR)


def setup_logging(level: int = logging.INFO) -> None:
    """What a CLI user sees of the library's logs: nnprune's INFO lines on stderr (library code
    only logs; this is the one place that decides how). Idempotent."""
    log = logging.getLogger("nnprune")
    if not any(isinstance(h, _NNPruneHandler) for h in log.handlers):
        log.addHandler(_NNPruneHandler())
    log.setLevel(level)
    root = logging.getLogger()
    # A module-level logging.warning() (onnxruntime's quantizer) calls basicConfig() when the root
    # has no handler, and that handler would print every nnprune line a second time.
    if not root.handlers:
        root.addHandler(logging.NullHandler())
    if not any(isinstance(f, _DropOnnxQuantAdvice) for f in root.filters):
        root.addFilter(_DropOnnxQuantAdvice())


class TitledTable(Table):
    """A table whose title is printed as lines of their own above it, not wrapped to the
    table's width (a checkpoint path in the title stays whole in logs)."""

    def __rich_console__(self, console, options):
        from rich.text import Text

        title, self.title = self.title, None
        try:
            if title:
                yield title if not isinstance(title, str) else Text(title, style="table.title")
            yield from super().__rich_console__(console, options)
        finally:
            self.title = title


def make_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
               justify_right_from: int = 1) -> Table:
    """A table whose cells are never ellipsized: on a narrow terminal they fold onto more lines
    (and off a terminal the consoles are wide enough for any table, :class:`CliConsole`)."""
    table = TitledTable(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="right" if i >= justify_right_from else "left",
                         overflow="fold")
    for row in rows:
        table.add_row(*[fmt(v) for v in row])
    return table


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def stdout_for_json(json_out: bool):
    """A context that sends stdout (anything a library prints) to stderr while ``--json`` wants
    stdout for the JSON alone."""
    from contextlib import nullcontext, redirect_stdout

    return redirect_stdout(sys.stderr) if json_out else nullcontext()


def emit(json_out: bool, title: str, rows: Iterable[Sequence[Any]],
         payload: dict[str, Any], json_file: Optional[Path] = None) -> None:
    """A two-column result table on stdout (left out when ``--json`` owns stdout) and the JSON:
    on stdout with ``--json``, in ``json_file`` with ``--json-file``."""
    if not json_out:
        console.print(make_table(title, ["", "value"], rows))
    write_json(json_out, payload, json_file)


def write_json(json_out: bool, payload: dict[str, Any],
               json_file: Optional[Path] = None) -> None:
    """Print ``payload`` as JSON on stdout when ``json_out`` says so (``--json``) and write it to
    ``json_file`` (``--json-file``): the same text both ways."""
    if not is_main_process():  # under torchrun: the main process's copy is the one
        return
    text = json.dumps(payload, indent=2, sort_keys=True, default=str)
    if json_file is not None:
        from nnprune.io_utils import atomic_write_text

        atomic_write_text(Path(json_file), text + "\n")
    if json_out:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


# ---------------------------------------------------------------------------------- help panels
# The options of a long command, grouped (Typer's rich help panels): each panel is a table of its
# own, sized to its own options, so the help reads in 80 columns without cutting a name.
PANEL_PRUNING = "Pruning"
PANEL_FILL = "Fill stage (hybrid-filled, auto)"
PANEL_SPEED = "Speed (--target-speedup, --latency-*)"
PANEL_DATA = "Data"
PANEL_TRAINING = "Training"
PANEL_CHECKPOINTS = "Checkpoints and logging"
PANEL_OUTPUT = "Output"
PANEL_EVALUATION = "Evaluation (--task)"
PANEL_GENERATE = "Generation (--generate)"
#: The panel of each TrainingOptions field; a field not named here goes to the Training panel.
TRAINING_PANELS: dict[str, str] = {
    **dict.fromkeys(("max_seq_length", "data_dir", "train_file", "validation_file",
                     "max_train_samples", "max_eval_samples"), PANEL_DATA),
    **dict.fromkeys(("logging_steps", "save_steps", "save_total_limit", "eval_steps", "resume",
                     "overwrite"), PANEL_CHECKPOINTS),
}


def training_panel(name: str) -> str:
    return TRAINING_PANELS.get(name, PANEL_TRAINING)


class _PlainerHelp:
    """Arguments named in capitals in the usage line and the help (``CHECKPOINT TASK``, as the
    help texts name them), and switches shown without a ``<bool>`` type (they take no value)."""

    params: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument) and param.metavar is None and param.name:
                param.metavar = param.name.upper()
            elif isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
                param.metavar = ""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option


class NNPruneCommand(_PlainerHelp, TyperCommand):
    """The click command of every ``nnprune`` command (:class:`_PlainerHelp`)."""


class NNPruneGroup(_PlainerHelp, TyperGroup):
    """The click group of ``nnprune`` itself (:class:`_PlainerHelp`: ``--version`` and
    ``--help`` without ``<bool>``)."""


# ---------------------------------------------------------------------------------- shared options
TeacherOpt = Annotated[Optional[str], typer.Option(
    help="Fine-tuned dense checkpoint to distil from.", rich_help_panel=PANEL_PRUNING)]
# Kept in step with the task registry by tests/cli/test_help_cli.py (importing the registry here
# would load torch for every --help).
TASK_HELP = ("Task: a preset (sst2, mnli, qqp, mrpc, squad, squad_v2, cnn_dailymail) or your own "
             "data through text-classification, token-classification, question-answering or "
             "summarization (columns, labels and data set as --task-option).")
TaskArg = Annotated[str, typer.Argument(help=TASK_HELP)]
TaskOptionOpt = Annotated[Optional[list[str]], typer.Option(
    "--task-option", metavar="KEY=VALUE", rich_help_panel=PANEL_DATA, help="A task setting, key=value (repeatable). text-classification: "
                          "text_column, text_pair_column, label_column, labels=a,b,c, "
                          "regression=true, dataset, dataset_config, train_split, "
                          "validation_split, delimiter; token-classification: tokens_column, "
                          "tags_column, labels, label_all_tokens, dataset...; "
                          "question-answering: version_2_with_negative=true, question_column, "
                          "context_column, answers_column, id_column, dataset..., doc_stride, "
                          "n_best_size, max_answer_length, null_score_diff_threshold; "
                          "summarization: text_column, summary_column, source_prefix, "
                          "max_target_length, dataset... and the generation settings; "
                          "cnn_dailymail: generation settings num_beams, max_length, min_length, "
                          "length_penalty, no_repeat_ngram_size, early_stopping.")]
TargetSpeedupOpt = Annotated[Optional[float], typer.Option(
    help="Speedup to reach (e.g. 2): the masks are cut in latency units with a latency table "
         "measured on this machine at the --latency-* setting (cached), instead of a weight "
         "count. Not with --target-density.", rich_help_panel=PANEL_PRUNING)]
DISTILL_HIDDEN_HELP = ("Weight of layer-wise distillation on top of the logits': the mean squared "
                       "error between the model's hidden states and the teacher's at the layers and "
                       "channels it kept (TinyBERT, CoFi); 0: logits only.")
FILL_INIT_HELP = ("What fills the zeros inside the kept heads / FFN dims before the fill stage: "
                  "noise (N(0, --reinit-std), nn_pruning's recipe) or weights (the values the "
                  "masks hid).")

LatencyTableOpt = Annotated[Optional[Path], typer.Option(
    help="With --target-speedup: a latency table JSON (nnprune latency-table --json-file) to use "
         "instead of the cached or newly measured one.", rich_help_panel=PANEL_SPEED)]


def setting_text(s: dict[str, Any]) -> str:
    """A latency setting (``LatencySetting.to_dict()``) in a few words."""
    return f"batch {s['batch_size']} x {s['seq_len']}, {s['device']}, {s['threads']} threads"


JsonOutOpt = Annotated[bool, typer.Option(
    "--json", help="Print the results as JSON on stdout, instead of the table (logs and progress "
                   "stay on stderr).", rich_help_panel=PANEL_OUTPUT)]
# No short flag: next to --output-dir / --output, ``-o`` would read as the output folder.
JsonFileOpt = Annotated[Optional[Path], typer.Option(
    "--json-file", help="Also write the results as JSON to this file.",
    rich_help_panel=PANEL_OUTPUT)]
# Every command that writes a folder says --overwrite the same way (the rule: docs/outputs.md).
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP,
                                            rich_help_panel=PANEL_OUTPUT)]


def check_json_file(json_file: Optional[Path]) -> None:
    """Refuse a ``--json-file`` that cannot be written (a folder, a folder that cannot be made
    or written) before the work whose results it would hold."""
    from nnprune.workflows.preflight import check_output_file

    check_output_file(json_file, "--json-file")


def check_argument_order(command: str, usage: str, task: str, checkpoint: Any) -> None:
    """A task argument that is no task but a path (or a checkpoint argument that is a task): one
    line naming the order (``evaluate`` takes TASK CHECKPOINT, ``prune`` and ``fill`` CHECKPOINT
    TASK), before anything loads."""
    from nnprune.workflows.preflight import check_argument_order as check

    check(command, usage, task, checkpoint)


def task_options(items: Optional[Sequence[str]]) -> dict[str, str]:
    """``--task-option`` values as a mapping (one-line error when malformed)."""
    from nnprune.settings import parse_assignments

    return parse_assignments(items or (), option="--task-option")


def dataclass_options(cls: type, param: str, prefix: str = "", *,
                      fields: Optional[Sequence[str]] = None,
                      help: Optional[Mapping[str, str]] = None,  # noqa: A002 - typer's word
                      base: Any = None,
                      after: Optional[Mapping[str, Sequence[str]]] = None,
                      panel: "str | Callable[[str], Optional[str]] | None" = None,
                      errors_say: Optional[str] = None,
                      ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator giving a command fields of the dataclass ``cls`` as options, collected into an
    instance passed as the command's ``param`` parameter. Each option is the field's declaration
    (one source of truth): flag (:func:`~nnprune.settings.option_flag`, with ``prefix``), type,
    default and help.

    A command that takes some of the fields only, or gives them its own meaning, says so here:
    ``fields``, the fields it takes (default: all); ``help``, what a field means for this
    command, instead of the field's own help; ``base``, an instance whose values are the defaults
    (and what the fields it does not take keep); ``after``, ``{parameter: [fields]}``: those
    options listed right after that parameter of the command (the others come last), so the
    help reads in the command's own order; ``panel``, the help panel of the options (one name, or
    a function of the field's name; ``None``: the command's main panel).

    ``errors_say``: the flag prefix the dataclass's own validation messages spell its fields with
    (``LatencySetting`` says ``--latency-device``); a command that takes the fields with another
    ``prefix`` gets the messages with its own flags."""
    import dataclasses

    from nnprune.settings import field_types, option_flag

    declared = {f.name: f for f in dataclasses.fields(cls)}
    names = list(fields) if fields is not None else list(declared)
    unknown = [n for n in [*names, *(help or {}), *(n for g in (after or {}).values() for n in g)]
               if n not in declared or n not in names]
    if unknown:
        raise TypeError(f"{cls.__name__} options {sorted(set(unknown))} are not fields it takes")

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(func)
        if param not in sig.parameters:
            raise TypeError(f"{func.__name__} has no {param!r} parameter")
        kinds = field_types(cls)
        extra: dict[str, inspect.Parameter] = {}
        for name in names:
            f = declared[name]
            text = (help or {}).get(name, f.metadata.get("help"))
            flag = option_flag(name, prefix)
            if kinds[name] is bool:  # typer's own spelling of a switch: --resume/--no-resume
                flag += "/--no-" + flag[2:]
            where = panel(name) if callable(panel) else panel
            option = typer.Option(flag, help=text, rich_help_panel=where)
            default = getattr(base, name) if base is not None else f.default
            extra[name] = inspect.Parameter(prefix + name, inspect.Parameter.KEYWORD_ONLY,
                                            default=default,
                                            annotation=Annotated[kinds[name], option])
        # The command module may use ``from __future__ import annotations``: resolve its own
        # annotations in its globals, since typer reads them from this wrapper.
        params = [p.replace(annotation=eval(p.annotation, func.__globals__))  # noqa: S307
                  if isinstance(p.annotation, str) and p.name != param else p
                  for p in sig.parameters.values()]
        clash = {p.name for p in params if p.name != param} & {p.name for p in extra.values()}
        if clash:
            raise TypeError(f"{func.__name__} redefines {cls.__name__} options {sorted(clash)}")
        placed = {n for group in (after or {}).values() for n in group}
        ordered: list[inspect.Parameter] = []
        for p in params:
            # among the command's own parameters, of their kind (a signature orders kinds): the
            # options ``after`` names after their parameter, the others where ``param`` stands
            if p.name == param:
                ordered += [extra[n].replace(kind=p.kind) for n in names if n not in placed]
                continue
            ordered.append(p)
            ordered += [extra[n].replace(kind=p.kind) for n in (after or {}).get(p.name, ())]
        params = [p for p in params if p.name != param]
        if len(ordered) != len(params) + len(extra):
            raise TypeError(f"{func.__name__} has no parameter {sorted(set(after or {}) - set(sig.parameters))}")
        keys = {prefix + n for n in names}

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            values = {k[len(prefix):]: kwargs.pop(k) for k in list(kwargs) if k in keys}
            try:
                value = dataclasses.replace(base, **values) if base is not None else cls(**values)
            except NNPruneError as exc:
                if errors_say is None or errors_say == prefix:
                    raise
                raise NNPruneError(_respell_flags(str(exc), names, errors_say, prefix)) from None
            return func(*args, **{param: value}, **kwargs)

        command.__signature__ = sig.replace(parameters=ordered)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in ordered}
        del command.__wrapped__  # typer must read the new signature, not the wrapped one's
        return command
    return decorate


def _respell_flags(message: str, names: Sequence[str], said: str, prefix: str) -> str:
    """``message`` with the flags of fields ``names`` spelled with ``prefix`` instead of
    ``said`` (longest flags first, so ``--x-y`` is not taken for ``--x``)."""
    from nnprune.settings import option_flag

    for name in sorted(names, key=len, reverse=True):
        message = re.sub(re.escape(option_flag(name, said)) + r"(?![\w-])",
                         option_flag(name, prefix), message)
    return message


def training_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Every field of :class:`~nnprune.workflows.options.TrainingOptions` as an option,
    collected into the command's ``training`` parameter."""
    from nnprune.workflows.options import TrainingOptions

    return dataclass_options(TrainingOptions, "training", panel=training_panel)(func)


def latency_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Every field of :class:`~nnprune.measure.latency.LatencySetting` as a ``--latency-*``
    option, collected into the command's ``latency`` parameter."""
    from nnprune import LatencySetting
    from nnprune.settings import LATENCY_OPTION_PREFIX

    return dataclass_options(LatencySetting, "latency", prefix=LATENCY_OPTION_PREFIX,
                             panel=PANEL_SPEED)(func)


# ------------------------------------------------------------------------------- help and commands
def paragraphs(doc: Optional[str]) -> str:
    """A docstring as help text: the hard line breaks inside each paragraph joined, so every
    paragraph (blank-line separated) reflows to the terminal's width."""
    text = inspect.cleandoc(doc or "")
    return "\n\n".join(" ".join(line.strip() for line in para.splitlines())
                       for para in text.split("\n\n") if para.strip())


def add_command(app: typer.Typer, name: str, func: Callable[..., Any], example: str) -> None:
    """Register ``func`` as ``nnprune NAME``: its docstring's paragraphs as the help, and one
    example command line as the epilog."""
    app.command(name, help=paragraphs(func.__doc__), epilog=f"Example:  {example}",
                cls=NNPruneCommand)(func)


# ------------------------------------------------------------------------------- training progress
class _LeaveStepsToBar(logging.Filter):
    """While the bar is drawn, the per-step progress lines are in it: drop them here."""

    def filter(self, record: logging.LogRecord) -> bool:
        from nnprune.workflows.progress import STEP_RECORD

        return getattr(record, "nnprune_progress", None) != STEP_RECORD


class TrainingBar:
    """The terminal's view of a training run: a rich progress bar (steps, elapsed, ETA, the last
    logged loss/density/...) on stderr. Evaluation and other log lines print above it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Any = None
        self.task: Any = None
        self.filter = _LeaveStepsToBar()

    def start(self, total: int, completed: int) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.stop()
        self.progress = Progress(
            TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[summary]}"),
            console=self.console, redirect_stdout=False, redirect_stderr=True)
        self.task = self.progress.add_task("training", total=total, completed=completed,
                                           summary="")
        for handler in logging.getLogger("nnprune").handlers:
            if isinstance(handler, _NNPruneHandler):
                handler.addFilter(self.filter)
        self.progress.start()

    def update(self, completed: int, summary: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=completed, summary=summary)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        for handler in logging.getLogger("nnprune").handlers:
            handler.removeFilter(self.filter)


@contextlib.contextmanager
def training_display() -> Iterator[None]:
    """Around a training command: on a terminal (stderr a TTY), a progress bar; elsewhere (logs,
    CI) nothing more, the progress callback's plain lines say it all."""
    from nnprune.workflows.progress import progress_display

    if not stream_is_terminal(sys.stderr):
        yield
        return
    bar = TrainingBar(err_console)
    try:
        with progress_display(bar):
            yield
    finally:
        bar.stop()
