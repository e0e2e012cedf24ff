"""Post-training pruning of a fine-tuned encoder from the user's own batches: :func:`prune`.

Score every attention head and FFN dimension (per-example Fisher information of the loss, from
``model(**batch).loss`` or the user's ``loss_fn``), search the units to keep under a speed
(latency table) or FLOP budget, rearrange per layer, optionally tune the kept units by least
squares, and compact exactly. No data set, task or checkpoint folder is involved: ``nnprune
prune`` is this function plus loading, evaluation and saving.

With ``width_depth`` (the default) the hidden dimension and whole layers are scored and searched
too (:mod:`nnprune.pruning_core.width_depth`, docs/width-depth.md): the search chooses the
stream's width, the layers removed and the heads and FFN dimensions together; a layer left with
no head and no FFN dimension is removed. ``width_depth=False`` prunes heads and FFN only.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import torch
from torch import nn

from nnprune.errors import NNPruneError
from nnprune.phases import PhaseClock
from nnprune.api.measure import table_for
from nnprune.measure.flops import flop_profile
from nnprune.measure.latency import LatencySetting, LatencyTable, hardware_name
from nnprune.measure.timing import CacheState
from nnprune.pruning_core.compact import CompactionReport, compact_exactly, is_compacted
from nnprune.pruning_core.config import check_speedup_target
from nnprune.pruning_core.latency_model import LatencyModel
from nnprune.pruning_core.masked import MaskedLinear
from nnprune.pruning_core.post_training import (Importance, LossFn, MaskGroup, ShapeChoice,
                                                UnitCosts, align_ffn, apply_masks, batch_size,
                                                fisher_information, mask_groups, rearrange,
                                                search_masks, search_width_depth, tune_layerwise)
from nnprune.pruning_core.architectures import architecture_for
from nnprune.measure.flops import FlopProfile
from nnprune.pruning_core.width_depth import apply_width_depth, width_depth_support

logger = logging.getLogger(__name__)

FFN_MULTIPLE = 8  # FFN sizes kept by the search: multiples of 8 (fast CPU kernels, no padding)
MAX_BUDGET_ROUNDS = 6  # target_speedup: re-searches with a lower linear budget (see search_units)
BUDGET_SLACK = 0.005  # the table's prediction may exceed the budget by this fraction
MIN_CALIBRATION_SAMPLES = 32  # below this the Fisher estimates are noise
# measured_target: re-searches after timing a candidate, and how close to the target it must land
# (a candidate measured within [1 - LOW, 1 + HIGH] x target is taken; paired timing noise on a
# shared CPU is ~2%)
MEASURED_ROUNDS = 5
# A cut is timed as the model will serve, its weights in cache (nnprune speed's default).
MEASURED_CACHE = CacheState.WARM
MEASURED_LOW, MEASURED_HIGH = 0.02, 0.06
Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class PostTrainingResult:
    """What :func:`prune` did. ``model`` is the compacted model (also the one passed in, changed
    in place); the rest is plain data (:meth:`to_dict` for JSON).

    Example::

        result = nnprune.prune(model, batches, target_speedup=2.0)
        print(result.heads_per_layer, result.predicted_speedup)
        json.dumps(result.to_dict())
    """

    heads_kept: int
    heads_total: int
    ffn_dims_kept: int
    ffn_dims_total: int
    heads_per_layer: list[int]
    ffn_dims_per_layer: list[int]
    flops_before: float  # one forward at batch 1 x seq_len tokens
    flops_after: float
    predicted_speedup: float  # by the latency table (target_speedup) or the FLOP ratio
    predicted_by: str  # "latency table" or "flops"
    calibration_samples: int
    seq_len: int
    exactness: float  # max |output difference| compacted vs masked
    kept: dict[str, list[int]]  # unit group ("encoder.3.attention", "encoder.3.ffn") -> kept ids
    seconds: dict[str, float]  # per phase
    tune_error: dict[str, list[float]] = field(default_factory=dict)  # group -> [before, after]
    # Width and depth: the residual stream's width kept / dense, the dense model's indices of the
    # layers removed (heads_per_layer / ffn_dims_per_layer give them 0), and whether the search
    # could choose them (False: heads and FFN only, asked or not supported; see width_depth_note).
    hidden_kept: int = 0
    hidden_total: int = 0
    layers_removed: list[int] = field(default_factory=list)
    width_depth: bool = False
    width_depth_note: Optional[str] = None  # why width / depth were not searched, when asked
    # measured_target: the speedup the final shape measured against the dense model on this
    # machine (the table's setting), and every candidate timed on the way: budget (ms),
    # predicted and measured speedup
    measured_speedup: Optional[float] = None
    speed_rounds: list[dict[str, Any]] = field(default_factory=list)
    compaction: Optional[CompactionReport] = field(default=None, repr=False)
    model: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("model", "compaction")}
        return d


@dataclass(frozen=True)
class KeptShape:
    """What a search kept: units per layer, the FLOPs of one forward (batch 1, the search's
    sequence length) and the predicted speedup (latency table, else the FLOP ratio)."""

    heads_per_layer: list[int]
    ffn_dims_per_layer: list[int]
    flops: float
    predicted: float


def unit_costs(model: nn.Module, groups: list[MaskGroup], seq_len: int,
               profile: Optional[FlopProfile] = None) -> UnitCosts:
    """The FLOP model of ``speed`` / ``count-params`` (:mod:`nnprune.measure.flops`), read as a
    cost per head and per FFN dimension at batch 1 x ``seq_len``. Refuses models whose heads (or
    FFN dimensions) cost different FLOPs. ``profile``: the model's, when the caller has it."""
    profile = profile or flop_profile(model)
    full = profile.count(1, seq_len).total
    heads = {g.key: g.size for g in groups if g.is_heads}
    ffn = {g.key[:2]: g.size for g in groups if not g.is_heads}
    head_costs, ffn_costs = set(), set()
    for key, n in heads.items():
        head_costs.add(round(full - profile.resized({key: n - 1}, {}).count(1, seq_len).total, 3))
    for key, n in ffn.items():
        ffn_costs.add(round(full - profile.resized({}, {key: n - 1}).count(1, seq_len).total, 3))
    if len(head_costs) != 1 or len(ffn_costs) != 1:
        raise NNPruneError("post-training pruning needs every head (and every FFN dimension) to "
                           "cost the same FLOPs; this model's do not")
    head, dim = head_costs.pop(), ffn_costs.pop()
    fixed = full - head * sum(heads.values()) - dim * sum(ffn.values())
    return UnitCosts(head, dim, fixed, seq_len)


def per_layer(groups: list[MaskGroup], kept: dict[Any, list[int]]) -> tuple[list[int], list[int]]:
    """Heads and FFN dimensions kept per layer, in layer order."""
    return ([len(kept[g.key]) for g in groups if g.is_heads],
            [len(kept[g.key]) for g in groups if not g.is_heads])


def kept_shape(groups: list[MaskGroup], kept: dict[Any, list[int]], flops: UnitCosts,
               latency: Optional[LatencyModel]) -> KeptShape:
    heads, dims = per_layer(groups, kept)
    after = flops.total(sum(heads), sum(dims))
    full = flops.total(sum(g.size for g in groups if g.is_heads),
                       sum(g.size for g in groups if not g.is_heads))
    return KeptShape(heads, dims, after,
                     latency.speedup(heads, dims) if latency is not None else full / after)


WIDTH_STEPS = 16  # the width search tries multiples of hidden / 16 (rounded to 8)


@dataclass(frozen=True)
class WidthDepthSearch:
    """How the width / depth search prices a shape: per-unit costs at a width and a layer
    count, the exact price of a chosen shape, and the widths it tries."""

    costs_at: Any  # (width, layers kept) -> UnitCosts
    price: Any  # (ShapeChoice) -> cost in the budget's unit (ms or FLOPs)
    widths: list[int]
    protected: tuple[int, ...]
    exact: bool  # the per-unit costs are the price (FLOPs): no budget rounds needed


def width_steps(hidden: int, smallest: int = 1) -> list[int]:
    """The stream widths the search tries: multiples of ``hidden / 16`` (rounded to 8), from
    ``smallest`` up, and ``hidden``."""
    step = max(8, hidden // WIDTH_STEPS // 8 * 8)
    return sorted({w for w in range(step, hidden + 1, step) if w >= smallest} | {hidden})


def flop_search(model: nn.Module, profile: FlopProfile, groups: list[MaskGroup], seq_len: int,
                hidden: int, protected: tuple[int, ...]) -> WidthDepthSearch:
    """The FLOP prices of the width / depth search (a removed layer costs what a layer with no
    unit costs: LayerNorms and adds are not counted)."""
    cache: dict[int, UnitCosts] = {}
    head_key = next(g.key for g in groups if g.is_heads)
    ffn_key = next(g.key for g in groups if not g.is_heads)
    sizes = {g.key: g.size for g in groups}
    n_heads = sum(g.size for g in groups if g.is_heads)
    n_dims = sum(g.size for g in groups if not g.is_heads)

    def total(heads: dict, ffn: dict, width: int) -> float:
        return profile.resized(heads, ffn, hidden=width).count(1, seq_len).total

    def costs_at(width: int, _layers: int) -> UnitCosts:
        if width not in cache:
            full = total({}, {}, width)
            head = full - total({head_key: sizes[head_key] - 1}, {}, width)
            dim = full - total({}, {ffn_key[:2]: sizes[ffn_key] - 1}, width)
            cache[width] = UnitCosts(head, dim, full - head * n_heads - dim * n_dims, seq_len)
        return cache[width]

    def price(shape: ShapeChoice) -> float:
        heads = {g.key: len(shape.kept[g.key]) for g in groups if g.is_heads}
        ffn = {g.key[:2]: len(shape.kept[g.key]) for g in groups if not g.is_heads}
        return total(heads, ffn, len(shape.channels))

    return WidthDepthSearch(costs_at, price, width_steps(hidden), protected, True)


def latency_search(latency: LatencyModel, groups: list[MaskGroup], seq_len: int,
                   protected: tuple[int, ...]) -> WidthDepthSearch:
    """The latency-table prices of the width / depth search (widths within those measured)."""
    def costs_at(width: int, layers: int) -> UnitCosts:
        return UnitCosts.from_latency(latency, seq_len, width, layers)

    def price(shape: ShapeChoice) -> float:
        heads, dims = kept_layers_shape(groups, shape)
        return latency.predict(heads, dims, width=len(shape.channels))

    return WidthDepthSearch(costs_at, price, width_steps(latency.hidden, latency.widths[0]),
                            protected, False)


def kept_layers_shape(groups: list[MaskGroup], shape: ShapeChoice) -> tuple[list[int], list[int]]:
    """Heads and FFN dimensions per layer left (removed layers skipped), in layer order."""
    gone = set(shape.removed_layers)
    heads, dims = per_layer([g for g in groups if g.key[1] not in gone], shape.kept)
    return heads, dims


def search_shape(importance: Importance, groups: list[MaskGroup], search: WidthDepthSearch,
                 budget: float, rearrange_units: bool) -> ShapeChoice:
    """:func:`search_width_depth`, then per layer left: FFN widths aligned, units rearranged;
    a layer left with no head and no FFN dimension is removed (at least one stays). With a
    latency table the shape is priced by the table and the linear budget lowered by the
    overshoot until it fits (as :func:`search_units`)."""
    linear_budget = budget
    shape = None
    n_layers = len({g.key[1] for g in groups})
    for _ in range(MAX_BUDGET_ROUNDS):
        choice = search_width_depth(importance, groups, search.costs_at, linear_budget,
                                    search.widths, search.protected)
        gone = set(choice.removed_layers)
        live = [g for g in groups if g.key[1] not in gone]
        costs = search.costs_at(len(choice.channels), n_layers - len(gone))
        kept = align_ffn(importance, live, {g.key: choice.kept[g.key] for g in live}, costs,
                         linear_budget, multiple=FFN_MULTIPLE)
        if rearrange_units:
            kept = rearrange(importance, live, kept)
        empty = sorted(layer for layer in {g.key[1] for g in live}
                       if layer not in search.protected
                       and not any(kept[g.key] for g in live if g.key[1] == layer))
        if len(empty) + len(gone) >= n_layers:  # keep the most important layer
            empty = empty[:-1] if empty else empty
        gone |= set(empty)
        shape = ShapeChoice({g.key: (kept[g.key] if g.key[1] not in gone else []) for g in groups},
                            choice.channels, sorted(gone), choice.score)
        if search.exact:
            return shape
        over = search.price(shape) - budget
        if over <= BUDGET_SLACK * budget:
            return shape
        linear_budget -= over
    assert shape is not None
    return shape


def search_units(importance: Any, groups: list[MaskGroup], costs: UnitCosts, budget: float,
                 rearrange_units: bool, latency: Optional[LatencyModel]) -> dict[Any, list[int]]:
    """Search, align the FFN widths and rearrange. The search prices units linearly; with a
    latency table, whose per-layer curves are not lines, the mask is then priced by the table
    and the linear budget lowered by the overshoot until the table's prediction fits."""
    linear_budget = budget
    for _ in range(MAX_BUDGET_ROUNDS):
        kept = search_masks(importance, groups, costs, linear_budget)
        kept = align_ffn(importance, groups, kept, costs, linear_budget, multiple=FFN_MULTIPLE)
        if rearrange_units:
            kept = rearrange(importance, groups, kept)
        if latency is None:
            return kept
        over = latency.predict(*per_layer(groups, kept)) - budget
        if over <= BUDGET_SLACK * budget:
            return kept
        linear_budget -= over
    return kept


def first_examples(batches: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The first ``n`` examples of ``batches`` (the last batch cut to fit)."""
    out, seen = [], 0
    for b in batches:
        if seen >= n:
            break
        k = min(batch_size(b), n - seen)
        out.append({key: (v[:k] if isinstance(v, torch.Tensor) else v) for key, v in b.items()})
        seen += k
    return out


def _seq_len(batches: list[dict[str, Any]]) -> int:
    ids = batches[0].get("input_ids")
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        raise NNPruneError("pass seq_len: the batches have no (batch, tokens) input_ids to read it from")
    return int(ids.shape[1])


def check_prune_targets(target_speedup: Optional[float], target_flops: Optional[float],
                        measured_target: bool = False) -> None:
    """One-line :class:`~nnprune.NNPruneError` for anything but exactly one valid target of
    :func:`prune` (what a script checks before it loads anything); ``measured_target`` needs
    the speed target.

    Example::

        nnprune.check_prune_targets(target_speedup=2.0, target_flops=None)   # fine
        nnprune.check_prune_targets(None, 1.5)   # NNPruneError: ... in (0, 1); got 1.5
    """
    if (target_speedup is None) == (target_flops is None):
        raise NNPruneError("pass one target: --target-speedup S (e.g. 2) or --target-flops F "
                           "(fraction of the dense FLOPs to keep, e.g. 0.5)")
    check_speedup_target(target_speedup)
    if target_flops is not None and not 0 < target_flops < 1:
        raise NNPruneError(f"--target-flops is the fraction of FLOPs kept, in (0, 1); got "
                           f"{target_flops}")
    if measured_target and target_speedup is None:
        raise NNPruneError("--measured-target holds --target-speedup to a measured speed: it "
                           "needs --target-speedup, not --target-flops")


def prune(model: nn.Module, batches: Iterable[dict[str, Any]], *,
          target_speedup: Optional[float] = None, target_flops: Optional[float] = None,
          loss_fn: Optional[LossFn] = None,
          latency_table: "LatencyTable | str | Path | None" = None,
          latency: Optional[LatencySetting] = None, seq_len: Optional[int] = None,
          rearrange_units: bool = True, tune: bool = False, tune_samples: int = 256,
          width_depth: bool = True, hidden_size: Optional[int] = None,
          measured_target: bool = False, tokenizer: Any = None,
          progress: Optional[Progress] = None) -> PostTrainingResult:
    """Post-training structured pruning of a fine-tuned encoder with a head, in place.

    Args:
        model: a fine-tuned encoder (BERT, RoBERTa, DeBERTa, ...) with its task head; plain
            layers (a masked model: call ``FinePruning.detach()`` first). To cut a model that
            was pruned and compacted before, pass ``nnprune.expand(model)``: the targets then
            count against the dense model.
        batches: calibration batches, dicts of tensors (``input_ids``, ``attention_mask``,
            labels, ...); 32 examples at least, 1-2k is typical. A ``DataLoader`` works.
        target_speedup: speedup of the whole forward to reach (> 1), priced by a latency table
            measured on this machine at ``latency`` (default batch 1, ``seq_len`` tokens, CPU), or
            read from ``latency_table``.
        target_flops: instead, the fraction of the dense FLOPs to keep, in ``(0, 1)``.
        loss_fn: ``loss_fn(model, batch) -> scalar``, the mean loss over the batch's examples;
            default ``model(**batch).loss``. Any differentiable loss works (a custom head, a
            contrastive or distillation objective).
        seq_len: the sequence length the FLOPs / latency count at; default: the batches'.
        rearrange_units: re-choose the pruned units per layer with the Fisher blocks.
        tune: fold least-squares rescalings of the kept units into the output projections
            (reconstructs the dense layer outputs on ``tune_samples`` examples).
        width_depth: also prune the hidden dimension and remove whole layers (the search
            chooses; see docs/width-depth.md). ``False``: heads and FFN dimensions only. An
            architecture (or latency table) that cannot price or compact them exactly falls
            back to heads and FFN, saying why (``result.width_depth_note``).
        hidden_size: keep this many channels of the stream (its most important ones) instead
            of letting the search choose the width; layers, heads and FFN are still searched.
        measured_target: with ``target_speedup``, hold the target to the speedup measured on
            this machine rather than the one the table predicts: each candidate shape is
            compacted on a copy and timed against the dense model at the table's setting
            (batch, length, threads; a second or two at batch 1), and the budget corrected by
            what was measured until it lands within -2% / +6% of the target (at most
            ``MEASURED_ROUNDS`` candidates). The table must be this machine's.
        tokenizer: used to build the probe batch of the exactness check (optional).
        progress: ``progress(phase, done, total)`` for the "score" and "tune" phases.

    Returns:
        A :class:`PostTrainingResult`; ``result.model`` is the compacted model.

    Example::

        batches = [tokenizer(texts[i:i+32], padding=True, return_tensors="pt") | {"labels": y[i:i+32]}
                   for i in range(0, 1024, 32)]
        result = nnprune.prune(model, batches, target_speedup=2.0)
        nnprune.save_pretrained(result.model, "model-2x", tokenizer=tokenizer)
    """
    check_prune_targets(target_speedup, target_flops, measured_target)
    if hidden_size is not None and not width_depth:
        raise NNPruneError("--hidden-size chooses the width of the stream: it needs --width-depth")
    if any(isinstance(m, MaskedLinear) for m in model.modules()):
        raise NNPruneError("the model still has masked layers: detach them first "
                           "(FinePruning.detach() or nnprune.bertarize)")
    if is_compacted(model.config):
        raise NNPruneError("the model is compacted: prune nnprune.expand(model), its dense-shaped "
                           "equivalent, to cut it again")
    batches = list(batches)
    n_examples = sum(batch_size(b) for b in batches) if batches else 0
    if n_examples < MIN_CALIBRATION_SAMPLES:
        raise NNPruneError(f"only {n_examples} calibration examples; post-training pruning needs "
                           f"at least {MIN_CALIBRATION_SAMPLES}")
    phase = PhaseClock(logger, "prune")
    model.eval()
    groups = mask_groups(model)
    seq_len = seq_len or _seq_len(batches)
    profile = flop_profile(model)
    flops = unit_costs(model, groups, seq_len, profile)
    heads_total = sum(g.size for g in groups if g.is_heads)
    dims_total = sum(g.size for g in groups if not g.is_heads)
    full = flops.total(heads_total, dims_total)
    hidden = int(getattr(model.config, architecture_for(model.config.model_type).hidden_attr))
    if hidden_size is not None and not 8 <= hidden_size <= hidden:
        raise NNPruneError(f"--hidden-size must be between 8 and the model's {hidden}, got {hidden_size}")
    note = width_depth_support(model) if width_depth else None
    table = None
    if target_speedup is not None:
        table = table_for(model, latency_table, (latency or LatencySetting()).at(seq_len))
        if width_depth and note is None and not table.model.has_width_depth:
            note = ("the latency table was measured without hidden widths (an older format); measure "
                    "it again to price them")
    if hidden_size is not None and note is not None:
        raise NNPruneError(f"--hidden-size: {note}")
    if measured_target:
        check_table_here(table, "--measured-target")
    use_wd = width_depth and note is None
    if note is not None:
        logger.warning("width / depth: %s; pruning heads and FFN only", note)
    if table is not None:
        costs = UnitCosts.from_latency(table.model, seq_len)
        budget = table.model.budget_ms(target_speedup, width_depth=use_wd)
    else:
        costs, budget = flops, full * target_flops
    phase("load")

    done = [0]

    def scored(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress("score", done[0], n_examples)

    importance = fisher_information(model, batches, groups, progress=scored, loss_fn=loss_fn,
                                    width_depth=use_wd)
    phase("score")
    if use_wd:
        arch = architecture_for(model.config.model_type)
        protected = (0,) if arch.hidden is not None and arch.hidden.keep_first_layer else ()
        search = (latency_search(table.model, groups, seq_len, protected) if table is not None
                  else flop_search(model, profile, groups, seq_len, hidden, protected))
        if hidden_size is not None:
            if table is not None and hidden_size < table.model.widths[0]:
                raise NNPruneError(f"--hidden-size {hidden_size} is below the narrowest width the "
                                   f"latency table measured ({table.model.widths[0]})")
            search = replace(search, widths=[hidden_size])

        def find(ms: float) -> ShapeChoice:
            return search_shape(importance, groups, search, ms, rearrange_units)
    else:
        def find(ms: float) -> ShapeChoice:
            return ShapeChoice(search_units(importance, groups, costs, ms, rearrange_units,
                                            table.model if table is not None else None),
                               list(range(hidden)), [])
    shape = find(budget)
    phase("search")
    rounds: list[dict[str, Any]] = []
    if measured_target:
        shape, rounds = _measured_search(model, groups, find, shape, budget, target_speedup,
                                         table, use_wd, hidden)
        phase("measure")
    kept = shape.kept
    narrowed = len(shape.channels) < hidden
    tune_error: dict[str, list[float]] = {}
    live = [g for g in groups if g.key[1] not in set(shape.removed_layers)]
    if tune:
        dense = copy.deepcopy(model)
        if use_wd:
            apply_width_depth(model, shape.channels if narrowed else None, shape.removed_layers)
        tuned = [0]

        def tune_step(n: int) -> None:
            tuned[0] += n
            if progress is not None:
                progress("tune", tuned[0], len(live))

        report = tune_layerwise(model, dense, live, kept, first_examples(batches, tune_samples),
                                progress=tune_step, rows=shape.channels if narrowed else None)
        tune_error = {k: [report.before[k], report.after[k]] for k in report.before}
        del dense
    else:
        apply_masks(model, live, kept)
        if use_wd:
            apply_width_depth(model, shape.channels if narrowed else None, shape.removed_layers)
    phase("tune")
    compaction, diff = compact_exactly(model, tokenizer=tokenizer, ffn_multiple=FFN_MULTIPLE,
                                       refusal="the model was left masked, not compacted")
    phase("compact")
    heads, dims = per_layer(groups, kept)
    if use_wd:
        after = flop_search(model, profile, groups, seq_len, hidden, ()).price(shape)
        predicted = (table.model.speedup(*kept_layers_shape(groups, shape), width=len(shape.channels))
                     if table is not None else full / after)
    else:
        found = kept_shape(groups, kept, flops, table.model if table is not None else None)
        after, predicted = found.flops, found.predicted
    out_kept = {g.label: kept[g.key] for g in groups}
    if use_wd:
        out_kept.update({"stream": list(shape.channels),
                         "layers": [i for i in range(len(heads)) if i not in shape.removed_layers]})
    return PostTrainingResult(
        heads_kept=sum(heads), heads_total=heads_total,
        ffn_dims_kept=sum(dims), ffn_dims_total=dims_total,
        heads_per_layer=heads, ffn_dims_per_layer=dims,
        flops_before=full, flops_after=after, predicted_speedup=predicted,
        predicted_by="flops" if table is None else "latency table",
        calibration_samples=n_examples, seq_len=seq_len, exactness=diff,
        kept=out_kept, seconds=phase.seconds, tune_error=tune_error,
        hidden_kept=len(shape.channels), hidden_total=hidden,
        layers_removed=list(shape.removed_layers), width_depth=use_wd,
        width_depth_note=note if width_depth else None,
        measured_speedup=next((r["measured"] for r in rounds if r["taken"]), None),
        speed_rounds=rounds,
        compaction=compaction, model=model)


def check_table_here(table: LatencyTable, option: str) -> None:
    """One-line error unless ``table`` was measured on this machine's hardware (its CPU model
    and count, or its GPU): what timing here against it needs."""
    setting = LatencySetting(**table.key["setting"])
    if setting.device == "cuda" and not torch.cuda.is_available():
        raise NNPruneError(f"{option}: the latency table is for cuda and this machine has no GPU")
    here = hardware_name(setting.device)
    if table.key.get("hardware") != here:
        raise NNPruneError(f"{option}: the latency table was measured on {table.key.get('hardware')}, "
                           f"this is {here}; measure one here (nnprune latency-table)")


def shape_speedup(model: nn.Module, shape: ShapeChoice, narrowed: bool,
                  setting: LatencySetting) -> float:
    """The speedup of ``model`` (dense, left as it is: on its device, in its dtype) cut to
    ``shape``, measured: a copy is masked, compacted and timed against another copy,
    interleaved, at ``setting`` (median of per-round ratios)."""
    from nnprune.api.measure import measure_speed
    from nnprune.pruning_core.compact import compact_model

    trial = copy.deepcopy(model)
    gone = set(shape.removed_layers)
    live = [g for g in mask_groups(trial) if g.key[1] not in gone]
    apply_masks(trial, live, shape.kept)
    if narrowed or gone:
        apply_width_depth(trial, shape.channels if narrowed else None, shape.removed_layers)
    compact_model(trial, allow_inexact=False, ffn_multiple=FFN_MULTIPLE)
    # timing moves both to the setting's device and dtype: never the caller's model
    report = measure_speed(trial, copy.deepcopy(model), batch_sizes=[setting.batch_size],
                           seq_lens=[setting.seq_len], threads=setting.threads,
                           device=setting.device, dtype=setting.dtype, warmup=3, iters=30,
                           cache=MEASURED_CACHE)
    return float(report.rows[0].speedup_paired)


def _measured_search(model: nn.Module, groups: list[MaskGroup],
                     find: Callable[[float], ShapeChoice], shape: ShapeChoice, budget: float,
                     target: float, table: LatencyTable, width_depth: bool, hidden: int
                     ) -> tuple[ShapeChoice, list[dict[str, Any]]]:
    """``measured_target``: time ``shape`` (found at ``budget`` ms), and while it lands outside
    the target's band, search again for the speed its prediction would have to reach to measure
    the target (the table's error, predicted / measured, changes slowly between neighbouring
    shapes). Takes the slowest candidate
    that reached the target within ``MEASURED_LOW`` (else the fastest found, with a warning).
    Returns it and every candidate: ``budget_ms``, ``predicted``, ``measured``, ``taken``."""
    setting = LatencySetting(**table.key["setting"])
    rounds: list[dict[str, Any]] = []
    shapes: list[ShapeChoice] = []
    for _ in range(MEASURED_ROUNDS):
        measured = shape_speedup(model, shape, len(shape.channels) < hidden, setting)
        heads, dims = kept_layers_shape(groups, shape)
        predicted = table.model.speedup(heads, dims, len(shape.channels) if width_depth else None)
        rounds.append({"budget_ms": round(budget, 4), "predicted": round(predicted, 4),
                       "measured": round(measured, 4), "cache": MEASURED_CACHE.value,
                       "taken": False})
        shapes.append(shape)
        logger.info("measured target: budget %.2f ms, predicted %.2fx, measured %.2fx (target %gx)",
                    budget, predicted, measured, target)
        if (1 - MEASURED_LOW) * target <= measured <= (1 + MEASURED_HIGH) * target:
            break
        # the next shape is asked for the speed this one's prediction would need to measure S:
        # target x predicted / measured, in the table's milliseconds (the search lands near,
        # not on, its budget, so the ratio is taken at the price it did land on)
        budget = table.model.dense_ms * measured / (target * predicted)
        try:
            shape = find(budget)
        except NNPruneError:  # the corrected budget is below what the table says any shape costs
            break
    reached = [i for i, r in enumerate(rounds) if r["measured"] >= (1 - MEASURED_LOW) * target]
    if reached:
        best = min(reached, key=lambda i: rounds[i]["measured"])
    else:
        best = max(range(len(rounds)), key=lambda i: rounds[i]["measured"])
        logger.warning("measured target: %gx not reached on this machine; the fastest shape found "
                       "measured %.2fx", target, rounds[best]["measured"])
    rounds[best]["taken"] = True
    return shapes[best], rounds

__all__ = ["PostTrainingResult", "check_prune_targets", "prune", "unit_costs", "width_steps"]
