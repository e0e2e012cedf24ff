"""Binarizers: turn a grid of mask scores ``(R, C)`` into a mask of the same shape.

Hard binarizers (topK, threshold, sigmoid-threshold, magnitude) are straight-through: the
forward pass returns exact 0/1 values and the backward pass hands the mask's gradient to the
scores unchanged, as in Sanh et al. (2020). The L0 hard-concrete gate is differentiable through
its reparameterisation instead, and deterministic at eval.
"""

from __future__ import annotations

import math

import torch

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
