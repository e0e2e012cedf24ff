"""Per-architecture layer roles, as data keyed by ``config.model_type``.

Each architecture is a list of *stacks* (encoder, decoder). A stack names the module path of its
layers (a regex whose group 1 is the layer index), the config attribute holding its head count,
its attention blocks (self, cross) by the relative paths of Q/K/V/O, and its FFN in/out paths.
Adding an architecture with the same layout is one more entry here, not new code; an attention
with per-head state beyond Q/K/V/O names it in ``head_linears`` / ``head_args`` (see
``docs/adding-an-architecture.md``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
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
    # One fused layer for Q, K and V: its rows are the sections [q; k; v], each heads x head_dim
    # (ModernBERT's Wqkv).
    QKV = "qkv"
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
    # Linear layers (relative to a layer) that are not pruned but whose output rows are grouped
    # by head like Q/K/V's, so a removed head's rows must go too (DeBERTa-v2's position
    # projections). Ones a configuration does not build (share_att_key) are skipped.
    head_linears: tuple[str, ...] = ()
    # Forward arguments of the block holding Q/K/V that carry a tensor computed outside the layer
    # with one slice per head of the dense model on dim 1 (MPNet's shared ``position_bias``,
    # ``(batch, heads, query, key)``): a compacted block must select its kept heads from them.
    head_args: tuple[str, ...] = ()
    # The block returns its ``head_args`` after its output, ``(output, *head_args, weights)``,
    # and the stack hands them to the next layer (T5 computes the relative position bias in the
    # first layer and every later layer reuses it): they must leave the block at the dense width.
    passes_head_args: bool = False
    # Method of the block that computes the ``head_args`` at the dense width when none is passed
    # in (T5's first layer: ``compute_bias(query_length, key_length, device, past_seen_tokens)``
    # from its ``relative_attention_bias`` table, which compaction leaves at the dense width).
    head_arg_maker: Optional[str] = None
    # Q, K and V are one layer (``query``, ``key`` and ``value`` all name it): ModernBERT's Wqkv.
    fused_qkv: bool = False

    def items(self) -> Iterable[tuple[Role, str]]:
        if self.fused_qkv:
            return ((Role.QKV, self.query), (Role.ATTN_OUTPUT, self.output))
        return ((Role.QUERY, self.query), (Role.KEY, self.key), (Role.VALUE, self.value),
                (Role.ATTN_OUTPUT, self.output))


@dataclass(frozen=True)
class StackRoles:
    name: str  # "encoder" or "decoder"
    layers: str  # regex of a layer's module path (relative, no anchors); group 1 = layer index
    heads_attr: str  # config attribute with the number of heads
    attentions: tuple[AttentionRoles, ...]
    # FFN-in layer(s): one path, or several of which the ones a configuration builds are the
    # layer's FFN-in matrices (T5: ``wi``, or the gated ``wi_0`` and ``wi_1``). All of them and
    # the FFN-out layer share one score per FFN dimension, owned by the first one built.
    ffn_in: str | tuple[str, ...]
    ffn_out: str
    ffn_attr: str  # config attribute with the FFN size (for compaction / counting)
    is_decoder: bool = False
    # The FFN-in layer's rows are this many stacked sections of FFN size, FFN dimension i at
    # row i of each (ModernBERT's Wi: [input; gate], 2); one score decides that row in all.
    ffn_in_parts: int = 1
    # Config attribute with the number of layers: removing layers lowers it, so that the stock
    # constructor builds as many as are left.
    layers_attr: str = "num_hidden_layers"

    @property
    def ffn_ins(self) -> tuple[str, ...]:
        """``ffn_in`` as a tuple of candidate paths."""
        return (self.ffn_in,) if isinstance(self.ffn_in, str) else tuple(self.ffn_in)


@dataclass(frozen=True)
class HiddenRoles:
    """Where an encoder's residual stream (the hidden dimension) is made and read, so that one
    mask over its channels can be applied everywhere (see :mod:`nnprune.pruning_core.width_depth`).

    Paths are relative to the base model (``model.base_model``: ``bert``, ``distilbert``...) or,
    for ``layer_norms``, to a layer; the ones a configuration does not build are skipped. Inside
    the layers the stream is read by Q/K/V (or the fused QKV) and FFN-in, written by the attention
    output and FFN-out: the architecture's roles already name them.
    """

    # Embedding tables whose columns are the stream (word, position, token type).
    embeddings: tuple[str, ...]
    # The LayerNorm over their sum (on the stream unless ``embedding_project`` is built).
    embedding_norm: Optional[str]
    # The LayerNorms of a layer on the stream, in forward order (post-LN: their outputs are the
    # stream; pre-LN: they are its reads). A layer's non-LayerNorm (ModernBERT's first layer
    # has an Identity attention norm) is skipped.
    layer_norms: tuple[str, ...]
    # Pre-LN: the norm after the last layer, the last read of the stream.
    final_norm: Optional[str] = None
    # A linear layer from narrower embeddings to the stream (ELECTRA's ``embeddings_project``
    # when ``embedding_size != hidden_size``): its rows start the stream, the embeddings and
    # their norm are not on it.
    embedding_project: Optional[str] = None
    # The first layer differs from the others in the stock class (ModernBERT builds layer 0
    # without an attention norm): removing it would change what the next layer is rebuilt as.
    keep_first_layer: bool = False


@dataclass(frozen=True)
class ArchitectureRoles:
    model_type: str
    stacks: tuple[StackRoles, ...]
    hidden_attr: str = "hidden_size"
    # Config attribute with the head size when it is not hidden / heads (T5's ``d_kv``).
    head_dim_attr: Optional[str] = None
    # The seq2seq forward needs ``decoder_input_ids`` (T5); BART derives them from ``input_ids``.
    needs_decoder_inputs: bool = False
    # The residual stream, for pruning the hidden dimension and removing whole layers; None
    # with ``width_refusal`` saying in one line why this architecture cannot be pruned so exactly.
    hidden: Optional[HiddenRoles] = None
    width_refusal: str = "pruning the hidden dimension is not supported for this architecture"

    def head_dim(self, config: Any, stack: StackRoles) -> int:
        """Head size of ``stack``'s attention in the dense model (compaction keeps it)."""
        if self.head_dim_attr is not None:
            return int(getattr(config, self.head_dim_attr))
        heads = int(getattr(config, stack.heads_attr))
        return int(getattr(config, self.hidden_attr)) // heads if heads else 0


_BERT_STACK = StackRoles(
    name="encoder", layers=r"encoder\.layer\.(\d+)", heads_attr="num_attention_heads",
    attentions=(AttentionRoles("self", "attention.self.query", "attention.self.key",
                               "attention.self.value", "attention.output.dense"),),
    ffn_in="intermediate.dense", ffn_out="output.dense", ffn_attr="intermediate_size")
# BERT, RoBERTa, XLM-R, ELECTRA (post-LN): word, position and token-type embeddings, their norm,
# then each layer's two norms produce the stream.
_BERT_HIDDEN = HiddenRoles(
    embeddings=("embeddings.word_embeddings", "embeddings.position_embeddings",
                "embeddings.token_type_embeddings"),
    embedding_norm="embeddings.LayerNorm",
    layer_norms=("attention.output.LayerNorm", "output.LayerNorm"))
_ENCODER_DECODER_WIDTH = ("encoder-decoder models share the hidden dimension between encoder, "
                          "decoder and tied embeddings: prune heads and FFN only")

_BART_SELF = AttentionRoles("self", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                            "self_attn.out_proj")

ARCHITECTURES: dict[str, ArchitectureRoles] = {
    "bert": ArchitectureRoles("bert", (_BERT_STACK,), hidden=_BERT_HIDDEN),
    "roberta": ArchitectureRoles("roberta", (_BERT_STACK,), hidden=_BERT_HIDDEN),
    "xlm-roberta": ArchitectureRoles("xlm-roberta", (_BERT_STACK,), hidden=_BERT_HIDDEN),
    "electra": ArchitectureRoles("electra", (_BERT_STACK,), hidden=replace(
        _BERT_HIDDEN, embedding_project="embeddings_project")),
    "distilbert": ArchitectureRoles("distilbert", (StackRoles(
        name="encoder", layers=r"transformer\.layer\.(\d+)", heads_attr="n_heads",
        attentions=(AttentionRoles("self", "attention.q_lin", "attention.k_lin", "attention.v_lin",
                                   "attention.out_lin"),),
        ffn_in="ffn.lin1", ffn_out="ffn.lin2", ffn_attr="hidden_dim", layers_attr="n_layers"),),
        hidden_attr="dim", hidden=HiddenRoles(
            embeddings=("embeddings.word_embeddings", "embeddings.position_embeddings"),
            embedding_norm="embeddings.LayerNorm",
            layer_norms=("sa_layer_norm", "output_layer_norm"))),
    # The relative attention bias is one Embedding shared by all layers (encoder-level), added
    # to every layer's scores as ``position_bias``; a compacted layer keeps its heads' slices.
    "mpnet": ArchitectureRoles("mpnet", (StackRoles(
        name="encoder", layers=r"encoder\.layer\.(\d+)", heads_attr="num_attention_heads",
        attentions=(AttentionRoles("self", "attention.attn.q", "attention.attn.k", "attention.attn.v",
                                   "attention.attn.o", head_args=("position_bias",)),),
        ffn_in="intermediate.dense", ffn_out="output.dense", ffn_attr="intermediate_size"),),
        hidden=HiddenRoles(
            embeddings=("embeddings.word_embeddings", "embeddings.position_embeddings"),
            embedding_norm="embeddings.LayerNorm",
            layer_norms=("attention.LayerNorm", "output.LayerNorm"))),
    # Disentangled attention projects the shared relative-position embeddings per head: with
    # pos_key_proj / pos_query_proj, or with query_proj / key_proj themselves (share_att_key, the
    # v3 default), which already shrink with the heads.
    "deberta-v2": ArchitectureRoles("deberta-v2", (StackRoles(
        name="encoder", layers=r"encoder\.layer\.(\d+)", heads_attr="num_attention_heads",
        attentions=(AttentionRoles(
            "self", "attention.self.query_proj", "attention.self.key_proj",
            "attention.self.value_proj", "attention.output.dense",
            head_linears=("attention.self.pos_key_proj", "attention.self.pos_query_proj")),),
        ffn_in="intermediate.dense", ffn_out="output.dense", ffn_attr="intermediate_size"),),
        width_refusal="DeBERTa-v2's relative-position embeddings are projected by every layer's "
                      "query and key: its hidden dimension cannot be pruned exactly; prune heads "
                      "and FFN only"),
    "bart": ArchitectureRoles("bart", (
        StackRoles(name="encoder", layers=r"encoder\.layers\.(\d+)",
                   heads_attr="encoder_attention_heads", attentions=(_BART_SELF,),
                   ffn_in="fc1", ffn_out="fc2", ffn_attr="encoder_ffn_dim",
                   layers_attr="encoder_layers"),
        StackRoles(name="decoder", layers=r"decoder\.layers\.(\d+)",
                   heads_attr="decoder_attention_heads",
                   attentions=(_BART_SELF, AttentionRoles(
                       "cross", "encoder_attn.q_proj", "encoder_attn.k_proj", "encoder_attn.v_proj",
                       "encoder_attn.out_proj")),
                   ffn_in="fc1", ffn_out="fc2", ffn_attr="decoder_ffn_dim", is_decoder=True,
                   layers_attr="decoder_layers"),
    ), hidden_attr="d_model", width_refusal=_ENCODER_DECODER_WIDTH),
}
# Same module layout as BART.
ARCHITECTURES["mbart"] = ArchitectureRoles("mbart", ARCHITECTURES["bart"].stacks, "d_model",
                                           width_refusal=_ENCODER_DECODER_WIDTH)
# Fused Wqkv (rows [q; k; v]) and a GLU whose Wi rows are [input; gate]: FFN dimension i is rows
# i and F + i of Wi and column i of Wo. Rotary positions and the alternating local / global
# attention (``layer_types``) hold no per-head state.
ARCHITECTURES["modernbert"] = ArchitectureRoles("modernbert", (StackRoles(
    name="encoder", layers=r"layers\.(\d+)", heads_attr="num_attention_heads",
    attentions=(AttentionRoles("self", "attn.Wqkv", "attn.Wqkv", "attn.Wqkv", "attn.Wo",
                               fused_qkv=True),),
    ffn_in="mlp.Wi", ffn_out="mlp.Wo", ffn_attr="intermediate_size", ffn_in_parts=2),),
    # Pre-LN: the norms read the stream (layer 0 reads the embeddings' norm directly).
    hidden=HiddenRoles(embeddings=("embeddings.tok_embeddings",), embedding_norm="embeddings.norm",
                       layer_norms=("attn_norm", "mlp_norm"), final_norm="final_norm",
                       keep_first_layer=True))


def _t5_attention(name: str, block: str, maker: Optional[str]) -> AttentionRoles:
    return AttentionRoles(name, f"{block}.q", f"{block}.k", f"{block}.v", f"{block}.o",
                          head_args=("position_bias",), passes_head_args=True,
                          head_arg_maker=maker)


def _t5_ffn(sub: int) -> tuple[str, ...]:
    return tuple(f"layer.{sub}.DenseReluDense.{n}" for n in ("wi", "wi_0", "wi_1"))


# T5, mT5, Flan-T5 (T5 v1.1 layout: gated FFN ``wi_0``/``wi_1`` when ``config.is_gated_act``).
# Layer 0 of each stack computes the relative position bias ``(1, heads, query, key)`` from its
# ``relative_attention_bias`` table and returns it; the stack passes it to every later layer as
# ``position_bias``. Cross-attention passes an all-zero bias the same way. Head size ``d_kv``.
_T5_STACKS = (
    StackRoles(name="encoder", layers=r"encoder\.block\.(\d+)", heads_attr="num_heads",
               attentions=(_t5_attention("self", "layer.0.SelfAttention", "compute_bias"),),
               ffn_in=_t5_ffn(1), ffn_out="layer.1.DenseReluDense.wo", ffn_attr="d_ff",
               layers_attr="num_layers"),
    StackRoles(name="decoder", layers=r"decoder\.block\.(\d+)", heads_attr="num_heads",
               attentions=(_t5_attention("self", "layer.0.SelfAttention", "compute_bias"),
                           _t5_attention("cross", "layer.1.EncDecAttention", None)),
               ffn_in=_t5_ffn(2), ffn_out="layer.2.DenseReluDense.wo", ffn_attr="d_ff",
               is_decoder=True, layers_attr="num_decoder_layers"),
)
ARCHITECTURES["t5"] = ArchitectureRoles("t5", _T5_STACKS, "d_model", head_dim_attr="d_kv",
                                        needs_decoder_inputs=True,
                                        width_refusal=_ENCODER_DECODER_WIDTH)
ARCHITECTURES["mt5"] = ArchitectureRoles("mt5", _T5_STACKS, "d_model", head_dim_attr="d_kv",
                                         needs_decoder_inputs=True,
                                         width_refusal=_ENCODER_DECODER_WIDTH)


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
    num_heads: int  # heads of the dense model
    is_decoder: bool
    head_dim: int = 0  # head size of the dense model (and of a compacted one)
    # Stacked sections of the layer's rows, each with one row per head row / FFN dimension:
    # 3 for a fused QKV layer, ``ffn_in_parts`` for FFN-in, else 1.
    parts: int = 1

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
            f"{', '.join(sorted(ARCHITECTURES))} (to add one, see docs/adding-an-architecture.md)"
        ) from None


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
        head_dim = arch.head_dim(config, stack)
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
        wanted.append((Role.FFN_OUT, None, stack.ffn_out))
        for layer in sorted(by_layer):
            found = by_layer[layer]
            # The FFN-in candidates this configuration builds, in order (the first owns the scores).
            ffn_ins = [(Role.FFN_IN, None, rel) for rel in stack.ffn_ins if rel in found]
            missing = [rel for _, _, rel in wanted if rel not in found]
            if not ffn_ins:
                missing.append(" or ".join(stack.ffn_ins))
            if missing:
                n_roles = len(wanted) + 1
                raise NNPruneError(
                    f"{model_type} {stack.name} layer {layer}: matched {n_roles - len(missing)} of "
                    f"{n_roles} roles; missing {', '.join(missing)}; linear layers there: "
                    f"{', '.join(sorted(found))}")
            for role, att_name, rel in wanted[:-1] + ffn_ins + wanted[-1:]:
                parts = 3 if role is Role.QKV else (stack.ffn_in_parts if role is Role.FFN_IN else 1)
                sites.append(LinearSite(found[rel], stack.name, layer, role, att_name, num_heads,
                                        stack.is_decoder, head_dim, parts))
    return sites


def model_class_for(config: Any) -> type:
    import transformers

    archs = getattr(config, "architectures", None) or []
    for name in map(str, archs if isinstance(archs, (list, tuple)) else [archs]):
        # A model saved after loading through nnprune_modeling.py (remote code) names its
        # NNPrune-prefixed class; the stock class plus the saved layout rebuild it.
        if name.startswith(CLASS_PREFIX) and not hasattr(transformers, name):
            name = name[len(CLASS_PREFIX):]
        cls = getattr(transformers, name, None)
        # a model class only: config.json is data, "AutoModel" or "logging" name no model
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel):
            return cls
    raise NNPruneError(f"config.architectures {archs} names no transformers model class")
