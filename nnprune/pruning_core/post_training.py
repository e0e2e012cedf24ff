"""Post-training structured pruning (Kwon et al. 2022, "A Fast Post-Training Pruning Framework for
Transformers"): choose the attention heads and FFN dimensions of a *fine-tuned* model to keep under
a FLOP budget, without retraining.

1. **Importance** (:func:`fisher_information`): every head and FFN dimension gets a mask variable
   ``m = 1`` placed on the input of its output projection (heads: the ``head_dim`` columns of the
   attention output's input; FFN dims: the FFN-out input). The gradient of each *example's* task
   loss with respect to the masks is exact in one batched backward (the masks carry a batch
   dimension), so the diagonal empirical Fisher ``F_ii = sum_n g_ni^2`` estimates how much the loss
   grows when unit ``i`` is removed, and the per-unit-group block ``sum_n g_n g_n^T`` is kept for
   the rearrangement. Gradients only: no weight is updated.
2. **Search** (:func:`search_masks`): with every head costing the same FLOPs and every FFN
   dimension the same (true within an encoder), the best mask under a FLOP budget keeps the most
   important heads and dimensions globally; the search tries every number of heads and fills the
   rest of the budget with dimensions (Kwon et al., Algorithm 1).
3. **Rearrangement** (:func:`rearrange`): per layer, with the count fixed, the pruned set is
   re-chosen greedily to minimise ``(1 - m)^T F_block (1 - m)``, which sees interactions between
   units of a layer that the diagonal misses.
4. **Tuning** (:func:`tune_layerwise`): layer by layer in forward order, the kept units' mask
   values are refitted by damped least squares so that the output projection's output on the
   pruned model's inputs reconstructs the dense model's; the damping pulls towards ``m = 1``, so
   the reconstruction error is never larger than with the untuned mask. The values are folded into
   the output projections' columns, so the result is a plain model (then compacted).

Width and depth (issue 25, :mod:`nnprune.pruning_core.width_depth`): the same Fisher scores the
channels of the residual stream (one per-example mask on every read of the stream, shared, as in
CoFi's hidden mask; cf. Minitron's embedding-channel importance) and whole layers (a per-example
gate on each layer's residual branch, ``x + g (layer(x) - x)``: ``g = 0`` is the layer removed).
:func:`search_width_depth` then extends Algorithm 1 with two outer loops: every width of the
stream (its most important channels) and every number of layers removed (the least important
ones first); at each, the per-unit costs of that width and depth price the heads and FFN
dimensions, and the best summed Fisher of channels, heads and dimensions kept under the budget
wins.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from nnprune.errors import NNPruneError
from nnprune.pruning_core.architectures import Role, find_sites
from nnprune.pruning_core.latency_model import LatencyModel
from nnprune.pruning_core.width_depth import stream_sites, width_depth_scores

logger = logging.getLogger(__name__)

UnitKey = tuple[str, int, Optional[str]]  # (stack, layer, attention name or None for the FFN)


@dataclass(frozen=True)
class MaskGroup:
    """The maskable units of one attention block (heads) or one FFN (dimensions)."""

    key: UnitKey
    size: int  # heads, or FFN dimensions
    width: int  # input columns of the output projection per unit (head_dim, or 1)
    out_path: str  # the output projection (attention output / FFN out) whose input is masked
    value_path: Optional[str] = None  # heads: the value projection (zeroed with the head)

    @property
    def is_heads(self) -> bool:
        return self.key[2] is not None

    @property
    def label(self) -> str:
        stack, layer, att = self.key
        return f"{stack}.{layer}.{att or 'ffn'}"


def mask_groups(model: nn.Module) -> list[MaskGroup]:
    """The head and FFN-dimension groups of ``model`` in forward order (from its layer roles)."""
    sites = find_sites(model)
    if any(s.is_decoder for s in sites):
        raise NNPruneError("post-training pruning supports encoder models (BERT, RoBERTa, ...); "
                           "encoder-decoder models are not supported yet: use fine-prune")
    by_unit: dict[UnitKey, dict[Role, Any]] = {}
    for s in sites:
        by_unit.setdefault(s.unit, {})[s.role] = s
    groups = []
    for key, roles in by_unit.items():
        if key[2] is not None:
            out = roles[Role.ATTN_OUTPUT]
            lin = model.get_submodule(out.path)
            heads = out.num_heads
            if lin.in_features % heads:
                raise NNPruneError(f"{out.path}: {lin.in_features} inputs do not split into {heads} heads")
            groups.append(MaskGroup(key, heads, lin.in_features // heads, out.path,
                                    roles[Role.VALUE].path))
        else:
            out = roles[Role.FFN_OUT]
            groups.append(MaskGroup(key, model.get_submodule(out.path).in_features, 1, out.path))
    order = {s.unit: i for i, s in enumerate(sites)}
    return sorted(groups, key=lambda g: order[g.key])


@contextmanager
def masked_inputs(model: nn.Module, groups: list[MaskGroup],
                  masks: dict[UnitKey, torch.Tensor]) -> Iterator[None]:
    """Multiply the input of each group's output projection by its mask while inside.

    ``masks[key]``: ``(size,)`` or per example ``(batch, size)``; each unit's value is repeated
    over its ``width`` input columns. Input ``(batch, tokens, size * width)``."""
    handles = []

    def hook_for(group: MaskGroup):
        def hook(_module, args):
            (x, *rest) = args
            m = masks[group.key]
            m = m.repeat_interleave(group.width, dim=-1) if group.width > 1 else m
            if m.dim() == 2:  # (batch, features) -> broadcast over tokens
                m = m[:, None, :]
            return (x * m.to(x.dtype), *rest)
        return hook

    try:
        for g in groups:
            if g.key in masks:
                handles.append(model.get_submodule(g.out_path).register_forward_pre_hook(hook_for(g)))
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass
class Importance:
    """Empirical Fisher information of the unit masks over ``samples`` examples."""

    diagonal: dict[UnitKey, torch.Tensor]  # (size,): sum over examples of g^2
    blocks: dict[UnitKey, torch.Tensor]  # (size, size): sum over examples of g g^T
    samples: int = 0
    hidden: Optional[torch.Tensor] = None  # (width,): the stream's channels (width_depth)
    layers: Optional[torch.Tensor] = None  # (layers,): removing each layer (width_depth)


def model_inputs(model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``batch`` that ``model.forward`` accepts, on the model's device."""
    import inspect

    accepted = set(inspect.signature(model.forward).parameters)
    device = next(model.parameters()).device
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()
            if k in accepted}


LossFn = Callable[[nn.Module, dict[str, Any]], torch.Tensor]  # (model, batch) -> mean loss


def batch_size(batch: dict[str, Any]) -> int:
    """Examples in a batch: the leading size of its first tensor."""
    for v in batch.values():
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            return int(v.shape[0])
    raise NNPruneError("a batch must hold at least one tensor (e.g. input_ids)")


def fisher_information(model: nn.Module, batches: Iterable[dict[str, Any]],
                       groups: list[MaskGroup],
                       progress: Optional[Callable[[int], None]] = None,
                       loss_fn: Optional[LossFn] = None, width_depth: bool = False) -> Importance:
    """Per-example mask gradients of the task loss accumulated into :class:`Importance`.

    The loss is ``model(**batch).loss`` or ``loss_fn(model, batch)``; either must be the *mean*
    over the batch's examples of independent per-example losses, so that ``B * loss`` sums them
    and its gradient with respect to the per-example masks is each example's own. The model
    runs in eval mode (no dropout); its weights get no gradient. With ``width_depth`` the
    stream's channels and the layers are scored too (``Importance.hidden`` / ``.layers``; see
    the module doc)."""
    was_training = model.training
    model.eval()
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    diag = {g.key: torch.zeros(g.size, dtype=torch.float64) for g in groups}
    blocks = {g.key: torch.zeros(g.size, g.size, dtype=torch.float64) for g in groups}
    samples = 0
    device = next(model.parameters()).device
    sites = stream_sites(model) if width_depth else None
    stream = (torch.zeros(sites.width, dtype=torch.float64) if sites is not None else None)
    depth = (torch.zeros(len(sites.layers), dtype=torch.float64) if sites is not None else None)
    try:
        for batch in batches:
            n = batch_size(batch)
            masks = {g.key: torch.ones(n, g.size, device=device, requires_grad=True) for g in groups}
            extra = ([torch.ones(n, sites.width, device=device, requires_grad=True),
                      torch.ones(n, len(sites.layers), device=device, requires_grad=True)]
                     if sites is not None else [None, None])
            with masked_inputs(model, groups, masks), width_depth_scores(model, *extra):
                if loss_fn is not None:
                    loss = loss_fn(model, batch)
                else:
                    loss = getattr(model(**model_inputs(model, batch)), "loss", None)
            if loss is None:
                raise NNPruneError("the model returned no loss on the calibration data: it needs "
                                   "labelled examples and a task head (or pass a loss function)")
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not loss.requires_grad:
                raise NNPruneError("the loss function must return a scalar tensor computed from the "
                                   "model's outputs (the mean loss over the batch's examples)")
            wanted = [masks[g.key] for g in groups] + [m for m in extra if m is not None]
            grads = torch.autograd.grad(loss * n, wanted, allow_unused=True)
            for g, grad in zip(groups, grads):
                if grad is None:  # a unit the loss does not reach (e.g. a head after its use)
                    continue
                grad = grad.detach().double().cpu()
                diag[g.key] += (grad * grad).sum(0)
                blocks[g.key] += grad.T @ grad
            if sites is not None:
                for acc, grad in zip((stream, depth), grads[len(groups):]):
                    if grad is not None:
                        acc += (grad.detach().double().cpu() ** 2).sum(0)
            samples += n
            if progress is not None:
                progress(n)
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.train(was_training)
    if samples == 0:
        raise NNPruneError("no calibration examples")
    return Importance(diag, blocks, samples, stream, depth)


@torch.no_grad()
def init_scores_from(layers: Iterable[Any], importance: Importance, groups: list[MaskGroup],
                     scale: float = 1.0) -> int:
    """Set the mask scores of patched layers (``Pruner.layers``: ``.site``, ``.layer``) from the
    Fisher importance of the head or FFN dimension each block belongs to: ``scale * z`` where ``z``
    is the log-importance standardised over all heads (attention) or all FFN dimensions, so that
    movement starts from the post-training ranking instead of ties. A block covering several
    units takes their mean. Returns the number of score tensors set."""
    by_key = {g.key: g for g in groups}

    def z_scores(kind_heads: bool) -> dict[UnitKey, torch.Tensor]:
        keys = [g.key for g in groups if g.is_heads == kind_heads]
        if not keys:
            return {}
        logs = {k: torch.log(importance.diagonal[k].float() + 1e-12) for k in keys}
        flat = torch.cat(list(logs.values()))
        mean, std = flat.mean(), flat.std().clamp_min(1e-6)
        return {k: (v - mean) / std for k, v in logs.items()}

    z = {**z_scores(True), **z_scores(False)}
    done = 0
    for p in layers:
        layer, site = p.layer, p.site
        if not layer.owns_scores or layer.mask_scores is None or site.unit not in by_key:
            continue
        units = z[site.unit]  # (heads,) or (ffn dims,)
        rows, cols = layer.grid
        # Output projections see the units along their input columns, the others along rows.
        by_cols = site.role in (Role.ATTN_OUTPUT, Role.FFN_OUT)
        n, block, features = ((cols, layer.block_cols, layer.in_features) if by_cols
                              else (rows, layer.block_rows, layer.out_features))
        width = features // units.numel()  # features per unit (head_dim, or 1)
        span = max(1, block // width)  # units one block covers
        per = torch.stack([units[i * block // width: i * block // width + span].mean()
                           for i in range(n)])
        values = per[None, :].expand(rows, cols) if by_cols else per[:, None].expand(rows, cols)
        layer.mask_scores.copy_((scale * values).to(layer.mask_scores.dtype))
        done += 1
    return done


# ------------------------------------------------------------------------------------ search
@dataclass(frozen=True)
class UnitCosts:
    """Cost of one forward (FLOPs at batch 1 x ``seq_len`` tokens, or ms from a latency table):
    per head, per FFN dimension, and the rest (embeddings, heads, the parts no unit removes)."""

    head: float
    ffn_dim: float
    fixed: float
    seq_len: int

    def total(self, heads: int, ffn_dims: int) -> float:
        return self.fixed + heads * self.head + ffn_dims * self.ffn_dim

    @classmethod
    def from_latency(cls, model: LatencyModel, seq_len: int, width: Optional[int] = None,
                     layers: Optional[int] = None) -> "UnitCosts":
        """A latency table read as milliseconds per head and per FFN dimension (the slopes of
        a whole block and a whole FFN) plus what no unit removes; totals the dense latency.
        With ``width`` / ``layers``: the same for the stream that wide and that many layers
        (a table that prices them)."""
        if width is None and layers is None:
            return cls(model.attention(model.dense_heads) / model.dense_heads,
                       model.ffn(model.dense_ffn) / model.dense_ffn, model.fixed_ms, seq_len)
        a, f, per_layer, base = model.width_terms(width)
        n = model.num_layers if layers is None else layers
        return cls(a * model.attention(model.dense_heads) / model.dense_heads,
                   f * model.ffn(model.dense_ffn) / model.dense_ffn, base + n * per_layer, seq_len)


def search_masks(importance: Importance, groups: list[MaskGroup], costs: UnitCosts,
                 budget: float) -> dict[UnitKey, list[int]]:
    """The kept units (per group, sorted) that maximise the summed diagonal Fisher of the kept
    units under ``budget`` FLOPs; every number of heads is tried, FFN dims fill what is left."""
    heads = sorted(((float(v), g.key, i) for g in groups if g.is_heads
                    for i, v in enumerate(importance.diagonal[g.key])), reverse=True)
    dims = sorted(((float(v), g.key, i) for g in groups if not g.is_heads
                   for i, v in enumerate(importance.diagonal[g.key])), reverse=True)
    if costs.fixed > budget:
        raise NNPruneError(f"a budget of {budget:.3g} FLOPs is below what no head or FFN dimension "
                           f"removes ({costs.fixed:.3g}): ask for a smaller speedup")
    head_cum = [0.0]
    for v, _, _ in heads:
        head_cum.append(head_cum[-1] + v)
    dim_cum = [0.0]
    for v, _, _ in dims:
        dim_cum.append(dim_cum[-1] + v)
    best = None
    for n_heads in range(len(heads) + 1):
        left = budget - costs.fixed - n_heads * costs.head
        if left < 0:
            break
        n_dims = min(len(dims), int(math.floor(left / costs.ffn_dim + 1e-9)))
        score = head_cum[n_heads] + dim_cum[n_dims]
        if best is None or score > best[0]:
            best = (score, n_heads, n_dims)
    assert best is not None
    _, n_heads, n_dims = best
    kept: dict[UnitKey, list[int]] = {g.key: [] for g in groups}
    for _, key, i in heads[:n_heads] + dims[:n_dims]:
        kept[key].append(i)
    return {k: sorted(v) for k, v in kept.items()}


CostsAt = Callable[[int, int], UnitCosts]  # (stream width, layers kept) -> unit costs


@dataclass(frozen=True)
class ShapeChoice:
    """What :func:`search_width_depth` kept: units per group (none in a removed layer), the
    stream's channels (sorted) and the layers removed (their indices), with the summed Fisher."""

    kept: dict[UnitKey, list[int]]
    channels: list[int]
    removed_layers: list[int]
    score: float = 0.0


def _ranked(importance: Importance, groups: list[MaskGroup], heads: bool,
            gone: set[int]) -> tuple[torch.Tensor, list[tuple[UnitKey, int]]]:
    """The units of the kind (heads or FFN dims) in the layers not ``gone``, most important
    first: ``(cumulative Fisher with a leading 0, [(group, unit)])``."""
    values, units = [], []
    for g in groups:
        if g.is_heads == heads and g.key[1] not in gone:
            values.append(importance.diagonal[g.key].double())
            units += [(g.key, i) for i in range(g.size)]
    if not values:
        return torch.zeros(1, dtype=torch.float64), []
    flat = torch.cat(values)
    order = torch.argsort(flat, descending=True, stable=True)
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(flat[order], 0)])
    return cum, [units[int(i)] for i in order]


def search_width_depth(importance: Importance, groups: list[MaskGroup], costs_at: CostsAt,
                       budget: float, widths: list[int], protected: Iterable[int] = ()
                       ) -> ShapeChoice:
    """The stream width, layers removed and units kept that maximise the summed Fisher of the
    kept channels, heads and FFN dimensions under ``budget`` (see the module doc).

    ``widths``: the stream widths to try (its most important channels are kept);
    ``costs_at(width, layers)``: the per-unit and fixed costs there; ``protected``: layers that
    cannot be removed. Layers go in order of their removal Fisher, least first; at least one is
    left. Every number of heads is tried at every (width, depth), FFN dims fill the rest."""
    if importance.hidden is None or importance.layers is None:
        raise NNPruneError("the width / depth search needs channel and layer scores "
                           "(fisher_information(..., width_depth=True))")
    hidden, layers = importance.hidden.double(), importance.layers.double()
    channel_order = torch.argsort(hidden, descending=True, stable=True)
    channel_cum = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(hidden[channel_order], 0)])
    n_layers = layers.numel()
    keep = set(int(i) for i in protected)
    removable = sorted((i for i in range(n_layers) if i not in keep), key=lambda i: (float(layers[i]), i))
    best: Optional[tuple[float, int, int, int, int]] = None  # score, depth, width, heads, dims
    floor = math.inf
    for depth in range(min(len(removable), n_layers - 1) + 1):
        gone = set(removable[:depth])
        head_cum, _ = _ranked(importance, groups, True, gone)
        dim_cum, _ = _ranked(importance, groups, False, gone)
        n_heads = torch.arange(head_cum.numel(), dtype=torch.float64)
        for width in widths:
            c = costs_at(width, n_layers - depth)
            floor = min(floor, c.fixed)
            left = budget - c.fixed - n_heads * c.head
            ok = left >= 0
            if not bool(ok.any()):
                continue
            if c.ffn_dim > 0:
                n_dims = torch.floor(left.clamp_min(0) / c.ffn_dim + 1e-9).clamp(max=dim_cum.numel() - 1)
            else:
                n_dims = torch.full_like(left, dim_cum.numel() - 1)
            score = head_cum + dim_cum[n_dims.long()]
            score[~ok] = -math.inf
            i = int(torch.argmax(score))
            total = float(channel_cum[width]) + float(score[i])
            if best is None or total > best[0]:
                best = (total, depth, width, i, int(n_dims[i]))
    if best is None:
        raise NNPruneError(f"a budget of {budget:.3g} is below what one layer with no head or FFN "
                           f"dimension costs at the narrowest width tried ({floor:.3g}): ask for a "
                           "smaller speedup")
    total, depth, width, nh, nd = best
    gone = set(removable[:depth])
    kept: dict[UnitKey, list[int]] = {g.key: [] for g in groups}
    for heads, n in ((True, nh), (False, nd)):
        for key, i in _ranked(importance, groups, heads, gone)[1][:n]:
            kept[key].append(i)
    return ShapeChoice({k: sorted(v) for k, v in kept.items()},
                       sorted(int(c) for c in channel_order[:width]), sorted(gone), total)


def align_ffn(importance: Importance, groups: list[MaskGroup], kept: dict[UnitKey, list[int]],
              costs: UnitCosts, budget: float, multiple: int = 8) -> dict[UnitKey, list[int]]:
    """Make every FFN's kept count a multiple of ``multiple`` within ``budget``: CPU kernels run
    ~1.4x slower per FLOP on other widths, and compaction would otherwise pad with zero dimensions
    that cost FLOPs the search did not count. Each FFN is rounded down (dropping its least
    important dims), then the freed budget buys back, best first, whole blocks of ``multiple``
    dims (the most important pruned ones of a layer)."""
    if multiple <= 1:
        return dict(kept)
    out = dict(kept)
    ffn = [g for g in groups if not g.is_heads]
    order: dict[UnitKey, list[int]] = {}
    for g in ffn:
        imp = importance.diagonal[g.key]
        order[g.key] = sorted(range(g.size), key=lambda i: -float(imp[i]))
        n = len(kept[g.key]) // multiple * multiple
        ranked = sorted(kept[g.key], key=lambda i: -float(imp[i]))
        out[g.key] = sorted(ranked[:n])
    heads = sum(len(out[g.key]) for g in groups if g.is_heads)

    def used() -> float:
        return costs.total(heads, sum(len(out[g.key]) for g in ffn))

    while True:
        best = None
        for g in ffn:
            have = set(out[g.key])
            extra = [i for i in order[g.key] if i not in have][:multiple]
            if len(extra) < multiple:
                continue
            gain = float(importance.diagonal[g.key][extra].sum())
            if best is None or gain > best[0]:
                best = (gain, g.key, extra)
        if best is None or used() + multiple * costs.ffn_dim > budget:
            return out
        out[best[1]] = sorted(out[best[1]] + best[2])


def rearrange(importance: Importance, groups: list[MaskGroup],
              kept: dict[UnitKey, list[int]]) -> dict[UnitKey, list[int]]:
    """Per group, keep the count but re-choose the pruned set greedily to minimise
    ``(1 - m)^T F_block (1 - m)`` (the loss increase with interactions inside the group)."""
    out = {}
    for g in groups:
        n_prune = g.size - len(kept[g.key])
        if n_prune in (0, g.size):
            out[g.key] = list(kept[g.key])
            continue
        fb = importance.blocks[g.key]
        pruned: list[int] = []
        increment = fb.diagonal().clone()  # cost of adding unit i to the pruned set
        available = torch.ones(g.size, dtype=torch.bool)
        for _ in range(n_prune):
            cand = torch.where(available, increment, torch.full_like(increment, math.inf))
            i = int(torch.argmin(cand))
            pruned.append(i)
            available[i] = False
            increment += 2 * fb[:, i]
        greedy = sorted(set(range(g.size)) - set(pruned))
        old = _pruned_cost(fb, kept[g.key], g.size)
        new = _pruned_cost(fb, greedy, g.size)
        out[g.key] = greedy if new <= old else list(kept[g.key])
    return out


def _pruned_cost(block: torch.Tensor, kept: list[int], size: int) -> float:
    p = torch.ones(size, dtype=block.dtype)
    p[kept] = 0
    return float(p @ block @ p)


# ------------------------------------------------------------------------------------ tuning
@dataclass
class TuneReport:
    """Per group: squared reconstruction error of the output projection's output with the plain
    0/1 mask and with the tuned mask values (summed over calibration tokens)."""

    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)


class _Stop(Exception):
    """Ends a forward pass early, once the module of interest has run."""


def _capture(model: nn.Module, paths: list[str], batches: list[dict[str, Any]], *,
             want_input: bool, masks: Optional[dict[UnitKey, torch.Tensor]] = None,
             groups: Optional[list[MaskGroup]] = None,
             stop_early: bool = False) -> dict[str, list[torch.Tensor]]:
    """The input (or output) of each module in ``paths`` on each batch, tokens flattened to rows,
    padding dropped: ``{path: [(tokens, features) per batch]}`` (fp32, CPU). With ``stop_early``
    (one path) the forward stops right after that module: the rest of the model is not run."""
    seen: dict[str, torch.Tensor] = {}
    handles = []

    def hook_for(path: str):
        def hook(_m, args, output):
            seen[path] = (args[0] if want_input else output).detach()
            if stop_early:
                raise _Stop
        return hook

    for path in paths:
        handles.append(model.get_submodule(path).register_forward_hook(hook_for(path)))
    rows: dict[str, list[torch.Tensor]] = {p: [] for p in paths}
    try:
        with torch.no_grad(), masked_inputs(model, groups or [], masks or {}):
            for batch in batches:
                inputs = model_inputs(model, batch)
                seen.clear()
                try:
                    model(**inputs)
                except _Stop:
                    pass
                keep = inputs.get("attention_mask")
                for path in paths:
                    x = seen[path]
                    k = keep.bool() if keep is not None else torch.ones(x.shape[:2], dtype=torch.bool)
                    rows[path].append(x[k.to(x.device)].float().cpu())
    finally:
        for h in handles:
            h.remove()
    return rows


@torch.no_grad()
def tune_layerwise(model: nn.Module, dense: nn.Module, groups: list[MaskGroup],
                   kept: dict[UnitKey, list[int]], batches: list[dict[str, Any]],
                   damping: float = 1e-2,
                   progress: Optional[Callable[[int], None]] = None,
                   rows: Optional[list[int]] = None) -> TuneReport:
    """Fold least-squares mask values into ``model``'s output projections, group by group in
    forward order (see module doc). ``model`` has the pruned units' output-projection inputs
    masked by hooks while it is measured, and ends with their columns zeroed; ``dense`` is the
    unpruned model (same weights before tuning). ``rows``: the output channels to reconstruct
    (a narrowed stream's kept channels; default all)."""
    model.eval()
    dense.eval()
    report = TuneReport()
    masks = {g.key: _mask_vector(g, kept[g.key]) for g in groups}
    # The dense model's outputs do not change: one pass for every group. The pruned model's
    # inputs do (earlier groups get tuned): one pass per group, stopped right after it.
    all_targets = _capture(dense, [g.out_path for g in groups], batches, want_input=False)
    for g in groups:
        keep = kept[g.key]
        lin = model.get_submodule(g.out_path)
        w = lin.weight.detach().double().cpu()  # (hidden, size * width)
        bias = lin.bias.detach().double().cpu() if lin.bias is not None else None
        targets = all_targets.pop(g.out_path)
        if rows is not None:  # only the kept channels of a narrowed stream are read later
            w = w[rows]
            bias = bias[rows] if bias is not None else None
            targets = [t[:, rows] for t in targets]
        inputs = _capture(model, [g.out_path], batches, want_input=True, masks=masks,
                          groups=groups, stop_early=True)[g.out_path]
        n = len(keep)
        ata = torch.zeros(n, n, dtype=torch.float64)
        atb = torch.zeros(n, dtype=torch.float64)
        btb = 0.0
        cols = [list(range(i * g.width, (i + 1) * g.width)) for i in keep]
        for x, t in zip(inputs, targets):
            x, t = x.double(), t.double()
            b = t - bias if bias is not None else t  # (tokens, hidden)
            btb += float((b * b).sum())
            if n == 0:
                continue
            if g.width == 1:
                act = x[:, keep]  # (tokens, n)
                wk = w[:, keep]  # (hidden, n)
                ata += (act.T @ act) * (wk.T @ wk)
                atb += (act * (b @ wk)).sum(0)
            else:
                contrib = torch.stack([x[:, c] @ w[:, c].T for c in cols])  # (n, tokens, hidden)
                flat = contrib.reshape(n, -1)
                ata += flat @ flat.T
                atb += flat @ b.reshape(-1)
        ones = torch.ones(n, dtype=torch.float64)
        before = btb - 2 * float(atb @ ones) + float(ones @ ata @ ones)
        if n:
            lam = damping * float(ata.diagonal().mean()) + 1e-12
            m = torch.linalg.solve(ata + lam * torch.eye(n, dtype=torch.float64), atb + lam * ones)
            after = btb - 2 * float(atb @ m) + float(m @ ata @ m)
            if not math.isfinite(after) or after > before:  # numerical safety: never worse
                m, after = ones, before
        else:
            m, after = ones, before
        report.before[g.label] = max(before, 0.0)
        report.after[g.label] = max(after, 0.0)
        scale = torch.zeros(g.size * g.width, dtype=lin.weight.dtype)
        for value, c in zip(m.tolist(), cols):
            scale[c] = value
        lin.weight.mul_(scale.to(lin.weight.device)[None, :])
        if g.value_path is not None:
            _zero_value_rows(model, g, keep)
        masks[g.key] = torch.ones(g.size, device=lin.weight.device)  # folded into the weights now
        if progress is not None:
            progress(1)
    return report


def _mask_vector(group: MaskGroup, keep: list[int]) -> torch.Tensor:
    m = torch.zeros(group.size)
    m[keep] = 1.0
    return m


def _zero_value_rows(model: nn.Module, group: MaskGroup, keep: list[int]) -> None:
    """Pruned heads also lose their value rows, so compaction sees them as removable either way."""
    v = model.get_submodule(group.value_path)
    for h in set(range(group.size)) - set(keep):
        rows = slice(h * group.width, (h + 1) * group.width)
        v.weight[rows] = 0
        if v.bias is not None:
            v.bias[rows] = 0


@torch.no_grad()
def apply_masks(model: nn.Module, groups: list[MaskGroup], kept: dict[UnitKey, list[int]]) -> None:
    """Zero the pruned units' output-projection columns (and heads' value rows): the model then
    computes the masked function with plain weights, and compaction removes those units."""
    for g in groups:
        lin = model.get_submodule(g.out_path)
        for i in set(range(g.size)) - set(kept[g.key]):
            lin.weight[:, i * g.width:(i + 1) * g.width] = 0
        if g.value_path is not None:
            _zero_value_rows(model, g, kept[g.key])


__all__ = ["CostsAt", "Importance", "LossFn", "MaskGroup", "ShapeChoice", "TuneReport", "UnitCosts",
           "align_ffn", "apply_masks", "batch_size", "init_scores_from", "fisher_information",
           "mask_groups", "masked_inputs", "model_inputs", "rearrange", "search_masks",
           "search_width_depth", "tune_layerwise"]
