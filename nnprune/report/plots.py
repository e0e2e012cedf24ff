"""Pictures of a pruned model, as PNG files for its model card.

- :func:`pattern_plot`: the kept / pruned weights of every prunable linear matrix, one small panel
  per matrix per layer (rows = layers, columns = q, k, v, o, ffn_in, ffn_out), head boundaries
  marked, as in Figure 1 of Lagunas et al. 2021 ("Block Pruning For Faster Transformers").
- :func:`heads_plot`: the attention heads kept, a layer x head grid.
- :func:`ffn_plot`: the FFN dimensions kept per layer, against the original size.
- :func:`tradeoff_plot`: metric vs measured speedup, one curve per route, the dense model a point.

Every panel shows a matrix in the same orientation: rows = the model (hidden) dimension, columns =
the structured dimension (heads for attention, FFN dimensions for the FFN), so whole heads and FFN
dimensions pruned away show as white vertical stripes. Q, K, V and FFN-in weights are ``(out, in)``
with heads / FFN dimensions on the rows, so they are drawn transposed.

Where positions come from: a masked checkpoint's final masks (``MaskedLinear.block_mask``); a plain
checkpoint's zero weights; a compacted checkpoint's remaining weights, drawn in the first columns of
the original size with the removed heads / FFN dimensions after them (compaction keeps no record of
their original positions). A model pruned in width and depth (issue 25) is drawn against its dense
ancestor too: its kept hidden channels are drawn in the rows they have in the dense model (the
layout records them), the removed ones white, and every removed layer is a row of its own
("layer 3 (removed)"), all white.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend
change) and written atomically. Each function returns the data it drew.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import textwrap
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from nnprune.measure.counting import ROLE_SHORT, original_sizes
from nnprune.pruning_core.architectures import Role, architecture_for, find_sites
from nnprune.pruning_core.compact import is_compacted
from nnprune.pruning_core.compact_modeling import LAYOUT_ATTR, ORIGINAL_ATTR
from nnprune.pruning_core.masked import MaskedLinear
from nnprune.pruning_core.structure import ModelStructure, analyze_structure

logger = logging.getLogger(__name__)

WIDTH_IN = 8.0  # figure width in inches: 960 px at DPI, the width of a README column
DPI = 120
KEPT_COLOR = "#1f4e99"
QK_COLOR = "#8fb3e8"
PRUNED_COLOR = "#ffffff"
ORIGINAL_COLOR = "#d9d9d9"
BOUNDARY_COLOR = "#e07b00"
MAX_CELLS = 96  # cells along the hidden dimension of one panel (larger matrices are averaged)
COLUMN_TITLES = {"q": "query", "k": "key", "v": "value", "o": "output",
                 "ffn_in": "FFN in", "ffn_out": "FFN out"}
_TRANSPOSED = (Role.QUERY, Role.KEY, Role.VALUE, Role.QKV, Role.FFN_IN)


# ------------------------------------------------------------------------------------- data
@dataclass
class PatternData:
    """What :func:`pattern_plot` drew.

    ``panels[(row, column)]``: the share of weights kept in each cell of that matrix (rows =
    hidden dimension / ``factor``, columns = heads x head size or FFN dimensions / ``factor``).
    ``drawn``: the (row, column) of every panel in the figure, in drawing order.
    """

    rows: list[str]
    columns: list[str]
    panels: dict[tuple[str, str], np.ndarray]
    kept: dict[tuple[str, str], float]  # share of the weights of the original matrix kept
    factor: int
    positions_known: bool
    drawn: list[tuple[str, str]] = field(default_factory=list)
    path: Optional[Path] = None
    # row -> (stack, position of the layer in the model; -1 for a removed layer)
    row_layers: dict[str, tuple[str, int]] = field(default_factory=dict)
    hidden_kept: int = 0  # rows of the stream kept (< the dense width when narrowed)


@dataclass
class HeadsData:
    """What :func:`heads_plot` drew: ``kept[i, h]`` is True when head ``h`` of attention block
    ``rows[i]`` is kept (``False`` too past a block's original head count: ``num_heads[i]``);
    ``qk_empty[i, h]`` marks kept heads whose query or key is empty."""

    rows: list[str]
    kept: np.ndarray
    qk_empty: np.ndarray
    num_heads: list[int]
    positions_known: bool
    path: Optional[Path] = None


@dataclass
class FfnData:
    """What :func:`ffn_plot` drew: FFN dimensions kept and original per layer (``rows``)."""

    rows: list[str]
    kept: list[int]
    original: list[int]
    path: Optional[Path] = None


@dataclass
class TradeoffPoint:
    """One model of a tradeoff curve: its route (curve), measured speedup and metric."""

    route: str
    speedup: float
    metric: float
    label: Optional[str] = None


# ---------------------------------------------------------------------------------- helpers
def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: "str | Path") -> Path:
    """Write ``fig`` as a PNG through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    logger.debug("wrote %s", path)
    return path


def _row_label(stack: str, layer: int, stacks: Sequence[str], attention: Optional[str] = None,
               kinds: Sequence[str] = ("self",)) -> str:
    base = f"layer {layer}" if len(stacks) == 1 else f"{stack[:3]}. {layer}"
    if attention is not None and len(kinds) > 1:
        base += f" {attention}"
    return base


def _column_name(role: Role, attention: Optional[str]) -> str:
    short = ROLE_SHORT[role]
    return short if attention in (None, "self") else f"{attention}_{short}"


@torch.no_grad()
def _kept_mask(module: nn.Module) -> np.ndarray:
    """``(out, in)`` boolean: the weights the module computes with at eval."""
    if isinstance(module, MaskedLinear):
        block = module.block_mask(training=False)
        mask = module.expand(block) != 0
    else:
        mask = module.weight.detach() != 0
    return mask.cpu().numpy()


def _downsample(mask: np.ndarray, f: int) -> np.ndarray:
    """Mean of ``mask`` over ``f x f`` cells (the last cells may be partial)."""
    if f == 1:
        return mask.astype(np.float32)
    r, c = mask.shape
    rr, cc = math.ceil(r / f) * f, math.ceil(c / f) * f
    vals = np.zeros((rr, cc), np.float32)
    counts = np.zeros((rr, cc), np.float32)
    vals[:r, :c] = mask
    counts[:r, :c] = 1
    shape = (rr // f, f, cc // f, f)
    total = counts.reshape(shape).sum(axis=(1, 3))
    return vals.reshape(shape).sum(axis=(1, 3)) / np.maximum(total, 1)


def _downsample_columns(panel: np.ndarray, k: int) -> np.ndarray:
    """Mean of ``panel`` over groups of ``k`` columns (the last group may be partial)."""
    r, c = panel.shape
    cc = math.ceil(c / k) * k
    vals = np.zeros((r, cc), np.float32)
    counts = np.zeros((r, cc), np.float32)
    vals[:, :c] = panel
    counts[:, :c] = 1
    return vals.reshape(r, cc // k, k).sum(2) / np.maximum(counts.reshape(r, cc // k, k).sum(2), 1)


def _stack_info(model: nn.Module) -> dict[str, tuple[int, int]]:
    """stack -> (original heads, original FFN size) of the dense ancestor."""
    arch = architecture_for(model.config.model_type)
    return {s.name: original_sizes(model.config, s.heads_attr, s.ffn_attr) for s in arch.stacks}


def _hidden(model: nn.Module) -> int:
    arch = architecture_for(model.config.model_type)
    return int(getattr(model.config, arch.hidden_attr))


LayerPlan = dict[str, list[tuple[int, Optional[int]]]]


def _layer_plan(model: nn.Module) -> LayerPlan:
    """Per stack that lost whole layers: ``(dense index, position in the model or None when
    removed)`` for every layer of the dense ancestor, in order."""
    layout = getattr(model.config, LAYOUT_ATTR, None) or {}
    original = getattr(model.config, ORIGINAL_ATTR, None) or {}
    plan: LayerPlan = {}
    for stack in architecture_for(model.config.model_type).stacks:
        kept = (layout.get("stacks", {}).get(stack.name) or {}).get("kept_layers")
        if kept is not None:
            n = int(original.get(stack.layers_attr, len(kept)))
            plan[stack.name] = [(i, kept.index(i) if i in kept else None) for i in range(n)]
    return plan


def _dense_index(plan: LayerPlan, stack: str, position: int) -> int:
    """The dense ancestor's index of the layer at ``position`` of ``stack``."""
    for index, where in plan.get(stack, ()):
        if where == position:
            return index
    return position


def _removed(plan: LayerPlan) -> list[tuple[str, int]]:
    return [(stack, i) for stack, layers in plan.items() for i, where in layers if where is None]


def _layer_sort(stacks: Sequence[str]) -> Any:
    """Sort key of ``(stack, dense layer index)``: stacks in order, then layers."""
    return lambda key: (list(stacks).index(key[0]) if key[0] in stacks else len(stacks), key[1])


# ----------------------------------------------------------------------------- pattern plot
@torch.no_grad()
def pattern_data(model: nn.Module, structure: Optional[ModelStructure] = None) -> PatternData:
    """The kept share of every cell of every prunable matrix, in the figure's orientation."""
    structure = structure or analyze_structure(model)
    sites = structure.sites or find_sites(model)
    compacted = is_compacted(model.config)
    originals = _stack_info(model)
    hidden = _hidden(model)
    plan = _layer_plan(model)
    head_dims = {(u.stack, u.layer, u.name): u.head_dim for u in structure.attention}
    factor = max(1, math.ceil(hidden / MAX_CELLS))
    stacks = list(dict.fromkeys(s.stack for s in sites))
    rows: list[str] = []
    columns: list[str] = []
    panels: dict[tuple[str, str], np.ndarray] = {}
    kept: dict[tuple[str, str], float] = {}
    row_layers: dict[str, tuple[str, int]] = {}
    order: dict[str, tuple[str, int]] = {}
    widths: dict[str, int] = {}
    narrowed = hidden
    stream = (getattr(model.config, LAYOUT_ATTR, None) or {}).get("hidden") or {}
    channels = np.asarray(stream["index"], dtype=int) if stream.get("index") else None
    for site in sites:
        dense = _dense_index(plan, site.stack, site.layer)
        row = _row_label(site.stack, dense, stacks)
        col = _column_name(site.role, site.attention)
        rows += [row] if row not in rows else []
        columns += [col] if col not in columns else []
        row_layers[row], order[row] = (site.stack, site.layer), (site.stack, dense)
        heads, ffn = originals[site.stack]
        if site.role.is_attention:
            hd = head_dims.get(site.unit) or hidden // heads
            width = heads * hd * site.parts  # a fused QKV layer's 3 sections side by side
        else:
            width = ffn * site.parts
        mask = _kept_mask(model.get_submodule(site.path))
        if site.role in _TRANSPOSED:
            mask = mask.T  # (hidden, structured)
        narrowed = min(narrowed, mask.shape[0])
        widths[col] = width
        # Compacted (or any smaller) matrix: its columns first, the removed ones after; a
        # narrowed stream's rows at the channels they are in the dense model (recorded).
        full = np.zeros((hidden, max(width, mask.shape[1])), dtype=bool)
        at = channels if channels is not None and len(channels) == mask.shape[0] else \
            np.arange(mask.shape[0])
        full[at, : mask.shape[1]] = mask
        panels[(row, col)] = _downsample(full, factor)
        kept[(row, col)] = float(full.sum()) / float(hidden * width) if width else 0.0
    for stack, index in _removed(plan):  # a removed layer: every matrix empty
        row = _row_label(stack, index, stacks) + " (removed)"
        rows.append(row)
        row_layers[row], order[row] = (stack, -1), (stack, index)
        for col in columns:
            panels[(row, col)] = _downsample(np.zeros((hidden, widths[col]), dtype=bool), factor)
            kept[(row, col)] = 0.0
    rows.sort(key=lambda r: _layer_sort(stacks)(order[r]))
    # Attention matrices first (self, then cross), the FFN last.
    columns.sort(key=lambda c: (c.startswith("ffn"), c.startswith("cross_")))
    return PatternData(rows, columns, panels, kept, factor, positions_known=not compacted,
                       row_layers=row_layers, hidden_kept=narrowed)


def pattern_plot(model: nn.Module, path: "str | Path", *, structure: Optional[ModelStructure] = None,
                 title: Optional[str] = None) -> PatternData:
    """Draw the kept / pruned weights of every prunable matrix of ``model`` into ``path``."""
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.patches import Patch

    structure = structure or analyze_structure(model)
    data = pattern_data(model, structure)
    originals = _stack_info(model)
    hidden = _hidden(model)
    head_dims = {(u.stack, u.layer): u.head_dim for u in structure.attention}
    row_stack = data.row_layers
    n_rows, n_cols = len(data.rows), len(data.columns)
    cell_h = max(p.shape[0] for p in data.panels.values())
    # Panel widths in proportion to the matrices, except that an FFN panel is at most twice as
    # wide as an attention one (its dimensions drawn narrower), so attention panels stay legible.
    widths = [min(max(p.shape[1] for (r, c), p in data.panels.items() if c == col), 2 * cell_h)
              for col in data.columns]
    partial = any(((p > 0) & (p < 1)).any() for p in data.panels.values())
    notes = ["% = share of the matrix's weights kept. Each panel: rows = hidden dimension, "
             "columns = heads or FFN dims (q, k, v, FFN in drawn transposed)."]
    if any(w < max(p.shape[1] for (r, c), p in data.panels.items() if c == col)
           for w, col in zip(widths, data.columns)):
        notes[0] += " FFN panels: narrower scale."
    if data.factor > 1 and partial:
        notes.append(f"One cell = {data.factor}x{data.factor} weights; its shade = the share kept.")
    if not data.positions_known:
        notes.append("Compacted checkpoint: kept heads / FFN dims drawn first, removed ones after "
                     "(their original positions are not recorded).")
    if data.hidden_kept < hidden:
        notes.append(f"Narrowed stream: {data.hidden_kept} of {hidden} hidden channels kept (rows, "
                     "at their positions in the dense model); the removed ones white.")
    notes = [line for note in notes for line in textwrap.wrap(note, 145)]
    # Layout in inches.
    left, right, gap = 1.0, 0.15, 0.12
    usable = WIDTH_IN - left - right - gap * (n_cols - 1)
    scale = usable / sum(widths)  # inches per cell
    panel_h = max(cell_h * scale, 0.35)
    head_band, pct_band, row_gap = 0.62, 0.2, 0.08
    if any(c.startswith("cross_") for c in data.columns):
        head_band += 0.16  # two-line column titles
    foot = 0.35 + 0.3 + 0.17 * len(notes) + 0.1  # x labels, legend, notes
    height = head_band + n_rows * (pct_band + panel_h + row_gap) + foot
    fig = _figure(WIDTH_IN, height)
    cmap = LinearSegmentedColormap.from_list("kept", [PRUNED_COLOR, KEPT_COLOR])
    x = left
    for j, col in enumerate(data.columns):  # column titles (a column may be empty in row 0)
        w = widths[j] * scale
        name = col.split("_", 1)[1] if col.startswith("cross_") else col
        prefix = "cross\n" if col.startswith("cross_") else ""
        fig.text((x + w / 2) / WIDTH_IN, 1 - (head_band - 0.08) / height,
                 prefix + COLUMN_TITLES.get(name, name), fontsize=9 if w > 0.6 else 8,
                 fontweight="bold", ha="center", va="bottom")
        x += w + gap
    for i, row in enumerate(data.rows):
        y_top = head_band + i * (pct_band + panel_h + row_gap) + pct_band  # panel top, inches
        x = left
        for j, col in enumerate(data.columns):
            w = widths[j] * scale
            ax = fig.add_axes((x / WIDTH_IN, 1 - (y_top + panel_h) / height, w / WIDTH_IN,
                               panel_h / height))
            x += w + gap
            panel = data.panels.get((row, col))
            ax.set_xticks([])
            ax.set_yticks([])
            if panel is None:  # e.g. no cross-attention in an encoder layer
                ax.set_axis_off()
                continue
            if panel.shape[1] > widths[j]:  # drawn narrower: average columns, never drop any
                k = math.ceil(panel.shape[1] / widths[j])
                panel = _downsample_columns(panel, k)
            ax.imshow(panel, cmap=cmap, vmin=0, vmax=1, interpolation="nearest", aspect="auto")
            data.drawn.append((row, col))
            for spine in ax.spines.values():
                spine.set_color("#888888")
                spine.set_linewidth(0.6)
            stack, layer = row_stack[row]
            if not col.endswith(("ffn_in", "ffn_out")):
                hd = head_dims.get((stack, layer)) or hidden // originals[stack][0]
                n_heads = originals[stack][0]
                for h in range(1, n_heads):
                    ax.axvline(h * hd / data.factor - 0.5, color=BOUNDARY_COLOR,
                               linewidth=0.9 if n_heads <= 8 else 0.5)
            ax.set_title(f"{100 * data.kept[(row, col)]:.0f}%", fontsize=7, pad=2)
            if j == 0:
                ax.set_ylabel(f"{row}\nhidden", fontsize=8)
            if i == n_rows - 1:
                ax.set_xlabel("FFN dims" if col.endswith(("ffn_in", "ffn_out")) else "heads",
                              fontsize=8)
    where = ("final masks" if data.positions_known and any(
        isinstance(m, MaskedLinear) for m in model.modules()) else "non-zero weights")
    fig.suptitle(title or f"Pruning pattern ({where}): blue = kept, white = pruned",
                 fontsize=11, y=1 - 0.12 / height, va="top")
    handles = [Patch(facecolor=KEPT_COLOR, edgecolor="#888888", label="kept"),
               Patch(facecolor=PRUNED_COLOR, edgecolor="#888888", label="pruned"),
               Patch(facecolor="none", edgecolor=BOUNDARY_COLOR, label="head boundary")]
    notes_h = 0.17 * len(notes) + 0.1
    fig.legend(handles=handles, loc="lower left", ncol=3, fontsize=8, frameon=False,
               bbox_to_anchor=(0.1 / WIDTH_IN, notes_h / height))
    fig.text(0.15 / WIDTH_IN, 0.08 / height, "\n".join(notes), fontsize=7, ha="left",
             va="bottom", color="#444444", linespacing=1.4)
    data.path = save_figure(fig, path)
    return data


# ------------------------------------------------------------------------------- heads plot
def heads_data(model: nn.Module, structure: Optional[ModelStructure] = None) -> HeadsData:
    """The layer x head matrix of kept heads (see :class:`HeadsData`)."""
    structure = structure or analyze_structure(model)
    compacted = is_compacted(model.config)
    originals = _stack_info(model)
    stacks = list(dict.fromkeys(u.stack for u in structure.attention))
    kinds = list(dict.fromkeys(u.name for u in structure.attention))
    plan = _layer_plan(model)
    # a removed layer: a row of no head per attention kind, at its dense index
    gone = [replace(next(u for u in structure.attention if u.stack == stack and u.name == kind),
                    layer=-1 - index, removable=[], qk_empty=[], num_heads=0)
            for stack, index in _removed(plan) for kind in kinds]
    index = {id(u): (u.stack, _dense_index(plan, u.stack, u.layer) if u.layer >= 0 else -1 - u.layer)
             for u in list(structure.attention) + gone}
    units = sorted(list(structure.attention) + gone,
                   key=lambda u: (_layer_sort(stacks)(index[id(u)]), kinds.index(u.name)))
    width = max([originals[u.stack][0] for u in units] + [u.num_heads for u in units] + [1])
    kept = np.zeros((len(units), width), dtype=bool)
    qk = np.zeros((len(units), width), dtype=bool)
    rows, num_heads = [], []
    for i, u in enumerate(units):
        rows.append(_row_label(u.stack, index[id(u)][1], stacks, u.name, kinds)
                    + (" (removed)" if u.layer < 0 else ""))
        num_heads.append(max(originals[u.stack][0], u.num_heads))
        if compacted:  # positions are not recorded: the kept heads first
            kept[i, : len(u.kept)] = True
            order = {h: k for k, h in enumerate(u.kept)}
            for h in u.qk_empty:
                qk[i, order[h]] = True
        else:
            kept[i, u.kept] = True
            qk[i, u.qk_empty] = True
    return HeadsData(rows, kept, qk, num_heads, positions_known=not compacted)


def heads_plot(model: nn.Module, path: "str | Path", *, structure: Optional[ModelStructure] = None,
               title: Optional[str] = None) -> HeadsData:
    """Draw which attention heads ``model`` keeps (layer x head grid) into ``path``."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    data = heads_data(model, structure)
    n_rows, n_heads = data.kept.shape
    codes = np.where(data.kept, np.where(data.qk_empty, 2, 1), 0).astype(float)
    for i, n in enumerate(data.num_heads):
        codes[i, n:] = np.nan  # past this block's head count (mixed stacks)
    # Square cells, as wide as a README column allows; margins in inches.
    margin, right, top, bottom = 1.2, 0.8, 0.55, 0.9
    cell = min(0.42, (WIDTH_IN - margin - right) / max(n_heads, 1), 11.0 / max(n_rows, 1))
    height = top + bottom + n_rows * cell
    left = max(margin, (WIDTH_IN - n_heads * cell) / 2)  # centred when narrow
    fig = _figure(WIDTH_IN, height)
    ax = fig.add_axes((left / WIDTH_IN, bottom / height, n_heads * cell / WIDTH_IN,
                       n_rows * cell / height))
    cmap = ListedColormap([PRUNED_COLOR, KEPT_COLOR, QK_COLOR]).with_extremes(bad="#f2f2f2")
    ax.imshow(np.ma.masked_invalid(codes), cmap=cmap, vmin=-0.5, vmax=2.5, aspect="auto",
              interpolation="nearest")
    ax.set_xticks(range(n_heads))
    ax.set_xticklabels([str(h) for h in range(n_heads)], fontsize=8 if n_heads <= 16 else 6)
    ax.set_yticks(range(n_rows))
    ax.set_yticklabels(data.rows, fontsize=8)
    ax.set_xticks(np.arange(-0.5, n_heads), minor=True)
    ax.set_yticks(np.arange(-0.5, n_rows), minor=True)
    ax.grid(which="minor", color="#999999", linewidth=0.6)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("attention head" + ("" if data.positions_known else
                                      " (compacted: kept heads drawn first)"), fontsize=9)
    ax.set_ylabel("layer", fontsize=9)
    for i in range(n_rows):
        ax.text(n_heads - 0.5 + 0.25, i, f"{int(data.kept[i].sum())}/{data.num_heads[i]}",
                va="center", ha="left", fontsize=8)
    total = int(data.kept.sum())
    ax.set_title(title or f"Attention heads kept: {total} / {sum(data.num_heads)}", fontsize=11)
    handles = [Patch(facecolor=KEPT_COLOR, edgecolor="#999999", label="kept"),
               Patch(facecolor=PRUNED_COLOR, edgecolor="#999999", label="pruned")]
    if data.qk_empty.any():
        handles.append(Patch(facecolor=QK_COLOR, edgecolor="#999999",
                             label="kept, empty query or key"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False,
               bbox_to_anchor=((left + n_heads * cell / 2) / WIDTH_IN, 0.02 / height))
    data.path = save_figure(fig, path)
    return data


# --------------------------------------------------------------------------------- FFN plot
def ffn_data(model: nn.Module, structure: Optional[ModelStructure] = None) -> FfnData:
    """FFN dimensions kept and original per layer."""
    structure = structure or analyze_structure(model)
    originals = _stack_info(model)
    stacks = list(dict.fromkeys(u.stack for u in structure.ffn))
    plan = _layer_plan(model)
    entries = [((u.stack, _dense_index(plan, u.stack, u.layer)), _row_label(
        u.stack, _dense_index(plan, u.stack, u.layer), stacks), len(u.kept),
        max(originals[u.stack][1], u.size)) for u in structure.ffn]
    entries += [((stack, i), _row_label(stack, i, stacks) + " (removed)", 0, originals[stack][1])
                for stack, i in _removed(plan)]
    entries.sort(key=lambda e: _layer_sort(stacks)(e[0]))
    return FfnData([e[1] for e in entries], [e[2] for e in entries], [e[3] for e in entries])


def ffn_plot(model: nn.Module, path: "str | Path", *, structure: Optional[ModelStructure] = None,
             title: Optional[str] = None) -> FfnData:
    """Draw the FFN dimensions ``model`` keeps per layer, against the original size."""
    data = ffn_data(model, structure)
    n = len(data.rows)
    fig = _figure(WIDTH_IN, 3.4)
    ax = fig.add_axes((0.9 / WIDTH_IN, 0.6 / 3.4, (WIDTH_IN - 1.2) / WIDTH_IN, 2.3 / 3.4))
    x = np.arange(n)
    bar = 0.7 if n > 3 else 0.4  # few layers: narrower bars
    ax.bar(x, data.original, width=bar, color=ORIGINAL_COLOR, edgecolor="#999999",
           linewidth=0.6, label="original")
    ax.bar(x, data.kept, width=bar, color=KEPT_COLOR, label="kept")
    top = max(data.original + [1])
    for i, (k, o) in enumerate(zip(data.kept, data.original)):
        ax.text(i, o + 0.02 * top, f"{k}\n{100 * k / o:.0f}%" if o else str(k), ha="center",
                va="bottom", fontsize=7 if n > 12 else 8, linespacing=1.1)
    ax.set_ylim(0, top * 1.2)
    ax.set_xlim(-0.8, n - 0.2)
    ax.set_xticks(x)
    ax.set_xticklabels(data.rows, fontsize=8 if n <= 12 else 6, rotation=0 if n <= 12 else 45)
    ax.set_xlabel("layer", fontsize=9)
    ax.set_ylabel("FFN dimensions", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    total, orig = sum(data.kept), sum(data.original)
    ax.set_title(title or f"FFN dimensions kept per layer: {total:,} / {orig:,} "
                          f"({100 * total / max(orig, 1):.0f}%)", fontsize=11, loc="left", pad=22)
    ax.legend(fontsize=8, frameon=False, loc="lower right", ncol=2, bbox_to_anchor=(1.0, 1.06))
    data.path = save_figure(fig, path)
    return data


# ---------------------------------------------------------------------------- tradeoff plot
def _point(p: "TradeoffPoint | Mapping[str, Any]") -> TradeoffPoint:
    if isinstance(p, TradeoffPoint):
        return p
    return TradeoffPoint(str(p["route"]), float(p["speedup"]), float(p["metric"]), p.get("label"))


_DASHES = ("--", ":", "-.")  # successive variants of one route


def _annotate(ax: Any, labelled: list[tuple[TradeoffPoint, str]],
              pts: list[TradeoffPoint]) -> None:
    """Label points in their route's colour, above right; of two points within a few percent
    of the axes of each other (two routes' "2x" at nearly the same speed and metric), the lower
    one's label goes below right, so the two never print over each other."""
    xspan = (max(p.speedup for p in pts) - min(p.speedup for p in pts)) or 1.0
    yspan = (max(p.metric for p in pts) - min(p.metric for p in pts)) or 1.0
    for i, (p, colour) in enumerate(labelled):
        below = any(abs(p.speedup - q.speedup) < 0.04 * xspan
                    and abs(p.metric - q.metric) < 0.05 * yspan
                    and (q.metric, -j) > (p.metric, -i)  # q is higher (or level, earlier)
                    for j, (q, _) in enumerate(labelled) if j != i)
        ax.annotate(p.label, (p.speedup, p.metric), textcoords="offset points",
                    xytext=(4, -11) if below else (4, 4), fontsize=7, color=colour)


def tradeoff_plot(points: Iterable["TradeoffPoint | Mapping[str, Any]"], path: "str | Path", *,
                  metric: str = "accuracy", title: Optional[str] = None,
                  dense_route: str = "dense",
                  front: Optional[Sequence[tuple[float, float]]] = None,
                  ) -> dict[str, list[tuple[float, float]]]:
    """Metric vs measured speedup: one curve per route (points sorted by speedup), the route
    named ``dense_route`` as single points. A variant of a route, named ``"route (what
    changed)"``, is drawn dashed in its route's colour. ``points``: :class:`TradeoffPoint` or
    mappings with ``route``, ``speedup``, ``metric`` (and optional ``label``). ``front``: the
    Pareto front's (speedup, metric) points, drawn as a grey step line under the curves (no
    model faster and better than any point of it). Returns route -> [(speedup, metric), ...] as
    drawn."""
    pts = [_point(p) for p in points]
    curves: dict[str, list[TradeoffPoint]] = {}
    for p in pts:
        curves.setdefault(p.route, []).append(p)
    # More entries than sit beside the curves, or labels too long to: the legend goes under the
    # plot, two columns, and the figure grows to hold it (a crowded or wide legend covered the
    # curves it names)
    entries = len(curves) + (1 if front else 0)
    below = entries > LEGEND_BESIDE or max(map(len, curves), default=0) > LEGEND_LABEL_BESIDE
    legend_in = 0.2 * math.ceil(entries / 2) + 0.3 if below else 0.0
    height = 4.8 + legend_in
    fig = _figure(WIDTH_IN, height)
    ax = fig.add_axes((0.9 / WIDTH_IN, (0.7 + legend_in) / height, (WIDTH_IN - 1.2) / WIDTH_IN,
                       3.6 / height))
    drawn: dict[str, list[tuple[float, float]]] = {}
    colours: dict[str, str] = {}
    variants: dict[str, int] = {}  # variants of each route drawn so far
    bases = {r.split(" (", 1)[0] for r in curves if r != dense_route}
    # no two routes in one colour: tab10 while it lasts, tab20 beyond ten routes
    palette = iter([f"C{i}" for i in range(10)] if len(bases) <= 10 else _tab20())
    labelled: list[tuple[TradeoffPoint, str]] = []
    for route in sorted(curves, key=lambda r: " (" in r):  # base routes take colours first
        group = sorted(curves[route], key=lambda p: p.speedup)
        xs, ys = [p.speedup for p in group], [p.metric for p in group]
        base = route.split(" (", 1)[0]
        if route == dense_route:
            ax.scatter(xs, ys, marker="*", s=160, color="black", zorder=3, label=route)
        else:
            if base not in colours:
                colours[base] = next(palette)
            style = "-"
            if base != route:
                style = _DASHES[variants.get(base, 0) % len(_DASHES)]
                variants[base] = variants.get(base, 0) + 1
            ax.plot(xs, ys, marker="o", markersize=5, linewidth=1.5, label=route,
                    color=colours[base], linestyle=style, alpha=1.0 if style == "-" else 0.75)
        labelled += [(p, "black" if route == dense_route else colours[base])
                     for p in group if p.label]
        drawn[route] = list(zip(xs, ys))
    if front:
        fx, fy = zip(*sorted(front))
        # between two front points, the best model at least that fast is the faster one's
        ax.step(fx, fy, where="pre", color="#999999", linewidth=2.5, alpha=0.45, zorder=1,
                label="Pareto front")
        ax.scatter(fx, fy, s=150, facecolors="none", edgecolors="#999999", linewidths=1.5, zorder=1)
        drawn["Pareto front"] = list(zip(fx, fy))
    _annotate(ax, labelled, pts)
    ax.set_xlabel("measured speedup vs dense (x)", fontsize=9)
    ax.set_ylabel(metric, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(color="#e5e5e5", linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title or f"{metric} vs measured speedup", fontsize=11)
    if drawn and below:
        ax.legend(fontsize=8, frameon=False, ncol=2, loc="upper center",
                  bbox_to_anchor=(0.5, -0.55 / 3.6))
    elif drawn:
        ax.legend(fontsize=8, frameon=False)
    save_figure(fig, path)
    return drawn


LEGEND_BESIDE = 9  # legend entries a trade-off plot keeps inside its axes
LEGEND_LABEL_BESIDE = 48  # characters of its longest label a legend inside the axes may have


def _tab20() -> list[Any]:
    from matplotlib import colormaps

    return list(colormaps["tab20"].colors)


__all__ = ["FfnData", "HeadsData", "PatternData", "TradeoffPoint", "ffn_data", "ffn_plot",
           "heads_data", "heads_plot", "pattern_data", "pattern_plot", "save_figure",
           "tradeoff_plot"]
