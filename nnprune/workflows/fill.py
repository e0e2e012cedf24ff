"""*Fill*: the second stage of Hybrid Filled (Lagunas et al. 2021; nn_pruning's "hybrid filled").

:func:`fill` takes a fine-pruned (masked) checkpoint, bakes its final masks and compacts it: the
attention heads and FFN dimensions that pruning emptied *exactly* are physically removed
(:func:`~nnprune.pruning_core.compact.compact_model`, never the inexact ``qk_empty`` heads). The
zeros left *inside* the kept heads and FFN dimensions (block pruning leaves many) are then
filled (:class:`FillInit`): with small noise (``noise``,
:func:`~nnprune.pruning_core.compact.reinit_zeros`, ``N(0, std)`` with ``std`` the model's
``initializer_range`` unless told), or with the weights the masks hid there (``weights``,
:func:`~nnprune.pruning_core.compact.restore_inside_kept`), and the compacted model is
fine-tuned again with no pruning: the ``dense`` method, distilled from a teacher (alpha_ce 0.1,
alpha_teacher 0.9, temperature 2). Removed heads and FFN dimensions cannot come back: the
compacted layers no longer have them. The trainer (and so its optimizer) is built after
compaction, from the compacted layers' parameters.

The output folder is a compacted checkpoint like ``bertarize --compact`` writes (reloadable with
:func:`nnprune.load_pretrained`, and by stock transformers with ``trust_remote_code=True``
through the ``nnprune_modeling.py`` written beside it), with ``nnprune_results.json`` and an
``nnprune_config.json`` whose ``stages`` list records the pruning stage (the checkpoint's own
config, training and results) and the fill stage (config, training, compaction report, number
of re-initialised weights). The fill stage orders its training examples with another seed than
the run that trained the checkpoint (:func:`fresh_data_order`): it goes on to new examples
rather than the same ones again.

:func:`nnprune.workflows.fine_prune.prune_then_fill` runs both stages for a method preset marked
``fill`` (``fine-prune --method hybrid-filled``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from nnprune.errors import NNPruneError
from nnprune.measure.latency import LatencySetting, resolve_table
from nnprune.pruning_core.checkpoint import load_config, load_model
from nnprune.pruning_core.compact import (compact_exactly, is_compacted, reinit_zeros,
                                          restore_inside_kept)
from nnprune.pruning_core.config import check_speedup_target, parse_enum
from nnprune.pruning_core.latency_model import LatencyModel
from nnprune.pruning_core.masked import MaskedLinear
from nnprune.pruning_core.methods import build_config
from nnprune.pruning_core.pruner import unpatch_model
from nnprune.pruning_core.run_record import (CommandOptions, FillResult, RunConfig, Stage,
                                             StageRecord, latency_record, read_config)
from nnprune.tasks import get_task
from nnprune.workflows.options import TrainingOptions
from nnprune.workflows.speed import record_speed_check
from nnprune.workflows.training import (from_main_process, load_tokenizer, run_training,
                                        save_final)

logger = logging.getLogger(__name__)


class FillInit(str, Enum):
    """What fills the zeros inside the heads and FFN dimensions a fine-pruned model keeps."""

    NOISE = "noise"  # N(0, reinit_std): the zeros get a small chance to regrow (nn_pruning)
    WEIGHTS = "weights"  # the checkpoint's own weights there, which its masks hid


@dataclass(frozen=True)
class FillArgs:
    """One fill run (the ``nnprune fill`` command): what to fill, from which teacher, and the
    shared :class:`TrainingOptions` (``max_seq_length`` ``None``: the checkpoint's training
    length, else the task's)."""

    checkpoint: Path  # fine-pruned (masked) checkpoint; compacted or plain ones work too
    task: str
    output_dir: Path
    teacher: Optional[str] = None  # required: a fine-tuned dense checkpoint folder
    reinit_std: Optional[float] = None  # None: config.initializer_range (0.02); 0: no re-init
    fill_init: FillInit = FillInit.NOISE
    task_options: dict[str, str] = field(default_factory=dict)  # --task-option key=value
    training: TrainingOptions = field(default_factory=TrainingOptions)
    # Re-cut a masked checkpoint's scores to this speedup before compacting (latency table)
    target_speedup: Optional[float] = None
    latency: LatencySetting = field(default_factory=LatencySetting)
    latency_table: Optional[Path] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if self.latency_table is not None:
            object.__setattr__(self, "latency_table", Path(self.latency_table))
        if self.reinit_std is not None and self.reinit_std < 0:
            raise NNPruneError(f"--reinit-std must be >= 0, got {self.reinit_std}")
        object.__setattr__(self, "fill_init", parse_enum(FillInit, self.fill_init, "--fill-init"))
        if self.fill_init is FillInit.WEIGHTS and self.reinit_std is not None:
            raise NNPruneError("--reinit-std is the noise of --fill-init noise; --fill-init "
                               "weights restores the masked weights instead")
        check_speedup_target(self.target_speedup)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values, as recorded in ``nnprune_config.json``."""
        return {"checkpoint": str(self.checkpoint), "task": self.task,
                "output_dir": str(self.output_dir), "teacher": self.teacher,
                "reinit_std": self.reinit_std, "fill_init": self.fill_init.value,
                "task_options": dict(self.task_options),
                "target_speedup": self.target_speedup, "latency": self.latency.to_dict(),
                "latency_table": None if self.latency_table is None else str(self.latency_table),
                **self.training.to_dict()}


@dataclass
class PreparedFill:
    """A checkpoint baked, compacted and re-initialised, ready for training."""

    model: Any
    report: Any  # CompactionReport
    reinitialized: int
    reinit_std: float
    record: Optional[RunConfig] = None  # the checkpoint's nnprune_config.json
    was_masked: bool = False


def prepare_fill_model(checkpoint: str | Path, *, reinit_std: float | None = None,
                       seed: int = 42, target_speedup: Optional[float] = None,
                       latency: Optional[LatencyModel] = None,
                       init: FillInit = FillInit.NOISE) -> PreparedFill:
    """Load ``checkpoint``, bake and compact it (exact removals only), and fill the zeros
    inside its kept heads / FFN dimensions: ``init`` ``noise`` with ``N(0, reinit_std)``
    (default: the config's ``initializer_range``, else 0.02; ``0`` leaves them at zero),
    ``weights`` with the weights its masks hid there (a masked checkpoint only).

    With ``target_speedup`` (and the ``latency`` table's model) a masked checkpoint's masks are
    first re-cut from its scores at that speedup, in latency units
    (:meth:`~nnprune.pruning_core.pruner.Pruner.use_latency`): whatever target it was pruned
    to, the filled model is as fast as asked, keeping its highest-scored blocks."""
    import torch

    loaded = load_model(checkpoint)
    model = loaded.model
    if target_speedup is not None:
        if not loaded.is_masked or latency is None:
            raise NNPruneError(f"fill --target-speedup re-cuts a fine-pruned (masked) "
                               f"checkpoint's mask scores; {checkpoint} is {loaded.kind.value}")
        pruner = loaded.pruner
        # The config's own check refuses a binarizer with no global threshold to re-cut
        pruner.config = pruner.config.replace(target_density=None, target_speedup=target_speedup)
        pruner.use_latency(latency)
        pruner.finalize()
    restored = 0
    if init is FillInit.WEIGHTS:
        if not loaded.is_masked:
            raise NNPruneError(f"--fill-init weights restores what a fine-pruned checkpoint's "
                               f"masks hid; {checkpoint} is {loaded.kind.value} (no masks)")
        hidden = {name: m.weight.detach().clone() for name, m in model.named_modules()
                  if isinstance(m, MaskedLinear)}
        unpatch_model(model, apply_masks=True)
        # Before compaction, while the layers still have the stored weights' shapes.
        restored = restore_inside_kept(model, hidden)
    # As bertarize does: never fine-tune a compaction that changed what the model computes
    # (with ``weights`` the reference is the model with its hidden weights restored).
    report, _ = compact_exactly(model, refusal=f"refusing to fill {checkpoint}: it would not be "
                                               "the pruned model")
    if init is FillInit.WEIGHTS:
        return PreparedFill(model, report, restored, 0.0, loaded.record, True)
    std = reinit_std
    if std is None:
        std = float(getattr(model.config, "initializer_range", None) or 0.02)
    n = 0
    if std > 0:
        n = reinit_zeros(model, std=std, generator=torch.Generator().manual_seed(seed))
    return PreparedFill(model, report, n, std, loaded.record, loaded.is_masked)


def fill(args: FillArgs) -> FillResult:
    """Compact ``args.checkpoint``, re-initialise the zeros of its kept structures, fine-tune
    it with distillation from ``args.teacher`` and no pruning; save the compacted result in
    ``args.output_dir`` (see the module doc)."""
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
    task = get_task(args.task, args.task_options)
    pcfg = build_config("dense", teacher=args.teacher)  # alpha_ce 0.1, alpha_teacher 0.9, T 2
    record = read_config(ckpt) or RunConfig()
    opts = args.training
    if opts.max_seq_length is None and record.training is not None:
        opts = replace(opts, max_seq_length=record.training.max_seq_length)
    opts = fresh_data_order(opts, record.training)
    table = None
    if args.target_speedup is not None:
        seq_len = opts.max_seq_length or task.default_max_seq_length
        table = from_main_process(lambda: resolve_table(
            load_config(ckpt), args.latency.at(seq_len), args.latency_table))
        table.model.budget_ms(args.target_speedup)
    prepared = prepare_fill_model(ckpt, reinit_std=args.reinit_std, seed=args.training.seed,
                                  target_speedup=args.target_speedup,
                                  latency=table.model if table is not None else None,
                                  init=args.fill_init)
    tokenizer = _tokenizer_for(ckpt, record.base_model)
    run = run_training(task, str(ckpt), out, opts, pcfg, model=prepared.model, tokenizer=tokenizer)

    heads, ffn = run.count.unit_totals()
    base = run.result
    result = FillResult(
        **{f.name: getattr(base, f.name) for f in fields(base)},
        checkpoint=str(ckpt), compacted=is_compacted(run.model.config),
        heads_kept=heads[0], heads_original=heads[1], ffn_dims_kept=ffn[0],
        ffn_dims_original=ffn[1], reinitialized=prepared.reinitialized,
        reinit_std=prepared.reinit_std, fill_init=args.fill_init.value, prune=record.results)
    if run.is_main_process:
        options = CommandOptions({**args.to_dict(), **run.options.to_dict()})
        prune_stage = StageRecord(Stage.PRUNE, str(ckpt), masked=prepared.was_masked,
                                  pruning=record.pruning, training=record.training,
                                  results=record.results)
        fill_stage = StageRecord(Stage.FILL, str(out), pruning=pcfg, training=options,
                                 compaction=prepared.report.to_dict(),
                                 reinit_std=prepared.reinit_std, fill_init=args.fill_init.value,
                                 reinitialized=prepared.reinitialized, results=result)
        # A checkpoint that is itself a fill output brings its own stages along.
        stages = list(record.stages or [prune_stage]) + [fill_stage]
        save_final(run.model, run.tokenizer, RunConfig(
            pruning=pcfg, task=args.task, base_model=record.base_model or str(ckpt),
            filled_from=str(ckpt), compacted=result.compacted, results=result, training=options,
            stages=stages,
            latency_table=latency_record(table.to_dict()) if table is not None else None), out)
        if table is not None:
            result.speed_check = record_speed_check(out, table)
    return result


def fresh_data_order(opts: TrainingOptions, recorded: Optional[CommandOptions]) -> TrainingOptions:
    """``opts`` with another data order than the training run that made the checkpoint
    (``recorded``: its options) when both would use the same one. With one data seed the
    Trainer's sampler deals the same examples in the same order, so a fill stage would see the
    pruning stage's examples again and none of the next ones (hybrid-filled's 300 + 300 steps:
    300 steps' examples twice). A checkpoint trained by no run (``nnprune prune``) records no
    seed and leaves ``opts`` as it is."""
    theirs = recorded.order_seed if recorded is not None and recorded.seed is not None else None
    if theirs is None or opts.order_seed != theirs:
        return opts
    logger.info("the checkpoint was trained with data order seed %d: this stage orders its "
                "examples with %d, so it does not see the same ones again", theirs, theirs + 1)
    return replace(opts, data_seed=theirs + 1)


def _tokenizer_for(checkpoint: Path, base: Optional[str]) -> Any:
    """The checkpoint's tokenizer, else its base model's (fine-prune saves it with the model)."""
    try:
        return load_tokenizer(str(checkpoint))
    except NNPruneError:
        if not base or str(base) == str(checkpoint):
            raise
        return load_tokenizer(str(base))


__all__ = ["FillArgs", "FillInit", "FillResult", "PreparedFill", "fill", "fresh_data_order",
           "prepare_fill_model"]
