"""One fine-pruning run, end to end: config, data, model, teacher, training, evaluation, save.

The CLI's ``fine-prune`` command parses options into :class:`FinePruneArgs` and calls
:func:`fine_prune`; scripts can do the same. :func:`run_training` is the reusable middle (data,
model, teacher, ``PruningTrainer``, evaluation, counts) without the final save; *fill*
(:mod:`nnprune.filling`) trains a compacted model through it. A method preset marked ``fill``
(``hybrid-filled``) makes :func:`fine_prune` run both stages (see
:func:`nnprune.filling.prune_then_fill`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from nnprune.errors import NNPruneError

RESULTS_FILE = "nnprune_results.json"


@dataclass
class FinePruneArgs:
    task: str
    model: str
    output_dir: Path
    method: str = "hybrid-nt"
    teacher: Optional[str] = None
    target_density: Optional[float] = None
    epochs: float = 1.0
    max_steps: Optional[int] = None
    batch_size: int = 32
    eval_batch_size: Optional[int] = None
    learning_rate: float = 3e-5
    warmup: float = 0.1  # learning-rate warm-up, fraction of steps (< 1) or steps
    weight_decay: float = 0.0
    seed: int = 42
    max_seq_length: Optional[int] = None  # None: the task's default
    config_file: Optional[Path] = None
    overrides: list[str] = field(default_factory=list)  # "key=value" pruning config overrides
    resume: bool = False
    overwrite: bool = False
    data_dir: Optional[Path] = None
    train_file: Optional[Path] = None
    validation_file: Optional[Path] = None
    max_train_samples: Optional[int] = None
    max_eval_samples: Optional[int] = None
    logging_steps: int = 50
    save_steps: int = 500
    save_total_limit: int = 2
    eval_steps: Optional[int] = None
    # Only for a method that fills after pruning (hybrid-filled): the fill stage's budget.
    # Both None: the same as the pruning stage (epochs and max_steps); fill_max_steps wins
    # over fill_epochs.
    fill_epochs: float | None = None
    fill_max_steps: int | None = None

    def __post_init__(self) -> None:
        if self.target_density is not None and not 0 < self.target_density <= 1:
            raise NNPruneError(f"--target-density must be in (0, 1], got {self.target_density}")
        if self.max_steps is not None and self.max_steps < 1:
            raise NNPruneError(f"--max-steps must be >= 1, got {self.max_steps}")
        if self.epochs <= 0:
            raise NNPruneError(f"--epochs must be > 0, got {self.epochs}")
        if self.batch_size < 1:
            raise NNPruneError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.learning_rate <= 0:
            raise NNPruneError(f"--learning-rate must be > 0, got {self.learning_rate}")
        if self.fill_max_steps is not None and self.fill_max_steps < 1:
            raise NNPruneError(f"fill_max_steps must be >= 1, got {self.fill_max_steps}")
        if self.fill_epochs is not None and self.fill_epochs <= 0:
            raise NNPruneError(f"fill_epochs must be > 0, got {self.fill_epochs}")
        self.output_dir = Path(self.output_dir)


@dataclass
class FinePruneResult:
    output_dir: Path
    metrics: dict[str, float]
    main_metric: str
    density: float  # over the pruned matrices (1.0 for dense)
    group_density: dict[str, float]
    estimated_speedup: float
    compression: float
    train_seconds: float
    steps: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output_dir"] = str(self.output_dir)
        return d


def parse_overrides(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise NNPruneError(f"--set expects key=value, got {item!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def resolve_config(args: FinePruneArgs):
    """Preset < config file < --set overrides < explicit --teacher / --target-density."""
    from nnprune.pruning_core.config import load_config_file
    from nnprune.pruning_core.methods import build_config

    overrides: dict[str, Any] = {}
    method = args.method
    if args.config_file is not None:
        overrides.update(load_config_file(args.config_file))
        method = overrides.pop("method", method)
    overrides.update(parse_overrides(args.overrides))
    # Explicit flags win over the file and --set: take the keys out either way.
    file_teacher = overrides.pop("teacher", None)
    file_target = overrides.pop("target_density", None)
    teacher = args.teacher or file_teacher
    target = args.target_density if args.target_density is not None else file_target
    return build_config(method, teacher=teacher,
                        target_density=float(target) if target is not None else None,
                        overrides=overrides)


def _resume_checkpoint(args: FinePruneArgs) -> Optional[str]:
    from transformers.trainer_utils import get_last_checkpoint

    out = args.output_dir
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    if args.resume:
        if last is None:
            raise NNPruneError(f"--resume: no checkpoint-* folder in {out} to resume from")
        return last
    if last is not None and not args.overwrite:
        raise NNPruneError(f"{out} already holds checkpoints ({Path(last).name}); pass --resume "
                           "to continue that run or --overwrite to start again")
    return None


@dataclass
class TrainingRun:
    """What :func:`run_training` leaves behind: the trained model (masks at their final
    threshold), its tokenizer, the trainer, the config it trained with, the parameter count of
    the model as it computes now, and the result."""

    model: Any
    tokenizer: Any
    trainer: Any
    config: Any  # PruningConfig
    count: Any  # ParamCount
    result: FinePruneResult

    @property
    def is_main_process(self) -> bool:
        return bool(self.trainer.is_world_process_zero())


def fine_prune(args: FinePruneArgs, *, model: Any = None, tokenizer: Any = None) -> FinePruneResult:
    """Run one fine-pruning job and save the final masked model in ``args.output_dir``.

    ``model``: start from this model instead of ``task.build_model(args.model)`` (e.g. a
    compacted model, which stock ``from_pretrained`` cannot build); ``tokenizer``: instead of
    the one in ``args.model``. A method preset marked ``fill`` (``hybrid-filled``) runs
    fine-pruning into ``OUTPUT/prune`` and then fill into ``OUTPUT``
    (:func:`nnprune.filling.prune_then_fill`); its result is then a ``FillResult``.
    """
    from nnprune.pruning_core.methods import METHODS
    from nnprune.tasks import get_task

    task = get_task(args.task)
    pcfg = resolve_config(args)
    if METHODS.get(pcfg.method).fill:
        if model is not None:
            raise NNPruneError(f"method {pcfg.method!r} runs two stages from args.model; "
                               "it does not take a prebuilt model")
        from nnprune.filling import prune_then_fill

        return prune_then_fill(args, pcfg)
    return _fine_prune_once(args, pcfg, task=task, model=model, tokenizer=tokenizer)


def _fine_prune_once(args: FinePruneArgs, pcfg: Any, *, task: Any, model: Any = None,
                     tokenizer: Any = None) -> FinePruneResult:
    run = run_training(args, pcfg, task=task, model=model, tokenizer=tokenizer)
    if run.is_main_process:
        extra = {"task": args.task, "base_model": args.model, "results": run.result.to_dict(),
                 "training": training_record(args)}
        save_final(run.model, run.tokenizer, pcfg, args.output_dir, extra)
    return run.result


def training_record(args: Any) -> dict[str, Any]:
    """``args`` (a dataclass) as JSON-ready values, for ``nnprune_config.json``."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(args).items()}


def run_training(args: FinePruneArgs, pcfg: Any, *, task: Any = None, model: Any = None,
                 tokenizer: Any = None) -> TrainingRun:
    """Data, model, teacher, training and evaluation of one run with config ``pcfg``; no save.

    ``model`` (optional) replaces ``task.build_model(args.model)``; it is patched with ``pcfg``
    like a built one. The optimizer is created by the trainer when training starts, from the
    model's parameters at that time: anything that replaces layers (compaction) must happen
    before this call.
    """
    from transformers import AutoTokenizer, TrainingArguments, set_seed

    from nnprune.pruning_core.checkpoint import load_model
    from nnprune.pruning_core.counting import count_parameters
    from nnprune.pruning_core.pruner import patch_model
    from nnprune.pruning_core.trainer import PruningTrainer
    from nnprune.tasks import DataArgs, get_task

    task = task if task is not None else get_task(args.task)
    if args.max_seq_length is None:
        args.max_seq_length = task.default_max_seq_length
    resume_from = _resume_checkpoint(args)
    data_args = DataArgs(data_dir=args.data_dir, train_file=args.train_file,
                         validation_file=args.validation_file,
                         max_train_samples=args.max_train_samples,
                         max_eval_samples=args.max_eval_samples,
                         max_seq_length=args.max_seq_length, seed=args.seed)
    set_seed(args.seed)
    if tokenizer is None:
        tokenizer = _load_tokenizer(AutoTokenizer, args.model)
    data = task.load_data(tokenizer, data_args)
    if model is None:
        model = task.build_model(args.model)
    pruner = patch_model(model, pcfg)
    teacher = load_model(pcfg.teacher).model if pcfg.teacher else None

    import torch

    training_args = TrainingArguments(
        output_dir=str(args.output_dir),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size or args.batch_size,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps if args.max_steps is not None else -1,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup,
        weight_decay=args.weight_decay,
        seed=args.seed,
        logging_steps=args.logging_steps,
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
        eval_strategy="steps" if args.eval_steps else "no",
        eval_steps=args.eval_steps,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )
    eval_first = next(iter(data.eval.values()), None)
    trainer = PruningTrainer(
        model=model, args=training_args, train_dataset=data.train,
        eval_dataset=eval_first if args.eval_steps else None,
        data_collator=data.data_collator, processing_class=tokenizer,
        pruner=pruner, task=task, teacher=teacher)
    start = time.perf_counter()
    train_out = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - start
    pruner.finalize()
    metrics = task.evaluate(trainer, data)
    count = count_parameters(model, seq_len=args.max_seq_length)
    group_density = _group_density(count)
    density = pruner.density() if len(pruner) else count.density
    result = FinePruneResult(args.output_dir, metrics, task.main_metric, density, group_density,
                             count.estimated_speedup, count.compression, seconds,
                             int(train_out.global_step))
    return TrainingRun(model, tokenizer, trainer, pcfg, count, result)


def _load_tokenizer(auto_tokenizer: Any, model: str):
    try:
        return auto_tokenizer.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise NNPruneError(f"cannot load a tokenizer from {model!r}: "
                           f"{str(exc).splitlines()[0]}") from None


def _group_density(count: Any) -> dict[str, float]:
    sums: dict[str, list[int]] = {"attention": [0, 0], "ffn": [0, 0]}
    for lc in count.layers:
        for name, (rem, tot) in lc.matrices.items():
            g = sums["ffn" if name.startswith("ffn") else "attention"]
            g[0] += rem
            g[1] += tot
    return {g: (r / t if t else 1.0) for g, (r, t) in sums.items()}


def save_final(model: Any, tokenizer: Any, config: Any, output_dir: Path,
               extra: dict[str, Any]) -> None:
    """Save the final model *beside* the Trainer's checkpoint-* folders: written to a temporary
    folder first, then each file moved in, so a crash never leaves a half-written model."""
    import os
    import shutil
    import tempfile

    from nnprune.io_utils import atomic_write_text
    from nnprune.pruning_core.checkpoint import save_checkpoint

    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output_dir, prefix=".final."))
    try:
        save_checkpoint(model, staging / "model", config=config, tokenizer=tokenizer, extra=extra)
        files = sorted((staging / "model").iterdir(), key=lambda f: f.name == "config.json")
        for f in files:  # config.json last: a folder with it is complete
            os.replace(f, output_dir / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    atomic_write_text(output_dir / RESULTS_FILE,
                      json.dumps(extra.get("results", {}), indent=2, default=str) + "\n")
