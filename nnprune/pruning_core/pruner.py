"""Patching a model with masked layers, and the :class:`Pruner` that drives them.

``patch_model(model, config)`` replaces every prunable ``nn.Linear`` (found through the
architecture's layer roles) by a :class:`MaskedLinear` in place and returns a :class:`Pruner`.
``unpatch_model(model)`` is its inverse: with ``apply_masks=False`` it restores the original
layers exactly; with ``apply_masks=True`` it bakes the final masks into plain weights
("bertarize").

The pruner owns the schedule (threshold and regularization ramp), the regularization loss, the
density measurements and the density controller used by ``target_density``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch
import torch.nn as nn

from nnprune.errors import NNPruneError
from nnprune.pruning_core import binarizers as B
from nnprune.pruning_core.architectures import LinearSite, Role, find_sites
from nnprune.pruning_core.binarizers import Binarizer
from nnprune.pruning_core.config import (LATENCY_KEY, PruningConfig, RegularizationKind,
                                         StructureKind)
from nnprune.pruning_core.latency_model import LatencyCut, LatencyModel
from nnprune.pruning_core.learned_width_depth import (WidthDepthCut, WidthDepthMasks,
                                                      final_width_depth, hidden_schedule_width,
                                                      patch_width_depth, unpatch_width_depth)
from nnprune.pruning_core.masked import MaskedLinear, resolve_block
from nnprune.pruning_core.schedule import CubicSchedule

# Density controller (see Pruner._update_controller): lambda = base lambda * multiplier.
MAX_MULTIPLIER = 100.0
PROPORTIONAL_GAIN = 5.0
SOFT_WIDTH = 1.0  # logit units: how far from the cut a score still counts as partly kept


@dataclass
class PatchedLayer:
    site: LinearSite
    layer: MaskedLinear


def _get_parent(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    parent_path, _, name = path.rpartition(".")
    return (model.get_submodule(parent_path) if parent_path else model), name


def patch_model(model: nn.Module, config: PruningConfig) -> "Pruner":
    """Replace the prunable linear layers of ``model`` by masked ones (in place)."""
    if not config.prunes:
        return Pruner(model, config, [])
    if any(isinstance(m, MaskedLinear) for m in model.modules()):
        raise NNPruneError("model is already patched with masked layers")
    sites = find_sites(model)
    patched: list[PatchedLayer] = []
    ffn_in_by_unit: dict[tuple, MaskedLinear] = {}
    # FFN-in before FFN-out so the shared score vector exists when FFN-out borrows it; the sort
    # is stable, so a gated FFN's first FFN-in (the owner) comes before the others.
    order = sorted(sites, key=lambda s: s.role is Role.FFN_OUT)
    for site in order:
        spec = config.attention_block if site.role.is_attention else config.ffn_block
        if spec.kind is StructureKind.DENSE:
            continue
        parent, name = _get_parent(model, site.path)
        linear = getattr(parent, name)
        # A fused FFN-in layer (ModernBERT's Wi [input; gate]) gives its row sections one score
        # per FFN dimension; a fused QKV layer keeps one block per head of each section.
        tiles = site.parts if spec.kind is StructureKind.FFN_DIM and site.role is Role.FFN_IN else 1
        rows, cols = resolve_block(spec, site.role, linear.out_features // tiles,
                                   linear.in_features, site.num_heads, where=site.path,
                                   parts=site.parts if site.role is Role.QKV else 1)
        source = None
        if spec.kind is StructureKind.FFN_DIM and site.role is not Role.FFN_IN:
            source = ffn_in_by_unit[site.unit]
        elif spec.kind is StructureKind.FFN_DIM:
            # A gated FFN's later FFN-in matrices (T5's wi_1) share the first one's scores.
            source = ffn_in_by_unit.get(site.unit)
        layer = MaskedLinear.from_linear(
            linear, block_rows=rows, block_cols=cols, binarizer=config.binarizer,
            score_init=config.score_init, score_init_scale=config.score_init_scale,
            score_source=source, row_tiles=tiles)
        if site.role is Role.FFN_IN:
            ffn_in_by_unit.setdefault(site.unit, layer)
        layer.threshold = config.initial_threshold
        layer.final_threshold = config.final_threshold
        setattr(parent, name, layer)
        patched.append(PatchedLayer(site, layer))
    by_path = {p.site.path: p for p in patched}
    patched = [by_path[s.path] for s in sites if s.path in by_path]
    width_depth = None
    if config.learns_width_depth:
        try:
            width_depth = patch_width_depth(model, config, [(p.site, p.layer) for p in patched])
        except NNPruneError:
            unpatch_model(model, apply_masks=False)  # nothing of the refused request stays
            raise
    return Pruner(model, config, patched, width_depth)


def unpatch_model(model: nn.Module, apply_masks: bool = True) -> nn.Module:
    """Replace every :class:`MaskedLinear` by a plain ``nn.Linear`` (in place; returns ``model``).

    ``apply_masks=True`` multiplies the weights by the final (eval) masks and drops the scores;
    ``apply_masks=False`` returns the untouched original weights. Learnt width / depth masks
    (``hidden_size``, ``prune_layers``) are undone too; with ``apply_masks`` their final
    channels and layers are fixed on the model (LayerNorms over the kept channels, removed
    layers skipped) for :func:`~nnprune.pruning_core.compact.compact_model` to remove.
    """
    # Before the linear layers are baked: an empty layer is found from their masks.
    final = final_width_depth(model) if apply_masks else None
    # Compute all replacements first: an FFN-out layer reads its FFN-in layer's scores.
    replacements = [(path, m.to_linear(apply_masks)) for path, m in model.named_modules()
                    if isinstance(m, MaskedLinear)]
    for path, linear in replacements:
        parent, name = _get_parent(model, path)
        setattr(parent, name, linear)
    hook = model.__dict__.pop("_nnprune_cut_hook", None)
    if hook is not None:
        hook.remove()
    unpatch_width_depth(model, apply_masks, final)
    return model


class Pruner:
    """Drives the masked layers of one model through a fine-pruning run."""

    def __init__(self, model: nn.Module, config: PruningConfig, layers: list[PatchedLayer],
                 width_depth: Optional[WidthDepthMasks] = None):
        self.model = model
        self.config = config
        self.layers = layers
        # learnt hidden-channel and layer masks (config.hidden_size / prune_layers), else None
        self.width_depth = width_depth
        self.schedule: Optional[CubicSchedule] = None
        self.progress = 0.0
        self.multiplier = 0.0  # scales the lambdas: the ramp, or the density controller's output
        self.integral = 0.0  # density controller state (integral term)
        self.soft_start: Optional[float] = None  # soft density when the controller first ran
        self.last_regularization = 0.0
        self.latency_cut: Optional[LatencyCut] = None  # set by use_latency (target_speedup)
        self._hook = None
        if self.uses_global_cutoff:
            # First: the width / depth masks' pre-hook (on the stream's model, which may be this
            # one) reads the cut too.
            self._hook = model.register_forward_pre_hook(self._set_global_cutoffs, prepend=True)
            # Kept on the model so that unpatch_model can remove it with the masked layers.
            model._nnprune_cut_hook = self._hook

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[PatchedLayer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def score_owners(self) -> list[PatchedLayer]:
        return [p for p in self.layers if p.layer.owns_scores]

    def mask_score_parameters(self) -> list[nn.Parameter]:
        scores = [p.layer.mask_scores for p in self.layers if p.layer.mask_scores is not None]
        wd = self.width_depth
        if wd is not None:
            scores += [s for s in (wd.hidden_scores, wd.layer_scores) if s is not None]
        return scores

    @property
    def binarizer(self) -> Binarizer:
        """What the config's binarizer choice means (:mod:`nnprune.pruning_core.binarizers`)."""
        return self.config.binarizer_rules

    # ------------------------------------------------------------------ schedule
    @property
    def regularized(self) -> bool:
        return (self.config.regularization is not RegularizationKind.NONE
                and self.config.uses_scores and bool(self.layers))

    @property
    def has_target(self) -> bool:
        return self.config.target_density is not None or self.config.target_speedup is not None

    @property
    def controls_density(self) -> bool:
        """A target density adapts lambda (:meth:`_update_controller`) for the threshold
        binarizers and L0. TopK reaches the target through its keep-fraction schedule; its
        "threshold" is a keep fraction, not a score, so a controller would compare the scores
        with a meaningless cut: its lambda keeps the plain ramp."""
        return (self.has_target and self.regularized
                and self.binarizer.reaches_density_by_regularization)

    def use_latency(self, model: LatencyModel) -> None:
        """Cut the masks in latency units (``config.target_speedup``): the global cutoff keeps the
        most blocks whose kept whole heads / FFN dimensions ``model`` predicts within the
        scheduled latency (see :mod:`nnprune.pruning_core.latency_model`)."""
        if self.config.target_speedup is None:
            raise NNPruneError("use_latency needs a pruning config with target_speedup")
        # refuses a target beyond the model's reach
        model.budget_ms(self.config.target_speedup, width_depth=self.width_depth is not None)
        pairs = [(p.site, p.layer) for p in self.layers]
        self.latency_cut = (LatencyCut(model, pairs) if self.width_depth is None
                            else WidthDepthCut(model, pairs, self.width_depth))

    def latency_budget(self, training: bool) -> float:
        """The latency (ms) the masks are cut to: from the dense latency at the start of pruning
        down to ``dense / target_speedup`` at its end, linearly in ``progress``; eval masks
        always use the final budget."""
        assert self.latency_cut is not None and self.config.target_speedup is not None
        dense = self.latency_cut.model.dense_ms
        final = self.latency_cut.model.budget_ms(self.config.target_speedup,
                                                 width_depth=self.width_depth is not None)
        p = self.progress if training and self.schedule is not None else 1.0
        return dense + (final - dense) * p

    def predicted_speedup(self, training: bool = False) -> float:
        """Speedup the latency model predicts for the eval masks, or with ``training`` for the
        masks at the current point of the schedule (``nan`` without a latency model)."""
        if self.latency_cut is None:
            return float("nan")
        cut = self.latency_cut
        return cut.model.dense_ms / cut.predict(self._latency_cutoff(training))

    def _latency_cutoff(self, training: bool) -> float:
        """The latency cut of the eval masks or of the training ones (at the scheduled width)."""
        cut = self.latency_cut
        if isinstance(cut, WidthDepthCut):
            cut.width = self.width_depth.width_for(training and self.schedule is not None)
        return cut.cutoff(self.latency_budget(training))

    def configure(self, total_steps: int) -> None:
        c = self.config
        if c.target_speedup is not None and self.layers and self.latency_cut is None:
            raise NNPruneError("--target-speedup needs a latency table: call use_latency() "
                               "before training (the workflows build one)")
        self.schedule = CubicSchedule.build(c.initial_threshold, c.final_threshold,
                                            c.initial_warmup, c.final_warmup, total_steps)

    def step(self, global_step: int) -> None:
        """Set the thresholds for ``global_step`` and update the lambda multiplier."""
        if self.schedule is None:
            raise RuntimeError("Pruner.configure(total_steps) must be called before step()")
        self.progress = self.schedule.progress(global_step)
        threshold = self.schedule.value(global_step)
        for p in self.layers:
            p.layer.threshold = threshold
        wd = self.width_depth
        if wd is not None:
            wd.threshold = threshold
            # the stream's own cubic schedule: the dense width down to hidden_size
            wd.width = hidden_schedule_width(wd.dense_width, wd.final_width, self.progress)
        if self.controls_density:
            self._update_controller()
        else:
            self.multiplier = self.progress

    def target_at_progress(self) -> float:
        """The scheduled density: linear in ``progress`` to ``target_density``, or with
        ``target_speedup`` the density the latency cut keeps at the scheduled latency."""
        if self.latency_cut is not None:
            return self.latency_cut.density(self._latency_cutoff(training=True))
        d = self.config.target_density
        return 1.0 + (d - 1.0) * self.progress if d is not None else float("nan")

    def _update_controller(self) -> None:
        """A two-sided Lagrangian: ``multiplier = u + kp * e``, ``u += ki * e`` (``u`` clamped
        to +-MAX_MULTIPLIER, ``kp = PROPORTIONAL_GAIN``, ``ki = density_controller_gain`` over
        the pruning steps), where ``e`` is a measured density minus the scheduled target. The
        multiplier is 0 during the warm-up (progress 0) and the integral does not move there.

        What ``e`` measures, per phase, and how it relates to the regularizer it scales
        (:meth:`regularization_loss`):

        * While pruning (0 < progress < 1): the soft density (:meth:`soft_density`), i.e. the
          per-score :meth:`soft_keep` that the regularizer penalises too. It moves as soon as the
          scores move (the hard density only changes when they cross the cut, hundreds of steps
          later, and an integral driven by it winds up). The two are the same per-score quantity
          but not the same sum: the controller weights each score by the weights it decides and
          pools all groups (so it measures the model's density), the regularizer averages per
          layer, then per group, scaled by the group lambdas (the per-group strengths of the
          paper). The target is capped at the soft density of the first pruning step.
        * Cool-down (progress 1), threshold binarizers: the *hard* weight-weighted fraction of
          scores above the nominal final cut (:meth:`nominal_density`), i.e. what the masks
          would keep at the method's own threshold. The masks themselves are the quantile
          (density exact); the controller keeps that quantile's cut near the nominal one. The
          regularizer still penalises the soft density, so ``e`` jumps when the phase changes.
        * Cool-down, L0: the expected density (``P(gate != 0)``, through :meth:`density` with
          ``training=True``), which is exactly :meth:`soft_density` for L0: for L0 the
          controller and the regularizer measure the same per-score quantity in every phase.
          No gate is ever sampled here. (The eval gates are deterministic; their hard density
          differs from the expectation.)

        A negative multiplier pushes scores *up*, so masks can grow back.

        Under Adam every score whose penalty outweighs its task gradient moves at about one
        learning rate per step, so the scores cross the cut nearly together and lambda alone
        overshoots. The threshold binarizers therefore take their masks from the global score
        quantile at the scheduled density (:attr:`quantile_masks`): the density is exact, and
        this controller keeps that cut near the method's nominal threshold.
        """
        pruning_steps = max(1, self.schedule.total_steps - self.schedule.warmup_steps
                            - self.schedule.cooldown_steps)
        if self.progress <= 0:
            self.multiplier = 0.0
            return
        target = self.target_at_progress()
        if self.progress < 1:
            measured = self.soft_density()
            if self.soft_start is None:
                self.soft_start = measured
            # Scores at their init sit below soft density 1 (sigmoid(2.2) = 0.9 for soft movement):
            # a target above that start would first push the scores away from the cut.
            target = min(target, self.soft_start)
        elif self.quantile_masks:
            measured = self.nominal_density()
        else:  # L0 (TopK never has a controller): the expected density, no sample
            measured = self.density(training=True)
        error = measured - target
        gain = self.config.density_controller_gain / pruning_steps
        self.integral = max(-MAX_MULTIPLIER, min(MAX_MULTIPLIER, self.integral + gain * error))
        self.multiplier = self.integral + PROPORTIONAL_GAIN * error

    def _score_cut(self, layer: MaskedLinear) -> float:
        """The layer's final threshold in score units (its logit for the sigmoid binarizer)."""
        return self.binarizer.score_cut(layer.final_threshold)

    def soft_keep(self, layer: MaskedLinear, scores: torch.Tensor) -> torch.Tensor:
        """Per-score soft "kept" value in [0, 1] against the *final* cut:
        ``sigmoid((s - cut) / SOFT_WIDTH)`` with ``cut`` the final threshold (its logit for the
        sigmoid binarizer), or P(gate != 0) for L0. Differentiable."""
        return self.binarizer.soft_keep(scores, self._score_cut(layer), SOFT_WIDTH)

    @torch.no_grad()
    def _weighted_mean(self, per_score) -> float:
        """Mean of ``per_score(layer, scores)`` over all scores, each weighted by the weights it
        decides."""
        num = den = 0.0
        for p in self.score_owners:
            d = per_score(p.layer, p.layer.mask_scores.detach().float())
            num += float(d.sum()) * p.layer.weights_per_score
            den += d.numel() * p.layer.weights_per_score
        return num / den if den else 1.0

    def nominal_density(self) -> float:
        """Weight-weighted fraction of scores above the nominal final cut (what the masks would
        keep at the method's own final threshold, without the quantile)."""
        return self._weighted_mean(lambda layer, s: (s > self._score_cut(layer)).float())

    def soft_density(self) -> float:
        """Weight-weighted mean of :meth:`soft_keep` (for L0: the expected density). Unlike the
        hard density at the ramping threshold, it moves from the first step the scores move.
        Deterministic: it draws no random numbers."""
        return self._weighted_mean(self.soft_keep)

    @property
    def quantile_masks(self) -> bool:
        """Target-density mode of the threshold binarizers: masks keep the global score
        quantile at the scheduled density, so the density is exact; lambda is adapted so that
        this cut sits at the method's nominal threshold (see :meth:`_update_controller`)."""
        return self.has_target and bool(self.layers) and self.binarizer.global_score_cut

    @property
    def uses_global_cutoff(self) -> bool:
        """Every layer's masks at one score cut: global topK (a keep-fraction binarizer ranking
        all layers' scores together), or the quantile / latency cut of a target."""
        global_topk = self.config.global_topk and self.binarizer.keep_fraction
        return global_topk or self.quantile_masks

    def finalize(self) -> None:
        """Put every layer on its final threshold (what evaluation always uses)."""
        for p in self.layers:
            p.layer.threshold = p.layer.final_threshold
        if self.width_depth is not None:
            self.width_depth.threshold = self.width_depth.final_threshold
        if self._hook is not None:
            # Layers read their cut when asked for a mask outside a forward (bertarize, counts).
            self._compute_cutoffs(training=False)

    def _set_global_cutoffs(self, module: nn.Module, args: Any) -> None:
        """Forward pre-hook: the cut for this forward's mode."""
        self._compute_cutoffs(module.training)

    def _compute_cutoffs(self, training: bool) -> None:
        """Set every layer's global score cut: the weighted quantile at the keep fraction of the
        training schedule, or at the final one for eval."""
        owners = self.score_owners
        if not owners:
            return
        if self.latency_cut is not None:
            cutoff = self._latency_cutoff(training)
            for p in owners:
                p.layer.global_cutoff = cutoff
            if self.width_depth is not None:
                self.width_depth.cutoff = cutoff
            return
        if self.quantile_masks:
            keep = (self.target_at_progress() if training and self.schedule is not None
                    else self.config.target_density)
        else:
            keep = owners[0].layer.threshold if training else owners[0].layer.final_threshold
        weights = [p.layer.weights_per_score for p in owners]
        cutoff = B.weighted_cutoff([p.layer.score_tensor() for p in owners], weights, keep)
        for p in owners:
            p.layer.global_cutoff = cutoff
        if self.width_depth is not None and self.binarizer.global_score_cut:
            self.width_depth.cutoff = cutoff  # the layer gates at the blocks' cut

    # ------------------------------------------------------------------ losses
    def lambdas(self) -> dict[str, float]:
        c = self.config
        return {"attention": c.attention_lambda * self.multiplier,
                "ffn": c.ffn_lambda * self.multiplier}

    def regularization_loss(self) -> torch.Tensor:
        """``sum_g lambda_g * mean_{layers in g}(scale_l * r_l)``, where ``r_l`` is the mean of
        sigmoid(scores) (L1) or the expected L0 density of the layer's gates.

        With a target density, ``r_l`` is the layer's soft density (:meth:`soft_keep`): the L1
        penalty shifted to the final cut, so that its push falls on the scores near the cut
        rather than on all of them alike, and so that it penalises the per-score quantity the
        controller steers while pruning. It is not the controller's exact sum: here each layer
        counts by its mean (whatever its size) and each group by its own lambda, where
        :meth:`soft_density` weights every score by the weights it decides; and in the
        cool-down the threshold methods' controller measures the hard nominal density instead
        (see :meth:`_update_controller`). For L0 ``r_l`` is the expected density with or
        without a target.

        Without a target, ``multiplier`` is the schedule's progress (the lambdas ramp from 0);
        with one, the controller's output, which may be negative."""
        if not self.regularized:
            return torch.zeros(())
        lambdas = self.lambdas()
        groups: dict[str, list[torch.Tensor]] = {"attention": [], "ffn": []}
        for p in self.score_owners:
            s = p.layer.mask_scores
            if self.controls_density:
                r = self.soft_keep(p.layer, s).mean()
            elif self.config.regularization is RegularizationKind.L1:
                r = torch.sigmoid(s).mean()
            else:
                r = B.l0_expected_density(s).mean()
            if p.site.is_decoder:
                r = r * self.config.decoder_lambda_scale
            groups[p.site.group].append(r)
        total = sum(lambdas[g] * torch.stack(v).mean() for g, v in groups.items() if v)
        loss = total if isinstance(total, torch.Tensor) else torch.zeros(())
        self.last_regularization = float(loss.detach())
        return loss

    # ------------------------------------------------------------------ measurements
    @torch.no_grad()
    def density(self, training: bool = False, group: Optional[str] = None) -> float:
        """Fraction of the patched matrices' weights whose mask is non-zero: the eval masks, or
        with ``training`` the masks at the current schedule. For training L0 gates it is the
        expected fraction (``P(gate != 0)``, weight-weighted), never a random sample, so
        measuring (logging, the controller) leaves the RNG stream and hence the training
        unchanged. Sampling happens only in the forward pass."""
        if self._hook is not None:
            self._compute_cutoffs(training)
        kept = total = 0
        for p in self.layers:
            if group is not None and p.site.group != group:
                continue
            kept += p.layer.kept_weights(training)
            total += p.layer.weight.numel()
        return kept / total if total else 1.0

    def stats(self) -> dict[str, float]:
        """Scalars logged by the trainer. Deterministic and free of side effects on the
        training: ``pruning/density`` is the training-mask density (L0: the expected one)."""
        if not self.layers:
            return {}
        out = {"pruning/threshold": float(self.layers[0].layer.threshold),
               "pruning/density": self.density(training=True),
               "pruning/progress": self.progress}
        if self.regularized:
            lam = self.lambdas()
            out.update({"pruning/lambda_attention": lam["attention"],
                        "pruning/lambda_ffn": lam["ffn"],
                        "pruning/regularization": self.last_regularization})
        if self.controls_density:
            out["pruning/target_density"] = self.target_at_progress()
            out["pruning/soft_density"] = self.soft_density()
            if self.quantile_masks:
                out["pruning/nominal_density"] = self.nominal_density()
        if self.latency_cut is not None:
            out["pruning/predicted_speedup"] = self.predicted_speedup(training=True)
        wd = self.width_depth
        if wd is not None:
            if wd.hidden_scores is not None:
                out["pruning/hidden_width"] = float(wd.width_for(self.schedule is not None))
            if wd.layer_scores is not None and not self.binarizer.stochastic:
                kept = wd.decide(wd.gates_on(True), wd.alive(True))
                out["pruning/layers_kept"] = float(sum(kept))
        return out

    # ------------------------------------------------------------------ persistence
    def saved_info(self) -> dict[str, Any]:
        """What ``nnprune_config.json`` must hold beside the config to rebuild these masks."""
        info: dict[str, Any] = {"masked": len(self.layers) > 0}
        if self.latency_cut is not None:
            info[LATENCY_KEY] = {"model": self.latency_cut.model.to_dict()}
        return info

    def state_dict(self) -> dict[str, float]:
        return {"integral": self.integral, "multiplier": self.multiplier,
                "soft_start": self.soft_start}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.integral = float(state.get("integral", 0.0))
        self.multiplier = float(state.get("multiplier", 0.0))
        start = state.get("soft_start")
        self.soft_start = None if start is None else float(start)
