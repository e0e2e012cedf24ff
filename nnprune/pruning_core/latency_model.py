"""Latency in units a pruner can cut: a per-layer model of one attention block by heads kept and
one FFN by dimensions kept, and the global score cut that meets a latency budget.

:class:`LatencyModel` is pure data (measured by :mod:`nnprune.measure.latency` on the machine
that will run the model, for one batch size / sequence length / thread count / device):

* ``attention_ms[i]``: what one attention block with ``heads[i]`` heads adds to a forward,
  relative to the same block with no head (``attention_ms[0] == 0`` at ``heads[0] == 0``);
* ``ffn_ms[i]``: the same for one FFN with ``ffn_dims[i]`` dimensions;
* ``fixed_ms``: everything no head or FFN dimension removes (embeddings, layer norms, residual
  adds, the task head, and what an empty block still costs).

A model with ``h_l`` heads and ``f_l`` FFN dimensions in layer ``l`` is predicted to take
``fixed_ms + sum_l attention(h_l) + ffn(f_l)``, each term linearly interpolated between grid
points. Both curves are non-decreasing (measurement noise is flattened when the model is built),
so fewer units never predict a slower model and the cut below is a monotone search.

Width and depth (issue 25). A table measured at several widths of the residual stream
(``widths``, up to the dense ``hidden``) also has, per width ``w``: how much an attention block
and an FFN take relative to full width (``attention_scale``, ``ffn_scale``: the curves above are
scaled, not re-measured per head count), what each layer costs beyond its units (``layer_ms``:
its LayerNorms, residual adds, kernel launches; what removing the layer saves on top of its
units) and what no layer has (``base_ms``: embeddings, task head). A model ``w`` wide that keeps
the layers ``K`` is predicted to take ``base(w) + |K| layer(w) + sum_{l in K} a(w) attention(h_l)
+ f(w) ffn(f_l)``; at full width with every layer, the formula above (``fixed_ms = base(H) + L
layer(H)``). A table without them prices heads and FFN dimensions only.

The scales are measured twice per width: with every head (FFN dimension) and with a few
(``scale_heads``, ``scale_dims``: ``attention_scale_low``, ``ffn_scale_low``), because a thin
matmul on a narrow stream runs further from peak than the full-width curves say and highly
pruned models live there; a layer's scale is interpolated linearly in its unit count between the
two (the low one below ``scale_heads``).

:class:`LatencyCut` turns a budget in milliseconds into the global score cutoff of a patched
model. Units only pay off when whole: a head counts as removed when its value rows or its
attention-output columns are all masked (what exact compaction removes), an FFN dimension when
its FFN-in row or FFN-out column is; a head with only some of its 32x32 blocks masked costs as
much as a full one. For ``hybrid`` this means the blocks masked inside kept heads are free in
latency terms (``hybrid-filled`` refills them); ``struct`` masks whole heads, where the two
views agree.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence

import torch

from nnprune.errors import NNPruneError
from nnprune.pruning_core.architectures import LinearSite, Role
from nnprune.pruning_core.config import check_speedup_target
from nnprune.pruning_core.masked import MaskedLinear


def _interp(x: float, xs: Sequence[int], ys: Sequence[float]) -> float:
    """Piecewise-linear ``y(x)`` through ``(xs, ys)`` (``xs`` increasing), clamped at the ends."""
    if x <= xs[0]:
        return float(ys[0])
    if x >= xs[-1]:
        return float(ys[-1])
    i = bisect.bisect_right(xs, x)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return float(y0 + (y1 - y0) * (x - x0) / (x1 - x0))


def monotone(values: Sequence[float]) -> list[float]:
    """The closest non-decreasing curve in least squares (pool-adjacent-violators): a latency
    curve in which noise cannot make more units cheaper, without letting one slow outlier
    raise every point after it."""
    blocks: list[list[float]] = []  # [mean, count]
    for v in values:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m1, n1), (m2, n2) = blocks[-2], blocks.pop()
            blocks[-1] = [(m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2]
    return [m for m, n in blocks for _ in range(int(n))]


@dataclass(frozen=True)
class LatencyModel:
    """Per-layer latency curves of one encoder stack (see the module doc). Times in ms."""

    num_layers: int
    dense_heads: int
    dense_ffn: int
    heads: tuple[int, ...]
    attention_ms: tuple[float, ...]
    ffn_dims: tuple[int, ...]
    ffn_ms: tuple[float, ...]
    fixed_ms: float
    # Width and depth (see the module doc); empty in a table measured without them.
    hidden: int = 0
    widths: tuple[int, ...] = ()
    attention_scale: tuple[float, ...] = ()
    ffn_scale: tuple[float, ...] = ()
    layer_ms: tuple[float, ...] = ()
    base_ms: tuple[float, ...] = ()
    scale_heads: int = 0  # the few heads / FFN dims the *_low scales were measured at
    scale_dims: int = 0
    attention_scale_low: tuple[float, ...] = ()
    ffn_scale_low: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for name, xs, ys, full in (("heads", self.heads, self.attention_ms, self.dense_heads),
                                   ("ffn_dims", self.ffn_dims, self.ffn_ms, self.dense_ffn)):
            object.__setattr__(self, name, tuple(int(x) for x in xs))
            ys = tuple(float(y) for y in ys)
            object.__setattr__(self, "attention_ms" if name == "heads" else "ffn_ms", ys)
            xs = getattr(self, name)
            if len(xs) != len(ys) or len(xs) < 2:
                raise NNPruneError(f"latency table: {name} needs >= 2 grid points with one time each")
            if list(xs) != sorted(set(xs)) or xs[0] != 0 or xs[-1] != full:
                raise NNPruneError(f"latency table: {name} grid must rise strictly from 0 to {full}")
            if any(b < a for a, b in zip(ys, ys[1:])):
                raise NNPruneError(f"latency table: the {name} curve must not decrease")
        if self.num_layers < 1 or self.fixed_ms < 0:
            raise NNPruneError("latency table: needs >= 1 layer and a non-negative fixed time")
        self._check_width_depth()

    def _check_width_depth(self) -> None:
        names = ("attention_scale", "ffn_scale", "layer_ms", "base_ms")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        for name in names + ("attention_scale_low", "ffn_scale_low"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        if not self.widths and not any(getattr(self, n) for n in names):
            return
        if self.attention_scale_low or self.ffn_scale_low:
            if (len(self.attention_scale_low) != len(self.widths)
                    or len(self.ffn_scale_low) != len(self.widths)
                    or not 0 < self.scale_heads < self.dense_heads
                    or not 0 < self.scale_dims < self.dense_ffn):
                raise NNPruneError("latency table: the low scales need one value per width, "
                                   "measured below the dense head and FFN counts")
            names = names + ("attention_scale_low", "ffn_scale_low")
        w = self.widths
        if any(len(getattr(self, n)) != len(w) for n in names) or not w:
            raise NNPruneError("latency table: widths need one scale, layer and base time each")
        if list(w) != sorted(set(w)) or w[0] < 1 or w[-1] != self.hidden:
            raise NNPruneError(f"latency table: widths must rise strictly to the hidden size "
                               f"{self.hidden}")
        for name in names:
            ys = getattr(self, name)
            if any(b < a for a, b in zip(ys, ys[1:])) or min(ys) < 0:
                raise NNPruneError(f"latency table: the {name} curve must not decrease")

    @property
    def has_width_depth(self) -> bool:
        """Whether the table prices the hidden width and whole layers (see the module doc)."""
        return bool(self.widths)

    def width_terms(self, width: Optional[float] = None) -> tuple[float, float, float, float]:
        """``(attention scale, FFN scale, ms per layer, base ms)`` at ``width`` (default: the
        dense width); a table without widths prices every width as the dense one, each layer's
        fixed part inside ``base``."""
        if not self.has_width_depth:
            return 1.0, 1.0, 0.0, self.fixed_ms
        w = float(self.hidden if width is None else width)
        return (_interp(w, self.widths, self.attention_scale), _interp(w, self.widths, self.ffn_scale),
                _interp(w, self.widths, self.layer_ms), _interp(w, self.widths, self.base_ms))

    def attention(self, heads: float) -> float:
        """ms one attention block with ``heads`` heads adds (0 for none)."""
        return _interp(heads, self.heads, self.attention_ms)

    def ffn(self, dims: float) -> float:
        """ms one FFN with ``dims`` dimensions adds (0 for none)."""
        return _interp(dims, self.ffn_dims, self.ffn_ms)

    @property
    def dense_ms(self) -> float:
        return self.predict([self.dense_heads] * self.num_layers, [self.dense_ffn] * self.num_layers)

    @property
    def max_speedup(self) -> float:
        """Speedup with every head and FFN dimension removed: no target can go beyond it."""
        return self.dense_ms / self.fixed_ms if self.fixed_ms > 0 else float("inf")

    @property
    def max_speedup_width_depth(self) -> float:
        """Speedup of one layer left, empty, at the narrowest width measured: what no pruning
        of width, depth, heads and FFN can go beyond (``max_speedup`` without width data)."""
        if not self.has_width_depth:
            return self.max_speedup
        floor = self.base_ms[0] + self.layer_ms[0]
        return self.dense_ms / floor if floor > 0 else float("inf")

    def unit_scales(self, width: Optional[float], heads: float, dims: float) -> tuple[float, float]:
        """``(attention, FFN)`` scale of a layer with ``heads`` heads and ``dims`` FFN dimensions
        at ``width``: between the scale with a few units and with all of them (module doc)."""
        a, f, _, _ = self.width_terms(width)
        if not self.attention_scale_low:
            return a, f
        w = float(self.hidden if width is None else width)
        a_low = _interp(w, self.widths, self.attention_scale_low)
        f_low = _interp(w, self.widths, self.ffn_scale_low)
        return (_interp(heads, (self.scale_heads, self.dense_heads), (a_low, a)),
                _interp(dims, (self.scale_dims, self.dense_ffn), (f_low, f)))

    def predict(self, heads: Sequence[float], dims: Sequence[float],
                width: Optional[float] = None) -> float:
        """Predicted ms of a forward with ``heads[l]`` heads and ``dims[l]`` FFN dimensions in
        layer ``l``, one entry per layer the model has: all of them, or, with a table that
        prices depth, the layers left after removing some; the stream ``width`` wide (default:
        dense; a table that prices widths)."""
        n = len(heads)
        depth_ok = self.has_width_depth and 1 <= n <= self.num_layers
        if len(dims) != n or (n != self.num_layers and not depth_ok):
            raise NNPruneError(f"latency table is for {self.num_layers} layers; got "
                               f"{len(heads)} attention and {len(dims)} FFN sizes")
        if width is not None and width != self.hidden and not self.has_width_depth:
            raise NNPruneError("this latency table was measured without hidden widths; "
                               "measure it again (nnprune latency-table --rebuild)")
        _, _, layer, base = self.width_terms(width)
        total = base + n * layer
        for h, d in zip(heads, dims):
            a, f = self.unit_scales(width, h, d)
            total += a * self.attention(h) + f * self.ffn(d)
        return total

    def speedup(self, heads: Sequence[float], dims: Sequence[float],
                width: Optional[float] = None) -> float:
        return self.dense_ms / self.predict(heads, dims, width)

    def budget_ms(self, speedup: float, width_depth: bool = False) -> float:
        """The latency a ``speedup`` asks for; refuses one this model cannot reach (pruning
        heads and FFN only, or with ``width_depth`` also the width and whole layers)."""
        check_speedup_target(speedup)
        reach = self.max_speedup_width_depth if width_depth else self.max_speedup
        if speedup >= reach:
            what = ("one layer left, empty, at the narrowest width measured" if width_depth
                    and self.has_width_depth else "removing every head and FFN dimension")
            raise NNPruneError(
                f"--target-speedup {speedup:g} is beyond reach: {what} gives {reach:.2f}x at "
                f"this batch size / sequence length (the rest: embeddings, norms, the head)")
        return self.dense_ms / speedup

    def to_dict(self) -> dict[str, Any]:
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        if not self.has_width_depth:  # a table without them reads as before
            for k in WIDTH_DEPTH_KEYS:
                del out[k]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LatencyModel":
        try:
            return cls(**{k: data[k] for k in ("num_layers", "dense_heads", "dense_ffn", "heads",
                                                 "attention_ms", "ffn_dims", "ffn_ms", "fixed_ms")},
                       **{k: data[k] for k in WIDTH_DEPTH_KEYS if k in data})
        except KeyError as exc:
            raise NNPruneError(f"latency table is missing {exc.args[0]!r}") from None


WIDTH_DEPTH_KEYS = ("hidden", "widths", "attention_scale", "ffn_scale", "layer_ms", "base_ms",
                    "scale_heads", "scale_dims", "attention_scale_low", "ffn_scale_low")


@dataclass(frozen=True)
class _Unit:
    """One attention block (its heads) or one FFN (its dimensions): the layer whose rows decide
    it (value / FFN-in) and the one whose columns do (attention output / FFN-out); ``None`` for
    a dense (unpatched) role."""

    size: int
    rows: Optional[MaskedLinear]
    cols: Optional[MaskedLinear]

    def scores(self) -> list[float]:
        """The highest cutoff each unit survives, sorted: a unit goes when all its rows or all
        its columns are masked, i.e. when the cutoff passes the best block of its rows or of its
        columns."""
        best = torch.full((self.size,), math.inf)
        if self.rows is not None:
            per_row = _owner_scores(self.rows).amax(dim=1).repeat_interleave(self.rows.block_rows)
            best = torch.minimum(best, per_row.view(self.size, -1).amax(dim=1))
        if self.cols is not None:
            per_col = _owner_scores(self.cols).amax(dim=0).repeat_interleave(self.cols.block_cols)
            best = torch.minimum(best, per_col.view(self.size, -1).amax(dim=1))
        return sorted(best.tolist())


def _owner_scores(layer: MaskedLinear) -> torch.Tensor:
    owner = layer.score_source if layer.score_source is not None else layer
    # On the CPU: the cut is a sort and a bisection over a few thousand numbers per step, and
    # the scores of a model trained on a GPU live there.
    return owner.score_tensor().detach().float().cpu().reshape(layer.grid)


def _kept(sorted_scores: list[float], cutoff: float) -> int:
    """How many of the units (their sorted survival scores) a cutoff keeps (score >= cutoff)."""
    return len(sorted_scores) - bisect.bisect_left(sorted_scores, cutoff)


UnitScores = tuple[list[list[float]], list[list[float]]]  # per layer: attention, FFN


class LatencyCut:
    """The global score cutoff of a patched model at which :class:`LatencyModel` predicts a
    latency budget is met, keeping as many blocks as that allows.

    ``layers``: the patched ``(site, layer)`` pairs of one encoder stack, one attention block
    per layer."""

    def __init__(self, model: LatencyModel, layers: Sequence[tuple[LinearSite, MaskedLinear]]):
        self.model = model
        by_role = {(s.layer, s.attention, s.role): m for s, m in layers}
        sites = [s for s, _ in layers]
        if any(s.is_decoder for s in sites) or len({s.stack for s in sites}) > 1:
            raise NNPruneError("--target-speedup supports encoder models (one stack); "
                               "use --target-density for encoder-decoder models")
        if any(s.attention not in (None, "self") for s in sites):
            raise NNPruneError("--target-speedup supports self-attention encoders only")
        n = model.num_layers
        self.attention = [_Unit(model.dense_heads, by_role.get((i, "self", Role.VALUE)),
                                by_role.get((i, "self", Role.ATTN_OUTPUT))) for i in range(n)]
        self.ffn = [_Unit(model.dense_ffn, by_role.get((i, None, Role.FFN_IN)),
                          by_role.get((i, None, Role.FFN_OUT))) for i in range(n)]
        self.owners = [m for _, m in layers if m.owns_scores]
        if not self.owners:
            raise NNPruneError("--target-speedup needs a method with learned or magnitude scores")

    def unit_scores(self) -> UnitScores:
        """Every layer's heads and FFN dimensions as sorted survival scores (one pass over the
        scores; each cutoff then counts by bisection)."""
        return [u.scores() for u in self.attention], [u.scores() for u in self.ffn]

    def sizes(self, cutoff: float, units: Optional[UnitScores] = None) -> tuple[list[int], list[int]]:
        """Heads and FFN dimensions left per layer at ``cutoff``."""
        attention, ffn = units if units is not None else self.unit_scores()
        return [_kept(s, cutoff) for s in attention], [_kept(s, cutoff) for s in ffn]

    def predict(self, cutoff: float, units: Optional[UnitScores] = None) -> float:
        return self.model.predict(*self.sizes(cutoff, units))

    def candidates(self) -> list[torch.Tensor]:
        """The scores a cut may fall on (flat, on the CPU): every owner's."""
        return [_owner_scores(m).flatten() for m in self.owners]

    def cutoff(self, budget_ms: float) -> float:
        """The lowest score cutoff (most blocks kept) whose predicted latency is within
        ``budget_ms``; above every score (nothing kept) when none is."""
        values = torch.unique(torch.cat(self.candidates()))
        units = self.unit_scores()
        lo, hi = 0, len(values)  # answer in [lo, hi]; index len(values) = above every score
        while lo < hi:
            mid = (lo + hi) // 2
            if self.predict(float(values[mid]), units) <= budget_ms:
                hi = mid
            else:
                lo = mid + 1
        return float(values[lo]) if lo < len(values) else float(values[-1]) + 1.0

    def density(self, cutoff: float) -> float:
        """Weight-weighted fraction of blocks kept at ``cutoff`` (the pruner's density)."""
        num = den = 0.0
        for m in self.owners:
            s = _owner_scores(m)
            num += float((s >= cutoff).sum()) * m.weights_per_score
            den += s.numel() * m.weights_per_score
        return num / den if den else 1.0


__all__ = ["LatencyCut", "LatencyModel", "monotone"]
