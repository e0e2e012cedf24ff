"""Shipping a pruned model: an ONNX export checked against PyTorch (:func:`export_onnx`), an
export run by onnxruntime behind a PyTorch ``forward`` (:func:`load_onnx`,
:func:`onnx_metadata`), and PyTorch dynamic int8 (:func:`quantize_int8`)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Optional

from torch import nn

from nnprune.errors import NNPruneError
from nnprune.export.onnx import (DEFAULT_OPSET, ONNX_INT8, ONNX_META, ONNX_MODEL, OnnxExport,
                                 OrtModel, export_checkpoint, is_onnx_dir, quantize_onnx_int8,
                                 read_onnx_meta)
from nnprune.export.onnx import export_onnx as _export_onnx
from nnprune.measure.quantize import quantize_int8 as _quantize_int8
from nnprune.pruning_core.checkpoint import load_config
from nnprune.pruning_core.compact import is_compacted
from nnprune.pruning_core.masked import MaskedLinear


def export_onnx(model: "nn.Module | str | Path", directory: "str | Path", *,
                opset: int = DEFAULT_OPSET, quantize: Optional[str] = None,
                overwrite: bool = True) -> OnnxExport:
    """Export a model, or a checkpoint folder, to ONNX in ``directory`` (replaced atomically) and
    check it: onnxruntime runs it against PyTorch on a padded batch of another shape (dynamic
    batch and sequence axes), and beyond 1e-3 it is a one-line :class:`~nnprune.NNPruneError`.

    Compacted layers keep their own head counts and FFN sizes; a masked model has its masks
    applied and is compacted first. The folder also holds ``config.json``, the tokenizer (from a
    checkpoint folder that has one) and ``nnprune_onnx.json`` (:func:`onnx_metadata`).

    Args:
        model: a module, or a checkpoint folder (plain, masked, bertarized or compacted).
        quantize: ``"int8"``: also write ``model.int8.onnx`` (onnxruntime dynamic int8, one scale
            per output channel), the shippable int8 model.
        overwrite: replace a folder nnprune wrote at ``directory`` (``False``: refuse it). A file,
            or a folder holding files nnprune did not write, is always refused, before any work.

    Returns:
        Where the files are (``model_path``, ``int8_path``), the graph's ``input_names`` /
        ``output_names`` and the measured ``max_abs_diff`` (``int8_max_abs_diff``).

    Example::

        exp = nnprune.export_onnx(small, "model-2x-onnx", quantize="int8")
        print(exp.max_abs_diff, exp.int8_path)
        ort_model = nnprune.load_onnx("model-2x-onnx", quantize="int8")
    """
    if isinstance(model, nn.Module):
        return _export_onnx(model, directory, opset=opset, quantize=quantize,
                            kind=_kind(model), overwrite=overwrite)
    return export_checkpoint(model, directory, opset=opset, quantize=quantize, overwrite=overwrite)


def _kind(model: nn.Module) -> str:
    if any(isinstance(m, MaskedLinear) for m in model.modules()):
        return "masked"
    return "compacted" if is_compacted(model.config) else "plain"


def onnx_metadata(directory: "str | Path") -> Optional[dict[str, Any]]:
    """What :func:`export_onnx` recorded in an export folder (``nnprune_onnx.json``: the
    ``kind`` and ``source`` checkpoint it was exported from, ``inputs``, ``outputs``, ``opset``,
    the checked differences, the FLOP profile), or ``None`` when ``directory`` is not one.

    Example::

        meta = nnprune.onnx_metadata("model-2x-onnx")
        print(meta["inputs"], meta["max_abs_diff"])
    """
    path = Path(directory)
    return read_onnx_meta(path) if is_onnx_dir(path) else None


def load_onnx(directory: "str | Path", *, quantize: Optional[str] = None, config: Any = None,
              threads: Optional[int] = None) -> OrtModel:
    """The model of an :func:`export_onnx` folder as a PyTorch module run by onnxruntime (CPU):
    ``forward(input_ids=, attention_mask=, token_type_ids=, labels=...)`` returns a dict of the
    graph's outputs as tensors (and ``"loss"`` with labels, as the PyTorch heads compute it), so a
    stock ``Trainer`` evaluation loop, or your own, scores the file you ship.

    Args:
        quantize: ``"int8"``: the folder's ``model.int8.onnx`` (quantized now, in a temporary
            folder, when the export has none).
        config: the model's config (default: the folder's ``config.json``).
        threads: onnxruntime intra-op threads (default: torch's).

    Returns:
        The module; its ``label_names`` are the label inputs to give
        ``TrainingArguments(label_names=...)`` (the Trainer cannot guess them from its class).

    Example::

        model = nnprune.load_onnx("model-2x-onnx", quantize="int8")
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])["logits"]
    """
    path = Path(directory)
    if not is_onnx_dir(path):
        raise NNPruneError(f"{path} is not an ONNX export (no {ONNX_MODEL} and {ONNX_META}); "
                           "write one with export_onnx")
    if quantize not in (None, "int8"):
        raise NNPruneError(f"quantize supports int8 only, not {quantize!r}")
    config = load_config(path) if config is None else config
    if quantize and not (path / ONNX_INT8).is_file():
        # The session reads the whole file when it is built: the folder may go after.
        with tempfile.TemporaryDirectory(prefix="nnprune-onnx-") as tmp:
            return OrtModel(quantize_onnx_int8(path / ONNX_MODEL, Path(tmp) / ONNX_INT8), config,
                            threads=threads)
    return OrtModel(path / (ONNX_INT8 if quantize else ONNX_MODEL), config, threads=threads)


def quantize_int8(model: nn.Module) -> nn.Module:
    """PyTorch dynamic int8 quantization of every ``nn.Linear`` (CPU; weights int8, activations
    quantized on the fly), masked layers folded first; a new model, ``model`` is left as it was.
    It cannot be saved for stock loading: quantize after loading, or ship
    ``export_onnx(..., quantize="int8")``, which is also faster.

    Example::

        int8 = nnprune.quantize_int8(nnprune.load_pretrained("runs/sst2-small"))
        logits = int8(**batch).logits   # on the CPU
    """
    return _quantize_int8(model)


__all__ = ["export_onnx", "load_onnx", "onnx_metadata", "quantize_int8"]
