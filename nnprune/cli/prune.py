"""``nnprune prune CKPT TASK``: post-training pruning, no retraining."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from nnprune.cli.common import (JsonFileOpt, JsonOutOpt, LatencyTableOpt, TaskArg, TaskOptionOpt,
                                add_command, console, emit, latency_options, quiet_libraries,
                                setting_text, stdout_for_json, task_options)

if TYPE_CHECKING:
    from nnprune.measure.latency import LatencySetting


@latency_options
def prune(
    checkpoint: Annotated[str, typer.Argument(help="Fine-tuned checkpoint folder with the task's head (e.g. a dense fine-prune output).")],
    task: TaskArg,
    output_dir: Annotated[Path, typer.Option(help="Where the compacted model goes (with --then-fill: the filled one; the pruned one in OUTPUT_DIR/prune).")],
    target_speedup: Annotated[Optional[float], typer.Option(help="Speedup of the whole forward to reach (> 1), e.g. 2, at the --latency-* setting (default batch 1 at the calibration length), predicted by this machine's latency table (measured once, cached).")] = None,
    target_flops: Annotated[Optional[float], typer.Option(help="Fraction of the dense FLOPs to keep, in (0, 1), e.g. 0.5.")] = None,
    calibration_samples: Annotated[int, typer.Option(help="Training examples that score the heads and FFN dimensions.")] = 2048,
    tune_samples: Annotated[int, typer.Option(help="Of those, examples the least-squares tuning reconstructs.")] = 256,
    batch_size: Annotated[int, typer.Option(help="Calibration batch size.")] = 32,
    max_seq_length: Annotated[Optional[int], typer.Option(help="Tokens per example (default: the checkpoint's training length, else the task's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the calibration sample.")] = 42,
    data_dir: Annotated[Optional[Path], typer.Option(help="Task data folder (calibration from its train split, evaluation from its dev split).")] = None,
    train_file: Annotated[Optional[Path], typer.Option(help="Calibration file.")] = None,
    validation_file: Annotated[Optional[Path], typer.Option(help="Evaluation file.")] = None,
    max_eval_samples: Annotated[Optional[int], typer.Option(help="Evaluate on at most this many examples.")] = None,
    rearrange: Annotated[bool, typer.Option(help="Re-choose the pruned units per layer with the layer's full Fisher block.")] = True,
    tune: Annotated[Optional[bool], typer.Option("--tune/--no-tune", help="Least-squares tuning of the kept units, layer by layer; default: the task's choice (on for question answering, +1.2 F1 on SQuAD; off for classification, where it cost accuracy on SST-2; see README).")] = None,
    speed_probe: Annotated[bool, typer.Option(help="Time the result against the dense model (batch 1).")] = True,
    then_fill: Annotated[Optional[int], typer.Option(help="Then fine-tune the compacted model for this many steps, distilled from CHECKPOINT.")] = None,
    learning_rate: Annotated[float, typer.Option(help="Learning rate of --then-fill.")] = 5e-5,
    save_steps: Annotated[int, typer.Option(help="With --then-fill: save a checkpoint every N fill steps (for --resume).")] = 500,
    resume: Annotated[bool, typer.Option(help="Continue a killed run in --output-dir: a pruned model it saved is not pruned again, and --then-fill continues from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --output-dir.")] = False,
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
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from nnprune.workflows.prune import PruneArgs, prune as run

    args = PruneArgs(
        checkpoint=checkpoint, task=task, output_dir=output_dir, target_speedup=target_speedup,
        target_flops=target_flops, calibration_samples=calibration_samples,
        tune_samples=tune_samples, batch_size=batch_size, max_seq_length=max_seq_length,
        seed=seed, data_dir=data_dir, train_file=train_file, validation_file=validation_file,
        max_eval_samples=max_eval_samples, rearrange=rearrange, tune=tune,
        speed_probe=speed_probe, then_fill=then_fill, learning_rate=learning_rate,
        save_steps=save_steps, resume=resume, overwrite=overwrite,
        task_options=task_options(task_option), latency=latency, latency_table=latency_table)
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


def result_rows(result) -> list[tuple[str, object]]:
    m = result.main_metric
    rows: list[tuple[str, object]] = [
        (f"{m} dense", result.metrics_before.get(m)), (f"{m} pruned", result.metrics_after.get(m))]
    if result.metrics_filled is not None:
        rows.append((f"{m} pruned + fill", result.metrics_filled.get(m)))
    rows += [("heads kept", f"{result.heads_kept}/{result.heads_total}"),
             ("heads per layer", ", ".join(map(str, result.heads_per_layer))),
             ("ffn dims kept", f"{result.ffn_dims_kept}/{result.ffn_dims_total}"),
             ("ffn dims per layer", ", ".join(map(str, result.ffn_dims_per_layer))),
             (f"predicted speedup ({result.predicted_by})", f"{result.predicted_speedup:.2f}x"),
             (f"measured speedup (probe, {setting_text(result.speed_setting)})",
              "-" if result.measured_speedup is None else f"{result.measured_speedup:.2f}x"),
             ("calibration examples", result.calibration_samples),
             ("max |Δlogit| compacted vs masked", f"{result.exactness:.2e}")]
    rows += [(f"time: {k}", f"{v:.1f} s") for k, v in result.seconds.items()]
    rows.append(("time: total", f"{sum(result.seconds.values()):.1f} s"))
    return rows


def register(app: typer.Typer) -> None:
    add_command(app, "prune", prune, "nnprune prune runs/sst2-dense sst2 --target-speedup 2 "
                "--data-dir ../shared/data/glue/SST-2 --output-dir runs/sst2-pruned")
