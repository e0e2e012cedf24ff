"""``nnprune evaluate TASK CKPT``: score a saved checkpoint on a task's evaluation data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import sys

from nnprune.cli.common import (JsonFileOpt, JsonOutOpt, OverwriteOpt, TaskArg, TaskOptionOpt,
                                add_command, check_argument_order, check_json_file, console,
                                make_table, quiet_libraries,
                                stdout_for_json, stream_is_terminal, task_options, write_json)


def evaluate(
    task: TaskArg,
    checkpoint: Annotated[Path, typer.Argument(help="Plain, masked or compacted checkpoint folder.")],
    data_dir: Annotated[Path | None, typer.Option(help="Task data folder (GLUE: dev.tsv, ...; SQuAD: dev-v1.1.json, ...).")] = None,
    validation_file: Annotated[Path | None, typer.Option(help="Evaluation file (GLUE: tsv/csv/json/jsonl; SQuAD: json/jsonl).")] = None,
    max_eval_samples: Annotated[int | None, typer.Option(help="Evaluate on the first N examples only.")] = None,
    batch_size: Annotated[int, typer.Option(help="Evaluation batch size.")] = 32,
    max_seq_length: Annotated[int | None, typer.Option(help="Tokens per feature; default: the checkpoint's training length, else the task's (SQuAD 384, GLUE 128).")] = None,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer folder or hub name; default: the checkpoint's.")] = None,
    quantize: Annotated[str | None, typer.Option(help="int8: evaluate the dynamic int8 version of the model (CPU): PyTorch's, or onnxruntime's with --onnx.")] = None,
    onnx: Annotated[bool, typer.Option("--onnx", help="Evaluate through onnxruntime (CPU) the ONNX export of CHECKPOINT (model.int8.onnx with --quantize int8), as export-onnx writes it and speed --onnx times it; CHECKPOINT may also be an export-onnx folder.")] = False,
    task_option: TaskOptionOpt = None,
    predictions_dir: Annotated[Path | None, typer.Option(help="Write the task's prediction files there (SQuAD: predictions.json, v2 also null_odds.json, the official scripts' formats); other files in that folder are left alone.")] = None,
    overwrite: OverwriteOpt = False,
    json_out: JsonOutOpt = False,
    json_file: JsonFileOpt = None,
) -> None:
    """Evaluate CHECKPOINT on TASK's evaluation split (the hub's unless local data is given)."""
    quiet_libraries()
    check_argument_order("evaluate", "TASK CHECKPOINT", task, checkpoint)
    check_json_file(json_file)
    from nnprune.workflows.evaluate import evaluate_checkpoint

    with stdout_for_json(json_out):
        result = evaluate_checkpoint(
            task, checkpoint, data_dir=data_dir, validation_file=validation_file,
            max_eval_samples=max_eval_samples, batch_size=batch_size,
            max_seq_length=max_seq_length, tokenizer=tokenizer, quantize=quantize,
            # the Trainer's tqdm bar on a terminal only, never in logs
            progress=stream_is_terminal(sys.stderr), task_options=task_options(task_option),
            predictions_dir=predictions_dir, onnx=onnx, overwrite=overwrite)
    if not json_out:
        rows = [(f"{k} *" if k == result.main_metric else k, v)
                for k, v in result.metrics.items()]
        rows += [("examples", result.num_examples), ("features", result.num_features),
                 ("max seq length", result.max_seq_length), ("seconds", result.seconds)]
        rows += [("predictions", f) for f in result.prediction_files]
        console.print(make_table(f"{task} · {checkpoint} ({result.kind})", ["", "value"], rows))
    write_json(json_out, result.to_dict(), json_file)


def register(app: typer.Typer) -> None:
    add_command(app, "evaluate", evaluate,
                "nnprune evaluate sst2 runs/sst2-compact --data-dir ../shared/data/glue/SST-2")
