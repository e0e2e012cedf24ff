"""Binarizers: turn a grid of mask scores ``(R, C)`` into a mask of the same shape.

Hard binarizers (topK, threshold, sigmoid-threshold, magnitude) are straight-through: the
forward pass returns exact 0/1 values and the backward pass hands the mask's gradient to the
scores unchanged, as in Sanh et al. (2020). The L0 hard-concrete gate is differentiable through
its reparameterisation instead, and deterministic at eval.

Each :class:`BinarizerKind` has one :class:`Binarizer` object (:func:`binarizer_for`), the one
home of what the choice means: how scores become a mask, whether the scores are learned, what its
threshold is (a keep fraction, a score, a probability) and which values it takes, the threshold
in score units, and which targets it reaches how (a keep-fraction schedule, global topK, a cut
shared by all layers for a target density or speedup, a density controller). The config's
checks (:class:`~nnprune.pruning_core.config.PruningConfig`), the masked layers
(:class:`~nnprune.pruning_core.masked.MaskedLinear`) and the pruner
(:class:`~nnprune.pruning_core.pruner.Pruner`) ask it instead of branching on the kind.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any, ClassVar, Optional, Union

import torch

from nnprune.errors import NNPruneError


class BinarizerKind(str, Enum):
    """How mask scores become a (0/1) mask."""

    NONE = "none"  # no pruning (dense fine-tuning baseline)
    TOPK = "topk"  # keep the top fraction of scores (movement pruning)
    THRESHOLD = "threshold"  # keep scores above a threshold
    SIGMOID_THRESHOLD = "sigmoid_threshold"  # keep sigmoid(scores) above a threshold (soft movement)
    L0 = "l0"  # hard-concrete gates (Louizos et al.), deterministic at eval
    MAGNITUDE = "magnitude"  # keep the blocks of largest mean |W|, no learned scores

# Hard-concrete stretch interval and temperature (Louizos et al. 2018; Sanh et al. 2020).
L0_LEFT, L0_RIGHT, L0_BETA = -0.1, 1.1, 2.0 / 3.0


def straight_through(hard: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Forward: ``hard`` exactly. Backward: d(out)/d(scores) = identity."""
    return hard.detach() + (scores - scores.detach())


def kept_count(numel: int, keep: float) -> int:
    """How many of ``numel`` entries a keep fraction retains (at least one)."""
    return min(numel, max(1, int(round(keep * numel))))


def topk_mask(scores: torch.Tensor, keep: float) -> torch.Tensor:
    """0/1 mask keeping exactly ``kept_count(numel, keep)`` of the largest scores."""
    flat = scores.detach().flatten()
    k = kept_count(flat.numel(), keep)
    mask = torch.zeros_like(flat)
    if k == flat.numel():
        mask.fill_(1.0)
    else:
        mask[torch.topk(flat, k, sorted=False).indices] = 1.0
    return mask.view_as(scores)


def threshold_mask(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    return (scores.detach() > threshold).to(scores.dtype)


def sigmoid_threshold_mask(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    return (torch.sigmoid(scores.detach()) > threshold).to(scores.dtype)


def hard_concrete(log_alpha: torch.Tensor, training: bool) -> torch.Tensor:
    """L0 gates in [0, 1]: sampled when training, deterministic (and exactly 0 for small
    ``log_alpha``) at eval. A training call draws from the global RNG: only the forward pass
    should make one; measurements use :func:`l0_expected_density`."""
    if training:
        u = torch.rand_like(log_alpha).clamp(1e-6, 1 - 1e-6)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / L0_BETA)
    else:
        s = torch.sigmoid(log_alpha)
    return (s * (L0_RIGHT - L0_LEFT) + L0_LEFT).clamp(0.0, 1.0)


def l0_expected_density(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(gate != 0) per entry: the differentiable expected L0 norm."""
    return torch.sigmoid(log_alpha - L0_BETA * math.log(-L0_LEFT / L0_RIGHT))


def weighted_cutoff(values: list[torch.Tensor], weights: list[int], keep: float) -> float:
    """The score value above which a ``keep`` fraction of the *weights* is retained, when entry
    ``i`` of ``values[j]`` stands for ``weights[j]`` weights (global topK over blocks of
    different sizes)."""
    flat = torch.cat([v.detach().flatten().float() for v in values])
    w = torch.cat([torch.full((v.numel(),), float(s), device=flat.device)
                   for v, s in zip(values, weights)])
    order = torch.argsort(flat, descending=True)
    cum = torch.cumsum(w[order], 0)
    target = keep * float(cum[-1])
    idx = int(torch.searchsorted(cum, torch.tensor(target, device=cum.device)).clamp(max=len(cum) - 1))
    return float(flat[order[idx]])


# ------------------------------------------------------------------------------ binarizers
class Binarizer:
    """One kind of binarizer (:class:`BinarizerKind`): how its scores become a mask, and what its
    threshold and targets mean for the config, the masked layers and the pruner. One instance per
    kind (:data:`BINARIZERS`); the flags are class attributes, the behaviour methods."""

    kind: ClassVar[BinarizerKind]
    #: It makes a mask (``none``: the dense baseline, no masked layer is built).
    prunes: ClassVar[bool] = True
    #: It learns mask scores, an optimizer parameter per block (magnitude ranks the weights).
    learns_scores: ClassVar[bool] = True
    #: Its threshold is the fraction of blocks kept, in (0, 1]: the schedule runs the keep
    #: fraction down, a target density is its final keep fraction, and global topK ranks all
    #: layers' scores at that fraction.
    keep_fraction: ClassVar[bool] = False
    #: Its masks can be cut at one score shared by every layer: the global quantile of a target
    #: density (``Pruner.quantile_masks``) or the latency budget of a target speedup.
    global_score_cut: ClassVar[bool] = False
    #: Its training masks are random samples (L0's gates): measurements use the expected mask.
    stochastic: ClassVar[bool] = False

    @property
    def reaches_density_by_regularization(self) -> bool:
        """A target density is reached by adapting lambda (the pruner's density controller),
        not by a keep-fraction schedule; only with a regularization."""
        return self.prunes and not self.keep_fraction

    def check_threshold(self, name: str, value: float) -> None:
        """One-line error for a threshold (``initial_threshold`` / ``final_threshold``) this
        binarizer does not take. Any value by default: a score cut."""

    def score_cut(self, threshold: float) -> float:
        """``threshold`` in score units (the cut a score is compared with)."""
        return threshold

    def scores(self, layer: Any) -> torch.Tensor:
        """The ``(R, C)`` tensor it ranks for ``layer`` (a ``MaskedLinear``): its learned scores."""
        return layer.mask_scores

    def hard_mask(self, scores: torch.Tensor, level: float) -> torch.Tensor:
        """The 0/1 mask of ``scores`` at threshold ``level``, each layer on its own."""
        raise NotImplementedError

    def block_mask(self, scores: torch.Tensor, level: float, training: bool,
                   cutoff: Optional[float] = None) -> torch.Tensor:
        """The mask of ``scores``: at ``cutoff``, a score shared by all layers (global topK, a
        target's quantile or latency cut) when set, else at ``level``; straight-through to
        learned scores while gradients are on."""
        if cutoff is not None:
            hard = (scores.detach() >= cutoff).to(scores.dtype)
        else:
            hard = self.hard_mask(scores, level)
        if self.learns_scores and torch.is_grad_enabled():
            return straight_through(hard, scores)
        return hard

    def soft_keep(self, scores: torch.Tensor, cut: float, width: float) -> torch.Tensor:
        """Per-score differentiable "kept" value in [0, 1] against the score ``cut``:
        ``sigmoid((s - cut) / width)``."""
        return torch.sigmoid((scores - cut) / width)

    def expected_keep(self, scores: torch.Tensor) -> torch.Tensor:
        """P(kept) per score of a stochastic binarizer's training mask."""
        raise NotImplementedError(f"{self.kind.value} masks are not random")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NoMask(Binarizer):
    """``none``: the dense baseline; no layer is masked."""

    kind = BinarizerKind.NONE
    prunes = False
    learns_scores = False

    def hard_mask(self, scores: torch.Tensor, level: float) -> torch.Tensor:
        raise ValueError("binarizer none makes no mask (no layer is masked with it)")


def _check_keep_fraction(kind: BinarizerKind, name: str, value: float) -> None:
    if not 0 < value <= 1:
        raise NNPruneError(f"{name} is the fraction of weights kept by {kind.value}; it must be in "
                           f"(0, 1], got {value}")


class TopK(Binarizer):
    """``topk``: keep the top fraction of each layer's learned scores (movement pruning)."""

    kind = BinarizerKind.TOPK
    keep_fraction = True

    def check_threshold(self, name: str, value: float) -> None:
        _check_keep_fraction(self.kind, name, value)

    def hard_mask(self, scores: torch.Tensor, level: float) -> torch.Tensor:
        return topk_mask(scores, level)


class Magnitude(TopK):
    """``magnitude``: keep the top fraction of blocks by mean ``|W|``; nothing is learned."""

    kind = BinarizerKind.MAGNITUDE
    learns_scores = False

    def scores(self, layer: Any) -> torch.Tensor:
        return layer.magnitude_scores()


class Threshold(Binarizer):
    """``threshold``: keep the scores above a threshold (a score)."""

    kind = BinarizerKind.THRESHOLD
    global_score_cut = True

    def hard_mask(self, scores: torch.Tensor, level: float) -> torch.Tensor:
        return threshold_mask(scores, level)


class SigmoidThreshold(Threshold):
    """``sigmoid_threshold``: keep the scores whose sigmoid is above a threshold, a probability in
    [0, 1) (soft movement); in score units the threshold's logit."""

    kind = BinarizerKind.SIGMOID_THRESHOLD

    def check_threshold(self, name: str, value: float) -> None:
        if not 0 <= value < 1:
            raise NNPruneError(f"{name} for sigmoid_threshold must be in [0, 1), got {value}")

    def score_cut(self, threshold: float) -> float:
        return math.log(max(threshold, 1e-6) / (1 - threshold))

    def hard_mask(self, scores: torch.Tensor, level: float) -> torch.Tensor:
        return sigmoid_threshold_mask(scores, level)


class L0(Binarizer):
    """``l0``: hard-concrete gates, sampled while training, deterministic at eval; its threshold
    is not used. Differentiable through the gates (no straight-through, no shared cut)."""

    kind = BinarizerKind.L0
    stochastic = True

    def hard_mask(self, scores: torch.Tensor, level: float) -> torch.Tensor:
        return hard_concrete(scores, training=False)

    def block_mask(self, scores: torch.Tensor, level: float, training: bool,
                   cutoff: Optional[float] = None) -> torch.Tensor:
        return hard_concrete(scores, training)

    def soft_keep(self, scores: torch.Tensor, cut: float, width: float) -> torch.Tensor:
        """P(gate != 0): the expected density, whatever the cut."""
        return l0_expected_density(scores)

    def expected_keep(self, scores: torch.Tensor) -> torch.Tensor:
        return l0_expected_density(scores)


#: The binarizer of each kind.
BINARIZERS: dict[BinarizerKind, Binarizer] = {
    b.kind: b for b in (NoMask(), TopK(), Magnitude(), Threshold(), SigmoidThreshold(), L0())}


def binarizer_for(kind: Union[BinarizerKind, Binarizer, str]) -> Binarizer:
    """The :class:`Binarizer` of ``kind`` (a kind, its value, or a binarizer)."""
    if isinstance(kind, Binarizer):
        return kind
    return BINARIZERS[BinarizerKind(kind)]


__all__ = ["BINARIZERS", "Binarizer", "BinarizerKind", "L0", "L0_BETA", "L0_LEFT", "L0_RIGHT",
           "Magnitude", "NoMask", "SigmoidThreshold", "Threshold", "TopK", "binarizer_for",
           "hard_concrete", "kept_count", "l0_expected_density", "sigmoid_threshold_mask",
           "straight_through", "threshold_mask", "topk_mask", "weighted_cutoff"]
