"""Which attention heads and FFN dimensions a (masked or plain) model still uses.

Removal rules are *exact*: the model without the unit computes the same function.

- A head whose value rows and value bias are zero, or whose attention-output columns are zero,
  adds nothing to the layer's output.
- An FFN dimension whose output column is zero, or whose input row and input bias are zero
  (activation(0) = 0 for GELU/ReLU), adds nothing. A gated FFN (T5's ``act(wi_0 x) * wi_1 x``,
  ModernBERT's ``act(input) * gate`` from the two row sections of one ``Wi``) loses a dimension
  when either of its FFN-in rows is zero.
- A head with only an empty query or key is *not* removable exactly: its attention becomes
  uniform, not zero. Those are reported separately (``qk_empty``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn

from nnprune.pruning_core.architectures import LinearSite, Role, find_sites
from nnprune.pruning_core.masked import MaskedLinear


@torch.no_grad()
def effective_weight(module: nn.Linear) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(W (out, in), b (out,) | None)`` as the model computes with them at eval."""
    if isinstance(module, MaskedLinear):
        block = module.block_mask(training=False)
        w = module.weight * module.expand(block)
        b = module.bias * module.row_mask(block) if module.bias is not None else None
        return w.detach(), None if b is None else b.detach()
    return module.weight.detach(), None if module.bias is None else module.bias.detach()


@dataclass
class AttentionUnit:
    stack: str
    layer: int
    name: str  # "self" / "cross"
    num_heads: int
    head_dim: int
    paths: dict[Role, str]
    removable: list[int] = field(default_factory=list)  # heads removable exactly
    qk_empty: list[int] = field(default_factory=list)  # kept heads with an all-zero Q or K

    @property
    def kept(self) -> list[int]:
        return [h for h in range(self.num_heads) if h not in set(self.removable)]


@dataclass
class FfnUnit:
    stack: str
    layer: int
    size: int
    paths: dict[Role, str]  # FFN_IN: the first FFN-in matrix (the scores' owner when masked)
    removable: list[int] = field(default_factory=list)
    in_paths: list[str] = field(default_factory=list)  # every FFN-in matrix (gated FFN: two)

    @property
    def kept(self) -> list[int]:
        dropped = set(self.removable)
        return [i for i in range(self.size) if i not in dropped]


@dataclass
class ModelStructure:
    sites: list[LinearSite]
    attention: list[AttentionUnit]
    ffn: list[FfnUnit]


def _zero_rows(w: torch.Tensor, b: Optional[torch.Tensor]) -> torch.Tensor:
    z = (w == 0).all(dim=1)
    return z & (b == 0) if b is not None else z


@torch.no_grad()
def analyze_structure(model: nn.Module) -> ModelStructure:
    """Find the exactly removable heads and FFN dimensions of every layer of ``model``."""
    sites = find_sites(model)
    units: dict[tuple, dict[Role, LinearSite]] = {}
    ffn_ins: dict[tuple, list[LinearSite]] = {}
    for s in sites:
        units.setdefault(s.unit, {}).setdefault(s.role, s)
        if s.role is Role.FFN_IN:
            ffn_ins.setdefault(s.unit, []).append(s)
    attention: list[AttentionUnit] = []
    ffn: list[FfnUnit] = []
    for (stack, layer, att), roles in units.items():
        mods = {r: model.get_submodule(s.path) for r, s in roles.items()}
        paths = {r: s.path for r, s in roles.items()}
        if att is not None:
            wo, _ = effective_weight(mods[Role.ATTN_OUTPUT])
            if Role.QKV in mods:  # fused: rows [q; k; v]
                w, b = effective_weight(mods[Role.QKV])
                wq, wk, wv = w.chunk(3, dim=0)
                bq, bk, bv = b.chunk(3) if b is not None else (None, None, None)
            else:
                wv, bv = effective_weight(mods[Role.VALUE])
                wq, bq = effective_weight(mods[Role.QUERY])
                wk, bk = effective_weight(mods[Role.KEY])
            # The config keeps the dense head count and head size (compacted layers have fewer
            # heads): the head size is not the attention output's input width over the count.
            hd = next(iter(roles.values())).head_dim
            n = wv.shape[0] // hd if hd else 0
            v_zero = _zero_rows(wv, bv).view(n, hd).all(1)
            o_zero = (wo == 0).all(dim=0).view(n, hd).all(1)
            q_zero = _zero_rows(wq, bq).view(n, hd).all(1)
            k_zero = _zero_rows(wk, bk).view(n, hd).all(1)
            removable = [h for h in range(n) if v_zero[h] or o_zero[h]]
            qk = [h for h in range(n) if h not in removable and (q_zero[h] or k_zero[h])]
            attention.append(AttentionUnit(stack, layer, att, n, hd, paths, removable, qk))
        else:
            wo, _ = effective_weight(mods[Role.FFN_OUT])
            dead = (wo == 0).all(dim=0)
            for site in ffn_ins[(stack, layer, att)]:
                wi, bi = effective_weight(model.get_submodule(site.path))
                zero = _zero_rows(wi, bi)  # (parts * size,): a fused GLU's [input; gate] rows
                dead = dead | zero.view(site.parts, -1).any(dim=0)
            ffn.append(FfnUnit(stack, layer, wo.shape[1], paths,
                               [int(i) for i in torch.nonzero(dead).flatten()],
                               [s.path for s in ffn_ins[(stack, layer, att)]]))
    return ModelStructure(sites, attention, ffn)
