"""``MaskedLinear``: an ``nn.Linear`` whose weight is multiplied by a block mask.

The mask scores live on a grid ``(R, C) = (out // block_rows, in // block_cols)``; the mask of
the grid is expanded to the weight's ``(out, in)`` shape. Rows, columns, attention heads and FFN
dimensions are all block grids of a particular shape (see :func:`resolve_block`). An FFN-out
layer can borrow its scores from the FFN-in layer of the same FFN, so one score vector of size
``intermediate`` decides both the FFN-in rows and the FFN-out columns; the second FFN-in matrix
of a gated FFN (T5's ``wi_1``) borrows the same vector for its rows.

Keeping ``weight`` and ``bias`` as the same parameters (same names) as the original linear layer
makes patching and un-patching exact inverses, and keeps checkpoints' weight names unchanged.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from nnprune.errors import NNPruneError
from nnprune.pruning_core.architectures import Role
from nnprune.pruning_core.binarizers import Binarizer, BinarizerKind, binarizer_for
from nnprune.pruning_core.config import BlockSpec, ScoreInit, StructureKind


def resolve_block(spec: BlockSpec, role: Role, out_features: int, in_features: int,
                  num_heads: int, where: str = "", parts: int = 1) -> tuple[int, int]:
    """Concrete ``(block_rows, block_cols)`` for ``spec`` on a weight ``(out, in)``.

    Heads are ``out // num_heads`` rows of Q/K/V (``out // (3 * num_heads)`` of a fused QKV
    layer, ``parts`` = 3: one block per head of each section) and ``in // num_heads`` columns of
    the attention output; FFN dimensions are rows of FFN-in and columns of FFN-out.
    """
    kind = spec.kind
    if kind is StructureKind.BLOCK:
        rows, cols = spec.rows, spec.cols
    elif kind is StructureKind.ROW:
        rows, cols = 1, in_features
    elif kind is StructureKind.COLUMN:
        rows, cols = out_features, 1
    elif kind is StructureKind.HEAD:
        if role is Role.ATTN_OUTPUT:
            rows, cols = out_features, in_features // num_heads
        else:
            rows, cols = out_features // (num_heads * parts), in_features
    elif kind is StructureKind.FFN_DIM:
        rows, cols = (1, in_features) if role is Role.FFN_IN else (out_features, 1)
    else:  # DENSE layers are never patched
        raise ValueError(f"no block for {spec}")
    if rows < 1 or cols < 1 or out_features % rows or in_features % cols:
        raise NNPruneError(
            f"block shape {spec} ({rows}x{cols}) does not divide the weight "
            f"{out_features}x{in_features} of {where or role.value}")
    return rows, cols


class MaskedLinear(nn.Linear):
    """``y = x (W ⊙ M)^T + b ⊙ m_row`` with ``M`` expanded from a block mask.

    Shapes: ``x (..., in)``, ``W (out, in)``, block mask ``(R, C)``, ``M (out, in)``,
    ``m_row (out,)`` (a bias entry is dropped with its fully masked row). With ``row_tiles`` = t
    the rows of ``W`` are t stacked sections ``(out / t, in)`` that all take the same mask
    ``(R, C)`` (ModernBERT's Wi ``[input; gate]``: one score per FFN dimension decides both rows).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 block_rows: int, block_cols: int, binarizer: "BinarizerKind | Binarizer",
                 score_init: ScoreInit = ScoreInit.CONSTANT, score_init_scale: float = 0.0,
                 score_source: Optional["MaskedLinear"] = None, row_tiles: int = 1,
                 device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.block_rows, self.block_cols = block_rows, block_cols
        self.row_tiles = row_tiles
        if out_features % (row_tiles * block_rows):
            raise ValueError(f"{row_tiles} sections of {block_rows}-row blocks do not divide "
                             f"{out_features} rows")
        self.grid = (out_features // (row_tiles * block_rows), in_features // block_cols)
        self.binarizer = binarizer_for(binarizer)
        # Current and final schedule values (keep fraction for topK/magnitude, else threshold).
        self.threshold = 1.0
        self.final_threshold = 1.0
        # Set by the pruner for global topK: a score cutoff shared by all layers.
        self.global_cutoff: Optional[float] = None
        # Plain attributes, not submodules: a shared FFN pair would otherwise form a module cycle.
        # ``partners``: the layers borrowing this one's scores (FFN-out, a gated FFN's 2nd FFN-in).
        object.__setattr__(self, "score_source", score_source)
        object.__setattr__(self, "partners", [])
        self._cached_mask: Optional[torch.Tensor] = None
        if score_source is None and self.binarizer.learns_scores:
            self.mask_scores = nn.Parameter(torch.empty(self.grid, device=device, dtype=dtype))
            init_scores(self.mask_scores, score_init, score_init_scale)
        else:
            self.register_parameter("mask_scores", None)
        if score_source is not None:
            # FFN-out borrows the transposed grid, another FFN-in the same one.
            if score_source.grid not in (self.grid, (self.grid[1], self.grid[0])):
                raise ValueError(f"shared scores {score_source.grid} do not fit grid {self.grid}")
            score_source.partners.append(self)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_linear(cls, linear: nn.Linear, **kwargs) -> "MaskedLinear":
        """Wrap ``linear``, reusing its weight and bias parameters (no copy)."""
        w = linear.weight
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None,
                    device=w.device, dtype=w.dtype, **kwargs)
        layer.weight = linear.weight
        if linear.bias is not None:
            layer.bias = linear.bias
        return layer

    def to_linear(self, apply_mask: bool = True) -> nn.Linear:
        """A plain ``nn.Linear``; with ``apply_mask`` its weights are multiplied by the eval mask."""
        w = self.weight
        linear = nn.Linear(self.in_features, self.out_features, self.bias is not None,
                           device=w.device, dtype=w.dtype)
        if not apply_mask:
            linear.weight, linear.bias = self.weight, self.bias
            return linear
        with torch.no_grad():
            block = self.block_mask(training=False)
            linear.weight.copy_(self.weight * self.expand(block))
            if self.bias is not None:
                linear.bias.copy_(self.bias * self.row_mask(block))
        return linear

    # ------------------------------------------------------------------ masks
    @property
    def owns_scores(self) -> bool:
        return self.score_source is None

    @property
    def block_size(self) -> int:
        """Weights of this layer one score decides: its block in every row section."""
        return self.block_rows * self.block_cols * self.row_tiles

    @property
    def weights_per_score(self) -> int:
        """Weights one score decides: its block, plus the partners' blocks for a shared FFN."""
        return self.block_size + sum(p.block_size for p in self.partners)

    def expand(self, block: torch.Tensor) -> torch.Tensor:
        """``(R, C)`` block mask -> ``(out, in)`` weight mask."""
        r, c = self.grid
        mask = (block[:, None, :, None]
                .expand(r, self.block_rows, c, self.block_cols)
                .reshape(self.out_features // self.row_tiles, self.in_features))
        return mask.repeat(self.row_tiles, 1) if self.row_tiles > 1 else mask

    def row_mask(self, block: torch.Tensor) -> torch.Tensor:
        """``(out,)`` mask of the bias: 0 where the whole weight row is masked."""
        rows = block.amax(dim=1).repeat_interleave(self.block_rows)
        return rows.repeat(self.row_tiles) if self.row_tiles > 1 else rows

    def magnitude_scores(self) -> torch.Tensor:
        """``(R, C)`` mean |W| per block; an FFN-in layer adds its partners' blocks (FFN-out
        columns, a gated FFN's other FFN-in rows)."""
        r, c = self.grid
        w = self.weight.detach().abs()
        scores = w.reshape(self.row_tiles, r, self.block_rows, c, self.block_cols).mean(dim=(0, 2, 4))
        for partner in self.partners:
            scores = scores + partner.magnitude_scores().reshape(scores.shape)
        return scores

    def score_tensor(self) -> torch.Tensor:
        """The tensor ranked by topK/global topK: learned scores, or block magnitudes."""
        return self.binarizer.scores(self)

    def block_mask(self, training: Optional[bool] = None) -> torch.Tensor:
        """The ``(R, C)`` mask at the current threshold (training) or the final one (eval).

        Computed afresh from the current scores: a training L0 mask is a new random sample
        (it draws from the global RNG), so statistics must not call this; see
        :meth:`kept_weights`. Only the forward pass reuses the FFN-in layer's mask.
        """
        training = self.training if training is None else training
        if self.score_source is not None:
            return self.score_source.block_mask(training).reshape(self.grid)
        level = self.threshold if training else self.final_threshold
        # global_cutoff: a cut shared by all layers (global topK, the target-density quantile or
        # the latency cut of the threshold binarizers; see Pruner.uses_global_cutoff)
        return self.binarizer.block_mask(self.score_tensor(), level, training, self.global_cutoff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        src = self.score_source
        if src is not None and self.training and src._cached_mask is not None:
            # FFN-out (or a gated FFN's 2nd FFN-in): the very mask (and L0 sample) of this
            # forward's FFN-in layer, which runs first.
            block = src._cached_mask.reshape(self.grid)
        else:
            block = self.block_mask()
        if self.partners:
            # The partners reuse this exact mask (same L0 sample, same graph).
            self._cached_mask = block if self.training else None
        weight = self.weight * self.expand(block)
        bias = self.bias * self.row_mask(block) if self.bias is not None else None
        return F.linear(x, weight, bias)

    @torch.no_grad()
    def kept_weights(self, training: bool = False) -> float:
        """Number of weights whose mask is non-zero (eval mask unless ``training``).

        For training L0 gates this is the *expected* number, ``sum P(gate != 0)`` times the block
        size (a float): a measurement never draws a gate sample, so logging cannot move the RNG
        stream (dropout, gates, data order) of the training. Every other mask is deterministic
        and the count is a whole number.
        """
        if training and self.binarizer.stochastic:
            owner = self.score_source if self.score_source is not None else self
            expected = self.binarizer.expected_keep(owner.mask_scores.detach().float())
            return float(expected.sum()) * self.block_size
        block = self.block_mask(training)
        return int((block != 0).sum()) * self.block_size

    def extra_repr(self) -> str:
        tiles = f", row_tiles={self.row_tiles}" if self.row_tiles > 1 else ""
        return (f"{super().extra_repr()}, block={self.block_rows}x{self.block_cols}{tiles}, "
                f"binarizer={self.binarizer.kind.value}, shared={self.score_source is not None}")


def init_scores(scores: torch.Tensor, kind: ScoreInit, scale: float) -> None:
    with torch.no_grad():
        if kind is ScoreInit.CONSTANT:
            scores.fill_(scale)
        elif kind is ScoreInit.IMPORTANCE:  # set from the importance once it is measured
            scores.zero_()
        elif kind is ScoreInit.UNIFORM:
            scores.uniform_(-scale, scale)
        elif kind is ScoreInit.KAIMING:
            nn.init.kaiming_uniform_(scores, a=math.sqrt(5))
            if scale:
                scores.mul_(scale)
