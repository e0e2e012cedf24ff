"""Evaluate any saved checkpoint (plain, masked or compacted) on a task's evaluation data.

The CLI's ``evaluate`` command calls :func:`evaluate_checkpoint`; scripts can do the same. The
model runs under a plain :class:`transformers.Trainer` (CPU when no CUDA device is visible) and
the task adapter's own ``evaluate`` computes the metrics, exactly as at the end of fine-pruning.
With ``onnx=True`` the model is the checkpoint's ONNX export (int8 with ``quantize="int8"``) run by
onnxruntime (:func:`nnprune.load_onnx`), in the same loop: the accuracy of the file one ships.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nnprune
from nnprune import records
from nnprune.errors import NNPruneError
from nnprune.tasks import DataArgs, get_task
from nnprune.tasks.sources import HUB_OPTION_KEYS
from nnprune.workflows.preflight import cap_max_seq_length, check_data, check_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    task: str
    checkpoint: str
    kind: str  # "plain", "masked" or "compacted" (+"int8", "+onnx", "+onnx-int8")
    metrics: dict[str, float]
    main_metric: str
    max_seq_length: int
    num_examples: int  # per evaluation split, summed
    num_features: int  # model inputs (SQuAD: several per long example)
    seconds: float
    # with predictions_dir: the answers file (SQuAD: predictions.json) and every file written
    predictions_file: str | None = None
    prediction_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def training_max_seq_length(path: str | Path) -> int | None:
    """The ``max_seq_length`` a fine-pruned checkpoint was trained with, if it records one."""
    record = records.read_config(path)
    value = record.training.max_seq_length if record and record.training else None
    return value if value is not None and value >= 8 else None


def training_task_options(path: str | Path, task_name: str) -> dict[str, Any]:
    """The ``--task-option`` settings checkpoint ``path`` was trained with for ``task_name``,
    as its ``nnprune_config.json`` records them; ``{}`` when it records none, or another task.

    Where: ``training.task_options`` (``fine-prune``, ``fill``), else the latest stage of a fill
    output that has some (``stages[*].training.task_options``), else the options of ``prune``
    (``post_training.options.task_options``).
    """
    record = records.read_config(path)
    if record is None or record.task != task_name:
        return {}
    candidates = [record.training] + [s.training for s in reversed(record.stages)]
    candidates.append(record.post_training.options if record.post_training else None)
    return next((c.task_options for c in candidates if c is not None and c.task_options), {})


def evaluation_task_options(path: str | Path, task_name: str,
                            explicit: dict[str, Any] | None, *, local_data: bool
                            ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(options, recorded)``: the task options to evaluate checkpoint ``path`` with, and the
    part of them taken from its training (:func:`training_task_options`).

    The recorded options, with the ``explicit`` ones (``--task-option``) on top: an explicit
    key wins. With ``local_data`` (``--data-dir`` / ``--validation-file``) the recorded hub
    source (``dataset``, ``dataset_config``, its splits) is left out: the files replace it.
    """
    recorded = training_task_options(path, task_name)
    explicit = dict(explicit or {})
    recorded = {k: v for k, v in recorded.items()
                if k not in explicit and not (local_data and k in HUB_OPTION_KEYS)}
    return {**recorded, **explicit}, recorded


def evaluate_checkpoint(task_name: str, checkpoint: str | Path, *,
                        data_dir: Path | None = None, validation_file: Path | None = None,
                        max_eval_samples: int | None = None, batch_size: int = 32,
                        max_seq_length: int | None = None,
                        tokenizer: str | None = None, progress: bool = False,
                        quantize: str | None = None,
                        task_options: dict[str, str] | None = None,
                        predictions_dir: Path | None = None,
                        onnx: bool = False, overwrite: bool = False) -> EvaluationResult:
    """Evaluate ``checkpoint`` on ``task_name``'s evaluation split(s).

    ``max_seq_length`` defaults to what the checkpoint was fine-pruned with (recorded in its
    ``nnprune_config.json``), else the task's ``default_max_seq_length`` (SQuAD: 384), else 128.
    ``tokenizer`` defaults to the checkpoint folder. No data source means the task's hub dataset.
    ``progress`` shows the Trainer's progress bar. ``task_options`` are the task's
    ``--task-option`` settings, on top of those the checkpoint was trained with (recorded in its
    ``nnprune_config.json``; :func:`evaluation_task_options`): a checkpoint evaluates as it was
    trained (columns, labels, SQuAD v2.0, ...) without repeating them, and an explicit key wins.
    ``quantize="int8"`` evaluates the dynamic
    int8 version of the model (CPU), as ``nnprune speed --quantize int8`` times it.
    ``predictions_dir``: write the task's prediction files there
    (:meth:`~nnprune.tasks.base.TaskAdapter.prediction_files`; SQuAD: ``predictions.json`` and,
    v2.0, ``null_odds.json``); tasks without any write nothing. A file there that nnprune did not
    write is replaced only with ``overwrite``; a file at ``predictions_dir`` itself is refused
    before any work.
    ``onnx``: evaluate through onnxruntime (CPU) the model ``export_onnx`` writes for the checkpoint
    (``model.int8.onnx`` with ``quantize="int8"``, else ``model.onnx``), as ``nnprune speed --onnx``
    times it; ``checkpoint`` may also be an ``export-onnx`` folder, whose own files are scored
    (its source checkpoint's recorded training settings apply). Tasks that generate text refuse.
    """
    import torch
    from transformers import AutoTokenizer, Trainer, TrainingArguments

    from nnprune.workflows.training import check_predictions_dir, write_prediction_files

    if batch_size < 1:
        raise NNPruneError(f"--batch-size must be >= 1, got {batch_size}")
    check_predictions_dir(predictions_dir, overwrite)
    if quantize not in (None, "int8"):
        raise NNPruneError(f"--quantize supports int8 only, got {quantize!r}")
    # An export-onnx folder records no training; the checkpoint it was exported from does.
    record = _recorded_source(Path(checkpoint)) if onnx else checkpoint
    local_data = data_dir is not None or validation_file is not None
    options, recorded = evaluation_task_options(record, task_name, task_options,
                                                local_data=local_data)
    if recorded:
        logger.info("%s: task options recorded at training: %s", checkpoint,
                    ", ".join(f"{k}={v}" for k, v in sorted(recorded.items())))
    try:
        task = get_task(task_name, options)
    except NNPruneError as exc:
        if not recorded:
            raise
        raise NNPruneError(f"{exc} (task options recorded in {checkpoint}'s nnprune_config.json: "
                           f"{', '.join(sorted(recorded))}; override with --task-option)") from None
    info = nnprune.inspect_checkpoint(checkpoint)
    path = info.path
    task.check_checkpoint(info.config, str(path))
    _check_onnx(task, path, onnx)
    if max_seq_length is None:
        max_seq_length = training_max_seq_length(record) or int(
            getattr(task, "default_max_seq_length", 128))
    max_seq_length = cap_max_seq_length(info.config, max_seq_length, str(path))
    data_args = DataArgs(data_dir=data_dir, validation_file=validation_file,
                         max_eval_samples=max_eval_samples, max_seq_length=max_seq_length)
    source = tokenizer or str(path)
    try:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        hint = "" if tokenizer else " (pass --tokenizer)"
        raise NNPruneError(f"cannot load a tokenizer from {source}{hint}: "
                           f"{str(exc).splitlines()[0]}") from None
    check_tokenizer(tok, info.config, source)
    data = task.load_data(tok, data_args, need_train=False)
    check_data(data, task_name, need_train=False)
    with tempfile.TemporaryDirectory(prefix="nnprune-eval-") as tmp:
        label_names = None
        if onnx:
            model, kind = _onnx_model(info, Path(tmp) / "onnx", quantize)
            # The Trainer guesses label inputs from the model class name; this one names them.
            label_names = model.label_names
        else:
            kind = info.kind.value
            model = nnprune.load_pretrained(path)
            if quantize is not None:
                model = nnprune.quantize_int8(model)
                kind = f"{kind}+int8"
        start = time.perf_counter()
        args = TrainingArguments(output_dir=tmp, per_device_eval_batch_size=batch_size,
                                 report_to=[], label_names=label_names,
                                 use_cpu=onnx or quantize is not None or not torch.cuda.is_available(),
                                 dataloader_num_workers=0, disable_tqdm=not progress)
        trainer = Trainer(model=model, args=args, data_collator=data.data_collator,
                          processing_class=tok)
        metrics = task.evaluate(trainer, data)
        seconds = time.perf_counter() - start
    written: list[str] = []
    if predictions_dir is not None:
        written = write_prediction_files(task.prediction_files(), Path(predictions_dir),
                                         overwrite=overwrite)
    main_file = next((f for f in written if Path(f).name == "predictions.json"),
                     written[0] if written else None)
    examples = sum(_count_examples(data, split, ds) for split, ds in data.eval.items())
    features = sum(len(ds) for ds in data.eval.values())
    return EvaluationResult(task=task_name, checkpoint=str(path), kind=kind,
                            metrics={k: _plain(v) for k, v in metrics.items()},
                            main_metric=task.main_metric, max_seq_length=max_seq_length,
                            num_examples=examples, num_features=features, seconds=seconds,
                            predictions_file=main_file, prediction_files=written)


def _recorded_source(path: Path) -> Path:
    """The checkpoint whose ``nnprune_config.json`` holds ``path``'s training settings: for an
    export-onnx folder its source (when still there), else ``path`` itself."""
    meta = nnprune.onnx_metadata(path)
    if meta is None:
        return path
    source = meta.get("source")
    return Path(source) if source and Path(source).is_dir() else path


def _check_onnx(task: Any, path: Path, onnx: bool) -> None:
    """Refuse (one line, before any data is tokenized) what ``onnx`` cannot evaluate."""
    if not onnx:
        if not (path / "model.safetensors").exists() and nnprune.onnx_metadata(path) is not None:
            raise NNPruneError(f"{path} is an ONNX export: evaluate it with --onnx")
        return
    if task.evaluates_by_generation:
        raise NNPruneError(f"--onnx: task {task.name} evaluates by generate() (beam search), which "
                           f"an ONNX export of one forward pass cannot run; evaluate without --onnx")
    meta = nnprune.onnx_metadata(path)
    if meta is not None and "decoder_input_ids" in (meta.get("inputs") or []):
        raise NNPruneError(f"--onnx: {path} is a seq2seq LM export (teacher-forced forward); "
                           f"evaluate its PyTorch checkpoint instead")


def _onnx_model(info: Any, tmp: Path, quantize: str | None) -> tuple[Any, str]:
    """``(model run by onnxruntime, kind)`` of checkpoint ``info.path``: exported to ``tmp``
    (int8 too with ``quantize``) as ``speed --onnx`` exports it, or an export-onnx folder's own
    file (:func:`nnprune.load_onnx`)."""
    path = info.path
    suffix = "+onnx-int8" if quantize else "+onnx"
    meta = nnprune.onnx_metadata(path)
    if meta is not None:
        kind = str(meta.get("kind") or "plain")
        return nnprune.load_onnx(path, quantize=quantize), kind + suffix
    kind = info.kind.value
    model = nnprune.load_pretrained(path)
    exp = nnprune.export_onnx(model, tmp, quantize=quantize)
    if "decoder_input_ids" in exp.input_names:
        raise NNPruneError(f"--onnx: {path} is a {type(model).__name__} (seq2seq LM); its export "
                           f"is one teacher-forced forward, which evaluation cannot use")
    logger.info("%s exported to ONNX for evaluation (max |onnx - torch| = %.2e%s)", path,
                exp.max_abs_diff, "" if exp.int8_max_abs_diff is None
                else f"; int8: {exp.int8_max_abs_diff:.2e}")
    return nnprune.load_onnx(tmp, quantize=quantize, config=model.config), kind + suffix


def _count_examples(data: Any, split: str, ds: Any) -> int:
    raw = data.eval_examples.get(split)
    examples = getattr(raw, "examples", raw)
    return len(examples) if examples is not None else len(ds)


def _plain(value: Any) -> Any:
    # numpy scalars -> Python numbers, so the result is JSON friendly
    return value.item() if hasattr(value, "item") else value


__all__ = ["EvaluationResult", "evaluate_checkpoint", "evaluation_task_options",
           "training_max_seq_length", "training_task_options"]
