"""``nnprune fill CKPT TASK``: compact a fine-pruned model, refill its kept heads, fine-tune again."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from nnprune.cli.common import (DISTILL_HIDDEN_HELP, FILL_INIT_HELP, PANEL_OUTPUT, PANEL_SPEED, JsonFileOpt, JsonOutOpt,
                                LatencyTableOpt, TaskArg, TaskOptionOpt, add_command,
                                check_argument_order, check_json_file, emit,
                                latency_options, quiet_libraries, setting_text, stdout_for_json,
                                task_options, training_display, training_options)

if TYPE_CHECKING:
    from nnprune import LatencySetting
    from nnprune.workflows.options import TrainingOptions


PANEL_REFILL = "Refill (the zeros inside the kept heads and FFN dims)"


@latency_options
@training_options
def fill(
    checkpoint: Annotated[Path, typer.Argument(help="Fine-pruned (masked) checkpoint folder, e.g. a fine-prune --output-dir.")],
    task: TaskArg,
    output_dir: Annotated[Path, typer.Option(help="Where checkpoints and the filled, compacted model go.")],
    teacher: Annotated[Optional[str], typer.Option(help="Fine-tuned dense checkpoint folder to distil from: fill always distils, so it needs one.")] = None,
    reinit_std: Annotated[Optional[float], typer.Option(rich_help_panel=PANEL_REFILL, help="Std of the noise that refills the zeros inside kept heads / FFN dims (default: the model's initializer_range; 0: keep them at zero).")] = None,
    fill_init: Annotated[str, typer.Option(rich_help_panel=PANEL_REFILL, help=FILL_INIT_HELP)] = "noise",
    distill_hidden: Annotated[float, typer.Option(help=DISTILL_HIDDEN_HELP)] = 0.0,
    target_speedup: Annotated[Optional[float], typer.Option(rich_help_panel=PANEL_SPEED, help="Re-cut CHECKPOINT's mask scores to this speedup (latency table of this machine at the --latency-* setting) before compacting, whatever target it was pruned to.")] = None,
    latency: "LatencySetting" = None,  # type: ignore[assignment]
    latency_table: LatencyTableOpt = None,
    training: "TrainingOptions" = None,  # type: ignore[assignment]
    task_option: TaskOptionOpt = None,
    json_out: JsonOutOpt = False,
    json_file: JsonFileOpt = None,
    no_card: Annotated[bool, typer.Option("--no-card", rich_help_panel=PANEL_OUTPUT, help="Do not write the model card (README.md) and its pictures into --output-dir.")] = False,
) -> None:
    """Hybrid Filled, second stage: compact a fine-pruned model, refill it, fine-tune it again.

    The heads and FFN dimensions CHECKPOINT pruned away are removed, the zeros left inside the
    kept ones refilled (--fill-init), and the compacted model fine-tuned on TASK with distillation from
    --teacher and no pruning. Saves a compacted checkpoint (loadable with
    nnprune.load_pretrained, or transformers with trust_remote_code=True)."""
    quiet_libraries()
    check_argument_order("fill", "CHECKPOINT TASK", task, checkpoint)
    check_json_file(json_file)
    from nnprune.workflows.fill import FillArgs
    from nnprune.workflows.fill import fill as run

    with stdout_for_json(json_out), training_display():
        result = run(FillArgs(checkpoint=checkpoint, task=task, output_dir=output_dir,
                              teacher=teacher, reinit_std=reinit_std, fill_init=fill_init,
                              task_options=task_options(task_option), training=training,
                              target_speedup=target_speedup, latency=latency,
                              latency_table=latency_table, alpha_hidden=distill_hidden))
    emit(json_out, f"{task} · fill · {checkpoint} -> {output_dir}", fill_rows(result),
         result.to_dict(), json_file)
    if not no_card:
        from nnprune.cli.report import card_after_save

        card_after_save(output_dir, json_out)


def fill_rows(result) -> list[tuple[str, object]]:
    """Summary rows of a ``FillResult``."""
    rows: list[tuple[str, object]] = [(k, v) for k, v in sorted(result.metrics.items())]
    rows += [("heads kept", f"{result.heads_kept}/{result.heads_original}"),
             ("ffn dims kept", f"{result.ffn_dims_kept}/{result.ffn_dims_original}"),
             ("density (vs original)", result.density),
             ("compression", result.compression),
             ("estimated speedup", result.estimated_speedup),
             (f"zeros refilled ({result.fill_init})", result.reinitialized),
             ("train steps", result.steps), ("train seconds", result.train_seconds)]
    return rows + speed_check_rows(result)


def speed_check_rows(result) -> list[tuple[str, object]]:
    """``--target-speedup``: the predicted and measured speedups at the latency setting."""
    check = getattr(result, "speed_check", None)
    if not check:
        return []
    at = setting_text(check["setting"])
    return [(f"speedup predicted ({at})", check["predicted"]),
            (f"speedup measured ({at})", check["measured"]),
            ("heads kept per layer", " ".join(map(str, check["heads_per_layer"]))),
            ("FFN dims kept per layer", " ".join(map(str, check["ffn_dims_per_layer"])))]


def register(app: typer.Typer) -> None:
    add_command(app, "fill", fill, "nnprune fill runs/sst2-hybrid sst2 --teacher runs/sst2-dense "
                                   "--output-dir runs/sst2-filled")
