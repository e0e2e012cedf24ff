"""Parameter counting in the paper's convention, and the structured FLOP speedup estimate.

Counts are over the *weights* of the linear layers of the transformer layers (Q, K, V, attention
output, FFN in/out), biases excluded, as Sanh et al. and Lagunas et al. report them. A weight
counts as remaining when it is non-zero in the model as it computes at eval (masks applied with
the final threshold). The original size comes from the config (``nnprune_original`` entry for a
compacted checkpoint), so a compacted model's compression is against its dense ancestor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn as nn

from nnprune.measure.flops import compacted_profile
from nnprune.pruning_core.architectures import Role, architecture_for, model_class_for
from nnprune.pruning_core.compact import dense_config
from nnprune.pruning_core.compact_modeling import CLASS_PREFIX, LAYOUT_ATTR, ORIGINAL_ATTR
from nnprune.pruning_core.structure import analyze_structure, effective_weight

logger = logging.getLogger(__name__)
MASK_SCORES = "mask_scores"  # the masked layers' score parameters: pruning machinery, not weights

ROLE_SHORT = {Role.QUERY: "q", Role.KEY: "k", Role.VALUE: "v", Role.QKV: "qkv",
              Role.ATTN_OUTPUT: "o", Role.FFN_IN: "ffn_in", Role.FFN_OUT: "ffn_out"}


@dataclass
class LayerCount:
    stack: str
    layer: int
    matrices: dict[str, list[int]] = field(default_factory=dict)  # name -> [remaining, total]
    heads: dict[str, list[int]] = field(default_factory=dict)  # attention -> [kept, original]
    ffn_dims: list[int] = field(default_factory=lambda: [0, 0])  # [kept, original]
    removed: bool = False  # the whole layer was removed (``layer``: its dense index)


@dataclass
class ParamCount:
    """Linear weights of the transformer layers kept against the dense ancestor's, per layer
    (:func:`nnprune.count_parameters`), and the model's parameters in all.

    ``to_dict()`` (what ``nnprune count-params --json`` prints) labels every count::

        {"model_type": "bert", "seq_len": 128,
         "remaining": 1.3e6, "original": 2.7e6,      # linear weights of the layers, kept / dense
         "density": 0.5, "compression": 2.0, "estimated_speedup": 1.6,
         "parameters": {"total": 22713216,           # every parameter (mask scores excluded)
                        "original": 22713216,        # the same count of the dense ancestor
                        "embeddings": 11917824},     # of it, the embedding tables
         "by_stack": {"encoder": {"kept": ..., "original": ...}},
         "layers": [{"stack": "encoder", "layer": 0,
                     "matrices": {"q": {"kept": ..., "original": ...}, ...},
                     "heads": {"self": {"kept": 12, "original": 12}},
                     "ffn_dims": {"kept": 1536, "original": 1536}}, ...]}

    Example::

        c = nnprune.count_parameters(model)
        print(c.remaining, c.original, c.density, c.unit_totals(), c.total_parameters)
    """

    model_type: str
    layers: list[LayerCount]
    remaining: int  # non-zero linear weights
    original: int  # linear weights of the dense architecture
    seq_len: int
    estimated_speedup: float
    by_stack: dict[str, list[int]] = field(default_factory=dict)  # stack -> [remaining, original]
    # Every parameter the model holds (embeddings, layers, biases, heads; nnprune's mask scores
    # excluded); the same count of its dense ancestor (None when it cannot be rebuilt); and the
    # embedding tables' share.
    total_parameters: int = 0
    original_total_parameters: Optional[int] = None
    embedding_parameters: int = 0
    # The residual stream's width [kept, original] (the hidden dimension; equal when not pruned).
    hidden_size: list[int] = field(default_factory=lambda: [0, 0])

    @property
    def density(self) -> float:
        return self.remaining / self.original if self.original else 1.0

    @property
    def compression(self) -> float:
        return self.original / self.remaining if self.remaining else float("inf")

    def unit_totals(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((heads kept, original), (FFN dims kept, original))`` over all layers and
        attention blocks."""
        heads = [0, 0]
        ffn = [0, 0]
        for lc in self.layers:
            for kept, orig in lc.heads.values():
                heads[0] += kept
                heads[1] += orig
            ffn[0] += lc.ffn_dims[0]
            ffn[1] += lc.ffn_dims[1]
        return (heads[0], heads[1]), (ffn[0], ffn[1])

    def to_dict(self) -> dict[str, Any]:
        """The labelled counts (the shape in the class doc)."""
        def pair(kept_original: list[int]) -> dict[str, int]:
            return {"kept": int(kept_original[0]), "original": int(kept_original[1])}

        layers = [{"stack": lc.stack, "layer": lc.layer,
                   "matrices": {n: pair(v) for n, v in lc.matrices.items()},
                   "heads": {a: pair(v) for a, v in lc.heads.items()},
                   "ffn_dims": pair(lc.ffn_dims), **({"removed": True} if lc.removed else {})}
                  for lc in self.layers]
        return {"model_type": self.model_type, "seq_len": self.seq_len,
                "remaining": self.remaining, "original": self.original,
                "density": self.density, "compression": self.compression,
                "estimated_speedup": self.estimated_speedup,
                "parameters": {"total": self.total_parameters,
                               "original": self.original_total_parameters,
                               "embeddings": self.embedding_parameters},
                "hidden_size": pair(self.hidden_size),
                "by_stack": {k: pair(v) for k, v in self.by_stack.items()}, "layers": layers}


def original_sizes(config: Any, stack_heads_attr: str, stack_ffn_attr: str) -> tuple[int, int]:
    """(heads, ffn) of the dense ancestor, from ``config.nnprune_original`` when compacted."""
    orig = getattr(config, ORIGINAL_ATTR, None) or {}
    heads = orig.get(stack_heads_attr, getattr(config, stack_heads_attr))
    ffn = orig.get(stack_ffn_attr, getattr(config, stack_ffn_attr))
    return int(heads), int(ffn)


def count_parameters(model: nn.Module, seq_len: int = 128) -> ParamCount:
    """Per-layer and total counts of remaining linear weights, heads and FFN dimensions."""
    config = model.config
    arch = architecture_for(config.model_type)
    hidden = int(getattr(config, arch.hidden_attr))
    structure = analyze_structure(model)
    stacks = {s.name: s for s in arch.stacks}
    layers: dict[tuple[str, int], LayerCount] = {}
    for site in structure.sites:
        lc = layers.setdefault((site.stack, site.layer), LayerCount(site.stack, site.layer))
        stack = stacks[site.stack]
        heads, ffn = original_sizes(config, stack.heads_attr, stack.ffn_attr)
        w, _ = effective_weight(model.get_submodule(site.path))
        # parts: the sections of a fused layer (ModernBERT's Wqkv 3, its GLU's Wi 2).
        if site.role.is_attention:
            total = hidden * heads * site.head_dim * site.parts  # T5: heads x d_kv need not be hidden
        else:
            total = hidden * ffn * site.parts
        name = ROLE_SHORT[site.role] if site.attention in (None, "self") else \
            f"{site.attention}_{ROLE_SHORT[site.role]}"
        if name in lc.matrices:  # a gated FFN's second FFN-in matrix (T5's wi_1): ffn_in_1
            name = f"{name}_{sum(n.startswith(name) for n in lc.matrices)}"
        lc.matrices[name] = [int((w != 0).sum()), total]
    original_heads: dict[tuple[str, int, str], int] = {}
    original_ffn: dict[tuple[str, int], int] = {}
    for unit in structure.attention:
        heads, _ = original_sizes(config, stacks[unit.stack].heads_attr, stacks[unit.stack].ffn_attr)
        layers[(unit.stack, unit.layer)].heads[unit.name] = [len(unit.kept), heads]
        original_heads[(unit.stack, unit.layer, unit.name)] = heads
    for unit in structure.ffn:
        _, ffn = original_sizes(config, stacks[unit.stack].heads_attr, stacks[unit.stack].ffn_attr)
        layers[(unit.stack, unit.layer)].ffn_dims = [len(unit.kept), ffn]
        original_ffn[(unit.stack, unit.layer)] = ffn
    # Whole layers removed (issue 25) count as layers with nothing kept, at their dense index.
    dense_layers = _dense_layers(config, arch, layers)
    for st, (_, n_dense) in dense_layers.items():
        original_heads.update({(st, i, a): n for (s_, _, a), n in list(original_heads.items())
                               if s_ == st for i in range(n_dense)})
        original_ffn.update({(st, i): n for (s_, _), n in list(original_ffn.items())
                             if s_ == st for i in range(n_dense)})
    # The FLOP model of ``speed``: the transformer layers' FLOPs (batch 1, ``seq_len`` tokens)
    # of the dense ancestor over those of the model once its removable units are gone.
    pruned = compacted_profile(model, structure)
    dense = pruned.resized(original_heads, original_ffn, hidden=hidden,
                           layers={st: n for st, (_, n) in dense_layers.items()})
    pruned_flops, dense_flops = (sum(lf.total for lf in prof.count(1, seq_len).layers)
                                 for prof in (pruned, dense))
    ordered = [layers[k] for k in sorted(layers, key=lambda k: ([s.name for s in arch.stacks].index(k[0]), k[1]))]
    by_stack: dict[str, list[int]] = {}
    for lc in ordered:
        agg = by_stack.setdefault(lc.stack, [0, 0])
        for rem, tot in lc.matrices.values():
            agg[0] += rem
            agg[1] += tot
    remaining = sum(v[0] for v in by_stack.values())
    original = sum(v[1] for v in by_stack.values())
    speedup = dense_flops / pruned_flops if pruned_flops else float("inf")
    total = _parameters(model)
    narrowed = (getattr(config, LAYOUT_ATTR, None) or {}).get("hidden") or {}
    return ParamCount(config.model_type, ordered, remaining, original, seq_len, speedup, by_stack,
                      total_parameters=total, original_total_parameters=_dense_total(model, total),
                      embedding_parameters=sum(m.weight.numel() for m in model.modules()
                                               if isinstance(m, nn.Embedding)),
                      hidden_size=[int(narrowed.get("size", hidden)), hidden])


def _dense_layers(config: Any, arch: Any, layers: dict[tuple[str, int], LayerCount]
                  ) -> dict[str, tuple[list[int], int]]:
    """For each stack that lost whole layers: (the dense indices of the layers it has, the dense
    layer count), after renumbering ``layers`` (in place) to dense indices and adding a row with
    nothing kept for each removed layer."""
    layout = getattr(config, LAYOUT_ATTR, None) or {}
    orig = getattr(config, ORIGINAL_ATTR, None) or {}
    out: dict[str, tuple[list[int], int]] = {}
    for stack in arch.stacks:
        kept = (layout.get("stacks", {}).get(stack.name) or {}).get("kept_layers")
        if kept is None:
            continue
        n = int(orig.get(stack.layers_attr, len(kept)))
        present = {i: layers.pop((stack.name, i)) for i in range(len(kept))}
        like = present[0]
        for i in range(n):
            if i in kept:
                lc = present[kept.index(i)]
                lc.layer = i
            else:
                lc = LayerCount(stack.name, i, {k: [0, t] for k, (_, t) in like.matrices.items()},
                                {a: [0, o] for a, (_, o) in like.heads.items()},
                                [0, like.ffn_dims[1]], removed=True)
            layers[(stack.name, i)] = lc
        out[stack.name] = (list(kept), n)
    return out


def _parameters(model: nn.Module) -> int:
    """Every parameter ``model`` holds, each once (tied ones are one), mask scores excluded:
    what a stock checkpoint of it stores."""
    return sum(p.numel() for name, p in model.named_parameters()
               if name.rpartition(".")[2] != MASK_SCORES)


def _dense_total(model: nn.Module, total: int) -> Optional[int]:
    """:func:`_parameters` of ``model``'s dense ancestor: ``total`` itself unless compaction
    removed heads or FFN dimensions, else the stock class rebuilt at the recorded original sizes
    on the meta device (no memory), or None when it cannot be."""
    if not getattr(model.config, ORIGINAL_ATTR, None):
        return total
    config = dense_config(model.config)
    cls = type(model)
    try:
        if cls.__name__.startswith(CLASS_PREFIX) or not hasattr(cls, "config_class"):
            cls = model_class_for(config)  # the stock class of a remote-code compacted model
        with torch.device("meta"):
            dense = cls(config)
    except Exception as exc:  # an architecture transformers cannot build from its config alone
        logger.debug("the dense ancestor of %s cannot be rebuilt: %s", type(model).__name__, exc)
        return None
    return _parameters(dense)
