"""Pruning configs from the method presets (:func:`method_config`) and the check of a speedup
target (:func:`check_speedup_target`)."""

from __future__ import annotations

from typing import Any, Optional

from nnprune.pruning_core.config import PruningConfig
from nnprune.pruning_core.config import check_speedup_target as _check_speedup_target
from nnprune.pruning_core.methods import build_config


def method_config(method: str, *, teacher: Optional[str] = None,
                  target_density: Optional[float] = None, target_speedup: Optional[float] = None,
                  overrides: Optional[dict[str, Any]] = None) -> PruningConfig:
    """The :class:`PruningConfig` of the preset ``method`` (a name of :data:`METHODS`), with
    ``overrides`` (config field -> value) applied last.

    A ``teacher`` (the folder of a fine-tuned dense model) switches the distillation mix to the
    papers' 0.1 task / 0.9 teacher at temperature 2 unless the overrides set it; a
    ``target_speedup`` turns the sparsity penalties off (the latency cut sets the masks).
    Presets that distil (``hybrid``, ``hybrid-filled``) refuse to go without a teacher.

    Example::

        config = nnprune.method_config("hybrid-nt", target_density=0.3,
                                       overrides={"final_warmup": 0.2})
        pruning = nnprune.attach_masks(model, config=config, total_steps=1000)
        dense = nnprune.method_config("dense", teacher="runs/sst2-dense")   # fill's config
    """
    return build_config(method, teacher=teacher, target_density=target_density,
                        target_speedup=target_speedup, overrides=overrides)


def check_speedup_target(target_speedup: Optional[float],
                         target_density: Optional[float] = None) -> None:
    """A one-line :class:`~nnprune.NNPruneError` for a ``target_speedup`` that is not a speedup
    (``> 1``) or that comes with a ``target_density`` (one target at a time); nothing for
    ``None``. What a script checks before it loads or measures anything.

    Example::

        nnprune.check_speedup_target(2.0)          # fine
        nnprune.check_speedup_target(0.5)          # NNPruneError: ... must be > 1 (a speedup)
        nnprune.check_speedup_target(2.0, 0.3)     # NNPruneError: one target at a time ...
    """
    _check_speedup_target(target_speedup, target_density)


__all__ = ["check_speedup_target", "method_config"]
