"""``--help``: paragraphs that reflow to the terminal's width, one example per command that runs,
option names whole at 80 columns, grouped options, ``--version``."""

from __future__ import annotations

import inspect
import json
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


def _options(command: str) -> dict:
    """The click options of ``nnprune COMMAND`` by parameter name."""
    import typer

    from nnprune.cli.main import app

    click_cmd = typer.main.get_command(app).commands[command]
    return {p.name: p for p in click_cmd.params}


def test_prune_takes_the_training_options_as_declared_with_its_own_help_and_defaults():
    """``prune``'s calibration / fill options are TrainingOptions' (flag, type, validation) with
    what they mean for prune and prune's defaults, declared once (PRUNE_TRAINING_HELP)."""
    import dataclasses

    from nnprune.workflows.options import TrainingOptions
    from nnprune.workflows.prune import PRUNE_TRAINING, PRUNE_TRAINING_HELP

    options = _options("prune")
    for name, text in PRUNE_TRAINING_HELP.items():
        opt = options[name]
        assert opt.opts[0] == TrainingOptions.flag(name) and opt.help == text
        assert opt.default == getattr(PRUNE_TRAINING, name)
    assert options["learning_rate"].default == 5e-5 and TrainingOptions().learning_rate == 3e-5
    assert options["resume"].secondary_opts == ["--no-resume"]
    assert "warmup" not in options and "epochs" not in options  # what prune does not take
    # fine-prune takes every one, with the declaration's own help
    fine = _options("fine-prune")
    for f in dataclasses.fields(TrainingOptions):
        assert fine[f.name].opts[0] == TrainingOptions.flag(f.name)
        assert fine[f.name].help == f.metadata["help"]


def test_prune_cli_builds_the_training_options_it_was_given(tmp_path, monkeypatch):
    import nnprune.workflows.prune as workflow
    from nnprune.cli.main import app

    seen = {}

    def fake(args, progress=None):
        seen["args"] = args
        raise SystemExit(0)

    monkeypatch.setattr(workflow, "prune", fake)
    CliRunner().invoke(app, ["prune", "ckpt", "sst2", "--output-dir", str(tmp_path / "o"),
                             "--target-flops", "0.5", "--batch-size", "8", "--learning-rate",
                             "1e-4", "--resume", "--save-steps", "7"])
    training = seen["args"].training
    assert (training.batch_size, training.learning_rate, training.resume, training.save_steps) == (
        8, 1e-4, True, 7)
    assert training.warmup == 0.1 and training.max_seq_length is None  # defaults kept


def test_the_cards_reproduce_flags_are_the_declared_ones():
    from nnprune.pruning_core.run_record import CommandOptions
    from nnprune.report.card import fine_prune_command
    from nnprune.workflows.options import TrainingOptions

    record = {name: 7 for name in TrainingOptions.result_options()}
    record.update(method="hybrid", target_speedup=2.0, latency={"seq_len": 64, "threads": 1},
                  fill_max_steps=5)
    words = fine_prune_command(CommandOptions(record), "sst2", "m").replace("\\\n", " ").split()
    flags = {w for w in words if w.startswith("--")}
    fine = {o for p in _options("fine-prune").values() for o in p.opts}
    assert flags <= fine, flags - fine
    assert {TrainingOptions.flag(n) for n in TrainingOptions.result_options()} - {"--epochs"} <= flags


# ------------------------------------------------------------------ 80 columns, switches, version
def _all_options(command: str) -> list[str]:
    """Every flag of ``nnprune COMMAND`` (``--resume`` and ``--no-resume``, ...)."""
    return [o for p in _options(command).values() for o in (*p.opts, *p.secondary_opts)
            if o.startswith("--")]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_at_80_columns_shows_every_option_name_whole(command):
    text = _help(command, 80)
    assert "…" not in text  # rich cuts a name that does not fit with an ellipsis
    words = set(re.findall(r"--[a-z][a-z0-9-]*", text))
    missing = [flag for flag in _all_options(command) if flag not in words]
    assert not missing, missing
    assert max(len(ln) for ln in text.splitlines()) <= 80


def test_every_command_and_nnprune_itself_read_at_80_columns():
    """Commands added later too (the list above is the ones with an example each)."""
    from nnprune.cli.main import app

    res = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80"})
    assert res.exit_code == 0 and "<bool>" not in res.stdout and "--version" in res.stdout
    for info in app.registered_commands:
        text = _help(info.name, 80)
        assert "…" not in text and "<bool>" not in text, info.name


def test_fine_prune_help_is_grouped_and_short_enough_to_read_at_80_columns():
    text = _help("fine-prune", 80)
    panels = re.findall(r"╭─ (.+?) ─", text)
    assert panels[:2] == ["Arguments", "Options"]
    assert {"Pruning", "Training", "Data", "Checkpoints and logging", "Output"} <= set(panels)
    assert len(text.splitlines()) <= 200  # it was 270 lines, one option panel wrapping at ~20


@pytest.mark.parametrize("command", COMMANDS)
def test_no_switch_shows_a_bool_type_and_arguments_are_capitals(command):
    text = _help(command, 120)
    assert "<bool>" not in text
    usage = next(ln for ln in text.splitlines() if "Usage:" in ln)
    arguments = [p for p in _options(command).values() if p.param_type_name == "argument"]
    for p in arguments:
        assert p.name.upper() in usage, usage


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    import nnprune
    from nnprune.cli.main import app

    res = CliRunner().invoke(app, [flag])
    assert res.exit_code == 0 and res.stdout.strip() == f"nnprune {nnprune.__version__}"


def _example(command: str) -> list[str]:
    line = re.search(r"Example:\s+(nnprune .*)", _help(command, 1000))[1].strip()
    return line.split()[2:]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_example_parses_with_the_real_command(command):
    """Flags that exist, arguments in the right order, values of the right type."""
    import typer

    from nnprune.cli.main import app

    click_cmd = typer.main.get_command(app).commands[command]
    args = [a.replace("$MINILM", "minilm") for a in _example(command)]
    click_cmd.make_context(command, args)  # raises a usage error otherwise


def test_fine_prune_example_runs_as_written(tmp_path, minilm_dir):
    """The example (MiniLM on the SST-2 folder the help names) runs: its method needs nothing it
    does not pass. Budget options added so that it takes seconds."""
    from conftest import REPO, SHARED_DATA

    args = [a.replace("$MINILM", minilm_dir) for a in _example("fine-prune")]
    data = args[args.index("--data-dir") + 1]
    if not (REPO / data).is_dir():
        pytest.skip(f"{SHARED_DATA} is not here")
    args[args.index("--data-dir") + 1] = str(REPO / data)
    args[args.index("--output-dir") + 1] = str(tmp_path / "out")
    from nnprune.cli.main import app

    res = CliRunner().invoke(app, ["fine-prune", *args, "--max-steps", "1", "--batch-size", "4",
                                   "--max-train-samples", "8", "--max-eval-samples", "8",
                                   "--max-seq-length", "16", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["steps"] == 1


# --------------------------------------------------------------------------- what the help says
def test_latency_table_says_its_own_flags():
    from nnprune.cli.main import app

    text = _help("latency-table", 200)
    seq_len = next(ln for ln in text.splitlines() if "--seq-len" in ln)
    assert "[default: 128]" in seq_len and "run's" not in seq_len
    res = CliRunner().invoke(app, ["latency-table", "m", "--device", "tpu"])
    assert res.exit_code != 0 and "--device must be cpu or cuda" in str(res.exception)
    assert "--latency-device" not in str(res.exception)


def test_a_latency_setting_error_names_the_flag_of_the_command(tmp_path, capsys):
    """``--latency-device`` where the options are ``--latency-*`` (fine-prune), ``--device`` in
    latency-table: the one line names the flag the user typed."""
    from nnprune.cli.main import main

    for argv, flag in [(["latency-table", "m", "--device", "tpu"], "--device"),
                       (["fine-prune", "sst2", "--model", "m", "--output-dir", str(tmp_path / "o"),
                         "--latency-device", "tpu"], "--latency-device")]:
        with pytest.raises(SystemExit) as stop:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert stop.value.code == 2 and err == f"error: {flag} must be cpu or cuda, not 'tpu'"
    assert not (tmp_path / "o").exists()


def test_prune_help_says_what_batch_size_and_checkpoint_are():
    from nnprune import supported_architectures

    options = _options("prune")
    assert "--then-fill" in options["batch_size"].help
    text = " ".join(_help("prune", 1000).split())
    archs = supported_architectures(encoder_only=True)
    assert "modernbert" in archs and "bart" not in archs and "t5" not in archs
    assert ", ".join(archs) in text  # from the registry, every encoder architecture


def test_fill_teacher_help_says_what_the_command_does_without_one(tmp_path, capsys):
    """No "(required)" on an option the parser does not require: without it, fill stops with
    one line (tests/workflows/test_fill.py), which its help announces."""
    teacher = _options("fill")["teacher"]
    assert not teacher.required and "(required)" not in teacher.help
    assert "needs one" in teacher.help
