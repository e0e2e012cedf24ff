"""``nnprune export-onnx CKPT DIR``: ONNX export checked against PyTorch, optional int8."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nnprune.cli.common import (JsonFileOpt, JsonOutOpt, OverwriteOpt, add_command, console,
                                make_table, quiet_libraries, stdout_for_json, write_json)


def export_onnx(
    checkpoint: Annotated[Path, typer.Argument(help="Compacted (or any plain/masked) checkpoint folder.")],
    output_dir: Annotated[Path, typer.Argument(help="Folder to write model.onnx (and model.int8.onnx), config and metadata to.")],
    quantize: Annotated[str | None, typer.Option(help="int8: also write model.int8.onnx (onnxruntime dynamic quantization), the shippable int8 artefact.")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    overwrite: OverwriteOpt = False,
    json_out: JsonOutOpt = False,
    json_file: JsonFileOpt = None,
) -> None:
    """Export CHECKPOINT to ONNX, checked against PyTorch.

    The graph has dynamic batch and sequence axes and keeps every layer's own head and FFN
    sizes; onnxruntime then runs it against PyTorch on a batch and the max absolute difference
    is reported. OUTPUT_DIR is written whole, atomically: it may be new or empty, or an earlier
    nnprune output with --overwrite; nothing else there is ever replaced."""
    quiet_libraries()
    from nnprune import export_onnx as run

    with stdout_for_json(json_out):  # the exporters' own prints stay off a --json stdout
        exp = run(checkpoint, output_dir, opset=opset, quantize=quantize, overwrite=overwrite)
    if not json_out:
        rows = [("model", str(exp.model_path)), ("inputs", ", ".join(exp.input_names)),
                ("outputs", ", ".join(exp.output_names)), ("opset", exp.opset),
                (f"max |onnx - torch| (batch {exp.check_batch[0]} x seq {exp.check_batch[1]})",
                 f"{exp.max_abs_diff:.2e}")]
        if exp.int8_path is not None:
            rows += [("int8 model", str(exp.int8_path)),
                     ("max |int8 onnx - torch fp32|", f"{exp.int8_max_abs_diff:.2e}"),
                     # a server's own session: the fusion's kernel is slow (docs: export-onnx)
                     ("onnxruntime: disabled_optimizers", ", ".join(exp.ort_disabled_optimizers))]
        console.print(make_table(f"ONNX export of {checkpoint}", ["", "value"], rows))
        for note in exp.notes:
            console.print(f"[yellow]note:[/] {note}", highlight=False)
    write_json(json_out, {"checkpoint": str(checkpoint), **exp.to_dict()}, json_file)


def register(app: typer.Typer) -> None:
    add_command(app, "export-onnx", export_onnx,
                "nnprune export-onnx runs/sst2-compact runs/sst2-onnx --quantize int8")
