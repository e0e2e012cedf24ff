"""Method presets: named, typed starting points for a :class:`PruningConfig`.

Defaults follow Lagunas et al. (2021) / nn_pruning: sigmoid threshold 0 -> 0.1 with L1 on the
scores for the soft methods, 32x32 attention blocks for hybrid, FFN dimensions shared by both FFN
matrices, distillation alpha 0.9 on the teacher / 0.1 on the task at temperature 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from nnprune.errors import NNPruneError
from nnprune.pruning_core.config import PruningConfig
from nnprune.registry import Registry


@dataclass(frozen=True)
class MethodPreset:
    name: str
    summary: str
    settings: dict[str, Any] = field(default_factory=dict)
    needs_teacher: bool = False
    # Two stages in one run: fine-prune with ``settings``, then *fill* the result (compact,
    # re-initialise the zeros left inside kept heads / FFN dims, fine-tune again with
    # distillation and no pruning). See :func:`nnprune.filling.prune_then_fill`.
    fill: bool = False


METHODS: Registry[MethodPreset] = Registry("method")

_SOFT = dict(binarizer="sigmoid_threshold", initial_threshold=0.0, final_threshold=0.1,
             regularization="l1", score_init="constant", score_init_scale=0.0)
_TEACHER = dict(alpha_ce=0.1, alpha_teacher=0.9, temperature=2.0)

for _preset in (
    MethodPreset("dense", "plain fine-tuning, no pruning (the baseline and teacher)",
                 dict(binarizer="none")),
    MethodPreset("movement", "movement pruning: topK on 1x1 scores (Sanh et al. 2020)",
                 dict(binarizer="topk", attention_block="1x1", ffn_block="1x1",
                      initial_threshold=1.0, final_threshold=0.1)),
    MethodPreset("soft-movement", "soft movement: sigmoid threshold on 1x1 scores + L1",
                 dict(_SOFT, attention_block="1x1", ffn_block="1x1", attention_lambda=100.0,
                      ffn_lambda=100.0)),
    MethodPreset("l0", "L0 hard-concrete gates on 1x1 blocks + expected-L0 penalty",
                 dict(binarizer="l0", attention_block="1x1", ffn_block="1x1", regularization="l0",
                      score_init="constant", score_init_scale=2.197, attention_lambda=100.0,
                      ffn_lambda=100.0)),
    MethodPreset("magnitude", "magnitude pruning: topK on |W| (1x1), cubic schedule",
                 dict(binarizer="magnitude", attention_block="1x1", ffn_block="1x1",
                      initial_threshold=1.0, final_threshold=0.1)),
    MethodPreset("block", "block movement: 32x32 blocks everywhere, sigmoid threshold + L1",
                 dict(_SOFT, attention_block="32x32", ffn_block="32x32", attention_lambda=20.0,
                      ffn_lambda=20.0)),
    MethodPreset("hybrid", "32x32 attention blocks + FFN dimensions, distilled from a teacher",
                 dict(_SOFT, **_TEACHER, attention_block="32x32", ffn_block="ffn_dim",
                      attention_lambda=20.0, ffn_lambda=20.0), needs_teacher=True),
    MethodPreset("hybrid-filled", "hybrid, then compact and fine-tune the kept heads / FFN dims "
                 "again with their zeros re-initialised (fill), distilled from a teacher",
                 dict(_SOFT, **_TEACHER, attention_block="32x32", ffn_block="ffn_dim",
                      attention_lambda=20.0, ffn_lambda=20.0), needs_teacher=True, fill=True),
    MethodPreset("hybrid-nt", "hybrid without a teacher",
                 dict(_SOFT, attention_block="32x32", ffn_block="ffn_dim", attention_lambda=20.0,
                      ffn_lambda=20.0)),
    MethodPreset("struct", "whole attention heads + FFN dimensions",
                 dict(_SOFT, attention_block="head", ffn_block="ffn_dim", attention_lambda=20.0,
                      ffn_lambda=20.0)),
):
    METHODS.add(_preset.name, _preset)


def build_config(method: str, *, teacher: Optional[str] = None,
                 target_density: Optional[float] = None,
                 target_speedup: Optional[float] = None,
                 overrides: Optional[dict[str, Any]] = None) -> PruningConfig:
    """The preset ``method`` with ``overrides`` (from a config file or ``--set``) applied.

    A teacher switches the distillation mix to the paper's 0.1 task / 0.9 teacher unless the
    overrides set the alphas themselves.
    """
    preset = METHODS.get(method)
    settings: dict[str, Any] = {"method": method, **preset.settings}
    if teacher is not None:
        settings.update(_TEACHER)
        settings["teacher"] = teacher
    if target_density is not None:
        settings["target_density"] = target_density
    if target_speedup is not None:
        settings["target_speedup"] = target_speedup
        # The latency cut sets the masks at every step; a sparsity penalty has nothing left to
        # reach and, raised by the controller to ~100-200x the task loss, would decide the
        # scores instead of the movement signal. --set *_lambda=... still wins.
        settings.update(attention_lambda=0.0, ffn_lambda=0.0)
    config = PruningConfig().replace(**settings)
    if overrides:
        config = config.replace(**overrides)
    if preset.needs_teacher and not config.teacher:
        alt = f" or use '{method}-nt'" if f"{method}-nt" in METHODS else ""
        raise NNPruneError(f"method {method!r} distils from a teacher: pass --teacher PATH "
                           f"(a fine-tuned dense checkpoint){alt}")
    return config
