"""``nnprune fill CKPT TASK``: compact a fine-pruned model, refill its kept heads, fine-tune again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nnprune.cli.common import (
    BatchSizeOpt,
    DataDirOpt,
    EpochsOpt,
    JsonOutOpt,
    LearningRateOpt,
    LoggingStepsOpt,
    MaxEvalSamplesOpt,
    MaxSeqLengthOpt,
    MaxStepsOpt,
    MaxTrainSamplesOpt,
    OverwriteOpt,
    ResumeOpt,
    SaveStepsOpt,
    SeedOpt,
    TrainFileOpt,
    ValidationFileOpt,
    WarmupOpt,
    emit,
    quiet_libraries,
    stdout_for_json,
)


def fill(
    checkpoint: Annotated[Path, typer.Argument(help="Fine-pruned (masked) checkpoint folder, e.g. a fine-prune --output-dir.")],
    task: Annotated[str, typer.Argument(help="Task name: sst2, mnli, qqp, mrpc, squad, squad_v2.")],
    output_dir: Annotated[Path, typer.Option(help="Where checkpoints and the filled, compacted model go.")],
    teacher: Annotated[str | None, typer.Option(help="Fine-tuned dense checkpoint to distil from (required).")] = None,
    epochs: EpochsOpt = 1.0,
    max_steps: MaxStepsOpt = None,
    batch_size: BatchSizeOpt = 32,
    learning_rate: LearningRateOpt = 3e-5,
    warmup: WarmupOpt = 0.1,
    seed: SeedOpt = 42,
    max_seq_length: MaxSeqLengthOpt = None,
    reinit_std: Annotated[float | None, typer.Option(help="Std of the noise that refills the zeros inside kept heads / FFN dims (default: the model's initializer_range; 0: keep them at zero).")] = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    data_dir: DataDirOpt = None,
    train_file: TrainFileOpt = None,
    validation_file: ValidationFileOpt = None,
    max_train_samples: MaxTrainSamplesOpt = None,
    max_eval_samples: MaxEvalSamplesOpt = None,
    logging_steps: LoggingStepsOpt = 50,
    save_steps: SaveStepsOpt = 500,
    json_out: JsonOutOpt = None,
) -> None:
    """Hybrid Filled, second stage: remove the heads and FFN dims CHECKPOINT pruned away,
    re-initialise the zeros left inside the kept ones, and fine-tune the compacted model on TASK
    with distillation from --teacher and no pruning. Saves a compacted checkpoint (loadable with
    nnprune.load_pretrained, or transformers with trust_remote_code=True)."""
    quiet_libraries()
    from nnprune.filling import FillArgs
    from nnprune.filling import fill as run

    with stdout_for_json(json_out):
        result = run(FillArgs(
            checkpoint=checkpoint, task=task, output_dir=output_dir, teacher=teacher,
            epochs=epochs, max_steps=max_steps, batch_size=batch_size,
            learning_rate=learning_rate, warmup=warmup, seed=seed, max_seq_length=max_seq_length,
            reinit_std=reinit_std, resume=resume, overwrite=overwrite, data_dir=data_dir,
            train_file=train_file, validation_file=validation_file,
            max_train_samples=max_train_samples, max_eval_samples=max_eval_samples,
            logging_steps=logging_steps, save_steps=save_steps))
    emit(json_out, f"{task} · fill · {checkpoint} -> {output_dir}", fill_rows(result),
         result.to_dict())


def fill_rows(result) -> list[tuple[str, object]]:
    """Summary rows of a ``FillResult``."""
    rows: list[tuple[str, object]] = [(k, v) for k, v in sorted(result.metrics.items())]
    rows += [("heads kept", f"{result.heads_kept}/{result.heads_original}"),
             ("ffn dims kept", f"{result.ffn_dims_kept}/{result.ffn_dims_original}"),
             ("density (vs original)", result.density),
             ("compression", result.compression),
             ("estimated speedup", result.estimated_speedup),
             ("zeros re-initialised", result.reinitialized),
             ("train steps", result.steps), ("train seconds", result.train_seconds)]
    return rows


def register(app: typer.Typer) -> None:
    app.command("fill")(fill)
