"""Width and depth learnt as masks while fine-pruning (CoFi-style, issue 25).

The post-training route (:mod:`nnprune.pruning_core.width_depth`) fixes a width and a set of
layers on a model; here they are learnt with the heads and FFN dimensions, with the same masked
model, so that baking the final masks and compacting stay exact.

**The hidden dimension** (``PruningConfig.hidden_size``). One learnt score per channel of the
residual stream, shared by everything on it. Its mask keeps the top-``k`` channels (ties: the
lower index), ``k`` following its own cubic schedule from the dense width down to
``hidden_size`` (the warm-up and cool-down of the run's threshold schedule): a width is asked
exactly, so it is a top-k whatever the run's binarizer (for L0 the scores are its log-alphas).
The mask reaches the model as the post-training route's fixed mask does: every LayerNorm on the
stream becomes a :class:`GatedLayerNorm`, normalising over the kept channels and putting out
zero on the others (:class:`~nnprune.pruning_core.width_depth.MaskedLayerNorm` at eval, a
differentiable equivalent while gradients are on), and a linear layer starting the stream
(ELECTRA's ``embeddings_project``) has its output multiplied by the mask. The gradient reaches
the scores straight through (as for the heads of ``struct``).

**Layers** (``PruningConfig.prune_layers``). One learnt gate score per layer; a hook makes each
layer's output ``x + g (layer(x) - x)``, so ``g = 0`` is the layer skipped. The gate is the
run's binarizer on that score: at the global cut of a speed or density target (the latency cut
prices removing a layer: its units and what the table says a layer costs beyond them), else at
the scheduled threshold; L0 draws a hard-concrete gate and keeps the layer when it is above one
half. Straight-through again, so a removed layer may come back. A layer whose heads and FFN
dimensions are all pruned is removed too (a post-LN layer's norms would still run: removing it
is the pruning's decision, and the same at every step). At least one layer stays, and the first
one on ModernBERT (its stock class builds it differently). The layer gates are not regularized:
the task's gradient and the target's cut move them.

**Baking** (:func:`unpatch_width_depth` with ``apply_masks``): the original norms come back and
:func:`~nnprune.pruning_core.width_depth.apply_width_depth` fixes the final channels and layers
on the model, which :func:`~nnprune.pruning_core.compact.compact_model` then removes exactly.
Without ``apply_masks`` the model is restored as it was.

The scores live in one module on the model, ``nnprune_width_depth`` (``hidden_scores``
``(width,)``, ``layer_scores`` ``(layers,)``), so a masked checkpoint saves and reloads them as
it does every ``mask_scores``.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from nnprune.errors import NNPruneError
from nnprune.pruning_core import binarizers as B
from nnprune.pruning_core import compact_modeling as cm
from nnprune.pruning_core.architectures import LinearSite, Role, architecture_for
from nnprune.pruning_core.config import PruningConfig
from nnprune.pruning_core.latency_model import LatencyCut, LatencyModel
from nnprune.pruning_core.masked import MaskedLinear, init_scores
from nnprune.pruning_core.width_depth import (StreamSites, apply_width_depth, scatter_module,
                                              stream_sites)

MODULE_NAME = "nnprune_width_depth"  # the scores' module on the model (state dict prefix)
L0_KEEP = 0.5  # an L0 layer gate keeps its layer above this value (a layer is kept or skipped)


def _stream_model(model: nn.Module, sites: StreamSites) -> nn.Module:
    """The module that runs the stream (the base model, or ``model`` itself)."""
    return model.get_submodule(sites.base.rstrip(".")) if sites.base else model


class WidthDepthMasks(nn.Module):
    """The learnt hidden-channel and layer-gate scores of one masked model, and their masks.

    ``hidden_scores``: ``(width,)`` or ``None`` (the width is not pruned); ``layer_scores``:
    ``(layers,)`` or ``None``. The pruner moves ``width`` / ``threshold`` with the schedule and
    sets ``cutoff`` (a target's global score cut); the eval masks use ``final_width`` /
    ``final_threshold``."""

    def __init__(self, config: PruningConfig, sites: StreamSites, keep_first_layer: bool,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.binarizer = config.binarizer_rules
        self.dense_width = sites.width
        self.n_layers = len(sites.layers)
        self.keep_first_layer = keep_first_layer
        prune_width = config.hidden_size is not None and config.hidden_size < sites.width
        self.final_width = int(config.hidden_size) if prune_width else sites.width
        self.width = sites.width  # the training mask's width (the schedule moves it)
        self.threshold = config.initial_threshold
        self.final_threshold = config.final_threshold
        self.cutoff: Optional[float] = None  # a target's global score cut, shared with the blocks
        self.hidden_scores = self._scores(sites.width, prune_width, config, device, dtype)
        self.layer_scores = self._scores(self.n_layers, config.prune_layers, config, device, dtype)
        # plain attributes (not submodules): the patched linear layers, per layer, that decide
        # whether a layer is empty; the hooks and the norms replaced, to undo them
        object.__setattr__(self, "units", [])
        object.__setattr__(self, "handles", [])
        object.__setattr__(self, "replaced", [])
        self._decided: Optional[tuple[bool, list[bool], Optional[torch.Tensor]]] = None

    @staticmethod
    def _scores(n: int, on: bool, config: PruningConfig, device, dtype) -> Optional[nn.Parameter]:
        if not on:
            return None
        scores = nn.Parameter(torch.empty(n, device=device, dtype=dtype))
        init_scores(scores, config.score_init, config.score_init_scale)
        return scores

    # ------------------------------------------------------------------ the hidden mask
    def width_for(self, training: bool) -> int:
        return self.width if training else self.final_width

    def kept_channels(self, training: bool = False) -> list[int]:
        """The channels the mask keeps (sorted): the top-``width`` scores, lower index first on
        ties."""
        if self.hidden_scores is None:
            return list(range(self.dense_width))
        k = self.width_for(training)
        order = torch.sort(self.hidden_scores.detach().float(), descending=True, stable=True).indices
        return sorted(order[:k].tolist())

    def hidden_mask(self, training: bool) -> Optional[torch.Tensor]:
        """``(width,)`` 0/1 mask of the stream (straight-through to the scores while gradients
        are on); ``None`` when the width is not pruned."""
        s = self.hidden_scores
        if s is None:
            return None
        hard = torch.zeros_like(s)
        hard[self.kept_channels(training)] = 1.0
        return B.straight_through(hard, s) if torch.is_grad_enabled() else hard

    # ------------------------------------------------------------------ the layer gates
    def _level(self, training: bool) -> float:
        return self.threshold if training else self.final_threshold

    def _gate_values(self, training: bool, noise: Optional[torch.Tensor]) -> torch.Tensor:
        """The layer gates before the 0/1 decision: the scores (threshold binarizers), or the
        hard-concrete gate of the scores (L0: with ``noise`` while training)."""
        s = self.layer_scores
        if not self.binarizer.stochastic:
            return s
        if training and noise is not None:
            z = torch.sigmoid((torch.log(noise) - torch.log1p(-noise) + s) / B.L0_BETA)
        else:
            z = torch.sigmoid(s)
        return (z * (B.L0_RIGHT - B.L0_LEFT) + B.L0_LEFT).clamp(0.0, 1.0)

    def gates_on(self, training: bool, noise: Optional[torch.Tensor] = None) -> list[bool]:
        """Each layer's gate by its score alone (before the empty-layer and one-layer rules)."""
        if self.layer_scores is None:
            return [True] * self.n_layers
        with torch.no_grad():
            values = self._gate_values(training, noise).detach()
            if self.binarizer.stochastic:
                on = values > L0_KEEP
            elif self.cutoff is not None:
                on = values >= self.cutoff
            else:
                on = self.binarizer.hard_mask(values, self._level(training)) > 0
        return [bool(v) for v in on.tolist()]

    def decide(self, on: Sequence[bool], alive: Sequence[bool]) -> list[bool]:
        """The layers kept: gate on and not empty (with layers pruned), at least one (the best
        scored), and ModernBERT's first."""
        if self.layer_scores is None:
            return [True] * self.n_layers
        kept = [bool(o and a) for o, a in zip(on, alive)]
        if self.keep_first_layer:
            kept[0] = True
        if not any(kept):
            kept[int(torch.argmax(self.layer_scores.detach()))] = True
        return kept

    @torch.no_grad()
    def alive(self, training: bool) -> list[bool]:
        """Whether each layer keeps a head or an FFN dimension under the masks (a head goes with
        its value rows or its attention-output columns, an FFN dimension with its FFN-in row or
        FFN-out column, as the latency cut and compaction count them). L0's training masks are
        random samples: every layer counts as alive there (no sample is drawn to measure)."""
        if self.binarizer.stochastic and training:
            return [True] * self.n_layers
        alive = [False] * self.n_layers
        for layer, units in enumerate(self.units):
            alive[layer] = any(bool(keep.any()) for keep in units_kept(units, training))
        return alive

    def prepare(self, training: bool) -> None:
        """Decide this forward's layers (a forward pre-hook of the stream's model): no graph is
        kept, each hook builds its differentiable gate from the decision."""
        if self.layer_scores is None:
            return
        noise = None
        if self.binarizer.stochastic and training:
            noise = torch.rand_like(self.layer_scores.detach()).clamp(1e-6, 1 - 1e-6)
        kept = self.decide(self.gates_on(training, noise), self.alive(training))
        self._decided = (training, kept, noise)

    def layer_gate(self, position: int, training: bool) -> Optional[torch.Tensor]:
        """Layer ``position``'s gate for this forward: exactly 0 or 1, its gradient to the
        score straight through (L0: through the hard-concrete gate)."""
        if self.layer_scores is None:
            return None
        if self._decided is None or self._decided[0] != training:
            self.prepare(training)
        _, kept, noise = self._decided
        hard = self.layer_scores.new_tensor(1.0 if kept[position] else 0.0)
        if not torch.is_grad_enabled():
            return hard
        soft = self._gate_values(training, noise)[position]
        return B.straight_through(hard, soft)

    def final_layers(self) -> list[int]:
        """The layers the eval masks remove (dense indices of this model's layer list)."""
        kept = self.decide(self.gates_on(False), self.alive(False))
        return [i for i, k in enumerate(kept) if not k]

    def extra_repr(self) -> str:
        width = f"width {self.final_width}/{self.dense_width}" if self.hidden_scores is not None else ""
        layers = f"{self.n_layers} layer gates" if self.layer_scores is not None else ""
        return ", ".join(x for x in (width, layers) if x)


def units_kept(units: Sequence[tuple[LinearSite, MaskedLinear]], training: bool) -> list[torch.Tensor]:
    """Per unit of one layer (its attention block, its FFN): a bool per head / FFN dimension,
    whether the masks keep it (``units``: that layer's patched value / attention-output /
    FFN-in / FFN-out layers)."""
    by_unit: dict[Optional[str], list[torch.Tensor]] = {}
    for site, layer in units:
        block = (layer.block_mask(training) != 0)
        if site.role in (Role.VALUE, Role.QKV, Role.FFN_IN):
            rows = block.any(dim=1).repeat_interleave(layer.block_rows)
            if site.role is Role.QKV:
                rows = rows.view(site.parts, -1)[-1]  # the value section
            keep = rows
            if site.role is not Role.FFN_IN:
                keep = rows.view(-1, site.head_dim).any(dim=1)
        else:
            cols = block.any(dim=0).repeat_interleave(layer.block_cols)
            keep = cols.view(-1, site.head_dim).any(dim=1) if site.role is Role.ATTN_OUTPUT else cols
        key = site.attention
        prior = by_unit.get(key)
        by_unit[key] = [keep if not prior else prior[0] & keep]
    return [v[0] for v in by_unit.values()]


@torch.no_grad()
def init_width_depth_from(masks: WidthDepthMasks, hidden: Optional[torch.Tensor],
                          layers: Optional[torch.Tensor], scale: float = 1.0) -> int:
    """Set the channel and layer scores from their Fisher importance (``hidden`` ``(width,)``,
    ``layers`` ``(layers,)``: ``fisher_information(..., width_depth=True)``'s), as
    :func:`~nnprune.pruning_core.post_training.init_scores_from` sets the heads' and FFN
    dimensions': ``scale * z``, ``z`` the log-importance standardised over the channels (over
    the layers), so that movement starts from the post-training ranking instead of ties.
    Returns the number of score vectors set."""
    done = 0
    for scores, fisher in ((masks.hidden_scores, hidden), (masks.layer_scores, layers)):
        if scores is None or fisher is None:
            continue
        if fisher.numel() != scores.numel():
            raise NNPruneError(f"importance of {fisher.numel()} units for {scores.numel()} scores")
        logs = torch.log(fisher.detach().float().cpu() + 1e-12)
        z = (logs - logs.mean()) / logs.std().clamp_min(1e-6) if logs.numel() > 1 else logs * 0
        scores.copy_((scale * z).to(scores.device, scores.dtype))
        done += 1
    return done


# ------------------------------------------------------------------------------ the masked model
class GatedLayerNorm(nn.LayerNorm):
    """A LayerNorm of the stream under the learnt hidden mask ``m``: over the kept channels,
    zero on the others. ``(..., width) -> (..., width)``. Without gradients it is exactly
    :class:`~nnprune.pruning_core.width_depth.MaskedLayerNorm` (kept channels gathered,
    ``F.layer_norm``); with them, the same values computed with ``m`` as weights (in fp32), so
    the loss's gradient reaches ``m`` and, straight through, the scores."""

    @classmethod
    def wrap(cls, norm: nn.LayerNorm, masks: WidthDepthMasks) -> "GatedLayerNorm":
        affine = norm.weight is not None
        gated = cls(norm.normalized_shape, eps=norm.eps, elementwise_affine=affine,
                    bias=affine and norm.bias is not None, device=cm._device(norm),
                    dtype=cm._dtype(norm))
        if affine:  # the same parameters: names, optimizer state and checkpoints unchanged
            gated.weight = norm.weight
            if norm.bias is not None:
                gated.bias = norm.bias
        object.__setattr__(gated, "masks", masks)
        object.__setattr__(gated, "original", norm)
        return gated

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.masks.hidden_mask(self.training)
        if m is None:
            return super().forward(x)
        if not m.requires_grad:
            keep = m.nonzero().squeeze(-1)
            w = self.weight.index_select(0, keep) if self.weight is not None else None
            b = self.bias.index_select(0, keep) if self.bias is not None else None
            y = F.layer_norm(x.index_select(-1, keep), (keep.numel(),), w, b, self.eps)
            return x.new_zeros(x.shape).index_copy(-1, keep, y)
        mf = m.float()
        xf = x.float()
        k = mf.detach().sum()
        mean = (xf * mf).sum(-1, keepdim=True) / k
        centred = xf - mean
        var = (centred * centred * mf).sum(-1, keepdim=True) / k
        y = centred * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight.float()
            if self.bias is not None:
                y = y + self.bias.float()
        return (y * mf).to(x.dtype)


def _row_hook(masks: WidthDepthMasks):
    def hook(module: nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor:
        m = masks.hidden_mask(module.training)
        return output if m is None else output * m.to(output.dtype)
    return hook


def _gate_hook(masks: WidthDepthMasks, position: int):
    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        g = masks.layer_gate(position, module.training)
        if g is None:
            return output
        x = args[0] if args else kwargs["hidden_states"]
        y = output[0] if isinstance(output, tuple) else output
        y = x + g.to(y.dtype) * (y - x)
        return (y, *output[1:]) if isinstance(output, tuple) else y
    return hook


def _prepare_hook(masks: WidthDepthMasks):
    def hook(module: nn.Module, _args: Any) -> None:
        masks.prepare(module.training)
    return hook


def width_depth_masks(model: nn.Module) -> Optional[WidthDepthMasks]:
    """The learnt width / depth masks of a patched ``model`` (``None``: none)."""
    found = getattr(model, MODULE_NAME, None)
    return found if isinstance(found, WidthDepthMasks) else None


def patch_width_depth(model: nn.Module, config: PruningConfig,
                      patched: Sequence[tuple[LinearSite, MaskedLinear]]) -> WidthDepthMasks:
    """Give ``model`` (in place) the learnt hidden and layer masks ``config`` asks for;
    ``patched``: the masked linear layers (whether a layer is empty). One-line errors for an
    architecture whose width and depth cannot be pruned exactly, a width beyond the model's, a
    stream narrowed before."""
    sites = stream_sites(model)  # refuses DeBERTa, encoder-decoders, tied heads in one line
    if width_depth_masks(model) is not None:
        raise NNPruneError("model already has learnt width / depth masks")
    if scatter_module(model) is not None:
        raise NNPruneError("this model's stream was narrowed before (a compacted checkpoint); "
                           "learn its width and layers from the dense model")
    if config.hidden_size is not None and config.hidden_size > sites.width:
        raise NNPruneError(f"hidden_size {config.hidden_size} is wider than the model's stream "
                           f"({sites.width})")
    arch = architecture_for(model.config.model_type)
    keep_first = bool(arch.hidden is not None and arch.hidden.keep_first_layer)
    if config.prune_layers and len(sites.layers) < 2:
        raise NNPruneError("prune_layers needs a model with at least 2 layers")
    weight = model.get_submodule(f"{sites.layers[0].path}.{sites.layers[0].writes[0]}").weight
    masks = WidthDepthMasks(config, sites, keep_first, device=weight.device, dtype=torch.float32)
    setattr(model, MODULE_NAME, masks)
    by_layer: dict[int, list] = {lay.position: [] for lay in sites.layers}
    for site, layer in patched:
        unit_role = site.role in (Role.VALUE, Role.QKV, Role.ATTN_OUTPUT, Role.FFN_IN, Role.FFN_OUT)
        if unit_role and site.layer in by_layer and site.attention in (None, "self"):
            by_layer[site.layer].append((site, layer))
    masks.units.extend(by_layer[i] for i in sorted(by_layer))
    if masks.hidden_scores is not None:
        for path in sites.all_norms():
            norm = model.get_submodule(path)
            cm.replace_linear(model, path, GatedLayerNorm.wrap(norm, masks))
            masks.replaced.append(path)
        for path in sites.rows:
            masks.handles.append(model.get_submodule(path).register_forward_hook(_row_hook(masks)))
    if masks.layer_scores is not None:
        for lay in sites.layers:
            masks.handles.append(model.get_submodule(lay.path).register_forward_hook(
                _gate_hook(masks, lay.position), with_kwargs=True))
        masks.handles.append(_stream_model(model, sites).register_forward_pre_hook(
            _prepare_hook(masks)))
    return masks


@torch.no_grad()
def final_width_depth(model: nn.Module) -> tuple[Optional[list[int]], list[int]]:
    """``(channels kept or None, layers removed)`` by the eval masks of a patched ``model``;
    read before the linear layers' masks are baked (an empty layer is found from them)."""
    masks = width_depth_masks(model)
    if masks is None:
        return None, []
    keep = masks.kept_channels(False) if masks.hidden_scores is not None else None
    return keep, masks.final_layers()


def unpatch_width_depth(model: nn.Module, apply_masks: bool,
                        final: Optional[tuple[Optional[list[int]], list[int]]] = None) -> None:
    """Undo :func:`patch_width_depth` (in place): the original norms and no hooks; with
    ``apply_masks`` the final channels and layers (``final``, from :func:`final_width_depth`
    before the linear layers were baked) are then fixed on the model by
    :func:`~nnprune.pruning_core.width_depth.apply_width_depth`, which compaction removes."""
    masks = width_depth_masks(model)
    if masks is None:
        return
    for handle in masks.handles:
        handle.remove()
    for path in masks.replaced:
        cm.replace_linear(model, path, model.get_submodule(path).original)
    delattr(model, MODULE_NAME)
    if apply_masks:
        keep, drop = final if final is not None else (None, [])
        if keep is not None or drop:
            apply_width_depth(model, keep, drop)


# ------------------------------------------------------------------------------ latency
class WidthDepthCut(LatencyCut):
    """:class:`~nnprune.pruning_core.latency_model.LatencyCut` of a model whose width and layers
    are learnt too: the table prices the heads and FFN dimensions of the layers kept at the
    stream's ``width`` (set by the pruner: the scheduled width while training, the final one
    for the eval masks), and one cut over the block and layer-gate scores removes the layers
    whose gate falls below it or that are left empty."""

    def __init__(self, model: LatencyModel, layers: Sequence[tuple[LinearSite, MaskedLinear]],
                 masks: WidthDepthMasks) -> None:
        if not model.has_width_depth:
            raise NNPruneError("hidden_size / prune_layers with --target-speedup need a latency "
                               "table that prices widths and layers (format 3); this one was "
                               "measured without them: measure it again (nnprune latency-table "
                               "--rebuild)")
        if model.hidden != masks.dense_width or model.num_layers != masks.n_layers:
            raise NNPruneError(f"the latency table is for a {model.hidden}-wide stream with "
                               f"{model.num_layers} layers; the model has {masks.dense_width} "
                               f"and {masks.n_layers}")
        super().__init__(model, layers)
        self.masks = masks
        self.width = masks.final_width

    def layout(self, cutoff: float, units=None) -> tuple[list[int], list[int], list[int]]:
        """Heads and FFN dimensions per layer at ``cutoff``, and the layers kept."""
        heads, dims = super().sizes(cutoff, units)
        m = self.masks
        if m.layer_scores is None:
            return heads, dims, list(range(len(heads)))
        on = (m.layer_scores.detach().float().cpu() >= cutoff).tolist()
        kept = m.decide(on, [h + d > 0 for h, d in zip(heads, dims)])
        return heads, dims, [i for i, k in enumerate(kept) if k]

    def sizes(self, cutoff: float, units=None) -> tuple[list[int], list[int]]:
        """Heads and FFN dimensions left per layer at ``cutoff`` (none in a removed layer)."""
        heads, dims, kept = self.layout(cutoff, units)
        return ([h if i in kept else 0 for i, h in enumerate(heads)],
                [d if i in kept else 0 for i, d in enumerate(dims)])

    def predict(self, cutoff: float, units=None) -> float:
        heads, dims, kept = self.layout(cutoff, units)
        return self.model.predict([heads[i] for i in kept], [dims[i] for i in kept], width=self.width)

    def candidates(self) -> list[torch.Tensor]:
        """The block scores and the layer gates' (one cut over both: the base class's
        :meth:`cutoff` bisects them, priced at the current width by :meth:`predict`)."""
        parts = super().candidates()
        if self.masks.layer_scores is not None:
            parts.append(self.masks.layer_scores.detach().float().cpu())
        return parts


def hidden_schedule_width(dense: int, final: int, progress: float) -> int:
    """The scheduled width at ``progress`` (the cubic schedule's, 0 -> 1)."""
    return int(math.floor(dense + (final - dense) * progress + 0.5))


__all__ = ["GatedLayerNorm", "MODULE_NAME", "WidthDepthCut", "WidthDepthMasks",
           "final_width_depth", "hidden_schedule_width", "init_width_depth_from",
           "patch_width_depth", "units_kept",
           "unpatch_width_depth", "width_depth_masks"]
