"""Evaluate any saved checkpoint (plain, masked or compacted) on a task's evaluation data.

The CLI's ``evaluate`` command calls :func:`evaluate_checkpoint`; scripts can do the same. The
model runs under a plain :class:`transformers.Trainer` (CPU when no CUDA device is visible) and
the task adapter's own ``evaluate`` computes the metrics, exactly as at the end of fine-pruning.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nnprune.errors import NNPruneError

#: the model head class-name suffix each kind of task needs
_HEADS = {"question-answering": "ForQuestionAnswering",
          "sequence-classification": "ForSequenceClassification"}


@dataclass
class EvaluationResult:
    task: str
    checkpoint: str
    kind: str  # "plain", "masked" or "compacted"
    metrics: dict[str, float]
    main_metric: str
    max_seq_length: int
    num_examples: int  # per evaluation split, summed
    num_features: int  # model inputs (SQuAD: several per long example)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def checkpoint_kind(path: str | Path) -> str:
    """``"compacted"``, ``"masked"`` or ``"plain"``, from the folder's config files."""
    import json

    from nnprune.pruning_core.config import read_nnprune_config

    p = Path(path)
    try:
        config = json.loads((p / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        config = {}
    if config.get("nnprune_layout"):
        return "compacted"
    info = read_nnprune_config(p) or {}
    return "masked" if info.get("masked") else "plain"


def load_any_checkpoint(path: str | Path) -> Any:
    """The eval-mode model of a plain, masked or compacted checkpoint folder.

    Uses :func:`nnprune.load_pretrained` when available (it also handles compacted folders), else
    :func:`nnprune.pruning_core.checkpoint.load_model`.
    """
    import nnprune

    try:
        loader = getattr(nnprune, "load_pretrained", None)
    except ImportError:  # pragma: no cover - the lazy attribute's module not there yet
        loader = None
    if loader is not None:
        model = loader(path)
    else:  # pragma: no cover
        from nnprune.pruning_core.checkpoint import load_model

        model = load_model(path).model
    model.eval()
    return model


def training_max_seq_length(path: str | Path) -> int | None:
    """The ``max_seq_length`` a fine-pruned checkpoint was trained with, if it records one."""
    from nnprune.pruning_core.config import read_nnprune_config

    info = read_nnprune_config(Path(path)) or {}
    value = (info.get("training") or {}).get("max_seq_length")
    return int(value) if isinstance(value, (int, float)) and value >= 8 else None


def _task_head(task: Any) -> str | None:
    from nnprune.tasks.glue import GlueClassificationTask
    from nnprune.tasks.squad import SquadTask

    if isinstance(task, SquadTask):
        return "question-answering"
    if isinstance(task, GlueClassificationTask):
        return "sequence-classification"
    return None


def _check_head(task: Any, path: Path) -> None:
    """Refuse a checkpoint whose head cannot serve the task, before any data is tokenized."""
    import json

    head = _task_head(task)
    if head is None:
        return
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise NNPruneError(f"cannot read {path / 'config.json'}: {exc}") from None
    archs = [str(a) for a in config.get("architectures") or []]
    if archs and not any(a.endswith(_HEADS[head]) for a in archs):
        raise NNPruneError(f"checkpoint {path} is a {', '.join(archs)} model; task {task.name} "
                           f"needs a {head} head (*{_HEADS[head]})")
    if head == "sequence-classification":
        n = config.get("num_labels") or len(config.get("id2label") or {}) or None
        want = task.spec.num_labels
        if n is not None and int(n) != want:
            raise NNPruneError(f"checkpoint {path} has {n} labels but task {task.name} needs "
                               f"{want}")


def evaluate_checkpoint(task_name: str, checkpoint: str | Path, *,
                        data_dir: Path | None = None, validation_file: Path | None = None,
                        max_eval_samples: int | None = None, batch_size: int = 32,
                        max_seq_length: int | None = None,
                        tokenizer: str | None = None, progress: bool = False,
                        quantize: str | None = None) -> EvaluationResult:
    """Evaluate ``checkpoint`` on ``task_name``'s evaluation split(s).

    ``max_seq_length`` defaults to what the checkpoint was fine-pruned with (recorded in its
    ``nnprune_config.json``), else the task's ``default_max_seq_length`` (SQuAD: 384), else 128.
    ``tokenizer`` defaults to the checkpoint folder. No data source means the task's hub dataset.
    ``progress`` shows the Trainer's progress bar. ``quantize="int8"`` evaluates the dynamic
    int8 version of the model (CPU), as ``nnprune speed --quantize int8`` times it.
    """
    import torch
    from transformers import AutoTokenizer, Trainer, TrainingArguments

    from nnprune.pruning_core.checkpoint import _check_dir
    from nnprune.tasks import DataArgs, get_task

    if batch_size < 1:
        raise NNPruneError(f"--batch-size must be >= 1, got {batch_size}")
    task = get_task(task_name)
    path = _check_dir(checkpoint)
    _check_head(task, path)
    if max_seq_length is None:
        max_seq_length = training_max_seq_length(path) or int(
            getattr(task, "default_max_seq_length", 128))
    data_args = DataArgs(data_dir=data_dir, validation_file=validation_file,
                         max_eval_samples=max_eval_samples, max_seq_length=max_seq_length)
    source = tokenizer or str(path)
    try:
        tok = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        hint = "" if tokenizer else " (pass --tokenizer)"
        raise NNPruneError(f"cannot load a tokenizer from {source}{hint}: "
                           f"{str(exc).splitlines()[0]}") from None
    data = task.load_data(tok, data_args, need_train=False)
    kind = checkpoint_kind(path)
    model = load_any_checkpoint(path)
    if quantize is not None:
        from nnprune.pruning_core.speed import quantize_int8

        if quantize != "int8":
            raise NNPruneError(f"--quantize supports int8 only, got {quantize!r}")
        model = quantize_int8(model)
        kind = f"{kind}+int8"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nnprune-eval-") as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_eval_batch_size=batch_size,
                                 report_to=[],
                                 use_cpu=quantize is not None or not torch.cuda.is_available(),
                                 dataloader_num_workers=0, disable_tqdm=not progress)
        trainer = Trainer(model=model, args=args, data_collator=data.data_collator,
                          processing_class=tok)
        metrics = task.evaluate(trainer, data)
    seconds = time.perf_counter() - start
    examples = sum(_count_examples(data, split, ds) for split, ds in data.eval.items())
    features = sum(len(ds) for ds in data.eval.values())
    return EvaluationResult(task=task_name, checkpoint=str(path), kind=kind,
                            metrics={k: _plain(v) for k, v in metrics.items()},
                            main_metric=task.main_metric, max_seq_length=max_seq_length,
                            num_examples=examples, num_features=features, seconds=seconds)


def _count_examples(data: Any, split: str, ds: Any) -> int:
    raw = data.eval_examples.get(split)
    examples = getattr(raw, "examples", raw)
    return len(examples) if examples is not None else len(ds)


def _plain(value: Any) -> Any:
    # numpy scalars -> Python numbers, so the result is JSON friendly
    return value.item() if hasattr(value, "item") else value


__all__ = ["EvaluationResult", "checkpoint_kind", "evaluate_checkpoint", "load_any_checkpoint",
           "training_max_seq_length"]
