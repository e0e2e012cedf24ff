"""``nnprune prune CKPT TASK``: post-training pruning, no retraining."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from nnprune.cli.common import (DISTILL_HIDDEN_HELP, PANEL_DATA, PANEL_PRUNING, PANEL_SPEED, JsonFileOpt, JsonOutOpt,
                                LatencyTableOpt, TaskArg, TaskOptionOpt, add_command,
                                check_argument_order, check_json_file, console, dataclass_options, emit, latency_options, quiet_libraries,
                                setting_text, stdout_for_json, task_options)

if TYPE_CHECKING:
    from nnprune import LatencySetting
    from nnprune.workflows.options import TrainingOptions


def prune_training_options(func):
    """The :class:`~nnprune.workflows.options.TrainingOptions` ``prune`` takes
    (:data:`~nnprune.workflows.prune.PRUNE_TRAINING_HELP`: the options, what they mean here, with
    prune's defaults), collected into the command's ``training`` parameter: the calibration's
    after --tune-samples, the --then-fill stage's and the job's after --then-fill."""
    from nnprune.workflows.options import TrainingOptions
    from nnprune.workflows.prune import PRUNE_TRAINING, PRUNE_TRAINING_HELP

    names = list(PRUNE_TRAINING_HELP)
    split = names.index("learning_rate")
    data = {"max_seq_length", "data_dir", "train_file", "validation_file", "max_eval_samples"}

    def panel(name: str) -> Optional[str]:
        if name in ("resume", "overwrite"):
            return None  # the job's: beside --output-dir
        if name in data:
            return PANEL_DATA
        return PANEL_CALIBRATION if names.index(name) < split else PANEL_THEN_FILL

    return dataclass_options(TrainingOptions, "training", fields=names, help=PRUNE_TRAINING_HELP,
                             base=PRUNE_TRAINING, panel=panel,
                             after={"tune_samples": names[:split], "then_fill": names[split:]})(func)


PANEL_CALIBRATION = "Calibration"
PANEL_THEN_FILL = "Fill stage (--then-fill)"


def checkpoint_help() -> str:
    """The CHECKPOINT argument's help, naming the architectures post-training pruning takes as
    the architecture registry has them (never a list kept by hand)."""
    from nnprune import supported_architectures

    return ("Fine-tuned checkpoint folder with the task's head (e.g. a dense fine-prune output), "
            f"of an encoder architecture: {', '.join(supported_architectures(encoder_only=True))} "
            "(encoder-decoders: fine-prune). A model prune compacted before is cut again, the "
            "target counting against the dense model, if its hidden size and layers are whole.")


CHECKPOINT_HELP = checkpoint_help()


@latency_options
@prune_training_options
def prune(
    checkpoint: Annotated[str, typer.Argument(help=CHECKPOINT_HELP)],
    task: TaskArg,
    output_dir: Annotated[Path, typer.Option(help="Where the compacted model goes (with --then-fill: the filled one; the pruned one in OUTPUT_DIR/prune).")],
    target_speedup: Annotated[Optional[float], typer.Option(help="Speedup of the whole forward to reach (> 1), e.g. 2, at the --latency-* setting (default batch 1 at the calibration length), predicted by this machine's latency table (measured once, cached).")] = None,
    target_flops: Annotated[Optional[float], typer.Option(help="Fraction of the dense FLOPs to keep, in (0, 1), e.g. 0.5.")] = None,
    calibration_samples: Annotated[int, typer.Option(rich_help_panel=PANEL_CALIBRATION, help="Training examples that score the heads and FFN dimensions.")] = 2048,
    tune_samples: Annotated[int, typer.Option(rich_help_panel=PANEL_CALIBRATION, help="Of those, examples the least-squares tuning reconstructs.")] = 256,
    training: "TrainingOptions" = None,  # type: ignore[assignment]
    rearrange: Annotated[bool, typer.Option(rich_help_panel=PANEL_PRUNING, help="Re-choose the pruned units per layer with the layer's full Fisher block.")] = True,
    tune: Annotated[Optional[bool], typer.Option("--tune/--no-tune", rich_help_panel=PANEL_PRUNING, help="Least-squares tuning of the kept units, layer by layer; default: the task's choice (on for question answering, +1.2 F1 on SQuAD; off for classification, where it cost accuracy on SST-2; see README).")] = None,
    width_depth: Annotated[bool, typer.Option("--width-depth/--heads-ffn-only", rich_help_panel=PANEL_PRUNING, help="Also prune the hidden dimension and remove whole layers, the search choosing width, depth, heads and FFN together (docs/width-depth.md); --heads-ffn-only prunes heads and FFN dimensions only.")] = True,
    hidden_size: Annotated[Optional[int], typer.Option(rich_help_panel=PANEL_PRUNING, help="With --width-depth: keep this many channels of the hidden dimension (the most important ones) instead of letting the search choose the width.")] = None,
    measured_target: Annotated[bool, typer.Option(rich_help_panel=PANEL_SPEED, help="Hold --target-speedup to the speed measured on this machine, not the latency table's prediction: each candidate shape is compacted and timed against the dense model at the --latency-* setting, and the search re-run with a corrected budget until it lands within -2%/+6% of the target (a few seconds at batch 1).")] = False,
    speed_probe: Annotated[bool, typer.Option(rich_help_panel=PANEL_SPEED, help="Time the result against the dense model (batch 1).")] = True,
    then_fill: Annotated[Optional[int], typer.Option(rich_help_panel=PANEL_THEN_FILL, help="Then fine-tune the compacted model for this many steps, distilled from CHECKPOINT.")] = None,
    distill_hidden: Annotated[float, typer.Option(rich_help_panel=PANEL_THEN_FILL, help=DISTILL_HIDDEN_HELP)] = 0.0,
    task_option: TaskOptionOpt = None,
    latency: "LatencySetting" = None,  # type: ignore[assignment]
    latency_table: LatencyTableOpt = None,
    json_out: JsonOutOpt = False,
    json_file: JsonFileOpt = None,
) -> None:
    """Prune a fine-tuned model to a speed or FLOP target in minutes, without retraining.

    Scores every head and FFN dimension by the Fisher information of the task loss on
    calibration examples, searches the best mask under the budget, rearranges it per layer,
    tunes the kept units by least squares, compacts exactly, evaluates before and after, and
    times the result against the dense model."""
    quiet_libraries()
    check_argument_order("prune", "CHECKPOINT TASK", task, checkpoint)
    check_json_file(json_file)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from nnprune.workflows.prune import PruneArgs, prune as run

    args = PruneArgs(
        checkpoint=checkpoint, task=task, output_dir=output_dir, target_speedup=target_speedup,
        target_flops=target_flops, calibration_samples=calibration_samples,
        tune_samples=tune_samples, rearrange=rearrange, tune=tune, speed_probe=speed_probe,
        width_depth=width_depth, hidden_size=hidden_size, measured_target=measured_target,
        then_fill=then_fill, alpha_hidden=distill_hidden, training=training, task_options=task_options(task_option),
        latency=latency, latency_table=latency_table)
    to_stdout = json_out
    bars = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=console, disable=to_stdout or not console.is_terminal)
    ids: dict[str, int] = {}

    def progress(phase: str, done: int, total: int) -> None:
        if phase not in ids:
            ids[phase] = bars.add_task(phase, total=total)
        bars.update(ids[phase], completed=done)

    with bars, stdout_for_json(json_out):
        result = run(args, progress=progress)
    emit(json_out, f"{task} · prune · {checkpoint} -> {output_dir}", result_rows(result),
         result.to_dict(), json_file)


def _width_depth_rows(result) -> list[tuple[str, object]]:
    """The stream's width and the layers removed, when the search could choose them."""
    if not result.hidden_total:
        return []
    gone = result.layers_removed
    # the count first: "layers removed | 5" read as five layers when it meant layer 5
    removed = (f"{len(gone)} (layer{'s' if len(gone) > 1 else ''} {', '.join(map(str, gone))})"
               if gone else "none")
    return [("hidden width kept", f"{result.hidden_kept}/{result.hidden_total}"),
            ("layers removed", removed)]


def _rounds_rows(result) -> list[tuple[str, object]]:
    """--measured-target: each shape timed, predicted against measured."""
    return [(f"candidate {i}{' (taken)' if r['taken'] else ''}",
             f"budget {r['budget_ms']:.2f} ms: predicted {r['predicted']:.2f}x, measured "
             f"{r['measured']:.2f}x") for i, r in enumerate(result.speed_rounds, 1)]


def result_rows(result) -> list[tuple[str, object]]:
    m = result.main_metric
    rows: list[tuple[str, object]] = [
        (f"{m} {'before (pruned before)' if result.pruned_before else 'dense'}",
         result.metrics_before.get(m)), (f"{m} pruned", result.metrics_after.get(m))]
    if result.metrics_filled is not None:
        rows.append((f"{m} pruned + fill", result.metrics_filled.get(m)))
    rows += [("heads kept", f"{result.heads_kept}/{result.heads_total}"),
             ("heads per layer", ", ".join(map(str, result.heads_per_layer))),
             ("ffn dims kept", f"{result.ffn_dims_kept}/{result.ffn_dims_total}"),
             ("ffn dims per layer", ", ".join(map(str, result.ffn_dims_per_layer))),
             *_width_depth_rows(result),
             (f"predicted speedup ({result.predicted_by})", f"{result.predicted_speedup:.2f}x"),
             (f"measured speedup ({'target' if result.speed_rounds else 'probe'}, "
              f"{setting_text(result.speed_setting)})",
              "-" if result.measured_speedup is None else f"{result.measured_speedup:.2f}x"),
             *_rounds_rows(result),
             ("calibration examples", result.calibration_samples),
             ("max |Δlogit| compacted vs masked", f"{result.exactness:.2e}")]
    rows += [(f"time: {k}", f"{v:.1f} s") for k, v in result.seconds.items()]
    rows.append(("time: total", f"{sum(result.seconds.values()):.1f} s"))
    return rows


def register(app: typer.Typer) -> None:
    add_command(app, "prune", prune, "nnprune prune runs/sst2-dense sst2 --target-speedup 2 "
                "--data-dir ../shared/data/glue/SST-2 --output-dir runs/sst2-pruned")
