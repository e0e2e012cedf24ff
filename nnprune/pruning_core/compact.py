"""Compaction: physically remove the attention heads and FFN dimensions that pruning emptied.

``compact_model(model)`` bakes the masks of a masked model (``unpatch_model(apply_masks=True)``),
then slices away, per layer, the heads and FFN dimensions that :func:`analyze_structure` finds
exactly removable: rows of Q/K/V (weights and biases) and columns of the attention output for a
head; rows of every FFN-in matrix (and its bias; a gated FFN has two) and columns of FFN-out for
an FFN dimension. The result computes the same function as the masked model. Per-head state
outside Q/K/V/O is handled as the architecture declares it (``head_linears``, ``head_args``;
see :mod:`nnprune.pruning_core.compact_modeling`).

The per-layer sizes go to ``config.nnprune_layout`` and the dense ancestor's sizes to
``config.nnprune_original`` (format: see :mod:`nnprune.pruning_core.compact_modeling`). Saving a
compacted model also writes ``nnprune_modeling.py`` and an ``auto_map`` in ``config.json``, so
stock ``AutoModelFor...from_pretrained(path, trust_remote_code=True)`` loads it without nnprune;
:func:`load_pretrained` loads it (and plain or masked checkpoints) with nnprune.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnprune.errors import NNPruneError
from nnprune.io_utils import atomic_write_text
from nnprune.pruning_core import compact_modeling as cm
from nnprune.pruning_core.compact_modeling import CLASS_PREFIX, LAYOUT_ATTR, ORIGINAL_ATTR
from nnprune.pruning_core.architectures import (
    ARCHITECTURES,
    model_class_for,
    Role,
    StackRoles,
    architecture_for,
    find_sites,
)
from nnprune.pruning_core.masked import MaskedLinear
from nnprune.pruning_core.pruner import unpatch_model
from nnprune.pruning_core.structure import analyze_structure
from nnprune.pruning_core.width_depth import compact_width_depth, hidden_layout

MODELING_FILE = "nnprune_modeling.py"  # the remote code written beside a compacted checkpoint


# ---------------------------------------------------------------------------------- reports
@dataclass
class AttentionReport:
    stack: str
    layer: int
    name: str  # "self" / "cross"
    original: int  # heads of the dense ancestor
    before: int  # heads before this compaction
    kept: int  # heads after
    qk_empty: int = 0  # heads with only an empty Q or K (not exactly removable)
    qk_empty_removed: int = 0  # of those, removed (only with allow_inexact)


@dataclass
class FfnReport:
    stack: str
    layer: int
    original: int
    before: int
    kept: int


@dataclass
class CompactionReport:
    attention: list[AttentionReport] = field(default_factory=list)
    ffn: list[FfnReport] = field(default_factory=list)
    params_before: int = 0  # all parameters of the model
    params_after: int = 0
    allow_inexact: bool = False
    layers_removed: list[int] = field(default_factory=list)  # dense model's layer indices
    hidden_before: int = 0  # stream width before / after (0: the stream was not touched)
    hidden_kept: int = 0

    @property
    def heads_removed(self) -> int:
        return sum(a.before - a.kept for a in self.attention)

    @property
    def ffn_dims_removed(self) -> int:
        return sum(f.before - f.kept for f in self.ffn)

    @property
    def qk_empty(self) -> int:
        return sum(a.qk_empty for a in self.attention)

    @property
    def qk_empty_removed(self) -> int:
        return sum(a.qk_empty_removed for a in self.attention)

    @property
    def changed(self) -> bool:
        return bool(self.heads_removed or self.ffn_dims_removed or self.layers_removed
                    or self.hidden_kept < self.hidden_before)

    @property
    def exact(self) -> bool:
        """Whether the compacted model computes exactly what the input model computed."""
        return self.qk_empty_removed == 0

    def rows(self) -> tuple[list[str], list[list[Any]]]:
        """Per-layer table: heads kept/original per attention kind, FFN dims kept/original."""
        kinds = sorted({a.name for a in self.attention}, key=lambda n: (n != "self", n))
        by_layer: dict[tuple[str, int], dict[str, str]] = {}
        for a in self.attention:
            by_layer.setdefault((a.stack, a.layer), {})[a.name] = f"{a.kept}/{a.original}"
        for f in self.ffn:
            by_layer.setdefault((f.stack, f.layer), {})["ffn"] = f"{f.kept}/{f.original}"
        columns = ["layer"] + [f"{k} heads" for k in kinds] + ["ffn dims"]
        rows = [[f"{stack}.{layer}"] + [cells.get(k, "-") for k in kinds] + [cells.get("ffn", "-")]
                for (stack, layer), cells in by_layer.items()]
        return columns, rows

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(heads_removed=self.heads_removed, ffn_dims_removed=self.ffn_dims_removed,
                   qk_empty=self.qk_empty, qk_empty_removed=self.qk_empty_removed,
                   changed=self.changed, exact=self.exact)
        return out


# ---------------------------------------------------------------------------------- compaction
def _count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _head_index(heads: list[int], head_dim: int, device: torch.device, sections: int = 1,
                num_heads: int = 0) -> torch.Tensor:
    """``(len(heads) * head_dim * sections,)`` row indices of ``heads``: in each of the
    ``sections`` stacked blocks of ``num_heads * head_dim`` rows (a fused QKV layer: 3)."""
    if not heads:
        return torch.zeros(0, dtype=torch.long, device=device)
    return torch.cat([torch.arange(s * num_heads * head_dim + h * head_dim,
                                   s * num_heads * head_dim + (h + 1) * head_dim, device=device)
                      for s in range(sections) for h in heads])


def _first_attention_path(paths: dict[Role, str]) -> str:
    """The query layer's path, or the fused QKV layer's."""
    return paths[Role.QUERY] if Role.QUERY in paths else paths[Role.QKV]


def _section_index(keep: list[int], size: int, sections: int, device: torch.device) -> torch.Tensor:
    """Row indices of FFN dimensions ``keep`` in each of ``sections`` stacked blocks of ``size``."""
    return torch.tensor([s * size + i for s in range(sections) for i in keep], dtype=torch.long,
                        device=device)


def _relative_specs(stack: StackRoles) -> dict[str, dict[str, Any]]:
    """Relative paths (inside a layer) of each attention block of ``stack``."""
    specs = {}
    for att in stack.attentions:
        parents = {p.rpartition(".")[0] for p in (att.query, att.key, att.value)}
        if len(parents) != 1:  # pragma: no cover - every supported architecture groups Q/K/V
            raise NNPruneError(f"{stack.name} {att.name} attention: Q/K/V are not in one module")
        spec: dict[str, Any] = {"module": parents.pop(), "q": att.query, "k": att.key,
                                "v": att.value, "o": att.output}
        if att.head_linears:
            spec["head_linears"] = list(att.head_linears)
        if att.head_args:
            spec["head_args"] = list(att.head_args)
        if att.passes_head_args:
            spec["passes_head_args"] = True
        if att.head_arg_maker is not None:
            spec["head_arg_maker"] = att.head_arg_maker
        if att.fused_qkv:
            spec["fused_qkv"] = True
        specs[att.name] = spec
    return specs


def _layer_path(full_path: str, relative: str) -> str:
    return full_path[: -len(relative)].rstrip(".")


def _original_sizes(config: Any) -> dict[str, int]:
    """``{heads_attr: n, ffn_attr: n}`` of the dense ancestor (kept when already compacted)."""
    arch = architecture_for(config.model_type)
    orig = dict(getattr(config, ORIGINAL_ATTR, None) or {})
    for stack in arch.stacks:
        orig.setdefault(stack.heads_attr, int(getattr(config, stack.heads_attr)))
        orig.setdefault(stack.ffn_attr, int(getattr(config, stack.ffn_attr)))
        if isinstance(getattr(config, stack.layers_attr, None), int):
            orig.setdefault(stack.layers_attr, int(getattr(config, stack.layers_attr)))
    return orig


@torch.no_grad()
def compact_model(model: nn.Module, *, allow_inexact: bool = False,
                  ffn_multiple: int = 1) -> CompactionReport:
    """Remove the exactly removable heads and FFN dimensions of ``model`` in place.

    A masked model has its final masks baked in first. Heads whose only defect is an all-zero
    query or key (``qk_empty``: their attention is uniform, not zero) are kept unless
    ``allow_inexact``; they are counted in the report either way. When nothing is removable
    the model and its config are left unchanged.

    Compacted layers are new ``nn.Linear`` modules (new parameters): build optimizers after
    compacting. The config keeps the dense head count and FFN size (the stock constructors need
    them); ``config.nnprune_layout`` holds the real per-layer sizes.

    ``ffn_multiple`` > 1 keeps a few of the removable (all-zero) FFN dimensions so that each FFN
    size is a multiple of it: CPU matmul kernels run ~1.4x slower per FLOP on widths that are not
    a multiple of 8, which costs more than the zero dimensions do. Still exact, and
    ``count-params`` still counts only the useful dimensions.
    """
    if ffn_multiple < 1:
        raise ValueError(f"ffn_multiple must be >= 1, got {ffn_multiple}")
    if any(isinstance(m, MaskedLinear) for m in model.modules()):
        unpatch_model(model, apply_masks=True)
    config = model.config
    arch = architecture_for(config.model_type)
    stacks = {s.name: s for s in arch.stacks}
    original = _original_sizes(config)
    report = CompactionReport(params_before=_count_params(model), allow_inexact=allow_inexact)
    # Layers and stream channels first: the heads and FFN dimensions below are then those of
    # the layers left, numbered as they are now.
    width_depth = compact_width_depth(model, original)
    report.layers_removed = width_depth.layers_removed
    report.hidden_before, report.hidden_kept = width_depth.hidden_before, width_depth.hidden_kept
    structure = analyze_structure(model)

    for unit in structure.attention:
        stack = stacks[unit.stack]
        spec = _relative_specs(stack)[unit.name]
        drop = set(unit.removable) | (set(unit.qk_empty) if allow_inexact else set())
        keep = [h for h in range(unit.num_heads) if h not in drop]
        report.attention.append(AttentionReport(
            unit.stack, unit.layer, unit.name, original[stack.heads_attr], unit.num_heads,
            len(keep), len(unit.qk_empty), len(set(unit.qk_empty) & drop)))
        if not drop:
            continue
        layer = model.get_submodule(_layer_path(_first_attention_path(unit.paths), spec["q"]))
        hd = unit.head_dim
        for path, sections in cm.head_row_layers(layer, spec):
            lin = layer.get_submodule(path)
            idx = _head_index(keep, hd, lin.weight.device, sections, unit.num_heads)
            bias = lin.bias[idx] if lin.bias is not None else None
            cm.replace_linear(layer, path, cm.new_linear(lin, lin.weight[idx], bias))
        lin = layer.get_submodule(spec["o"])
        idx = _head_index(keep, hd, lin.weight.device)
        cm.replace_linear(layer, spec["o"], cm.new_linear(lin, lin.weight[:, idx], lin.bias))
        block = layer.get_submodule(spec["module"])
        cm.set_head_count(block, len(keep), hd)
        if not keep:
            cm.empty_attention(layer, {**spec, "head_dim": hd})
        elif spec.get("head_args"):
            # Indices into the dense model's heads: a block compacted before already holds some.
            dense = _dense_head_index(block, unit.num_heads)
            cm.set_head_index(block, [dense[h] for h in keep], spec["head_args"],
                              bool(spec.get("passes_head_args")), spec.get("head_arg_maker"))

    for unit in structure.ffn:
        stack = stacks[unit.stack]
        keep = unit.kept
        pad = (-len(keep)) % ffn_multiple if keep else 0
        if pad:
            # Zero dimensions contribute nothing: take back the first removable ones.
            keep = sorted(keep + unit.removable[:pad])
        report.ffn.append(FfnReport(unit.stack, unit.layer, original[stack.ffn_attr], unit.size,
                                    len(unit.kept)))
        if len(keep) == unit.size:
            continue
        lin_out = model.get_submodule(unit.paths[Role.FFN_OUT])
        idx = torch.tensor(keep, dtype=torch.long, device=lin_out.weight.device)
        for path in unit.in_paths or [unit.paths[Role.FFN_IN]]:  # a gated FFN has two
            lin_in = model.get_submodule(path)
            # A fused GLU's [input; gate] rows: the kept dimensions of both sections.
            rows = _section_index(keep, unit.size, lin_in.out_features // unit.size,
                                  lin_in.weight.device)
            bias = lin_in.bias[rows] if lin_in.bias is not None else None
            parent_in, name_in = _split(path)
            setattr(model.get_submodule(parent_in), name_in,
                    cm.new_linear(lin_in, lin_in.weight[rows], bias))
        parent_out, name_out = _split(unit.paths[Role.FFN_OUT])
        setattr(model.get_submodule(parent_out), name_out,
                cm.new_linear(lin_out, lin_out.weight[:, idx], lin_out.bias))

    report.params_after = _count_params(model)
    if report.changed or getattr(config, LAYOUT_ATTR, None):
        setattr(config, ORIGINAL_ATTR, original)
        setattr(config, LAYOUT_ATTR, model_layout(model))
    return report


def _split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition(".")
    return parent, name


def _dense_head_index(block: nn.Module, heads: int) -> list[int]:
    """The dense model's indices of the ``heads`` heads ``block`` has now (none removed yet:
    ``0 .. heads - 1``; an :class:`EmptyAttention`: none)."""
    if isinstance(block, cm.EmptyAttention):
        return []
    return list(getattr(block, "nnprune_head_index", None) or range(heads))


def _strip_prefix(model: nn.Module, path: str) -> str:
    prefix = getattr(model, "base_model_prefix", "")
    if prefix and path.startswith(prefix + "."):
        return path[len(prefix) + 1:]
    return path


def model_layout(model: nn.Module) -> dict[str, Any]:
    """The ``nnprune_layout`` describing ``model``'s current per-layer sizes."""
    config = model.config
    arch = architecture_for(config.model_type)
    sites = find_sites(model)
    layout: dict[str, Any] = {"format": cm.LAYOUT_FORMAT, "stacks": {}}
    hidden = hidden_layout(model) if arch.hidden is not None else None
    for stack in arch.stacks:
        specs = _relative_specs(stack)
        stack_sites = [s for s in sites if s.stack == stack.name]
        n_layers = max(s.layer for s in stack_sites) + 1
        first = next(s for s in stack_sites if s.role is Role.FFN_IN and s.layer == 0)
        m = re.match(rf"^(?:.*\.)?{stack.layers}\.", first.path)
        layers_path = _strip_prefix(model, first.path[: m.start(1) - 1]) if m else ""
        entry: dict[str, Any] = {"layers": layers_path, "attention": {}}
        by_key = {(s.layer, s.attention, s.role): s for s in stack_sites}
        for name, spec in specs.items():
            heads = []
            head_dim = 0
            role = Role.QKV if spec.get("fused_qkv") else Role.QUERY
            layers = [model.get_submodule(_layer_path(by_key[(i, name, role)].path, spec["q"]))
                      for i in range(n_layers)]
            for i in range(n_layers):
                site = by_key[(i, name, role)]
                head_dim = site.head_dim
                rows = model.get_submodule(site.path).out_features
                heads.append(rows // (head_dim * site.parts))
            spec = dict(spec)
            if "head_linears" in spec:
                # Only the ones this configuration builds (the same in every layer).
                spec["head_linears"] = cm.head_linear_paths(layers[0], spec)[3:]
                if not spec["head_linears"]:
                    del spec["head_linears"]
            entry["attention"][name] = {**spec, "head_dim": head_dim, "heads": heads}
            if "head_args" in spec:
                entry["attention"][name]["head_index"] = [
                    _dense_head_index(layer.get_submodule(spec["module"]), n)
                    for layer, n in zip(layers, heads)]
        dims = [model.get_submodule(by_key[(i, None, Role.FFN_OUT)].path).in_features
                for i in range(n_layers)]
        # The FFN-in matrices this configuration builds (the same in every layer).
        ins = [rel for rel in stack.ffn_ins
               if any(s.layer == 0 and s.role is Role.FFN_IN and s.path.endswith("." + rel)
                      for s in stack_sites)]
        entry["ffn"] = {"in": ins[0] if len(ins) == 1 else ins, "out": stack.ffn_out, "dims": dims}
        if stack.ffn_in_parts > 1:
            entry["ffn"]["in_parts"] = stack.ffn_in_parts
        layer_list = model.get_submodule(first.path[: m.start(1) - 1]) if m else None
        # Recorded once layers were removed (then the layer list knows its dense indices).
        dense = getattr(layer_list, "nnprune_dense_index", None)
        if dense is not None:
            entry["kept_layers"] = [int(i) for i in dense]
            layout["format"] = cm.WIDTH_DEPTH_FORMAT
        if hidden is not None:
            entry["hidden"] = hidden["stack"]
        layout["stacks"][stack.name] = entry
    if hidden is not None:
        layout["hidden"] = {k: v for k, v in hidden.items() if k != "stack"}
        layout["format"] = cm.WIDTH_DEPTH_FORMAT
    return layout


def is_compacted(config: Any) -> bool:
    return bool(getattr(config, LAYOUT_ATTR, None))


def apply_saved_layout(model: nn.Module, layout: dict[str, Any] | None = None) -> nn.Module:
    """Shrink a freshly built stock model to ``layout`` (default: its config's) before loading."""
    layout = layout if layout is not None else getattr(model.config, LAYOUT_ATTR, None)
    try:
        return cm.apply_layout(model, layout)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise NNPruneError(f"config.{LAYOUT_ATTR} does not fit the model: {exc}") from None


# ---------------------------------------------------------------------------------- fill support
def _inside_kept_units(model: nn.Module) -> dict[str, torch.Tensor]:
    """Per linear layer (by path), a boolean mask of its weight entries that belong to a kept
    head or FFN dimension (rows of Q/K/V and FFN-in, columns of the attention output and
    FFN-out). Removable heads and dimensions (on a model not compacted) are not in it."""
    if any(isinstance(m, MaskedLinear) for m in model.modules()):
        raise NNPruneError("fill needs a plain model: bake or compact the masks first")
    structure = analyze_structure(model)
    inside: dict[str, torch.Tensor] = {}

    def allow(path: str, index: torch.Tensor, rows: bool) -> None:
        lin = model.get_submodule(path)
        mask = torch.zeros_like(lin.weight, dtype=torch.bool)
        if rows:
            mask[index] = True
        else:
            mask[:, index] = True
        inside[path] = mask

    for unit in structure.attention:
        dev = model.get_submodule(unit.paths[Role.ATTN_OUTPUT]).weight.device
        idx = _head_index(unit.kept, unit.head_dim, dev)
        if Role.QKV in unit.paths:
            allow(unit.paths[Role.QKV], _head_index(unit.kept, unit.head_dim, dev, 3,
                                                    unit.num_heads), rows=True)
        else:
            for role in (Role.QUERY, Role.KEY, Role.VALUE):
                allow(unit.paths[role], idx, rows=True)
        allow(unit.paths[Role.ATTN_OUTPUT], idx, rows=False)
    for unit in structure.ffn:
        if unit.size == 0:  # a compacted layer whose whole FFN was pruned: nothing inside to allow
            continue
        dev = model.get_submodule(unit.paths[Role.FFN_IN]).weight.device
        idx = torch.tensor(unit.kept, dtype=torch.long, device=dev)
        for path in unit.in_paths or [unit.paths[Role.FFN_IN]]:
            parts = model.get_submodule(path).out_features // unit.size
            allow(path, _section_index(unit.kept, unit.size, parts, dev), rows=True)
        allow(unit.paths[Role.FFN_OUT], idx, rows=False)
    return inside


@torch.no_grad()
def reinit_zeros(model: nn.Module, std: float = 0.02,
                 generator: torch.Generator | None = None) -> int:
    """Re-initialise with ``N(0, std)`` the zero weights inside kept heads and FFN dimensions.

    Meant for *fill* (fine-tuning a compacted model with no pruning): zeros left inside the kept
    heads by block pruning get a small chance to regrow. Heads and FFN dimensions that are
    removable (on a model not compacted) are left at zero. Returns the number of weights set.
    """
    total = 0
    for path, inside in _inside_kept_units(model).items():
        w = model.get_submodule(path).weight
        target = inside & (w == 0)
        n = int(target.sum())
        if n:
            noise = torch.randn(n, generator=generator, dtype=torch.float32).to(w.device, w.dtype)
            w[target] = noise * std
            total += n
    return total


@torch.no_grad()
def restore_inside_kept(model: nn.Module, weights: dict[str, torch.Tensor]) -> int:
    """Put back ``weights[path]`` (the layer's weights before its masks were applied, same
    shape) wherever a zero inside a kept head or FFN dimension of ``model`` (baked, *not yet
    compacted*) has a non-zero weight there. Removable heads and dimensions stay empty, so the
    model compacts to the same shapes. Returns the number of weights restored.

    Meant for *fill* from a block-pruned checkpoint: the blocks the masks hid inside kept heads
    kept their values during pruning (a masked weight gets no gradient from the loss), so they
    come back as the weights the rest of the head was trained with, not as noise."""
    total = 0
    for path, inside in _inside_kept_units(model).items():
        if path not in weights:
            continue
        w = model.get_submodule(path).weight
        src = weights[path].to(w.device, w.dtype)
        if src.shape != w.shape:
            raise NNPruneError(f"{path}: stored weights {tuple(src.shape)} do not fit "
                               f"{tuple(w.shape)}; restore before compacting")
        target = inside & (w == 0) & (src != 0)
        w[target] = src[target]
        total += int(target.sum())
    return total


# ---------------------------------------------------------------------------------- remote code
def _auto_classes(model_type: str, class_name: str) -> dict[str, str]:
    """Auto class name -> stock model class name, for every auto class that builds
    ``class_name`` for ``model_type``, plus ``AutoModel`` for the bare model."""
    import transformers.models.auto.modeling_auto as ma
    from transformers.models.auto.auto_factory import _BaseAutoModelClass

    out: dict[str, str] = {}
    for name in dir(ma):
        cls = getattr(ma, name)
        if not (isinstance(cls, type) and issubclass(cls, _BaseAutoModelClass)):
            continue
        mapping = getattr(cls, "_model_mapping", None)
        names = getattr(mapping, "_model_mapping", None)
        if not isinstance(names, dict):
            continue
        target = names.get(model_type)
        if isinstance(target, (list, tuple)):
            target = target[0] if target else None
        if target and (target == class_name or name == "AutoModel"):
            out[name] = target
    return out


def modeling_source(model_type: str, class_name: str) -> tuple[str, dict[str, str]]:
    """Text of ``nnprune_modeling.py`` and the ``auto_map`` pointing at its classes."""
    import transformers

    autos = _auto_classes(model_type, class_name)
    autos = {k: v for k, v in autos.items() if hasattr(transformers, v)}
    if class_name not in autos.values() and hasattr(transformers, class_name):
        autos.setdefault("AutoModel", class_name)
    stock = sorted(set(autos.values()))
    if not stock:
        raise NNPruneError(f"no transformers class to build {class_name} ({model_type}) from; "
                           "cannot write remote code for this compacted model")
    src = Path(cm.__file__).read_text()
    lines = [src.rstrip("\n"), "", "",
             "# ---- generated by nnprune: the model classes of this checkpoint ----",
             f"from transformers import {', '.join(stock)}", ""]
    for name in stock:
        lines += ["", f"class {CLASS_PREFIX}{name}(NNPruneCompactMixin, {name}):",
                  f'    """``{name}`` with the per-layer sizes of ``config.{LAYOUT_ATTR}``."""', ""]
    auto_map = {auto: f"{MODELING_FILE[:-3]}.{CLASS_PREFIX}{cls}" for auto, cls in sorted(autos.items())}
    return "\n".join(lines).rstrip("\n") + "\n", auto_map


def stock_class_name(model: nn.Module) -> str:
    name = type(model).__name__
    return name.removeprefix(CLASS_PREFIX)


def write_remote_code(model: nn.Module, directory: str | Path) -> dict[str, str]:
    """Write ``nnprune_modeling.py`` into a saved checkpoint folder of compacted ``model`` and
    point ``config.json``'s ``auto_map`` at it. Returns the ``auto_map``."""
    d = Path(directory)
    source, auto_map = modeling_source(model.config.model_type, stock_class_name(model))
    atomic_write_text(d / MODELING_FILE, source)
    cfg_path = d / "config.json"
    data = json.loads(cfg_path.read_text())
    data["auto_map"] = auto_map
    archs = data.get("architectures") or []
    data["architectures"] = [a.removeprefix(CLASS_PREFIX)
                             for a in archs]
    atomic_write_text(cfg_path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return auto_map


# ---------------------------------------------------------------------------------- dense ancestor
def dense_config(config: Any) -> Any:
    """A copy of ``config`` at the dense ancestor's sizes, without nnprune layout entries."""
    cfg = copy.deepcopy(config)
    for k, v in (getattr(cfg, ORIGINAL_ATTR, None) or {}).items():
        setattr(cfg, k, v)
    for k in (LAYOUT_ATTR, ORIGINAL_ATTR, "auto_map"):
        if k in cfg.__dict__:
            del cfg.__dict__[k]
    return cfg


def dense_baseline(model: nn.Module, seed: int = 0) -> nn.Module:
    """The original architecture of ``model`` at full size, randomly initialized (eval mode)."""
    cfg = dense_config(model.config)
    cls = type(model)
    if cls.__name__.startswith(CLASS_PREFIX) or not hasattr(cls, "config_class"):
        cls = model_class_for(cfg)  # the stock class of a remote-code compacted model
    torch.manual_seed(seed)
    return cls(cfg).eval()


@torch.no_grad()
def expand_model(model: nn.Module) -> nn.Module:
    """The inverse of :func:`compact_model` for heads and FFN dimensions: a new model of the
    dense ancestor's architecture (:func:`dense_config`) with every head and FFN dimension that
    compaction removed back as zeros. It computes the same function as ``model`` (checked on a
    probe batch) and has the dense shapes, so it can be pruned again with its targets counted
    against the dense model: zero units carry no Fisher information and go first.

    A kept head returns to its dense index where the layout records one (``head_index``);
    otherwise the kept heads take the first positions, in order, and the kept FFN dimensions
    too (where a unit sits does not change what the layer computes). An empty attention block
    becomes a stock one with zero weights. A model whose hidden dimension was narrowed or whose
    layers were removed is refused in one line: their LayerNorms cannot come back exactly. A
    model that is not compacted is returned as it is.
    """
    layout = getattr(model.config, LAYOUT_ATTR, None)
    if not layout:
        return model
    if layout.get("hidden") or any("kept_layers" in s for s in layout["stacks"].values()):
        raise NNPruneError("this model was compacted with a narrower hidden dimension or fewer "
                           "layers, which cannot be put back exactly; prune the fine-tuned model "
                           "it came from")
    param = next(model.parameters())
    with torch.random.fork_rng(devices=[]):  # its random init is overwritten: leave the RNG be
        dense = dense_baseline(model).to(device=param.device, dtype=param.dtype)
    src_state, dst_state = model.state_dict(), dense.state_dict()
    if set(src_state) != set(dst_state):
        odd = sorted(set(src_state) ^ set(dst_state))
        raise NNPruneError(f"cannot expand this compacted model: its parameters differ from its "
                           f"dense architecture's ({', '.join(odd[:3])})")
    for name, value in src_state.items():
        if value.shape == dst_state[name].shape:
            dst_state[name].copy_(value)
    original = _original_sizes(model.config)
    roles = {s.name: s for s in architecture_for(model.config.model_type).stacks}
    for name, stack in layout["stacks"].items():
        dense_heads = original[roles[name].heads_attr]
        pairs = zip(cm.find_layers(model, stack["layers"]), cm.find_layers(dense, stack["layers"]))
        for i, (src, dst) in enumerate(pairs):
            for spec in stack.get("attention", {}).values():
                hd, heads = int(spec["head_dim"]), int(spec["heads"][i])
                index = ([int(h) for h in spec["head_index"][i]] if spec.get("head_index")
                         else list(range(heads)))
                for path, sections in cm.head_row_layers(dst, spec):
                    _put_rows(dst.get_submodule(path), src.get_submodule(path),
                              _head_index(index, hd, param.device, sections, dense_heads))
                _put_columns(dst.get_submodule(spec["o"]), src.get_submodule(spec["o"]),
                             _head_index(index, hd, param.device))
            ffn = stack.get("ffn")
            if ffn is None:
                continue
            dims, dense_dims = int(ffn["dims"][i]), original[roles[name].ffn_attr]
            for path in cm.ffn_in_paths(ffn):
                _put_rows(dst.get_submodule(path), src.get_submodule(path),
                          _section_index(list(range(dims)), dense_dims,
                                         int(ffn.get("in_parts", 1)), param.device))
            _put_columns(dst.get_submodule(ffn["out"]), src.get_submodule(ffn["out"]),
                         torch.arange(dims, device=param.device))
    inputs = probe_inputs(model.config)
    diff = max_abs_diff(model_outputs(dense, inputs), model_outputs(model, inputs))
    if diff > EXACT_TOLERANCE:
        raise NNPruneError(f"expanding changed the model's outputs by {diff:.3g} "
                           f"(> {EXACT_TOLERANCE:g}); refusing to use it")
    return dense.train(model.training)


def _put_rows(dst: nn.Linear, src: nn.Linear, rows: torch.Tensor) -> None:
    """``dst`` (dense rows) zero but for ``rows``, which get ``src``'s rows in order."""
    dst.weight.zero_()
    dst.weight[rows] = src.weight
    if dst.bias is not None:
        dst.bias.zero_()
        dst.bias[rows] = src.bias


def _put_columns(dst: nn.Linear, src: nn.Linear, cols: torch.Tensor) -> None:
    """``dst`` (dense columns) zero but for ``cols``, which get ``src``'s columns in order."""
    dst.weight.zero_()
    dst.weight[:, cols] = src.weight
    if dst.bias is not None:
        dst.bias.copy_(src.bias)


# ---------------------------------------------------------------------------------- exactness probes
PROBE_SENTENCES = (
    "The movie was surprisingly good, and the cast clearly enjoyed themselves.",
    "A dull story.",
    "Pruning removes what the model does not need, and keeps what it does.",
    "Is this the same function as before?",
)


# Largest |output difference| (fp32) at which a rewritten model still counts as the same model.
EXACT_TOLERANCE = 1e-4


def probe_inputs(config: Any, tokenizer: Any = None, batch: int = 4,
                 seq_len: int = 16) -> dict[str, torch.Tensor]:
    """A fixed batch (with padding) to compare a model before and after an export:
    ``input_ids`` and ``attention_mask`` ``(batch, seq)``, plus ``decoder_input_ids``
    ``(batch, seq)`` (the source shifted right after the decoder start token) for a seq2seq
    architecture that does not derive them itself (T5)."""
    inputs = _probe_sources(config, tokenizer, batch, seq_len)
    arch = ARCHITECTURES.get(getattr(config, "model_type", None))
    start = getattr(config, "decoder_start_token_id", None)
    if arch is not None and arch.needs_decoder_inputs and isinstance(start, int):
        ids = inputs["input_ids"]
        dec = torch.cat([torch.full_like(ids[:, :1], start), ids[:, :-1]], dim=1)
        inputs["decoder_input_ids"] = dec
    return inputs


def _probe_sources(config: Any, tokenizer: Any, batch: int, seq_len: int) -> dict[str, torch.Tensor]:
    vocab = int(getattr(config, "vocab_size", 1000))
    enc = _tokenize(tokenizer, list(PROBE_SENTENCES[:batch])) if tokenizer is not None else None
    if enc is not None:
        ids, mask = enc["input_ids"], enc["attention_mask"]
        if int(ids.max()) < vocab and int(ids.min()) >= 0:
            return {"input_ids": ids, "attention_mask": mask}
    g = torch.Generator().manual_seed(0)
    low, high = min(10, vocab - 1), max(min(vocab, 1000), min(10, vocab - 1) + 1)
    ids = torch.randint(low, high, (batch, seq_len), generator=g)
    eos = getattr(config, "eos_token_id", None)
    mask = torch.ones_like(ids)
    lengths = [seq_len - (i * seq_len) // (2 * batch) for i in range(batch)]
    for i, n in enumerate(lengths):
        if isinstance(eos, int) and 0 <= eos < vocab:
            ids[i][ids[i] == eos] = low if eos != low else low + 1
            ids[i, n - 1] = eos
        pad = getattr(config, "pad_token_id", None)
        if n < seq_len:
            mask[i, n:] = 0
            if isinstance(pad, int) and 0 <= pad < vocab:
                ids[i, n:] = pad
    return {"input_ids": ids, "attention_mask": mask}


def _tokenize(tokenizer: Any, texts: list[str]) -> Any:
    """Padded ids for ``texts``, or None when the tokenizer cannot (then random ids are used)."""
    try:
        return tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    except Exception:  # noqa: BLE001 - any tokenizer problem means the same fallback
        return None


@torch.no_grad()
def model_outputs(model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The logits fields of ``model(**inputs)`` (the last hidden state for a bare model), fp32."""
    was = model.training
    model.eval()
    try:
        dev = next(model.parameters()).device
        out = model(**{k: v.to(dev) for k, v in inputs.items()})
    finally:
        model.train(was)
    fields = {k: v for k, v in out.items() if "logits" in k and isinstance(v, torch.Tensor)}
    if not fields and isinstance(out.get("last_hidden_state"), torch.Tensor):
        fields = {"last_hidden_state": out["last_hidden_state"]}
    return {k: v.detach().float().cpu() for k, v in fields.items()}


def compact_exactly(model: nn.Module, *, tokenizer: Any = None, ffn_multiple: int = 8,
                    refusal: str = "refusing to use a model that is not the pruned one"
                    ) -> tuple[CompactionReport, float]:
    """:func:`compact_model` (exact removals only), checked: the outputs on a fixed probe batch
    must stay within :data:`EXACT_TOLERANCE`, else a one-line error ending with ``refusal``.
    Returns the report and the max |output difference|."""
    inputs = probe_inputs(model.config, tokenizer)
    reference = model_outputs(model, inputs)
    report = compact_model(model, allow_inexact=False, ffn_multiple=ffn_multiple)
    diff = max_abs_diff(model_outputs(model, inputs), reference)
    if diff > EXACT_TOLERANCE:
        raise NNPruneError(f"compaction changed the model's outputs by {diff:.3g} "
                           f"(> {EXACT_TOLERANCE:g}); {refusal}")
    return report, diff


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    if set(a) != set(b):
        raise NNPruneError(f"reloaded model returns {sorted(b)}, expected {sorted(a)}")
    diffs = [float((a[k] - b[k]).abs().max()) if a[k].numel() else 0.0 for k in a]
    return max(diffs, default=0.0)


__all__ = [
    "EXACT_TOLERANCE", "MODELING_FILE", "AttentionReport", "CompactionReport", "FfnReport",
    "apply_saved_layout", "compact_exactly", "compact_model", "dense_baseline", "dense_config",
    "expand_model", "is_compacted",
    "max_abs_diff", "model_layout", "model_outputs", "modeling_source", "probe_inputs",
    "reinit_zeros", "restore_inside_kept", "write_remote_code",
]
