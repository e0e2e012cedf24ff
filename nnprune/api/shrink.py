"""Shrinking a pruned model for real: bake the masks (:func:`bertarize`), remove the emptied heads
and FFN dimensions with an exactness check (:func:`compact`), write a folder stock transformers
reloads (:func:`save_pretrained`), and *fill* (:func:`refill`, :func:`fill`): re-initialise the
zeros left inside the kept units and distil the compacted model from a teacher.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import torch
from torch import nn

from nnprune.api.fine_pruning import distillation_loss
from nnprune.errors import NNPruneError
from nnprune.pruning_core.checkpoint import save_checkpoint
from nnprune.pruning_core.compact import (EXACT_TOLERANCE, CompactionReport, compact_exactly,
                                          expand_model, reinit_zeros)
from nnprune.pruning_core.config import PruningConfig
from nnprune.pruning_core.post_training import LossFn, model_inputs
from nnprune.pruning_core.pruner import unpatch_model
from nnprune.pruning_core.run_record import RunConfig

logger = logging.getLogger(__name__)


def bertarize(model: nn.Module) -> nn.Module:
    """Bake the final masks of a masked model into plain ``nn.Linear`` weights, in place (the
    scores are dropped; the shapes stay). A plain model is returned unchanged.

    Example::

        plain = nnprune.bertarize(model)   # after fine-pruning with attach_masks
        plain.save_pretrained("out")       # a standard checkpoint, same shapes
    """
    return unpatch_model(model, apply_masks=True)


@dataclass
class CompactResult:
    """What :func:`compact` did: the compacted ``model`` (the one passed in, changed in place),
    the per-layer ``report`` and the measured ``max_abs_diff`` of its outputs on a probe batch
    against the model before compaction.

    Example::

        result = nnprune.compact(model)
        assert result.exact
        print(result.report.heads_removed, result.report.ffn_dims_removed)
    """

    model: nn.Module = field(repr=False)
    report: CompactionReport
    max_abs_diff: float
    tolerance: float

    @property
    def exact(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {"report": self.report.to_dict(), "max_abs_diff": self.max_abs_diff,
                "tolerance": self.tolerance, "exact": self.exact}


def compact(model: nn.Module, *, tokenizer: Any = None, ffn_multiple: int = 8) -> CompactResult:
    """Remove for real the attention heads and FFN dimensions pruning emptied, in place.

    A masked model has its final masks baked first. Only exact removals are made, and the
    outputs on a fixed probe batch (from ``tokenizer`` when given, else random ids) are compared
    before and after: beyond :data:`EXACT_TOLERANCE` it is a one-line
    :class:`~nnprune.NNPruneError`.

    Args:
        ffn_multiple: FFN widths are rounded up to a multiple of this (fast kernels).

    Returns:
        A :class:`CompactResult`; ``result.model`` is ``model``, now smaller.

    Example::

        result = nnprune.compact(model)
        print(result.report.heads_removed, result.max_abs_diff)
    """
    report, diff = compact_exactly(model, tokenizer=tokenizer, ffn_multiple=ffn_multiple,
                                   refusal="the model was left baked, not compacted")
    return CompactResult(model, report, diff, EXACT_TOLERANCE)


def expand(model: nn.Module) -> nn.Module:
    """The inverse of :func:`compact` for heads and FFN dimensions: a new model of the dense
    architecture in which what compaction removed is back as zeros. Same outputs (checked on a
    probe batch, else a one-line :class:`~nnprune.NNPruneError`), dense shapes: what pruning a
    compacted model again needs, with its targets counted against the dense model. A model
    compacted with a narrower hidden dimension or fewer layers is refused (their LayerNorms
    cannot come back exactly); one that is not compacted is returned as it is.

    Example::

        model = nnprune.load_pretrained("model-3x")      # compacted: 25 of 72 heads
        result = nnprune.prune(nnprune.expand(model), batches, target_speedup=5.0)
    """
    return expand_model(model)


def save_pretrained(model: nn.Module, directory: "str | Path", *, tokenizer: Any = None,
                    config: Optional[PruningConfig] = None,
                    record: Optional[RunConfig] = None, overwrite: bool = True) -> Path:
    """Write ``model`` as a ``save_pretrained`` folder, atomically (a crash leaves the old folder
    or none, never half of one). ``directory`` may be missing, empty, or a folder nnprune wrote
    (replaced whole; ``overwrite=False`` refuses it); a file, or a folder holding files nnprune
    did not write, is a one-line :class:`~nnprune.NNPruneError` and stays as it is
    (docs/outputs.md). A compacted model also gets ``nnprune_modeling.py`` and an
    ``auto_map``, so stock ``AutoModelFor...from_pretrained(dir, trust_remote_code=True)``
    reloads it without nnprune; :func:`nnprune.load_pretrained` reloads any of them. ``config``
    or ``record`` (how it was made) go to ``nnprune_config.json``; a masked model needs one of
    them to reload with its masks (:meth:`FinePruning.save` passes its own).

    Example::

        nnprune.save_pretrained(result.model, "model-2x", tokenizer=tokenizer)
        AutoModelForSequenceClassification.from_pretrained("model-2x", trust_remote_code=True)
    """
    out = Path(directory)
    return save_checkpoint(model, out, config=config, tokenizer=tokenizer, record=record,
                           overwrite=overwrite)


def refill(model: nn.Module, std: Optional[float] = None, seed: int = 42) -> int:
    """Re-initialise with ``N(0, std)`` the zero weights left *inside* the kept heads and FFN
    dimensions of a compacted (or baked) model, the first half of *fill* (Lagunas et al. 2021):
    block pruning leaves many, and fine-tuning again with them free recovers accuracy.
    ``std`` defaults to the config's ``initializer_range``. Returns the number of weights set.

    Example::

        nnprune.compact(model); nnprune.refill(model)
        nnprune.fill(model, teacher, train_batches, steps=300)
    """
    std = noise_std(model, std)
    if std < 0:
        raise NNPruneError(f"std must be >= 0, got {std}")
    if std == 0:
        return 0
    return reinit_zeros(model, std=std, generator=torch.Generator().manual_seed(seed))


def noise_std(model: nn.Module, std: Optional[float] = None) -> float:
    """``std``, or by default the std *fill* re-initialises with: the config's
    ``initializer_range``, else 0.02."""
    return float(getattr(model.config, "initializer_range", None) or 0.02) if std is None else std


FillHook = Callable[[int, float], None]  # (step done, its loss)


def fill(model: nn.Module, teacher: Optional[nn.Module], batches: Iterable[dict[str, Any]], *,
         steps: int, learning_rate: float = 5e-5, weight_decay: float = 0.0,
         alpha_task: float = 0.1, alpha_teacher: float = 0.9, temperature: float = 2.0,
         loss_fn: Optional[LossFn] = None, on_step: Optional[FillHook] = None) -> nn.Module:
    """The second half of *fill*: fine-tune a compacted model, distilled from ``teacher``, for
    ``steps`` optimizer steps (AdamW, linear decay, no pruning). A minimal loop on purpose: with
    your own loop, call :func:`distillation_loss` there instead.

    Args:
        batches: training batches (dicts of tensors with labels); cycled when shorter than
            ``steps``.
        teacher: the dense fine-tuned model (``None``: the task loss alone).
        loss_fn: ``loss_fn(model, batch) -> scalar`` task loss; default ``model(**batch).loss``.
        on_step: called as ``on_step(step, loss)`` after every step (log, evaluate, stop early by
            raising).

    Returns:
        The model, in eval mode.

    Example::

        nnprune.refill(small)
        nnprune.fill(small, dense_teacher, train_batches, steps=300,
                     on_step=lambda step, loss: print(step, loss))
    """
    if steps < 1:
        raise NNPruneError(f"steps must be >= 1, got {steps}")
    batches = list(batches)
    if not batches:
        raise NNPruneError("fill needs training batches")
    if teacher is not None:
        teacher.eval().requires_grad_(False)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate,
                            weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / steps))
    for step in range(steps):
        batch = batches[step % len(batches)]
        if loss_fn is None:
            out = model(**model_inputs(model, batch))
            task = out.loss
        else:
            # the outputs of the forward loss_fn runs, for the distillation: one forward a step
            seen: list[Any] = []
            hook = model.register_forward_hook(lambda _m, _a, output: seen.append(output))
            try:
                task = loss_fn(model, batch)
            finally:
                hook.remove()
            out = seen[-1] if seen else None
        loss = task
        if teacher is not None:
            if out is None:
                raise NNPruneError("loss_fn must run the model (its logits are distilled)")
            with torch.no_grad():
                t = teacher(**model_inputs(teacher, batch))
            loss = alpha_task * task + alpha_teacher * distillation_loss(
                out.logits, t.logits, temperature)
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if on_step is not None:
            on_step(step + 1, float(loss.detach()))
    return model.eval()


__all__ = ["CompactResult", "bertarize", "compact", "expand", "fill", "refill", "save_pretrained"]
