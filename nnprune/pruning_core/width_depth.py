"""Pruning the hidden dimension (the residual stream) and whole layers, exactly.

**The stream.** One mask over the hidden channels is shared by everything on the residual stream:
the embedding tables' columns (or, in ELECTRA, the rows of the projection that starts the
stream), every LayerNorm on it, every layer's reads of it (Q/K/V and FFN-in columns) and writes
to it (attention output and FFN-out rows). :func:`stream_sites` finds these modules from the
architecture's :class:`~nnprune.pruning_core.architectures.HiddenRoles`.

**LayerNorm: decided.** A LayerNorm's mean and variance are over the whole width, so zeroing
channels changes the statistics of the ones kept: the pruned model would not be the model that
normalises over fewer channels. CoFi and Minitron accept that and re-distil. nnprune defines the
*masked model* so that compaction is exact instead: every LayerNorm on the stream normalises over
the kept channels only and outputs zero on the pruned ones (:class:`MaskedLayerNorm`). Every read
of the stream in a post-LN encoder (BERT, RoBERTa, DistilBERT, ELECTRA, MPNet) is the output of
such a norm (or of the embeddings, whose pruned columns it zeroes); in a pre-LN encoder
(ModernBERT) every read goes through one. So the masked model reads only kept channels everywhere
and is, channel for channel, the compacted model with ``LayerNorm(k)`` modules: compaction checks
that the logits agree within ``EXACT_TOLERANCE``. The change of statistics is part of what the
pruning decided (the post-training route scores channels, then ``--then-fill`` distils).

The last module on the stream (the last layer's last norm, a pre-LN model's final norm) has its
output scattered back to the dense width with zeros (remote code: ``set_scatter``), so a task
head, a pooler, or any code reading ``last_hidden_state`` sees the width the config names: the
heads stay stock, and they read zeros on the pruned channels in the masked model too.

**Layers.** A removed layer is skipped: its input goes on unchanged, with its LayerNorms and
residual add gone too (a post-LN layer with no head and no FFN dimension is *not* the identity,
its norms still run; removing it is a decision of the pruning, not a side effect of empty units).
In the masked model a removed layer is a forward hook that returns the layer's input
(:func:`skip_layers`); compaction takes it out of the layer list and lowers the config's layer
count, so stock constructors build the layers that are left.

:func:`apply_width_depth` builds the masked model from the channels and layers to keep;
:func:`compact_width_depth` (called by :func:`~nnprune.pruning_core.compact.compact_model`)
removes what it masks. :func:`width_depth_scores` is the context manager the Fisher scoring uses:
a per-example mask on the stream's reads and a per-example gate on each layer's residual branch.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nnprune.errors import NNPruneError
from nnprune.pruning_core import compact_modeling as cm
from nnprune.pruning_core.architectures import ArchitectureRoles, Role, architecture_for, find_sites

_READS = (Role.QUERY, Role.KEY, Role.VALUE, Role.QKV, Role.FFN_IN)
_WRITES = (Role.ATTN_OUTPUT, Role.FFN_OUT)


# ------------------------------------------------------------------------------ the stream
@dataclass
class LayerStream:
    """One layer's modules on the stream, relative to the layer (``path``: the layer module)."""

    stack: str
    position: int  # index in the stack's layer list
    path: str
    reads: list[str] = field(default_factory=list)  # linear layers: their columns
    writes: list[str] = field(default_factory=list)  # linear layers: their rows
    norms: list[str] = field(default_factory=list)  # LayerNorms on the stream, forward order


@dataclass
class StreamSites:
    """Every module on one encoder's residual stream (full paths unless said)."""

    width: int  # the stream's width now
    base: str  # the base model's path prefix ("bert." or "")
    embeddings: list[str]
    norms: list[str]  # LayerNorms outside the layers: the embeddings' (post-LN), the final one
    rows: list[str]  # linear layers outside the layers writing the stream (ELECTRA's project)
    layers: list[LayerStream]
    layer_list: str  # the stack's layer list
    stack: str

    @property
    def last(self) -> str:
        """The last module on the stream: its output is what the task head reads."""
        return self.last_without(())

    def last_without(self, skipped: Sequence[int]) -> str:
        """The last module on the stream once the layers at ``skipped`` are passed over."""
        pre_ln_final = [n for n in self.norms if n not in self._start()]
        if pre_ln_final:
            return pre_ln_final[-1]
        for layer in reversed(self.layers):
            if layer.norms and layer.position not in skipped:
                return f"{layer.path}.{layer.norms[-1]}"
        return self._start()[-1]

    def _start(self) -> list[str]:
        """The module(s) whose output starts the stream: the embeddings' norm or the project."""
        return self.rows[:1] if self.rows else self.norms[:1]

    def reads(self) -> list[str]:
        """Modules whose outputs are the stream as the layers and the head read it (where the
        Fisher scoring puts the channel mask): the start, every norm."""
        out = list(self._start())
        for layer in self.layers:
            out += [f"{layer.path}.{n}" for n in layer.norms]
        out += [n for n in self.norms if n not in out]
        return out

    def all_norms(self) -> list[str]:
        return self.norms + [f"{lay.path}.{n}" for lay in self.layers for n in lay.norms]

    def relative(self, path: str) -> str:
        return path[len(self.base):] if path.startswith(self.base) else path


def width_depth_support(model: nn.Module) -> Optional[str]:
    """``None`` when ``model``'s hidden dimension and layers can be pruned exactly, else the
    one-line reason why not."""
    try:
        stream_sites(model)
    except NNPruneError as exc:
        return str(exc)
    return None


def _arch(model: nn.Module) -> ArchitectureRoles:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type is None:
        raise NNPruneError("model has no config.model_type; only Hugging Face models can be pruned")
    return architecture_for(model_type)


def _find(model: nn.Module, path: str) -> Optional[nn.Module]:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _base_prefix(model: nn.Module) -> str:
    prefix = getattr(model, "base_model_prefix", "")
    return f"{prefix}." if prefix and isinstance(getattr(model, prefix, None), nn.Module) else ""


def stream_sites(model: nn.Module) -> StreamSites:
    """The modules on ``model``'s residual stream; a one-line :class:`NNPruneError` saying why
    when its hidden dimension cannot be pruned exactly (architecture, tied embeddings, ...)."""
    arch = _arch(model)
    roles = arch.hidden
    if roles is None:
        raise NNPruneError(f"{arch.model_type}: {arch.width_refusal}")
    if len(arch.stacks) != 1:  # pragma: no cover - only encoders declare a stream
        raise NNPruneError(f"{arch.model_type}: {arch.width_refusal}")
    stack = arch.stacks[0]
    base = _base_prefix(model)
    embeddings = [base + p for p in roles.embeddings if _find(model, base + p) is not None]
    project = (base + roles.embedding_project
               if roles.embedding_project and _find(model, base + roles.embedding_project) is not None
               else None)
    norms, rows = [], []
    if project is not None:
        rows, embeddings = [project], []  # the narrower embeddings are not on the stream
    elif roles.embedding_norm is not None and _find(model, base + roles.embedding_norm) is not None:
        norms.append(base + roles.embedding_norm)
    if roles.final_norm is not None and _find(model, base + roles.final_norm) is not None:
        norms.append(base + roles.final_norm)
    _check_untied(model, embeddings, arch)
    sites = find_sites(model)
    layer_re = re.compile(rf"^((?:.*\.)?{stack.layers})\.")
    layers: dict[int, LayerStream] = {}
    for s in sites:
        m = layer_re.match(s.path)
        if m is None:  # pragma: no cover - find_sites matched the same pattern
            continue
        lay = layers.setdefault(s.layer, LayerStream(stack.name, s.layer, m.group(1)))
        rel = s.path[len(m.group(1)) + 1:]
        target = lay.reads if s.role in _READS else lay.writes if s.role in _WRITES else None
        if target is not None and rel not in target:
            target.append(rel)
    for lay in layers.values():
        for rel in roles.layer_norms:
            mod = _find(model, f"{lay.path}.{rel}")
            if isinstance(mod, nn.LayerNorm):
                lay.norms.append(rel)
            elif mod is not None and not isinstance(mod, nn.Identity):
                raise NNPruneError(f"{arch.model_type}: {lay.path}.{rel} is a "
                                   f"{type(mod).__name__}, not a LayerNorm: its hidden dimension "
                                   "cannot be pruned exactly")
    ordered = [layers[i] for i in sorted(layers)]
    for n in norms:
        if not isinstance(model.get_submodule(n), nn.LayerNorm):
            raise NNPruneError(f"{arch.model_type}: {n} is not a LayerNorm: its hidden dimension "
                               "cannot be pruned exactly")
    width = _stream_width(model, ordered)
    layer_list = layer_re.match(ordered[0].path + ".").group(1).rsplit(".", 1)[0]
    return StreamSites(width, base, embeddings, norms, rows, ordered, layer_list, stack.name)


def _stream_width(model: nn.Module, layers: list[LayerStream]) -> int:
    lay = layers[0]
    return int(model.get_submodule(f"{lay.path}.{lay.writes[0]}").out_features)


def _check_untied(model: nn.Module, embeddings: list[str], arch: ArchitectureRoles) -> None:
    """Refuse a model whose output layer shares the input embeddings' weights: the head reads
    the dense width (see the module doc), the tied table would be narrowed."""
    get = getattr(model, "get_output_embeddings", None)
    out = get() if callable(get) else None
    weight = getattr(out, "weight", None)
    if weight is None:
        return
    for path in embeddings:
        if model.get_submodule(path).weight.data_ptr() == weight.data_ptr():
            raise NNPruneError(f"{arch.model_type}: the output layer is tied to the input "
                               "embeddings, so the hidden dimension cannot be pruned exactly; "
                               "prune heads and FFN only")


def layer_list(model: nn.Module, sites: Optional[StreamSites] = None) -> nn.ModuleList:
    sites = sites or stream_sites(model)
    return model.get_submodule(sites.layer_list)


# ------------------------------------------------------------------------------ masked model
class MaskedLayerNorm(nn.LayerNorm):
    """A LayerNorm over the kept channels only (``keep``, indices into the width); the pruned
    channels come out zero. ``(..., width) -> (..., width)``. It computes, on the kept channels,
    exactly what ``nn.LayerNorm(len(keep))`` with the kept weights computes (see module doc)."""

    keep: torch.Tensor

    @classmethod
    def from_norm(cls, norm: nn.LayerNorm, keep: Sequence[int]) -> "MaskedLayerNorm":
        affine = norm.weight is not None
        masked = cls(norm.normalized_shape, eps=norm.eps, elementwise_affine=affine,
                     bias=affine and norm.bias is not None, device=cm._device(norm),
                     dtype=cm._dtype(norm))
        if affine:
            masked.weight = norm.weight
            if norm.bias is not None:
                masked.bias = norm.bias
        device = cm._device(norm) or torch.device("cpu")
        masked.register_buffer("keep", torch.tensor(sorted(int(i) for i in keep), dtype=torch.long,
                                                    device=device), persistent=False)
        return masked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = self.keep
        w = self.weight.index_select(0, keep) if self.weight is not None else None
        b = self.bias.index_select(0, keep) if self.bias is not None else None
        y = F.layer_norm(x.index_select(-1, keep), (keep.numel(),), w, b, self.eps)
        return x.new_zeros(x.shape).index_copy(-1, keep, y)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kept={self.keep.numel()}"


def _skipped_output(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
    """Forward hook of a removed layer: its input, in the shape of its output."""
    hidden = args[0] if args else kwargs["hidden_states"]
    if isinstance(output, tuple):
        return (hidden, *output[1:])
    return hidden


def skip_layers(model: nn.Module, positions: Sequence[int]) -> None:
    """Make the layers at ``positions`` of the stack's layer list pass their input through."""
    layers = layer_list(model)
    for i in positions:
        layer = layers[int(i)]
        if not getattr(layer, "nnprune_skipped", False):
            layer.register_forward_hook(_skipped_output, with_kwargs=True)
            layer.nnprune_skipped = True


def _unskip(layer: nn.Module) -> None:
    for key, hook in list(layer._forward_hooks.items()):
        if hook is _skipped_output:
            del layer._forward_hooks[key]
            layer._forward_hooks_with_kwargs.pop(key, None)
    layer.__dict__.pop("nnprune_skipped", None)


@torch.no_grad()
def apply_width_depth(model: nn.Module, keep_channels: Optional[Sequence[int]] = None,
                      drop_layers: Sequence[int] = ()) -> None:
    """Make ``model`` (in place) the masked model that keeps the stream's ``keep_channels``
    (``None``: all) and skips the layers at ``drop_layers``: every LayerNorm on the stream
    becomes a :class:`MaskedLayerNorm`, a linear layer that starts the stream loses the pruned
    channels' rows, removed layers pass their input through. :func:`compact_width_depth` then
    removes what this masks, exactly."""
    sites = stream_sites(model)
    arch = _arch(model)
    n_layers = len(sites.layers)
    drop = sorted({int(i) for i in drop_layers})
    if any(i < 0 or i >= n_layers for i in drop):
        raise NNPruneError(f"layers to remove {drop} are not all in 0..{n_layers - 1}")
    if len(drop) >= n_layers:
        raise NNPruneError("at least one layer must be left")
    if 0 in drop and arch.hidden is not None and arch.hidden.keep_first_layer:
        raise NNPruneError(f"{arch.model_type}: the first layer cannot be removed (the stock "
                           "class builds it differently from the others)")
    prior = scatter_module(model)  # a model narrowed before: its stream ends in a scatter
    scatter = None
    if prior is not None:
        scatter = (prior[1].nnprune_scatter_index, prior[1].nnprune_scatter_dense)
        cm.remove_scatter(prior[1])
    if keep_channels is not None:
        keep = sorted({int(c) for c in keep_channels})
        if not keep or keep[0] < 0 or keep[-1] >= sites.width:
            raise NNPruneError(f"channels to keep must be 1 to {sites.width} of 0..{sites.width - 1}")
        if len(keep) < sites.width:
            for path in sites.all_norms():
                norm = model.get_submodule(path)
                cm.replace_linear(model, path, MaskedLayerNorm.from_norm(norm, keep))
            pruned = sorted(set(range(sites.width)) - set(keep))
            for path in sites.rows:
                lin = model.get_submodule(path)
                lin.weight[pruned] = 0
                if lin.bias is not None:
                    lin.bias[pruned] = 0
    skip_layers(model, drop)
    if scatter is not None:  # the stream still ends at the dense width, after the layers left
        cm.set_scatter(model.get_submodule(sites.last_without(drop)), *scatter)


def masked_channels(model: nn.Module) -> Optional[list[int]]:
    """The kept channels of a model :func:`apply_width_depth` masked (``None``: not masked)."""
    keeps = {tuple(m.keep.tolist()) for m in model.modules() if isinstance(m, MaskedLayerNorm)}
    if len(keeps) > 1:
        raise NNPruneError("the stream's LayerNorms keep different channels; cannot compact")
    return list(keeps.pop()) if keeps else None


# ------------------------------------------------------------------------------ compaction
@dataclass
class WidthDepthChange:
    """What :func:`compact_width_depth` removed."""

    layers_removed: list[int] = field(default_factory=list)  # dense model's layer indices
    hidden_before: int = 0
    hidden_kept: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.layers_removed) or self.hidden_kept < self.hidden_before


def dense_layer_index(layers: nn.ModuleList) -> list[int]:
    """The dense model's index of each layer in ``layers`` (after removals: the kept ones)."""
    return list(getattr(layers, "nnprune_dense_index", None) or range(len(layers)))


def scatter_module(model: nn.Module) -> Optional[tuple[str, nn.Module]]:
    """``(path, module)`` of the module whose output goes back to the dense width, if any."""
    for name, mod in model.named_modules():
        if getattr(mod, "nnprune_scatter_index", None) is not None:
            return name, mod
    return None


@torch.no_grad()
def compact_width_depth(model: nn.Module, original: dict[str, Any]) -> WidthDepthChange:
    """Remove the layers skipped and the channels masked by :func:`apply_width_depth` (in
    place): layers out of the layer list (the config's count lowered; ``original`` records the
    dense count and ``layer_types``), every stream module sliced to the kept channels, the last
    one's output scattered back to the dense width. Nothing to do: nothing changes."""
    change = WidthDepthChange()
    if not any(isinstance(m, MaskedLayerNorm) or getattr(m, "nnprune_skipped", False)
               for m in model.modules()):
        return change  # nothing masked (a model may not even have a prunable stream)
    sites = stream_sites(model)
    change.hidden_before = change.hidden_kept = sites.width
    layers = model.get_submodule(sites.layer_list)
    skipped = [i for i, lay in enumerate(layers) if getattr(lay, "nnprune_skipped", False)]
    prior = scatter_module(model)
    if skipped:
        _remove_layers(model, sites, skipped, original, change)
        sites = stream_sites(model)
    keep = masked_channels(model)
    if keep is not None and len(keep) < sites.width:
        _slice_stream(model, sites, keep)
        change.hidden_kept = len(keep)
    elif keep is not None:  # every channel kept: back to plain norms
        for path in sites.all_norms():
            norm = model.get_submodule(path)
            if isinstance(norm, MaskedLayerNorm):
                plain = cm.new_norm(norm, sites.width)
                plain.load_state_dict(norm.state_dict())
                cm.replace_linear(model, path, plain)
    if prior is not None or change.hidden_kept < change.hidden_before:
        _rescatter(model, prior, keep if change.hidden_kept < change.hidden_before else None,
                   change.hidden_before)
    return change


def _remove_layers(model: nn.Module, sites: StreamSites, skipped: list[int],
                   original: dict[str, Any], change: WidthDepthChange) -> None:
    arch = _arch(model)
    stack = arch.stacks[0]
    layers = model.get_submodule(sites.layer_list)
    kept = [i for i in range(len(layers)) if i not in skipped]
    if not kept:
        raise NNPruneError("at least one layer must be left")
    dense = dense_layer_index(layers)
    change.layers_removed = [dense[i] for i in skipped]
    new = nn.ModuleList([layers[i] for i in kept])
    new.nnprune_dense_index = [dense[i] for i in kept]
    for position, layer in enumerate(new):
        for mod in layer.modules():
            if isinstance(getattr(mod, "layer_idx", None), int):
                mod.layer_idx = position
    cm.replace_linear(model, sites.layer_list, new)
    config = model.config
    setattr(config, stack.layers_attr, len(kept))
    types = getattr(config, "layer_types", None)
    if isinstance(types, list) and len(types) == len(layers):
        original.setdefault("layer_types", list(types))
        config.layer_types = [types[i] for i in kept]


def _slice_stream(model: nn.Module, sites: StreamSites, keep: list[int]) -> None:
    k = len(keep)
    dev = next(model.parameters()).device
    idx = torch.tensor(keep, dtype=torch.long, device=dev)
    for path in sites.embeddings:
        emb = model.get_submodule(path)
        new = cm.new_embedding(emb, k)
        new.weight.copy_(emb.weight[:, idx.to(emb.weight.device)])
        cm.replace_linear(model, path, new)
    for path in sites.all_norms():
        norm = model.get_submodule(path)
        new = cm.new_norm(norm, k)
        if norm.weight is not None:
            new.weight.copy_(norm.weight[idx.to(norm.weight.device)])
            if norm.bias is not None:
                new.bias.copy_(norm.bias[idx.to(norm.bias.device)])
        cm.replace_linear(model, path, new)
    rows = list(sites.rows)
    cols: list[str] = []
    for lay in sites.layers:
        rows += [f"{lay.path}.{p}" for p in lay.writes]
        cols += [f"{lay.path}.{p}" for p in lay.reads]
    for path in rows:
        lin = model.get_submodule(path)
        i = idx.to(lin.weight.device)
        cm.replace_linear(model, path, cm.new_linear(
            lin, lin.weight[i], lin.bias[i] if lin.bias is not None else None))
    for path in cols:
        lin = model.get_submodule(path)
        cm.replace_linear(model, path, cm.new_linear(lin, lin.weight[:, idx.to(lin.weight.device)],
                                                     lin.bias))


def _rescatter(model: nn.Module, prior: Optional[tuple[str, nn.Module]],
               keep: Optional[list[int]], width: int) -> None:
    """Put the scatter on the stream's last module now: composed with an earlier one (a model
    narrowed before: its index maps today's channels to the dense model's)."""
    index = list(range(width))
    dense = width
    if prior is not None:
        index = list(prior[1].nnprune_scatter_index)
        dense = int(prior[1].nnprune_scatter_dense)
        cm.remove_scatter(prior[1])
    if keep is not None:
        index = [index[c] for c in keep]
    last = model.get_submodule(stream_sites(model).last)
    cm.set_scatter(last, index, dense)


def hidden_layout(model: nn.Module) -> Optional[dict[str, Any]]:
    """The layout's ``"hidden"`` entry and the stack's ``"hidden"`` lists for a model whose
    stream was narrowed (``None`` otherwise): ``(top, per stack)`` as one dict with the stack
    part under ``"stack"``."""
    found = scatter_module(model)
    if found is None:
        return None
    path, mod = found
    sites = stream_sites(model)
    reads = sorted({p for lay in sites.layers for p in lay.reads})
    writes = sorted({p for lay in sites.layers for p in lay.writes})
    norms: list[str] = []
    for lay in sites.layers:
        norms += [n for n in lay.norms if n not in norms]
    return {"size": len(mod.nnprune_scatter_index), "dense": int(mod.nnprune_scatter_dense),
            "index": list(mod.nnprune_scatter_index),
            "embeddings": [sites.relative(p) for p in sites.embeddings],
            "norms": [sites.relative(p) for p in sites.norms],
            "rows": [sites.relative(p) for p in sites.rows],
            "scatter": sites.relative(path),
            "stack": {"in": reads, "out": writes, "norms": norms}}


# ------------------------------------------------------------------------------ scoring masks
@contextmanager
def width_depth_scores(model: nn.Module, hidden: Optional[torch.Tensor] = None,
                       layers: Optional[torch.Tensor] = None) -> Iterator[None]:
    """While inside, multiply the stream's reads by ``hidden`` (``(batch, width)``: every norm
    on the stream and the module starting it) and gate each layer's residual branch by
    ``layers`` (``(batch, n_layers)``: ``out = x + g (layer(x) - x)``, so ``g = 0`` is the
    layer removed). At ones both are the model unchanged; their gradients are the per-example
    scores of pruning a channel or removing a layer."""
    sites = stream_sites(model)
    handles = []

    def channel_hook(_m, _args, output):
        return output * hidden[:, None, :].to(output.dtype)

    def gate_for(position: int):
        def hook(_m, args, kwargs, output):
            x = args[0] if args else kwargs["hidden_states"]
            y = output[0] if isinstance(output, tuple) else output
            g = layers[:, position].to(y.dtype)[:, None, None]
            y = x + g * (y - x)
            return (y, *output[1:]) if isinstance(output, tuple) else y
        return hook

    try:
        if hidden is not None:
            for path in sites.reads():
                handles.append(model.get_submodule(path).register_forward_hook(channel_hook))
        if layers is not None:
            for lay in sites.layers:
                handles.append(model.get_submodule(lay.path).register_forward_hook(
                    gate_for(lay.position), with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()


__all__ = ["LayerStream", "MaskedLayerNorm", "StreamSites", "WidthDepthChange",
           "apply_width_depth", "compact_width_depth", "dense_layer_index", "hidden_layout",
           "layer_list", "masked_channels", "scatter_module", "skip_layers", "stream_sites",
           "width_depth_scores", "width_depth_support"]
