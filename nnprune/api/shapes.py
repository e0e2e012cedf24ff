"""A model's shape (layers, heads and FFN dimensions kept per layer) and the shape-only tools a
trade-off sweep needs: the DistilBERT recipe's layer dropping (:func:`drop_layers`, the layers
:func:`evenly_spaced_layers` keeps, how many :func:`layers_for_speedup` keeps for a speed), and
a model of a saved checkpoint's shapes with random weights (:func:`shaped_model`): latency
depends on shapes, not values, so a model trained on another machine can be timed here from its
small files alone."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import nn

from nnprune.errors import NNPruneError
from nnprune.measure.latency import LatencyTable
from nnprune.pruning_core.architectures import architecture_for, model_class_for
from nnprune.pruning_core.compact import apply_saved_layout, is_compacted, model_layout


@dataclass(frozen=True)
class ModelShape:
    """Heads and FFN dimensions each layer of an encoder computes, and the width of its hidden
    stream: what its latency depends on (a compacted model's own sizes, FFN padding included; a
    layer-dropped or layer-removed model's layers; a masked or plain model computes at full
    size, whatever its masks or zeros: compact it first).

    Example::

        shape = nnprune.model_shape(model)
        print(shape.layers, shape.total_heads, shape.total_ffn_dims)
        print(shape.predicted_speedup(nnprune.latency_table(model)))
    """

    heads: tuple[int, ...]  # (layers,) heads kept per layer
    ffn_dims: tuple[int, ...]  # (layers,) FFN dimensions kept per layer
    hidden: Optional[int] = None  # channels of the hidden stream kept (None: the full width)

    @property
    def layers(self) -> int:
        return len(self.heads)

    @property
    def total_heads(self) -> int:
        return sum(self.heads)

    @property
    def total_ffn_dims(self) -> int:
        return sum(self.ffn_dims)

    def predicted_speedup(self, table: LatencyTable) -> Optional[float]:
        """The speedup ``table`` predicts for this shape; ``None`` for a shape with more layers
        than the table's model, or a narrowed stream and a table without hidden widths. A table
        that prices depth (format 3) prices the layers the shape has; an older one a missing
        layer as one with no head and no FFN dimension."""
        m = table.model
        if self.layers > m.num_layers:
            return None
        if self.hidden is not None and not m.has_width_depth:
            return None
        if m.has_width_depth:
            return m.speedup(list(self.heads), list(self.ffn_dims), self.hidden)
        pad = [0] * (m.num_layers - self.layers)
        return m.speedup(list(self.heads) + pad, list(self.ffn_dims) + pad)

    def to_dict(self) -> dict[str, Any]:
        return {"layers": self.layers, "heads_per_layer": list(self.heads),
                "ffn_dims_per_layer": list(self.ffn_dims), "heads": self.total_heads,
                "ffn_dims": self.total_ffn_dims, "hidden": self.hidden}


def model_shape(model: nn.Module) -> ModelShape:
    """The :class:`ModelShape` of an encoder model (the first stack of an encoder-decoder).

    Example::

        shape = nnprune.model_shape(nnprune.load_pretrained("runs/sst2-os-2"))
        print(f"{shape.total_heads} heads, {shape.total_ffn_dims} FFN dims in {shape.layers} layers")
    """
    layout = model_layout(model)
    first = next(iter(layout["stacks"].values()))
    heads = first["attention"].get("self") or next(iter(first["attention"].values()))
    hidden = layout.get("hidden")
    return ModelShape(tuple(int(h) for h in heads["heads"]), tuple(int(d) for d in first["ffn"]["dims"]),
                      int(hidden["size"]) if hidden else None)


def evenly_spaced_layers(num_layers: int, k: int) -> list[int]:
    """``k`` evenly spaced layers of ``num_layers``, from the first (layers ``floor(i * L / k)``):
    every other one for ``k = L / 2``, as DistilBERT initialises its student.

    Example::

        nnprune.evenly_spaced_layers(6, 3)   # [0, 2, 4]
    """
    if not 1 <= k <= num_layers:
        raise NNPruneError(f"keep between 1 and {num_layers} layers, not {k}")
    return sorted({(i * num_layers) // k for i in range(k)})


def layers_for_speedup(table: LatencyTable, target: float) -> tuple[int, float]:
    """The number of layers to keep (fewer than all, at least one) whose speedup ``table``
    predicts closest to ``target`` (a dropped layer costs nothing), and that speedup.

    Example::

        k, predicted = nnprune.layers_for_speedup(table, 2.0)   # MiniLM: (3, 1.9...)
    """
    m = table.model
    best: Optional[tuple[int, float]] = None
    for k in range(m.num_layers - 1, 0, -1):
        pred = ModelShape((m.dense_heads,) * k, (m.dense_ffn,) * k).predicted_speedup(table)
        if best is None or abs(pred - target) < abs(best[1] - target):
            best = (k, pred)
    if best is None:
        raise NNPruneError("a one-layer model has no layer to drop")
    return best


@torch.no_grad()
def drop_layers(model: nn.Module, keep: Sequence[int]) -> nn.Module:
    """A new plain model with only the layers ``keep`` of ``model`` (renumbered ``0..k-1``), the
    embeddings, pooler and task head copied as they are: the DistilBERT recipe's student, to
    distil from ``model`` afterwards. Encoder models, full size (not compacted).

    Example::

        keep = nnprune.evenly_spaced_layers(model.config.num_hidden_layers, 3)
        small = nnprune.drop_layers(model, keep)
        small.save_pretrained("runs/sst2-3-layers")
    """
    if is_compacted(model.config):
        raise NNPruneError("the model is compacted; drop layers of the full dense model")
    if any(hasattr(m, "mask_scores") for m in model.modules()):
        raise NNPruneError("the model has masks attached; load it with bake_masks=True or "
                           "drop layers of a plain model")
    arch = architecture_for(model.config.model_type)
    if len(arch.stacks) != 1:
        raise NNPruneError("drop_layers covers encoder models only")
    n = int(getattr(model.config, arch.stacks[0].layers_attr))
    keep = sorted(set(int(i) for i in keep))
    if not keep or keep[0] < 0 or keep[-1] >= n:
        raise NNPruneError(f"keep: layer indices in [0, {n - 1}], got {list(keep)}")
    cfg = copy.deepcopy(model.config)
    setattr(cfg, arch.stacks[0].layers_attr, len(keep))
    if isinstance(getattr(cfg, "layer_types", None), list):  # per-layer kinds (ModernBERT)
        cfg.layer_types = [cfg.layer_types[i] for i in keep]
    cfg.architectures = [type(model).__name__]
    small = type(model)(cfg).eval()
    pattern = re.compile(rf"(^|\.)({arch.stacks[0].layers})\.")
    new_index = {old: new for new, old in enumerate(keep)}
    state = {}
    for key, value in model.state_dict().items():
        match = pattern.search(key)
        if match is None:
            state[key] = value
            continue
        old = int(match.group(3))
        if old in new_index:
            start, end = match.span(3)
            state[key[:start] + str(new_index[old]) + key[end:]] = value
    missing, unexpected = small.load_state_dict(state, strict=False)
    # Non-persistent buffers (position ids) may be absent from a state dict; nothing else may.
    buffers = {name for name, _ in small.named_buffers()}
    if unexpected or [k for k in missing if k not in buffers]:
        raise NNPruneError(f"drop_layers: weights do not fit (missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]})")
    return small


def shaped_model(checkpoint: "str | Path") -> nn.Module:
    """The model ``checkpoint/config.json`` describes (a compacted one at its saved per-layer
    sizes) with random weights, in eval mode: for timing a model whose weights stayed on another
    machine (time depends on shapes, not values).

    Example::

        small = nnprune.shaped_model("runs/copied-back/one-shot-x2-s42")   # config.json only
        report = nnprune.measure_speed(small, "runs/sst2-dense", batch_sizes=[1], seq_lens=[128])
    """
    from transformers import AutoConfig

    path = Path(checkpoint)
    if not (path / "config.json").is_file():
        raise NNPruneError(f"{path} has no config.json")
    config = AutoConfig.from_pretrained(str(path), trust_remote_code=False)  # never its code
    torch.manual_seed(0)
    model = model_class_for(config)(config)
    if is_compacted(config):
        apply_saved_layout(model)
    return model.eval()


__all__ = ["ModelShape", "drop_layers", "evenly_spaced_layers", "layers_for_speedup",
           "model_shape", "shaped_model"]
