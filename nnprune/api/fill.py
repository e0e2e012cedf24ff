"""The first stage of *fill* (Hybrid Filled, Lagunas et al. 2021) from a saved fine-pruned
checkpoint: its masks baked (re-cut first to a new target speedup if asked), its emptied heads and
FFN dimensions removed exactly, and the zeros left inside the kept ones filled
(:func:`prepare_fill`). Train the result with :func:`nnprune.fill`, or your own loop with
:func:`nnprune.distillation_loss`."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from torch import nn

from nnprune.api.shrink import noise_std, refill
from nnprune.errors import NNPruneError
from nnprune.measure.latency import LatencyTable
from nnprune.pruning_core.checkpoint import load_model
from nnprune.pruning_core.compact import (CompactionReport, compact_exactly, is_compacted,
                                          restore_inside_kept)
from nnprune.pruning_core.config import parse_enum
from nnprune.pruning_core.masked import MaskedLinear
from nnprune.pruning_core.pruner import unpatch_model
from nnprune.pruning_core.run_record import RunConfig


class FillInit(str, Enum):
    """What fills the zeros inside the heads and FFN dimensions a fine-pruned model keeps
    (:func:`prepare_fill`): ``noise``, ``N(0, std)``, which gives them a small chance to regrow
    (nn_pruning's choice); ``weights``, the checkpoint's own weights there, which its masks hid
    (block pruning leaves them as trained: a masked weight gets no gradient).

    Example::

        prepared = nnprune.prepare_fill("runs/sst2-hybrid", init=nnprune.FillInit.WEIGHTS)
        init = nnprune.FillInit.parse("weights")   # from text: a one-line error if unknown
    """

    NOISE = "noise"
    WEIGHTS = "weights"

    @classmethod
    def parse(cls, value: Any, name: str = "fill init") -> "FillInit":
        """``value`` (a member, or its value in any case) as a member; anything else is a
        one-line :class:`~nnprune.NNPruneError` naming ``name`` and the known values."""
        return parse_enum(cls, value, name)


@dataclass
class PreparedFill:
    """A checkpoint baked, compacted and filled by :func:`prepare_fill`, ready to train.

    Attributes:
        model: the compacted model (eval mode).
        report: what compaction removed, per layer (``heads_removed``, ``ffn_dims_removed``,
            ``to_dict()``).
        reinitialized: how many zeros inside kept units were filled (noise or weights).
        reinit_std: the noise's std (0.0 with ``weights``, or when nothing was drawn).
        record: the checkpoint's run record (``nnprune_config.json``), if any.
        was_masked: whether the checkpoint was a masked (fine-pruned) one.
        compacted: whether the model has compacted layers (some unit was ever removed).

    Example::

        prepared = nnprune.prepare_fill("runs/sst2-hybrid")
        print(prepared.report.heads_removed, prepared.reinitialized)
        nnprune.fill(prepared.model, teacher, train_batches, steps=300)
    """

    model: nn.Module = field(repr=False)
    report: CompactionReport
    reinitialized: int
    reinit_std: float
    record: Optional[RunConfig] = field(default=None, repr=False)
    was_masked: bool = False
    compacted: bool = True


def prepare_fill(checkpoint: "str | Path", *, init: "FillInit | str" = FillInit.NOISE,
                 reinit_std: Optional[float] = None, seed: int = 42,
                 target_speedup: Optional[float] = None,
                 latency_table: Optional[LatencyTable] = None) -> PreparedFill:
    """Load the checkpoint folder ``checkpoint``, bake its final masks, compact it (exact
    removals only, checked on a probe batch: a compaction that changes the outputs is a one-line
    :class:`~nnprune.NNPruneError`) and fill the zeros inside its kept heads and FFN dimensions
    (:class:`FillInit`). Plain and compacted checkpoints work too (``noise`` only).

    Args:
        init: ``"noise"`` or ``"weights"`` (a masked checkpoint only).
        reinit_std: the noise's std; default the config's ``initializer_range`` (else 0.02);
            ``0`` leaves the zeros (what :func:`nnprune.refill` draws, seeded by ``seed``).
        target_speedup: first re-cut a masked checkpoint's masks from its scores to this speedup
            in ``latency_table``'s units (whatever target it was pruned to, the result is as fast
            as asked, keeping its highest-scored blocks).
        latency_table: the table that prices ``target_speedup`` (:func:`nnprune.latency_table`).

    Example::

        table = nnprune.latency_table(nnprune.load_config("runs/sst2-hybrid"), seq_len=128)
        prepared = nnprune.prepare_fill("runs/sst2-hybrid", target_speedup=3.0,
                                        latency_table=table)
        nnprune.fill(prepared.model, teacher, train_batches, steps=300)
    """
    init = FillInit.parse(init, "init")
    loaded = load_model(checkpoint)
    model = loaded.model
    if target_speedup is not None:
        if not loaded.is_masked or latency_table is None:
            raise NNPruneError(f"fill --target-speedup re-cuts a fine-pruned (masked) "
                               f"checkpoint's mask scores; {checkpoint} is {loaded.kind.value}")
        pruner = loaded.pruner
        # The config's own check refuses a binarizer with no global threshold to re-cut
        pruner.config = pruner.config.replace(target_density=None, target_speedup=target_speedup)
        pruner.use_latency(latency_table.model)
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
    compacted = is_compacted(model.config)
    if init is FillInit.WEIGHTS:
        return PreparedFill(model, report, restored, 0.0, loaded.record, True, compacted)
    std = noise_std(model, reinit_std)
    reinitialized = refill(model, std=std, seed=seed) if std > 0 else 0
    return PreparedFill(model, report, reinitialized, std, loaded.record, loaded.is_masked,
                        compacted)


__all__ = ["FillInit", "PreparedFill", "prepare_fill"]
