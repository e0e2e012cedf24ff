"""*Fill*: the second stage of Hybrid Filled (Lagunas et al. 2021; nn_pruning's "hybrid filled").

:func:`fill` takes a fine-pruned (masked) checkpoint, bakes its final masks and compacts it: the
attention heads and FFN dimensions that pruning emptied *exactly* are physically removed
(:func:`~nnprune.pruning_core.compact.compact_model`, never the inexact ``qk_empty`` heads). The
zeros left *inside* the kept heads and FFN dimensions (block pruning leaves many) are then
re-initialised with small noise (:func:`~nnprune.pruning_core.compact.reinit_zeros`, ``N(0,
std)`` with ``std`` the model's ``initializer_range`` unless told), and the compacted model is
fine-tuned again with no pruning: the ``dense`` method, distilled from a teacher (alpha_ce 0.1,
alpha_teacher 0.9, temperature 2). Removed heads and FFN dimensions cannot come back: the
compacted layers no longer have them. The trainer (and so its optimizer) is built after
compaction, from the compacted layers' parameters.

The output folder is a compacted checkpoint like ``bertarize --compact`` writes (reloadable with
:func:`nnprune.load_pretrained`, and by stock transformers with ``trust_remote_code=True``
through the ``nnprune_modeling.py`` written beside it), with ``nnprune_results.json`` and an
``nnprune_config.json`` whose ``stages`` list records the pruning stage (the checkpoint's own
config, training and results) and the fill stage (config, training, compaction report, number
of re-initialised weights).

:func:`prune_then_fill` runs both stages for a method preset marked ``fill``
(``fine-prune --method hybrid-filled``): fine-pruning into ``OUTPUT/prune``, then fill from there
into ``OUTPUT``. The fill stage trains for the same budget as the pruning stage (``--epochs`` /
``--max-steps``) unless ``FinePruneArgs.fill_epochs`` / ``fill_max_steps`` say otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from nnprune.errors import NNPruneError
from nnprune.runner import RESULTS_FILE, FinePruneArgs, FinePruneResult

PRUNE_SUBDIR = "prune"  # where fine-prune --method hybrid-filled puts its pruning stage


@dataclass
class FillArgs:
    """Options of one fill run (the ``nnprune fill`` command)."""

    checkpoint: Path  # fine-pruned (masked) checkpoint; compacted or plain ones work too
    task: str
    output_dir: Path
    teacher: str | None = None  # required: a fine-tuned dense checkpoint folder
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 32
    eval_batch_size: int | None = None
    learning_rate: float = 3e-5
    warmup: float = 0.1
    weight_decay: float = 0.0
    seed: int = 42
    max_seq_length: int | None = None  # None: the checkpoint's training length, else the task's
    reinit_std: float | None = None  # None: config.initializer_range (0.02); 0: no re-init
    resume: bool = False
    overwrite: bool = False
    data_dir: Path | None = None
    train_file: Path | None = None
    validation_file: Path | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    logging_steps: int = 50
    save_steps: int = 500
    save_total_limit: int = 2
    eval_steps: int | None = None

    def __post_init__(self) -> None:
        self.checkpoint = Path(self.checkpoint)
        self.output_dir = Path(self.output_dir)
        if self.reinit_std is not None and self.reinit_std < 0:
            raise NNPruneError(f"--reinit-std must be >= 0, got {self.reinit_std}")

    def training_args(self) -> FinePruneArgs:
        """The run's options as the runner takes them (validated there)."""
        return FinePruneArgs(
            task=self.task, model=str(self.checkpoint), output_dir=self.output_dir,
            method="dense", teacher=self.teacher, epochs=self.epochs, max_steps=self.max_steps,
            batch_size=self.batch_size, eval_batch_size=self.eval_batch_size,
            learning_rate=self.learning_rate, warmup=self.warmup, weight_decay=self.weight_decay,
            seed=self.seed, max_seq_length=self.max_seq_length, resume=self.resume,
            overwrite=self.overwrite, data_dir=self.data_dir, train_file=self.train_file,
            validation_file=self.validation_file, max_train_samples=self.max_train_samples,
            max_eval_samples=self.max_eval_samples, logging_steps=self.logging_steps,
            save_steps=self.save_steps, save_total_limit=self.save_total_limit,
            eval_steps=self.eval_steps)


@dataclass
class FillResult(FinePruneResult):
    """A :class:`FinePruneResult` of the filled model (density, compression and speedup against
    the original dense architecture) plus what fill did."""

    checkpoint: str = ""  # the fine-pruned checkpoint that was filled
    compacted: bool = False  # whether any head or FFN dimension was removed (ever)
    heads_kept: int = 0
    heads_original: int = 0
    ffn_dims_kept: int = 0
    ffn_dims_original: int = 0
    reinitialized: int = 0  # zero weights inside kept heads / FFN dims set to N(0, std)
    reinit_std: float = 0.0
    prune: dict[str, Any] | None = None  # the pruning stage's results, when it saved them


@dataclass
class PreparedFill:
    """A checkpoint baked, compacted and re-initialised, ready for training."""

    model: Any
    report: Any  # CompactionReport
    reinitialized: int
    reinit_std: float
    info: dict[str, Any] = field(default_factory=dict)  # the checkpoint's nnprune_config.json
    was_masked: bool = False


def prepare_fill_model(checkpoint: str | Path, *, reinit_std: float | None = None,
                       seed: int = 42) -> PreparedFill:
    """Load ``checkpoint``, bake and compact it (exact removals only), and re-initialise the
    zeros inside its kept heads / FFN dimensions with ``N(0, reinit_std)`` (default: the
    config's ``initializer_range``, else 0.02; ``0`` leaves them at zero)."""
    import torch

    from nnprune.pruning_core.checkpoint import load_model
    from nnprune.pruning_core.compact import (EXACT_TOLERANCE, compact_model, max_abs_diff,
                                              model_outputs, probe_inputs, reinit_zeros)

    loaded = load_model(checkpoint)
    model = loaded.model
    inputs = probe_inputs(model.config)
    reference = model_outputs(model, inputs)
    report = compact_model(model, allow_inexact=False, ffn_multiple=8)
    # As bertarize does: never fine-tune a compaction that changed what the model computes.
    diff = max_abs_diff(model_outputs(model, inputs), reference)
    if diff > EXACT_TOLERANCE:
        raise NNPruneError(f"compacting {checkpoint} changed its outputs by {diff:.3g} "
                           f"(> {EXACT_TOLERANCE:g}); "
                           "refusing to fill a model that is not the pruned one")
    std = reinit_std
    if std is None:
        std = float(getattr(model.config, "initializer_range", None) or 0.02)
    n = 0
    if std > 0:
        n = reinit_zeros(model, std=std, generator=torch.Generator().manual_seed(seed))
    return PreparedFill(model, report, n, std, dict(loaded.info), loaded.is_masked)


def fill(args: FillArgs) -> FillResult:
    """Compact ``args.checkpoint``, re-initialise the zeros of its kept structures, fine-tune
    it with distillation from ``args.teacher`` and no pruning; save the compacted result in
    ``args.output_dir`` (see the module doc)."""
    from nnprune.pruning_core.compact import is_compacted
    from nnprune.pruning_core.methods import build_config
    from nnprune.runner import run_training, save_final, training_record
    from nnprune.tasks import get_task

    ckpt, out = args.checkpoint, args.output_dir
    if not ckpt.exists():
        raise NNPruneError(f"checkpoint {ckpt} does not exist")
    if not args.teacher:
        raise NNPruneError("fill distils from a teacher: pass --teacher PATH (a fine-tuned dense "
                           "checkpoint)")
    if not Path(args.teacher).exists():
        raise NNPruneError(f"--teacher {args.teacher} does not exist")
    if out.exists() and out.resolve() == ckpt.resolve():
        raise NNPruneError("--output-dir must differ from the checkpoint (fill writes a new model)")
    train_args = args.training_args()  # validates the training options before any loading
    task = get_task(args.task)
    pcfg = build_config("dense", teacher=args.teacher)  # alpha_ce 0.1, alpha_teacher 0.9, T 2
    prepared = prepare_fill_model(ckpt, reinit_std=args.reinit_std, seed=args.seed)
    info = prepared.info
    if train_args.max_seq_length is None:
        train_args.max_seq_length = (info.get("training") or {}).get("max_seq_length")
    tokenizer = _tokenizer_for(ckpt, info)
    run = run_training(train_args, pcfg, task=task, model=prepared.model, tokenizer=tokenizer)

    heads, ffn = _structure_totals(run.count)
    base = run.result
    result = FillResult(
        **{f.name: getattr(base, f.name) for f in fields(base)},
        checkpoint=str(ckpt), compacted=is_compacted(run.model.config),
        heads_kept=heads[0], heads_original=heads[1], ffn_dims_kept=ffn[0],
        ffn_dims_original=ffn[1], reinitialized=prepared.reinitialized,
        reinit_std=prepared.reinit_std, prune=info.get("results"))
    if run.is_main_process:
        record = dict(training_record(args))
        record["max_seq_length"] = train_args.max_seq_length
        prune_stage = {"stage": "prune", "checkpoint": str(ckpt), "masked": prepared.was_masked,
                       "pruning": info.get("pruning"), "training": info.get("training"),
                       "results": info.get("results")}
        fill_stage = {"stage": "fill", "checkpoint": str(out), "pruning": pcfg.to_dict(),
                      "training": record, "compaction": prepared.report.to_dict(),
                      "reinit_std": prepared.reinit_std,
                      "reinitialized": prepared.reinitialized, "results": result.to_dict()}
        # A checkpoint that is itself a fill output brings its own stages along.
        stages = list(info.get("stages") or [prune_stage]) + [fill_stage]
        extra = {"task": args.task, "base_model": info.get("base_model", str(ckpt)),
                 "filled_from": str(ckpt), "compacted": result.compacted,
                 "results": result.to_dict(), "training": record, "stages": stages}
        save_final(run.model, run.tokenizer, pcfg, out, extra)
    return result


def prune_then_fill(args: FinePruneArgs, pcfg: Any) -> FillResult:
    """Both stages of a ``fill`` method preset (``hybrid-filled``): fine-prune ``args.model``
    with ``pcfg`` into ``OUTPUT/prune``, then :func:`fill` it into ``OUTPUT`` with the same
    teacher, data and optimiser settings.

    The fill stage trains for ``args.fill_max_steps`` steps, else ``args.fill_epochs`` epochs,
    else the pruning stage's budget (``max_steps`` / ``epochs``). With ``resume`` a pruning stage
    that already saved its final model is not run again, and the fill stage resumes from its
    own checkpoints in ``OUTPUT`` when it has some.
    """
    from transformers.trainer_utils import get_last_checkpoint

    from nnprune.runner import _fine_prune_once, _resume_checkpoint
    from nnprune.tasks import get_task

    if not pcfg.teacher:  # pragma: no cover - build_config refuses fill presets without one
        raise NNPruneError(f"method {pcfg.method!r} distils from a teacher: pass --teacher PATH")
    out = Path(args.output_dir)
    task = get_task(args.task)
    fill_has_checkpoints = out.is_dir() and get_last_checkpoint(str(out)) is not None
    if not args.resume:
        _resume_checkpoint(args)  # refuse now, not after the pruning stage, if OUTPUT is in use
    stage1 = replace(args, output_dir=out / PRUNE_SUBDIR, overrides=list(args.overrides))
    prune_dir = stage1.output_dir
    finished = (prune_dir / RESULTS_FILE).is_file() and (prune_dir / "config.json").is_file()
    if not (args.resume and finished):  # resuming after the pruning stage saved: skip it
        _fine_prune_once(stage1, pcfg, task=task)
    _barrier()  # other processes read OUTPUT/prune only once the main one has written it
    if args.fill_max_steps is not None:
        epochs, max_steps = args.epochs, args.fill_max_steps
    elif args.fill_epochs is not None:
        epochs, max_steps = args.fill_epochs, None
    else:
        epochs, max_steps = args.epochs, args.max_steps
    fill_args = FillArgs(
        checkpoint=prune_dir, task=args.task, output_dir=out, teacher=pcfg.teacher,
        epochs=epochs, max_steps=max_steps, batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size, learning_rate=args.learning_rate,
        warmup=args.warmup, weight_decay=args.weight_decay, seed=args.seed,
        max_seq_length=stage1.max_seq_length, resume=args.resume and fill_has_checkpoints,
        overwrite=args.overwrite, data_dir=args.data_dir, train_file=args.train_file,
        validation_file=args.validation_file, max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples, logging_steps=args.logging_steps,
        save_steps=args.save_steps, save_total_limit=args.save_total_limit,
        eval_steps=args.eval_steps)
    return fill(fill_args)


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _tokenizer_for(checkpoint: Path, info: dict[str, Any]) -> Any:
    """The checkpoint's tokenizer, else its base model's (fine-prune saves it with the model)."""
    from transformers import AutoTokenizer

    from nnprune.runner import _load_tokenizer

    try:
        return _load_tokenizer(AutoTokenizer, str(checkpoint))
    except NNPruneError:
        base = info.get("base_model")
        if not base or str(base) == str(checkpoint):
            raise
        return _load_tokenizer(AutoTokenizer, str(base))


def _structure_totals(count: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """((heads kept, original), (FFN dims kept, original)) over all layers and attentions."""
    heads = [0, 0]
    ffn = [0, 0]
    for lc in count.layers:
        for kept, orig in lc.heads.values():
            heads[0] += kept
            heads[1] += orig
        ffn[0] += lc.ffn_dims[0]
        ffn[1] += lc.ffn_dims[1]
    return (heads[0], heads[1]), (ffn[0], ffn[1])


__all__ = ["PRUNE_SUBDIR", "FillArgs", "FillResult", "PreparedFill", "fill", "prepare_fill_model",
           "prune_then_fill"]
