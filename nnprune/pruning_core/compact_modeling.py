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

``"in"`` may also be a list: the FFN-in matrices of a gated FFN (T5's ``["layer.1.DenseReluDense.wi_0",
"layer.1.DenseReluDense.wi_1"]``), which all lose the removed dimensions' rows. ``"in_parts": 2``
says that an FFN-in layer's rows are 2 stacked sections of ``dims`` rows (ModernBERT's fused GLU
``Wi``: ``[input; gate]``). An attention with ``"fused_qkv": true`` has one layer for Q, K and
V (``"q"``, ``"k"`` and ``"v"`` all name it) whose rows are ``[q; k; v]``, each ``heads *
head_dim`` (ModernBERT's ``Wqkv``).

Two optional attention keys hold per-head state that lives outside Q/K/V/O:

- ``"head_linears"``: more linear layers (relative to a layer) whose output rows are grouped by
  head, shrunk with Q/K/V (DeBERTa-v2's ``attention.self.pos_key_proj`` / ``pos_query_proj``);
- ``"head_args"`` with ``"head_index"``: forward arguments of the Q/K/V block that carry a tensor
  with one slice per head of the *dense* model on dim 1, computed outside the layer (MPNet's
  ``position_bias``, from the relative attention bias shared by all layers), and per layer the
  dense-model indices of the kept heads, e.g. ``[[0, 2], [], [0, 1, 2, 3]]``. A forward pre-hook
  on the block selects those slices (:func:`set_head_index`). Two more optional keys go with
  them when the tensor is made inside a layer and handed on to the next ones (T5's relative
  position bias, made by layer 0 and reused by every later layer):

  - ``"passes_head_args": true``: the block returns its head args after its output,
    ``(output, *head_args, weights)``, and its caller passes them to the next layer. A forward
    hook returns them at the dense width, so every layer can select its own heads.
  - ``"head_arg_maker"``: the block's method that makes the (first) head arg at the dense width
    when none is passed in (T5: ``compute_bias`` with the ``relative_attention_bias`` table,
    which compaction never shrinks). On a compacted block it is wrapped so that the block itself
    sees its kept heads; a block that passes on a head arg it made without a maker (T5's
    all-zero cross-attention bias) passes ``None``, and each later layer makes its own.

The config's own head count and FFN size stay those of the dense ancestor, so the stock
constructor computes the right head size; ``config.nnprune_original`` repeats them for counting.

Format 2 adds the hidden dimension (the residual stream) and whole layers removed:

- a stack may say ``"kept_layers": [0, 2, 3]``, the dense model's indices of the layers it has
  (the config's layer count, e.g. ``num_hidden_layers``, is already the number kept, so the stock
  constructor builds that many; ``config.nnprune_original`` has the dense count);
- a top-level ``"hidden"`` entry shrinks the stream to ``"size"`` channels, the dense model's
  channels ``"index"`` (of ``"dense"``)::

    "hidden": {"size": 256, "dense": 384, "index": [0, 3, ...],
               "embeddings": ["embeddings.word_embeddings", ...],  # tables: columns
               "norms": ["embeddings.LayerNorm"],      # LayerNorms over the stream
               "rows": [],                             # linear layers writing it (ELECTRA's
                                                       # embeddings_project)
               "scatter": "encoder.layer.3.output.LayerNorm"}

  paths relative to the base model (``model.base_model``), and per stack ``"hidden": {"in": [...],
  "out": [...], "norms": [...]}``, relative to each layer: the linear layers reading the stream
  (Q/K/V, FFN-in: their columns), writing it (attention output, FFN-out: their rows) and its
  LayerNorms. The output of ``"scatter"``, the last module on the stream, goes back to the dense
  width (the removed channels zero, :func:`set_scatter`), so task heads and code reading
  ``last_hidden_state`` see the width the config names. A LayerNorm over the kept channels
  computes what the pruned model computed: nnprune's masked model normalises over them too.

A layer whose heads are all removed gets an :class:`EmptyAttention` in place of the block holding
Q/K/V: stock attention code reshapes with ``view(..., -1, head_dim)``, which is ambiguous on empty
tensors. The empty block returns the attention output's bias (the exact function of a block with
no heads) and keeps the zero-sized Q/K/V/O layers under their names, so weight names do not change.
With ``passes_head_args`` it also hands on the dense head args (made with the maker when none
came in), so T5's first layer still gives the later layers their position bias.
"""

import inspect
import types
import warnings

import torch
from torch import nn
from transformers.cache_utils import Cache

LAYOUT_ATTR = "nnprune_layout"
CLASS_PREFIX = "NNPrune"  # prefix of the generated remote-code model classes
ORIGINAL_ATTR = "nnprune_original"
LAYOUT_FORMAT = 1  # heads and FFN dimensions
WIDTH_DEPTH_FORMAT = 2  # also the hidden dimension and whole layers (read by this code only)
LAYOUT_FORMATS = (LAYOUT_FORMAT, WIDTH_DEPTH_FORMAT)
_HEAD_COUNT_ATTRS = ("num_attention_heads", "n_heads", "num_heads")


class EmptyAttention(nn.Module):
    """An attention block with every head removed.

    Returns ``(out, None)`` like the stock blocks: ``out`` is ``(..., 0)`` when the attention
    output layer lives outside the block (BERT), else that layer's bias broadcast (BART,
    DistilBERT). A decoder self-attention still appends one all-zero placeholder head to the
    cache (never read), so the cache's sequence length stays right when generating.

    With ``passes_head_args`` (T5) it returns ``(out, *head_args, None)``: each head arg as it
    came in (dense width), or, when none came in, the first one made by ``maker`` of the removed
    block (T5's ``compute_bias``: ``(1, dense heads, query, key)``), else ``None``.
    """

    def __init__(self, children: dict, output: "str | None", head_dim: int,
                 layer_idx: "int | None" = None, *, head_args: "dict | None" = None,
                 passes_head_args: bool = False, maker: "str | None" = None,
                 dense_block: "nn.Module | None" = None):
        super().__init__()
        for name, module in children.items():
            self.add_module(name, module)
        self.output_name = output
        self.head_dim = head_dim
        self.layer_idx = layer_idx
        self.num_heads = 0
        # Head arg name -> its index among ``forward``'s positional args after hidden_states.
        self.head_args = dict(head_args or {})
        self.passes_head_args = passes_head_args
        self.maker = maker
        # The removed block, unregistered (its weights are this module's children): its maker
        # method computes what it computed. deepcopy copies it along with the shared children.
        object.__setattr__(self, "dense_block", dense_block)

    def forward(self, hidden_states, *args, **kwargs):
        out = hidden_states.new_zeros(*hidden_states.shape[:-1], 0)
        if self.output_name is not None:
            out = getattr(self, self.output_name)(out)
        cache = _find_cache(args, kwargs)
        is_self = kwargs.get("key_value_states") is None and kwargs.get("encoder_hidden_states") is None
        past = 0
        if self.maker is not None and cache is not None and self.layer_idx is not None:
            past = cache.get_seq_length(self.layer_idx)  # before the placeholder below
        if cache is not None and is_self and self.layer_idx is not None and hidden_states.dim() == 3:
            # One all-zero placeholder head: a cache layer holding no elements reports length 0, and
            # the model reads the cache's length (positions, causal mask) from layer 0.
            cache = getattr(cache, "self_attention_cache", cache)
            blank = hidden_states.new_zeros(hidden_states.shape[0], 1, hidden_states.shape[1],
                                            self.head_dim)
            cache.update(blank, blank, self.layer_idx)
        if not self.passes_head_args:
            return out, None
        passed = []
        for i, (name, position) in enumerate(self.head_args.items()):
            value = kwargs.get(name)
            if value is None and position is not None and position < len(args):
                value = args[position]
            if value is None and i == 0 and self.maker is not None and self.dense_block is not None:
                # The self-attention bias of the query positions against all keys so far.
                q = hidden_states.shape[1]
                value = getattr(type(self.dense_block), self.maker)(
                    self.dense_block, q, past + q, device=hidden_states.device,
                    past_seen_tokens=past)
            passed.append(value)
        return (out, *passed, None)


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
    for attr in ("all_head_size", "inner_dim"):  # inner_dim: T5
        if isinstance(getattr(block, attr, None), int):
            setattr(block, attr, heads * head_dim)


def head_linear_paths(layer: nn.Module, spec: dict) -> "list[str]":
    """The paths (relative to ``layer``) of the per-head rows layers of ``spec`` it has: Q, K, V
    and the ``"head_linears"`` that this configuration builds."""
    extra = [p for p in spec.get("head_linears", ()) if _find(layer, p) is not None]
    return [spec["q"], spec["k"], spec["v"], *extra]


def head_row_layers(layer: nn.Module, spec: dict) -> "list[tuple[str, int]]":
    """``(path, sections)`` of each layer of ``spec`` whose output rows are grouped by head:
    Q, K, V and the ``head_linears`` built (1 section each), or a fused QKV layer
    (``"fused_qkv"``: rows ``[q; k; v]``, 3 sections) and the ``head_linears``."""
    paths = head_linear_paths(layer, spec)
    if spec.get("fused_qkv"):
        return [(spec["q"], 3)] + [(p, 1) for p in paths[3:]]
    return [(p, 1) for p in paths]


def _find(root: nn.Module, path: str) -> "nn.Module | None":
    try:
        return root.get_submodule(path)
    except AttributeError:
        return None


def _select_head_args(block: nn.Module, args: tuple, kwargs: dict):
    """Forward pre-hook: each ``head_args`` input ``(batch, dense heads, ...)`` (MPNet's
    ``position_bias``: ``(batch, heads, query, key)``) becomes ``(batch, kept heads, ...)``,
    by name whether passed by keyword or by position. A block that passes its head args on
    keeps the dense inputs for :func:`_pass_dense_head_args`."""
    index = block.nnprune_head_index
    args = list(args)
    dense = {}
    for name, position in block.nnprune_head_args.items():
        if kwargs.get(name) is not None:
            dense[name] = kwargs[name]
            kwargs[name] = kwargs[name][:, index]
        elif position is not None and position < len(args) and args[position] is not None:
            dense[name] = args[position]
            args[position] = args[position][:, index]
    if block.nnprune_passes_head_args:
        block.__dict__["_nnprune_dense_args"] = dense
        block.__dict__.pop("_nnprune_made", None)
    return tuple(args), kwargs


def _pass_dense_head_args(block: nn.Module, args: tuple, kwargs: dict, output):
    """Forward hook of a block that returns ``(output, *head_args, weights)``: the head args go
    on to the next layer at the dense width (as they came in, or as the maker made them); one
    the block made without a maker (T5's all-zero cross-attention bias, at its own head count)
    goes on as ``None``, so each later layer makes its own."""
    dense = block.__dict__.pop("_nnprune_dense_args", {})
    made = block.__dict__.pop("_nnprune_made", None)
    out = list(output)
    for i, name in enumerate(block.nnprune_head_args, start=1):
        if name in dense:
            out[i] = dense[name]
        else:
            out[i] = made if i == 1 else None
    return tuple(out)


def _make_kept_head_args(block: nn.Module, *args, **kwargs):
    """Stands in for the block's ``head_arg_maker`` method (bound to the block): the stock
    method's dense result ``(1, dense heads, ...)`` is kept for the next layers, the block gets
    its kept heads ``(1, kept heads, ...)``."""
    dense = getattr(type(block), block.nnprune_head_arg_maker)(block, *args, **kwargs)
    block.__dict__["_nnprune_made"] = dense
    return dense[:, block.nnprune_head_index]


def _arg_positions(block: nn.Module, names: "list[str]") -> "dict[str, int | None]":
    """Index of each argument among ``block.forward``'s positional arguments (hidden states at
    0), ``None`` for keyword-only ones."""
    params = list(inspect.signature(block.forward).parameters)
    return {n: (params.index(n) if n in params else None) for n in names}


def set_head_index(block: nn.Module, index: "list[int]", arg_names: "list[str]",
                   passes: bool = False, maker: "str | None" = None) -> None:
    """Make ``block`` read only heads ``index`` (of the dense model) of its ``arg_names`` inputs.

    Each such input is ``(batch, dense heads, ...)`` and reaches the block as ``(batch,
    len(index), ...)``. The index is a plain attribute (not a buffer: nothing is added to the
    state dict, and it survives the meta-device construction of ``from_pretrained``); calling
    again replaces it without adding a second hook. With ``passes`` the block returns the head
    args at the dense width (:func:`_pass_dense_head_args`), and its ``maker`` method, when it
    has one, gives the block its kept heads of what it makes (:func:`_make_kept_head_args`).
    """
    block.nnprune_head_index = [int(h) for h in index]
    block.nnprune_head_args = _arg_positions(block, list(arg_names))
    block.nnprune_passes_head_args = bool(passes)
    if _select_head_args not in block._forward_pre_hooks.values():
        block.register_forward_pre_hook(_select_head_args, with_kwargs=True)
    if passes and _pass_dense_head_args not in block._forward_hooks.values():
        block.register_forward_hook(_pass_dense_head_args, with_kwargs=True)
    if maker is not None and callable(getattr(type(block), maker, None)):
        block.nnprune_head_arg_maker = maker
        # An instance attribute shadows the class method; a bound method (not a closure) so that
        # deepcopy rebinds it to the copy.
        block.__dict__[maker] = types.MethodType(_make_kept_head_args, block)


def empty_attention(layer: nn.Module, spec: dict) -> None:
    """Swap the block holding Q/K/V of ``layer`` (per ``spec``) for an :class:`EmptyAttention`."""
    block_path = spec["module"]
    block = _module(layer, block_path)
    if isinstance(block, EmptyAttention):
        return
    prefix = block_path + "." if block_path else ""
    children, output = {}, None
    for role, path in [(r, spec[r]) for r in ("q", "k", "v", "o")] + [
            ("extra", p) for p in spec.get("head_linears", ())]:
        if path.startswith(prefix) and "." not in path[len(prefix):] and hasattr(block, path[len(prefix):]):
            name = path[len(prefix):]
            children[name] = getattr(block, name)
            if role == "o":
                output = name
    passes = bool(spec.get("passes_head_args"))
    maker = spec.get("head_arg_maker") if passes else None
    if maker is not None:
        # The maker's tables (T5's relative_attention_bias) stay, under their names.
        children.update({n: m for n, m in block.named_children() if n not in children})
    head_args = _arg_positions(block, list(spec.get("head_args", ())))
    # EmptyAttention.forward takes hidden_states apart: positions shift by one.
    head_args = {n: (p - 1 if p else None) for n, p in head_args.items()}
    empty = EmptyAttention(children, output, int(spec["head_dim"]), getattr(block, "layer_idx", None),
                           head_args=head_args, passes_head_args=passes, maker=maker,
                           dense_block=block if maker is not None else None)
    parent, name = _split(block_path)
    setattr(_module(layer, parent), name, empty)


def ffn_in_paths(ffn: dict) -> "list[str]":
    """The FFN-in paths of a layout's ``"ffn"`` entry (one, or a gated FFN's list)."""
    paths = ffn["in"]
    return [paths] if isinstance(paths, str) else list(paths)


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
    if int(layout.get("format", 0)) not in LAYOUT_FORMATS:
        raise ValueError(f"nnprune layout format {layout.get('format')!r} is not supported "
                         f"(this code reads formats {', '.join(map(str, LAYOUT_FORMATS))})")
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
        if "kept_layers" in stack:
            if len(stack["kept_layers"]) != n_layers:
                raise ValueError(f"nnprune layout: {stack_name} keeps {len(stack['kept_layers'])} "
                                 f"layers but the model has {n_layers}")
            layers.nnprune_dense_index = [int(i) for i in stack["kept_layers"]]
        for i, layer in enumerate(layers):
            for spec in stack.get("attention", {}).values():
                heads, head_dim = int(spec["heads"][i]), int(spec["head_dim"])
                inner = heads * head_dim
                for path, sections in head_row_layers(layer, spec):
                    lin = layer.get_submodule(path)
                    if lin.out_features != sections * inner:
                        replace_linear(layer, path, new_linear(lin, out_features=sections * inner))
                lin = layer.get_submodule(spec["o"])
                if lin.in_features != inner:
                    replace_linear(layer, spec["o"], new_linear(lin, in_features=inner))
                set_head_count(_module(layer, spec["module"]), heads, head_dim)
                if heads == 0:
                    empty_attention(layer, spec)
                elif spec.get("head_args"):
                    index = [int(h) for h in spec["head_index"][i]]
                    if len(index) != heads:
                        raise ValueError(f"nnprune layout: {stack_name} layer {i} keeps {heads} "
                                         f"heads but its head_index has {len(index)}")
                    set_head_index(_module(layer, spec["module"]), index, list(spec["head_args"]),
                                   bool(spec.get("passes_head_args")), spec.get("head_arg_maker"))
            if ffn is not None:
                dims = int(ffn["dims"][i])
                rows = dims * int(ffn.get("in_parts", 1))
                for path in ffn_in_paths(ffn):
                    lin = layer.get_submodule(path)
                    if lin.out_features != rows:
                        replace_linear(layer, path, new_linear(lin, out_features=rows))
                lin = layer.get_submodule(ffn["out"])
                if lin.in_features != dims:
                    replace_linear(layer, ffn["out"], new_linear(lin, in_features=dims))
    if layout.get("hidden"):
        apply_hidden(model, layout)
    return model


def new_norm(like: nn.LayerNorm, size: int) -> nn.LayerNorm:
    """A ``nn.LayerNorm`` over ``size`` channels with ``like``'s eps, affine flags, device, dtype."""
    affine = like.weight is not None
    return nn.LayerNorm(size, eps=like.eps, elementwise_affine=affine,
                        bias=affine and like.bias is not None, device=_device(like),
                        dtype=_dtype(like))


def new_embedding(like: nn.Embedding, size: int) -> nn.Embedding:
    """A ``nn.Embedding`` of ``like``'s entries, ``size`` wide, same padding index."""
    return nn.Embedding(like.num_embeddings, size, padding_idx=like.padding_idx,
                        device=like.weight.device, dtype=like.weight.dtype)


def _device(module: nn.Module):
    for p in module.parameters():
        return p.device
    return None


def _dtype(module: nn.Module):
    for p in module.parameters():
        return p.dtype
    return None


def _scatter_hidden(module: nn.Module, args: tuple, output):
    """Forward hook of the last module on a narrowed stream: ``(..., kept)`` -> ``(..., dense)``,
    kept channel ``j`` at dense channel ``index[j]``, the others zero. A pad of one zero channel
    and a gather (no scatter op: exports to ONNX as Pad + Gather)."""
    gather = module.__dict__.get("_nnprune_gather")
    if gather is None or gather.device != output.device:
        gather = torch.tensor(module.nnprune_scatter_gather, dtype=torch.long, device=output.device)
        module.__dict__["_nnprune_gather"] = gather
    return nn.functional.pad(output, (0, 1)).index_select(-1, gather)


def set_scatter(module: nn.Module, index: "list[int]", dense: int) -> None:
    """Make ``module``'s output, ``len(index)`` channels, come out ``dense`` wide: channel ``j``
    at ``index[j]``, zeros elsewhere. The index is a plain attribute (not in the state dict);
    calling again replaces it without a second hook."""
    index = [int(i) for i in index]
    where = {c: j for j, c in enumerate(index)}
    module.nnprune_scatter_index = index
    module.nnprune_scatter_dense = int(dense)
    module.nnprune_scatter_gather = [where.get(c, len(index)) for c in range(int(dense))]
    module.__dict__.pop("_nnprune_gather", None)
    if _scatter_hidden not in module._forward_hooks.values():
        module.register_forward_hook(_scatter_hidden)


def remove_scatter(module: nn.Module) -> None:
    """Undo :func:`set_scatter` on ``module``."""
    for key, hook in list(module._forward_hooks.items()):
        if hook is _scatter_hidden:
            del module._forward_hooks[key]
    for attr in ("nnprune_scatter_index", "nnprune_scatter_dense", "nnprune_scatter_gather",
                 "_nnprune_gather"):
        module.__dict__.pop(attr, None)


def shrink_stream_module(root: nn.Module, path: str, size: int, kind: str) -> None:
    """Give the module at ``path`` (under ``root``; absent: skipped) a ``size``-wide stream side:
    ``kind`` is ``"in"`` (a linear layer's columns), ``"out"`` (its rows), ``"norm"`` (a
    LayerNorm; other norms, e.g. an Identity, are left) or ``"embedding"`` (a table's columns)."""
    module = _find(root, path)
    if module is None:
        return
    if kind == "in" and module.in_features != size:
        replace_linear(root, path, new_linear(module, in_features=size))
    elif kind == "out" and module.out_features != size:
        replace_linear(root, path, new_linear(module, out_features=size))
    elif kind == "norm" and isinstance(module, nn.LayerNorm) and module.normalized_shape != (size,):
        replace_linear(root, path, new_norm(module, size))
    elif kind == "embedding" and module.embedding_dim != size:
        replace_linear(root, path, new_embedding(module, size))


def apply_hidden(model: nn.Module, layout: dict) -> None:
    """The ``"hidden"`` part of ``layout``: every module on the stream ``size`` wide, and the
    last one's output scattered back to the dense width."""
    hidden = layout["hidden"]
    size = int(hidden["size"])
    if len(hidden["index"]) != size:
        raise ValueError(f"nnprune layout: hidden size {size} but {len(hidden['index'])} channels")
    base = getattr(model, "base_model", model)
    for kind, key in (("embedding", "embeddings"), ("norm", "norms"), ("out", "rows")):
        for path in hidden.get(key, ()):
            shrink_stream_module(base, path, size, kind)
    for stack in layout["stacks"].values():
        spec = stack.get("hidden")
        if not spec:
            continue
        for layer in find_layers(model, stack["layers"]):
            for kind, key in (("in", "in"), ("out", "out"), ("norm", "norms")):
                for path in spec.get(key, ()):
                    shrink_stream_module(layer, path, size, kind)
    last = _find(base, hidden["scatter"])
    if last is None:
        raise ValueError(f"nnprune layout: no module {hidden['scatter']!r} to end the stream")
    set_scatter(last, hidden["index"], int(hidden["dense"]))


class NNPruneCompactMixin:
    """Put first in the bases of a stock model class: builds it, then applies the layout."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        apply_layout(self, getattr(config, LAYOUT_ATTR, None))
