"""``nnprune fine-prune TASK``: fine-tune a model while pruning it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nnprune.cli.common import console, make_table, quiet_libraries, write_json


def fine_prune(
    task: Annotated[str, typer.Argument(help="Task name: sst2, mnli, qqp, mrpc, ...")],
    model: Annotated[str, typer.Option(help="Pretrained model folder or hub name.")],
    output_dir: Annotated[Path, typer.Option(help="Where checkpoints and the final model go.")],
    method: Annotated[str, typer.Option(help="Method preset: movement, soft-movement, l0, magnitude, block, hybrid, hybrid-nt, struct, dense.")] = "hybrid-nt",
    teacher: Annotated[Optional[str], typer.Option(help="Fine-tuned dense checkpoint to distil from.")] = None,
    target_density: Annotated[Optional[float], typer.Option(help="Fraction of the pruned matrices' weights to keep, in (0, 1].")] = None,
    epochs: Annotated[float, typer.Option(help="Training epochs (ignored with --max-steps).")] = 1.0,
    max_steps: Annotated[Optional[int], typer.Option(help="Training steps; overrides --epochs.")] = None,
    batch_size: Annotated[int, typer.Option(help="Per-device training batch size.")] = 32,
    learning_rate: Annotated[float, typer.Option(help="Learning rate of the weights (scores use mask_scores_learning_rate).")] = 3e-5,
    warmup: Annotated[float, typer.Option(help="LR warm-up: fraction of steps (<1) or step count.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    max_seq_length: Annotated[Optional[int], typer.Option(help="Tokens per example (default: the task's, 128 GLUE / 384 SQuAD).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML/JSON file of pruning config fields (may set 'method').")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a pruning config field, key=value (repeatable).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in --output-dir.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Start again even if --output-dir holds checkpoints.")] = False,
    data_dir: Annotated[Optional[Path], typer.Option(help="Task data folder: GLUE-style (train.tsv, dev.tsv) or SQuAD JSON (train-v1.1.json, dev-v1.1.json).")] = None,
    train_file: Annotated[Optional[Path], typer.Option(help="Training file: tsv/csv/json/jsonl, or official SQuAD JSON.")] = None,
    validation_file: Annotated[Optional[Path], typer.Option(help="Evaluation file: tsv/csv/json/jsonl, or official SQuAD JSON.")] = None,
    max_train_samples: Annotated[Optional[int], typer.Option(help="Use at most this many training examples.")] = None,
    max_eval_samples: Annotated[Optional[int], typer.Option(help="Evaluate on at most this many examples.")] = None,
    logging_steps: Annotated[int, typer.Option(help="Log every N steps.")] = 50,
    save_steps: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 500,
    eval_steps: Annotated[Optional[int], typer.Option(help="Also evaluate every N steps.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the results as JSON here ('-' for stdout).")] = None,
) -> None:
    """Fine-prune MODEL on TASK and save the masked model (reload it with count-params, bertarize)."""
    quiet_libraries()
    from nnprune.runner import FinePruneArgs, fine_prune as run

    result = run(FinePruneArgs(
        task=task, model=model, output_dir=output_dir, method=method, teacher=teacher,
        target_density=target_density, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
        learning_rate=learning_rate, warmup=warmup, seed=seed, max_seq_length=max_seq_length,
        config_file=config, overrides=list(set_ or []), resume=resume, overwrite=overwrite,
        data_dir=data_dir, train_file=train_file, validation_file=validation_file,
        max_train_samples=max_train_samples, max_eval_samples=max_eval_samples,
        logging_steps=logging_steps, save_steps=save_steps, eval_steps=eval_steps))
    rows = [(k, v) for k, v in sorted(result.metrics.items())]
    rows += [("density (pruned matrices)", result.density),
             ("density attention", result.group_density["attention"]),
             ("density ffn", result.group_density["ffn"]),
             ("compression", result.compression),
             ("estimated speedup", result.estimated_speedup),
             ("train steps", result.steps), ("train seconds", result.train_seconds)]
    if str(json_out) != "-":
        console.print(make_table(f"{task} · {method} · {output_dir}", ["", "value"], rows))
    write_json(json_out, result.to_dict())


def register(app: typer.Typer) -> None:
    app.command("fine-prune")(fine_prune)
