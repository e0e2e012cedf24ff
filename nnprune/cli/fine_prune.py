"""``nnprune fine-prune TASK``: fine-tune a model while pruning it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from nnprune.cli.common import (FILL_INIT_HELP, PANEL_FILL, PANEL_PRUNING, JsonFileOpt, JsonOutOpt,
                                LatencyTableOpt, TargetSpeedupOpt, TaskArg, TaskOptionOpt,
                                TeacherOpt, add_command, check_json_file, emit, latency_options, quiet_libraries,
                                stdout_for_json, task_options, training_display,
                                training_options)

if TYPE_CHECKING:
    from nnprune import LatencySetting
    from nnprune.workflows.options import TrainingOptions

@latency_options
@training_options
def fine_prune(
    task: TaskArg,
    model: Annotated[str, typer.Option(help="Pretrained or fine-tuned model folder or hub name.")],
    output_dir: Annotated[Path, typer.Option(help="Where checkpoints and the final model go.")],
    method: Annotated[Optional[str], typer.Option(rich_help_panel=PANEL_PRUNING, help="Method preset: movement, soft-movement, l0, magnitude, block, hybrid, hybrid-nt, hybrid-filled, struct, dense; or auto: with --target-speedup, one-shot pruning + distillation or hybrid-filled, whichever measured better for the model and budget (README). Default: auto with --target-speedup, else hybrid-nt.")] = None,
    teacher: TeacherOpt = None,
    target_density: Annotated[Optional[float], typer.Option(rich_help_panel=PANEL_PRUNING, help="Fraction of the pruned matrices' weights to keep, in (0, 1].")] = None,
    target_speedup: TargetSpeedupOpt = None,
    config: Annotated[Optional[Path], typer.Option(rich_help_panel=PANEL_PRUNING, help="YAML/JSON file of pruning config fields (may set 'method').")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE", rich_help_panel=PANEL_PRUNING, help="Override a pruning config field (repeatable).")] = None,
    latency: "LatencySetting" = None,  # type: ignore[assignment]
    latency_table: LatencyTableOpt = None,
    fill_epochs: Annotated[Optional[float], typer.Option(rich_help_panel=PANEL_FILL, help="Epochs of the fill stage (default: as the pruning stage).")] = None,
    fill_max_steps: Annotated[Optional[int], typer.Option(rich_help_panel=PANEL_FILL, help="Steps of the fill stage (default: as the pruning stage).")] = None,
    fill_init: Annotated[str, typer.Option(rich_help_panel=PANEL_FILL, help=FILL_INIT_HELP)] = "noise",
    training: "TrainingOptions" = None,  # type: ignore[assignment]
    task_option: TaskOptionOpt = None,
    json_out: JsonOutOpt = False,
    json_file: JsonFileOpt = None,
) -> None:
    """Fine-prune MODEL on TASK and save the masked model.

    Inspect the result with count-params, make it smaller with bertarize --compact. With
    --method hybrid-filled, the pruning stage goes to OUTPUT_DIR/prune and the filled, compacted
    model to OUTPUT_DIR; so with --target-speedup and the default --method auto, which picks
    one-shot pruning + distillation or hybrid-filled for the model and budget and says why. Progress: a bar on a terminal, one line per --logging-steps in logs."""
    quiet_libraries()
    check_json_file(json_file)
    from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune as run, requested_method

    args = FinePruneArgs(
        task=task, model=model, output_dir=output_dir, method=method, teacher=teacher,
        target_density=target_density, target_speedup=target_speedup, latency=latency,
        latency_table=latency_table, config_file=config, overrides=tuple(set_ or ()),
        fill_epochs=fill_epochs, fill_max_steps=fill_max_steps, fill_init=fill_init,
        task_options=task_options(task_option), training=training)
    with stdout_for_json(json_out), training_display():
        result = run(args)
    route = requested_method(args)
    if result.route:
        route += f" → {result.route['route']}"
    emit(json_out, f"{task} · {route} · {output_dir}", result_rows(result), result.to_dict(),
         json_file)


def route_summary(route: dict) -> str:
    """One short cell for what ``--method auto`` chose (the whole reason is in the log and
    the JSON)."""
    if not route["fine_tuned"]:
        return f"{route['route']} (the model has no trained head for the task)"
    sign = "<=" if route["examples"] <= route["one_shot_max_examples"] else ">"
    return (f"{route['route']} ({route['examples']:,} training examples {sign} "
            f"{route['one_shot_max_examples']:,})")


def result_rows(result) -> list[tuple[str, object]]:
    """Summary rows of a ``FinePruneResult`` (a filled result adds its own rows)."""
    from nnprune.workflows.fill import FillResult

    if isinstance(result, FillResult):
        from nnprune.cli.fill import fill_rows

        rows = fill_rows(result)
        if result.route:
            rows.insert(0, ("route (auto)", route_summary(result.route)))
        return rows
    rows: list[tuple[str, object]] = [(k, v) for k, v in sorted(result.metrics.items())]
    rows += [("density (pruned matrices)", result.density),
             ("density attention", result.group_density["attention"]),
             ("density ffn", result.group_density["ffn"]),
             ("compression", result.compression),
             ("estimated speedup", result.estimated_speedup),
             ("train steps", result.steps), ("train seconds", result.train_seconds)]
    from nnprune.cli.fill import speed_check_rows

    return rows + speed_check_rows(result)


def register(app: typer.Typer) -> None:
    add_command(app, "fine-prune", fine_prune,
                "nnprune fine-prune sst2 --model $MINILM --method hybrid-nt --target-density 0.5 "
                "--data-dir ../shared/data/glue/SST-2 --output-dir runs/sst2-hybrid-nt")
