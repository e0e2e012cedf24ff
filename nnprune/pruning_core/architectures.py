"""Per-architecture layer roles, as data keyed by ``config.model_type``.

Each architecture is a list of *stacks* (encoder, decoder). A stack names the module path of its
layers (a regex whose group 1 is the layer index), the config attribute holding its head count,
its attention blocks (self, cross) by the relative paths of Q/K/V/O, and its FFN in/out paths.
Adding an architecture with the same layout is one more entry here, not new code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, Iterable, Optional

import torch.nn as nn

from nnprune.errors import NNPruneError
from nnprune.pruning_core.compact_modeling import CLASS_PREFIX


class Role(str, Enum):
    """What a linear layer does inside a transformer layer."""

    QUERY = "query"
    KEY = "key"
    VALUE = "value"
    ATTN_OUTPUT = "attn_output"
    FFN_IN = "ffn_in"
    FFN_OUT = "ffn_out"

    @property
    def is_attention(self) -> bool:
        return self not in (Role.FFN_IN, Role.FFN_OUT)


@dataclass(frozen=True)
class AttentionRoles:
    name: str  # "self" or "cross"
    query: str
    key: str
    value: str
    output: str

    def items(self) -> Iterable[tuple[Role, str]]:
        return ((Role.QUERY, self.query), (Role.KEY, self.key), (Role.VALUE, self.value),
                (Role.ATTN_OUTPUT, self.output))


@dataclass(frozen=True)
class StackRoles:
    name: str  # "encoder" or "decoder"
    layers: str  # regex of a layer's module path (relative, no anchors); group 1 = layer index
    heads_attr: str  # config attribute with the number of heads
    attentions: tuple[AttentionRoles, ...]
    ffn_in: str
    ffn_out: str
    ffn_attr: str  # config attribute with the FFN size (for compaction / counting)
    is_decoder: bool = False


@dataclass(frozen=True)
class ArchitectureRoles:
    model_type: str
    stacks: tuple[StackRoles, ...]
    hidden_attr: str = "hidden_size"


_BERT_STACK = StackRoles(
    name="encoder", layers=r"encoder\.layer\.(\d+)", heads_attr="num_attention_heads",
    attentions=(AttentionRoles("self", "attention.self.query", "attention.self.key",
                               "attention.self.value", "attention.output.dense"),),
    ffn_in="intermediate.dense", ffn_out="output.dense", ffn_attr="intermediate_size")

_BART_SELF = AttentionRoles("self", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                            "self_attn.out_proj")

ARCHITECTURES: dict[str, ArchitectureRoles] = {
    "bert": ArchitectureRoles("bert", (_BERT_STACK,)),
    "roberta": ArchitectureRoles("roberta", (_BERT_STACK,)),
    "electra": ArchitectureRoles("electra", (_BERT_STACK,)),
    "distilbert": ArchitectureRoles("distilbert", (StackRoles(
        name="encoder", layers=r"transformer\.layer\.(\d+)", heads_attr="n_heads",
        attentions=(AttentionRoles("self", "attention.q_lin", "attention.k_lin", "attention.v_lin",
                                   "attention.out_lin"),),
        ffn_in="ffn.lin1", ffn_out="ffn.lin2", ffn_attr="hidden_dim"),), hidden_attr="dim"),
    "bart": ArchitectureRoles("bart", (
        StackRoles(name="encoder", layers=r"encoder\.layers\.(\d+)",
                   heads_attr="encoder_attention_heads", attentions=(_BART_SELF,),
                   ffn_in="fc1", ffn_out="fc2", ffn_attr="encoder_ffn_dim"),
        StackRoles(name="decoder", layers=r"decoder\.layers\.(\d+)",
                   heads_attr="decoder_attention_heads",
                   attentions=(_BART_SELF, AttentionRoles(
                       "cross", "encoder_attn.q_proj", "encoder_attn.k_proj", "encoder_attn.v_proj",
                       "encoder_attn.out_proj")),
                   ffn_in="fc1", ffn_out="fc2", ffn_attr="decoder_ffn_dim", is_decoder=True),
    ), hidden_attr="d_model"),
}
# Same module layout as BART.
ARCHITECTURES["mbart"] = ArchitectureRoles("mbart", ARCHITECTURES["bart"].stacks, "d_model")


@dataclass(frozen=True)
class LinearSite:
    """Where one prunable linear layer sits in the model.

    ``attention`` is ``"self"``/``"cross"`` for attention roles and ``None`` for the FFN.
    """

    path: str
    stack: str
    layer: int
    role: Role
    attention: Optional[str]
    num_heads: int
    is_decoder: bool

    @property
    def group(self) -> str:
        """Regularization group: ``attention`` or ``ffn`` (the decoder scale applies on top)."""
        return "attention" if self.role.is_attention else "ffn"

    @property
    def unit(self) -> tuple[str, int, Optional[str]]:
        """Key shared by the matrices of one attention block, or of one FFN."""
        return (self.stack, self.layer, self.attention)


def architecture_for(model_type: str) -> ArchitectureRoles:
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        raise NNPruneError(
            f"architecture {model_type!r} is not supported; supported model types: "
            f"{', '.join(sorted(ARCHITECTURES))}") from None


def find_sites(model: nn.Module) -> list[LinearSite]:
    """Locate every prunable linear layer of ``model`` from its ``config.model_type`` roles.

    Raises :class:`NNPruneError` when the architecture is unknown, when a role pattern matches no
    module, or when a layer lacks some of its roles (naming what matched and what did not).
    """
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        raise NNPruneError("model has no config.model_type; only Hugging Face models can be patched")
    arch = architecture_for(model_type)
    linear_paths = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    sites: list[LinearSite] = []
    for stack in arch.stacks:
        num_heads = int(getattr(config, stack.heads_attr))
        layer_re = re.compile(rf"^(?:.*\.)?{stack.layers}\.(.+)$")
        by_layer: dict[int, dict[str, str]] = {}
        for path in linear_paths:
            m = layer_re.match(path)
            if m:
                by_layer.setdefault(int(m.group(1)), {})[m.group(2)] = path
        if not by_layer:
            sample = ", ".join(linear_paths[:6]) + (" ..." if len(linear_paths) > 6 else "")
            raise NNPruneError(
                f"{model_type}: no linear layer matches the {stack.name} layer pattern "
                f"'{stack.layers}'; linear layers found: {sample or 'none'}")
        wanted: list[tuple[Role, Optional[str], str]] = []
        for att in stack.attentions:
            wanted += [(role, att.name, rel) for role, rel in att.items()]
        wanted += [(Role.FFN_IN, None, stack.ffn_in), (Role.FFN_OUT, None, stack.ffn_out)]
        for layer in sorted(by_layer):
            found = by_layer[layer]
            missing = [rel for _, _, rel in wanted if rel not in found]
            if missing:
                raise NNPruneError(
                    f"{model_type} {stack.name} layer {layer}: matched {len(wanted) - len(missing)} of "
                    f"{len(wanted)} roles; missing {', '.join(missing)}; linear layers there: "
                    f"{', '.join(sorted(found))}")
            for role, att_name, rel in wanted:
                sites.append(LinearSite(found[rel], stack.name, layer, role, att_name, num_heads,
                                        stack.is_decoder))
    return sites


def model_class_for(config: Any) -> type:
    import transformers

    archs = getattr(config, "architectures", None) or []
    for name in archs:
        # A model saved after loading through nnprune_modeling.py (remote code) names its
        # NNPrune-prefixed class; the stock class plus the saved layout rebuild it.
        if name.startswith(CLASS_PREFIX) and not hasattr(transformers, name):
            name = name[len(CLASS_PREFIX):]
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls
    raise NNPruneError(f"config.architectures {archs} names no transformers model class")
