"""``nnprune export-onnx CKPT DIR``: ONNX export checked against PyTorch, optional int8."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nnprune.cli.common import console, make_table, quiet_libraries, write_json


def export_onnx(
    checkpoint: Annotated[Path, typer.Argument(help="Compacted (or any plain/masked) checkpoint folder.")],
    output_dir: Annotated[Path, typer.Argument(help="Folder to write model.onnx (and model.int8.onnx), config and metadata to.")],
    quantize: Annotated[str | None, typer.Option(help="int8: also write model.int8.onnx (onnxruntime dynamic quantization), the shippable int8 artefact.")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the export summary as JSON here ('-' for stdout).")] = None,
) -> None:
    """Export CKPT to ONNX with dynamic batch/sequence axes (per-layer head and FFN sizes kept),
    then run onnxruntime against PyTorch on a batch and report the max abs difference."""
    quiet_libraries()
    from nnprune.export.onnx import export_checkpoint

    exp = export_checkpoint(checkpoint, output_dir, opset=opset, quantize=quantize)
    if str(json_out) != "-":
        rows = [("model", str(exp.model_path)), ("inputs", ", ".join(exp.input_names)),
                ("outputs", ", ".join(exp.output_names)), ("opset", exp.opset),
                (f"max |onnx - torch| (batch {exp.check_batch[0]} x seq {exp.check_batch[1]})",
                 f"{exp.max_abs_diff:.2e}")]
        if exp.int8_path is not None:
            rows += [("int8 model", str(exp.int8_path)),
                     ("max |int8 onnx - torch fp32|", f"{exp.int8_max_abs_diff:.2e}")]
        console.print(make_table(f"ONNX export of {checkpoint}", ["", "value"], rows))
        for note in exp.notes:
            console.print(f"[yellow]note:[/] {note}", highlight=False)
    write_json(json_out, {"checkpoint": str(checkpoint), **exp.to_dict()})


def register(app: typer.Typer) -> None:
    app.command("export-onnx")(export_onnx)
