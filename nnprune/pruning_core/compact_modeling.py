"""Compacted layers for stock transformers: rebuild per-layer head / FFN sizes from the config.

This file must stay self-contained (only ``torch`` and ``transformers`` imports): nnprune copies it
verbatim, followed by a few generated class definitions, into every compacted checkpoint as
``nnprune_modeling.py``, and the checkpoint's ``config.json`` points ``auto_map`` at those classes.
``AutoModelFor...from_pretrained(path, trust_remote_code=True)`` then builds the stock model,
shrinks its layers to the saved shapes and loads the weights, with no nnprune installed.

The layout lives in ``config.nnprune_layout`` (format 1)::

    {"format": 1,
     "stacks": {
       "encoder": {                      # one entry per stack ("encoder", "decoder")
         "layers": "encoder.layer",      # module path (suffix) of the ModuleList of layers
         "attention": {                  # one entry per attention kind ("self", "cross")
           "self": {"module": "attention.self",  # relative to a layer: the block holding Q/K/V
                    "q": "attention.self.query", "k": "attention.self.key",
                    "v": "attention.self.value", "o": "attention.output.dense",
                    "head_dim": 64,
                    "heads": [12, 7, 0, ...]}},   # heads kept, per layer
         "ffn": {"in": "intermediate.dense", "out": "output.dense",
                 "dims": [3072, 1200, ...]}}}}     # FFN dimensions kept, per layer

The config's own head count and FFN size stay those of the dense ancestor, so the stock
constructor computes the right head size; ``config.nnprune_original`` repeats them for counting.

A layer whose heads are all removed gets an :class:`EmptyAttention` in place of the block holding
Q/K/V: stock attention code reshapes with ``view(..., -1, head_dim)``, which is ambiguous on empty
tensors. The empty block returns the attention output's bias (the exact function of a block with
no heads) and keeps the zero-sized Q/K/V/O layers under their names, so weight names do not change.
"""

import warnings

import torch
from torch import nn
from transformers.cache_utils import Cache

LAYOUT_ATTR = "nnprune_layout"
CLASS_PREFIX = "NNPrune"  # prefix of the generated remote-code model classes
ORIGINAL_ATTR = "nnprune_original"
LAYOUT_FORMAT = 1
_HEAD_COUNT_ATTRS = ("num_attention_heads", "n_heads", "num_heads")


class EmptyAttention(nn.Module):
    """An attention block with every head removed.

    Returns ``(out, None)`` like the stock blocks: ``out`` is ``(..., 0)`` when the attention
    output layer lives outside the block (BERT), else that layer's bias broadcast (BART,
    DistilBERT). A decoder self-attention still appends one all-zero placeholder head to the
    cache (never read), so the cache's sequence length stays right when generating.
    """

    def __init__(self, children: dict, output: "str | None", head_dim: int,
                 layer_idx: "int | None" = None):
        super().__init__()
        for name, module in children.items():
            self.add_module(name, module)
        self.output_name = output
        self.head_dim = head_dim
        self.layer_idx = layer_idx
        self.num_heads = 0

    def forward(self, hidden_states, *args, **kwargs):
        out = hidden_states.new_zeros(*hidden_states.shape[:-1], 0)
        if self.output_name is not None:
            out = getattr(self, self.output_name)(out)
        cache = _find_cache(args, kwargs)
        is_self = kwargs.get("key_value_states") is None and kwargs.get("encoder_hidden_states") is None
        if cache is not None and is_self and self.layer_idx is not None and hidden_states.dim() == 3:
            # One all-zero placeholder head: a cache layer holding no elements reports length 0, and
            # the model reads the cache's length (positions, causal mask) from layer 0.
            cache = getattr(cache, "self_attention_cache", cache)
            blank = hidden_states.new_zeros(hidden_states.shape[0], 1, hidden_states.shape[1],
                                            self.head_dim)
            cache.update(blank, blank, self.layer_idx)
        return out, None


def _find_cache(args: tuple, kwargs: dict):
    """The KV cache handed to an attention block, whatever its argument is called.

    transformers 5.0 passes it as ``past_key_values=``; later 5.x releases renamed it ``cache=``
    (BART: ``@deprecate_kwarg("past_key_values", ..., new_name="cache")``). Reading a single name
    silently misses it on the other releases, so look for the object itself.
    """
    for name in ("cache", "past_key_values", "past_key_value"):
        value = kwargs.get(name)
        if isinstance(value, Cache):
            return value
    for value in (*args, *kwargs.values()):
        if isinstance(value, Cache):
            return value
    return None


def _split(path: str) -> "tuple[str, str]":
    parent, _, name = path.rpartition(".")
    return parent, name


def _module(root: nn.Module, path: str) -> nn.Module:
    return root.get_submodule(path) if path else root


def new_linear(like: nn.Linear, weight: "torch.Tensor | None" = None,
               bias: "torch.Tensor | None" = None, *, out_features: "int | None" = None,
               in_features: "int | None" = None) -> nn.Linear:
    """A ``nn.Linear`` on ``like``'s device and dtype, with the given weights or shape."""
    if weight is not None:
        out_features, in_features = weight.shape
    out_features = like.out_features if out_features is None else out_features
    in_features = like.in_features if in_features is None else in_features
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*zero-element tensors.*")
        linear = nn.Linear(in_features, out_features, bias=like.bias is not None,
                           device=like.weight.device, dtype=like.weight.dtype)
    if weight is not None:
        with torch.no_grad():
            linear.weight.copy_(weight)
            if bias is not None and linear.bias is not None:
                linear.bias.copy_(bias)
    return linear


def replace_linear(layer: nn.Module, path: str, linear: nn.Linear) -> None:
    parent, name = _split(path)
    setattr(_module(layer, parent), name, linear)


def set_head_count(block: nn.Module, heads: int, head_dim: int) -> None:
    """Keep the stock block's bookkeeping attributes consistent with its layers."""
    for attr in _HEAD_COUNT_ATTRS:
        if isinstance(getattr(block, attr, None), int):
            setattr(block, attr, heads)
    if isinstance(getattr(block, "all_head_size", None), int):
        block.all_head_size = heads * head_dim


def empty_attention(layer: nn.Module, spec: dict) -> None:
    """Swap the block holding Q/K/V of ``layer`` (per ``spec``) for an :class:`EmptyAttention`."""
    block_path = spec["module"]
    block = _module(layer, block_path)
    if isinstance(block, EmptyAttention):
        return
    prefix = block_path + "." if block_path else ""
    children, output = {}, None
    for role in ("q", "k", "v", "o"):
        path = spec[role]
        if path.startswith(prefix) and "." not in path[len(prefix):]:
            name = path[len(prefix):]
            children[name] = getattr(block, name)
            if role == "o":
                output = name
    empty = EmptyAttention(children, output, int(spec["head_dim"]), getattr(block, "layer_idx", None))
    parent, name = _split(block_path)
    setattr(_module(layer, parent), name, empty)


def find_layers(model: nn.Module, path: str) -> nn.Module:
    """The module list at ``path``, or at ``<prefix>.path`` (e.g. under ``bert.``)."""
    hits = [m for n, m in model.named_modules() if n == path or n.endswith("." + path)]
    if len(hits) != 1:
        raise ValueError(f"nnprune layout: {len(hits)} modules match layer list {path!r}")
    return hits[0]


def apply_layout(model: nn.Module, layout: "dict | None") -> nn.Module:
    """Shrink ``model``'s layers (in place) to the sizes in ``layout``; returns ``model``.

    New layers are allocated but not initialised with the checkpoint's values: load the weights
    afterwards. Layers already of the right size are left alone, so this is idempotent.
    """
    if not layout:
        return model
    if int(layout.get("format", 0)) != LAYOUT_FORMAT:
        raise ValueError(f"nnprune layout format {layout.get('format')!r} is not supported "
                         f"(this code reads format {LAYOUT_FORMAT})")
    for stack_name, stack in layout["stacks"].items():
        layers = find_layers(model, stack["layers"])
        n_layers = len(layers)
        for att_name, spec in stack.get("attention", {}).items():
            if len(spec["heads"]) != n_layers:
                raise ValueError(f"nnprune layout: {stack_name} {att_name} heads list has "
                                 f"{len(spec['heads'])} entries for {n_layers} layers")
        ffn = stack.get("ffn")
        if ffn is not None and len(ffn["dims"]) != n_layers:
            raise ValueError(f"nnprune layout: {stack_name} ffn dims list has {len(ffn['dims'])} "
                             f"entries for {n_layers} layers")
        for i, layer in enumerate(layers):
            for spec in stack.get("attention", {}).values():
                heads, head_dim = int(spec["heads"][i]), int(spec["head_dim"])
                inner = heads * head_dim
                for role in ("q", "k", "v"):
                    lin = layer.get_submodule(spec[role])
                    if lin.out_features != inner:
                        replace_linear(layer, spec[role], new_linear(lin, out_features=inner))
                lin = layer.get_submodule(spec["o"])
                if lin.in_features != inner:
                    replace_linear(layer, spec["o"], new_linear(lin, in_features=inner))
                set_head_count(_module(layer, spec["module"]), heads, head_dim)
                if heads == 0:
                    empty_attention(layer, spec)
            if ffn is not None:
                dims = int(ffn["dims"][i])
                lin = layer.get_submodule(ffn["in"])
                if lin.out_features != dims:
                    replace_linear(layer, ffn["in"], new_linear(lin, out_features=dims))
                lin = layer.get_submodule(ffn["out"])
                if lin.in_features != dims:
                    replace_linear(layer, ffn["out"], new_linear(lin, in_features=dims))
    return model


class NNPruneCompactMixin:
    """Put first in the bases of a stock model class: builds it, then applies the layout."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        apply_layout(self, getattr(config, LAYOUT_ATTR, None))
