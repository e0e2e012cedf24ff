"""Latency tables: how long an attention block takes by heads kept and an FFN by dimensions kept,
measured on this machine for one inference setting, cached by hardware, software and shapes.

A table is built from the dense architecture of a config (random weights: time depends only on
shapes), compacted to the same number of heads (or FFN dimensions) in every layer:

* ``T(k, F)`` for every head count ``k`` of the grid with full FFNs, ``T(H, f)`` for every FFN
  width ``f`` of the grid with all heads, and ``T(0, 0)`` (nothing left but what no unit removes);
* each one timed interleaved against the dense model in the same process (after warm-up, each
  timed forward after one of its own: a warm cache), as ``nnprune speed`` does by default, and
  taken as ``ratio * dense`` so that a slow spell of a shared machine does not bend the curves
  (tables cached before nnprune timed warm were timed alternating, half of each variant's
  forwards after the dense model's; they stay valid). The ratio is of the fast end
  (``TIME_PERCENTILE``) of each one's times: on a busy machine the median moves with whatever
  else runs, the fast forwards much less.

Per layer: ``attention(k) = (T(k, F) - T(0, F)) / L``, ``ffn(f) = (T(H, f) - T(H, 0)) / L``,
then made non-decreasing; ``fixed = T(H, F) - L * (attention(H) + ffn(F))`` so the prediction of
the dense model is its measured time. ``T(0, 0)`` is kept to show how additive the model is (the
``check`` row of ``nnprune latency-table``).

Width and depth (architectures whose hidden dimension can be pruned): at each width ``w`` of
:func:`width_grid` below the dense one, the model narrowed to ``w`` is timed with every unit
(``width=w``), with no head (``width=w,heads=0``), no FFN dimension (``width=w,ffn=0``), neither
(``width=w,empty``), with a few heads (``width=w,heads=k``: a quarter) and a few FFN dimensions
(``width=w,ffn=f``: an eighth), and, empty, with one layer left (``width=w,layers=1``; at full
width ``layers=1``). An attention block at ``w`` is ``(T_w - T_w(heads=0)) / L``, its scale that over
the dense width's; the same for the FFN; what one layer costs beyond its units is
``(T_w(empty) - T_w(layers=1)) / (L - 1)``; what is left is the base (embeddings, task head).
Each is fitted as affine in ``w`` (a part growing with the width, one that does not) over all
the widths, robust to a noisy one. See :class:`~nnprune.pruning_core.latency_model.
LatencyModel`.

The cache key holds the model type and every shape that matters (layers, hidden size, heads, head
size, FFN size), the setting (device, dtype, batch size, sequence length, threads), the CPU or GPU
name, and the torch / transformers versions: a table is reused only where it was measured.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from nnprune.errors import NNPruneError
from nnprune.io_utils import atomic_write_text
from nnprune.measure.flops import make_inputs
from nnprune.measure.timing import DTYPES, CacheState, cpu_model_name, percentile, time_interleaved
from nnprune.pruning_core.architectures import architecture_for, model_class_for
from nnprune.pruning_core.compact import compact_model, dense_config
from nnprune.pruning_core.latency_model import LatencyModel, monotone
from nnprune.pruning_core.post_training import apply_masks, mask_groups
from nnprune.pruning_core.width_depth import apply_width_depth, width_depth_support

logger = logging.getLogger(__name__)

# 2: with hidden widths and layer counts; 3: their scales with a few units too (older formats
# still read: they price what they measured)
TABLE_FORMAT = 3
READ_FORMATS = (1, 2, 3)
WIDTH_GRID_STEPS = 8  # hidden widths measured: H/8, 2H/8, ..., H (multiples of 8)
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "nnprune" / "latency"
FFN_GRID_STEPS = 8  # FFN widths measured: 0, 16, 64, F/8, ..., F (multiples of 8: fast kernels)
MAX_HEAD_POINTS = 17  # up to 16 heads every count is measured; more heads, 16 steps
MIN_ROUNDS, MAX_ROUNDS = 5, 30
TIME_PERCENTILE = 20.0
Progress = Callable[[int, int], None]  # (done, total) variants


@dataclass(frozen=True)
class LatencySetting:
    """Where a latency counts: the inference setting a table is measured for.

    Example::

        setting = nnprune.LatencySetting(batch_size=1, seq_len=128, threads=1)
        nnprune.attach_masks(model, "struct", target_speedup=2.0, latency=setting)
    """

    device: str = field(default="cpu", metadata={"help": "Device the model will run on: cpu or cuda."})
    dtype: str = field(default="fp32", metadata={"help": "fp32, fp16 or bf16."})
    batch_size: int = field(default=1, metadata={"help": "Inference batch size the speed counts at."})
    seq_len: Optional[int] = field(default=None, metadata={
        "help": "Inference sequence length (tokens); default: the run's max sequence length."})
    threads: Optional[int] = field(default=None, metadata={
        "help": "CPU threads at inference; default: torch's on this machine."})

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise NNPruneError(f"--latency-device must be cpu or cuda, not {self.device!r}")
        if self.dtype not in DTYPES:
            raise NNPruneError(f"--latency-dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.batch_size < 1 or (self.seq_len is not None and self.seq_len < 1):
            raise NNPruneError(f"latency batch size and sequence length must be >= 1 (got "
                               f"{self.batch_size}, {self.seq_len})")
        if self.threads is not None and self.threads < 1:
            raise NNPruneError(f"latency threads must be >= 1, got {self.threads}")

    def at(self, seq_len: int) -> "LatencySetting":
        """This setting, at ``seq_len`` tokens unless it names its own length."""
        return self if self.seq_len is not None else replace(self, seq_len=seq_len)

    def resolved(self) -> "LatencySetting":
        """The same setting with ``threads`` filled in (what the cache key records)."""
        if self.seq_len is None:
            raise NNPruneError("a latency setting needs a sequence length (--latency-seq-len)")
        if self.threads is not None or self.device != "cpu":
            return self
        return replace(self, threads=torch.get_num_threads())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LatencyTable:
    """A measured :class:`LatencyModel` with what it was measured on (``key``) and the raw
    whole-model times it came from (``measured``: ms by ``"heads=k"`` / ``"ffn=f"`` / ``"dense"``
    / ``"empty"``).

    Example::

        table = nnprune.latency_table(model, seq_len=128)
        print(table.model.dense_ms, table.model.max_speedup)
    """

    key: dict[str, Any]
    model: LatencyModel
    measured: dict[str, float] = field(default_factory=dict)
    rounds: int = 0
    seconds: float = 0.0
    path: Optional[str] = None  # where it was read from / written to
    cached: bool = False  # read from the cache rather than measured now

    @property
    def check(self) -> tuple[float, float]:
        """(predicted, measured) ms of the model with no head and no FFN dimension."""
        m = self.model
        return m.fixed_ms, self.measured.get("empty", float("nan"))

    def to_dict(self) -> dict[str, Any]:
        return {"format": TABLE_FORMAT, "key": self.key, "model": self.model.to_dict(),
                "measured": self.measured, "rounds": self.rounds, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Optional[str] = None) -> "LatencyTable":
        if not isinstance(data, dict) or data.get("format") not in READ_FORMATS:
            raise NNPruneError(f"latency table {path or ''} has an unknown format "
                               f"(expected format {TABLE_FORMAT})".replace("  ", " "))
        return cls(key=data["key"], model=LatencyModel.from_dict(data["model"]),
                   measured=dict(data.get("measured", {})), rounds=int(data.get("rounds", 0)),
                   seconds=float(data.get("seconds", 0.0)), path=path)


def read_table(path: str | Path) -> LatencyTable:
    """A table written by :func:`latency_table` or ``nnprune latency-table --json-file``."""
    p = Path(path)
    if not p.is_file():
        raise NNPruneError(f"latency table {p} does not exist")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise NNPruneError(f"latency table {p} is not valid JSON: {exc}") from None
    return LatencyTable.from_dict(data, str(p))


def hardware_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{cpu_model_name()} ({os.cpu_count()} CPUs)"


def table_key(config: Any, setting: LatencySetting) -> dict[str, Any]:
    """What a table depends on: architecture shapes, setting, hardware and software versions."""
    import transformers

    cfg = dense_config(config)
    arch = architecture_for(cfg.model_type)
    if len(arch.stacks) != 1:
        raise NNPruneError(f"latency tables cover encoder models; {cfg.model_type} has "
                           f"{len(arch.stacks)} stacks (use --target-density)")
    stack = arch.stacks[0]
    hidden = int(getattr(cfg, arch.hidden_attr))
    heads = int(getattr(cfg, stack.heads_attr))
    # No head class in the key: the encoder's shapes set the time, so a table serves every task
    return {"format": TABLE_FORMAT, "model_type": cfg.model_type,
            "layers": int(getattr(cfg, stack.layers_attr)),
            "hidden": hidden, "heads": heads,
            "head_dim": int(getattr(cfg, "head_dim", None) or hidden // heads),
            "ffn": int(getattr(cfg, stack.ffn_attr)),
            "setting": setting.resolved().to_dict(), "hardware": hardware_name(setting.device),
            "torch": torch.__version__, "transformers": transformers.__version__}


def cache_path(key: dict[str, Any], cache_dir: str | Path | None = None) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    s = key["setting"]
    name = f"{key['model_type']}-b{s['batch_size']}-s{s['seq_len']}-{s['device']}-{digest}.json"
    return Path(cache_dir or DEFAULT_CACHE_DIR) / name


def head_grid(heads: int) -> list[int]:
    if heads + 1 <= MAX_HEAD_POINTS:
        return list(range(heads + 1))
    steps = MAX_HEAD_POINTS - 1
    return sorted({round(heads * i / steps) for i in range(steps + 1)})


def ffn_grid(ffn: int) -> list[int]:
    # Two small widths too: a highly pruned FFN keeps tens of dimensions, where a kernel's fixed
    # overhead makes the time far from proportional to the width.
    points = {0, ffn} | {w for w in (16, 64) if w < ffn // FFN_GRID_STEPS}
    for i in range(1, FFN_GRID_STEPS):
        points.add(max(8, int(round(ffn * i / FFN_GRID_STEPS / 8)) * 8))
    return sorted(p for p in points if p <= ffn)


def width_grid(hidden: int) -> list[int]:
    """Hidden widths a table measures: ``hidden * i / 8`` rounded to multiples of 8, up to it."""
    points = {hidden} | {max(8, int(hidden * i / WIDTH_GRID_STEPS / 8 + 0.5) * 8)
                         for i in range(1, WIDTH_GRID_STEPS)}
    return sorted(p for p in points if p <= hidden)


def _variant(dense: nn.Module, heads: Optional[int], dims: Optional[int],
             width: Optional[int] = None, layers: Optional[int] = None) -> nn.Module:
    """``dense`` compacted to the first ``heads`` heads and ``dims`` FFN dimensions of every
    layer (``None``: all of them), the first ``width`` channels of the stream and the first
    ``layers`` layers (``None``: all)."""
    model = copy.deepcopy(dense)
    groups = mask_groups(model)
    kept = {}
    for g in groups:
        n = heads if g.is_heads else dims
        kept[g.key] = list(range(g.size if n is None else n))
    with torch.no_grad():
        apply_masks(model, groups, kept)
    if width is not None or layers is not None:
        n_layers = len({g.key[:2] for g in groups})
        apply_width_depth(model, None if width is None else range(width),
                          range(n_layers if layers is None else layers, n_layers))
    compact_model(model)
    return model.eval()


def scale_points(heads: int, ffn: int) -> tuple[int, int]:
    """The few heads and FFN dimensions the width scales are also measured at: a quarter of the
    heads and an eighth of the FFN, taken from the grids the full-width curves measure."""
    k = min((h for h in head_grid(heads) if h > 0), key=lambda h: abs(h - heads / 4))
    f = min((d for d in ffn_grid(ffn) if d > 0), key=lambda d: abs(d - ffn / 8))
    return k, f


def _width_variants(hidden: int, layers: int, heads: int, ffn: int) -> dict[str, tuple]:
    """The variants that price width and depth: name -> (heads, dims, width, layers)."""
    out: dict[str, tuple] = {}
    if layers > 1:
        out["layers=1"] = (0, 0, None, 1)
    k, f = scale_points(heads, ffn)
    for w in width_grid(hidden)[:-1]:
        out.update({f"width={w}": (None, None, w, None), f"width={w},heads=0": (0, None, w, None),
                    f"width={w},ffn=0": (None, 0, w, None), f"width={w},empty": (0, 0, w, None),
                    f"width={w},heads={k}": (k, None, w, None),
                    f"width={w},ffn={f}": (None, f, w, None)})
        if layers > 1:
            out[f"width={w},layers=1"] = (0, 0, w, 1)
    return out


def _affine_fit(values: list[float], widths: list[int], at_full: float) -> list[float]:
    """``q(w) = at_full * (alpha + (1 - alpha) w / W)`` at each of ``widths`` (up to ``W``),
    with the dense width's value fixed and ``alpha`` in [0, 1] the median of what each measured
    width says it is. Every per-width term is a part that grows with the width (matmuls, norms,
    adds) plus one that does not (kernel launches, attention scores): one parameter from all the
    widths is robust to a noisy width, where a point-by-point curve bends with it."""
    full = widths[-1]
    if at_full <= 0:
        return [0.0] * len(widths)
    alphas = [(v / at_full - w / full) / (1 - w / full) for v, w in zip(values[:-1], widths[:-1])]
    alpha = min(1.0, max(0.0, statistics.median(alphas))) if alphas else 0.0
    return [at_full * (alpha + (1 - alpha) * w / full) for w in widths]


def _width_depth_terms(measured: dict[str, float], hidden: int, layers: int,
                       attention_h: float, ffn_h: float, fixed: float,
                       low: tuple[int, int, float, float]) -> dict[str, Any]:
    """The width / depth fields of a :class:`LatencyModel` from the measured times (see the
    module doc); at the dense width they agree with the heads / FFN curves and ``fixed``.
    ``low``: the few heads and FFN dims of the low scales and what one layer's attention / FFN
    takes with them at full width."""
    widths = width_grid(hidden)
    k, f_low, attention_k, ffn_f = low
    att, ffn, per_layer, base, att_low, ffn_low = [], [], [], [], [], []
    for w in widths:
        name = "" if w == hidden else f"width={w},"
        full = measured["dense"] if w == hidden else measured[f"width={w}"]
        empty = measured[f"{name}empty"]
        if w == hidden:
            a, f, fix = attention_h, ffn_h, fixed
            a_k, f_f = attention_k, ffn_f
        else:
            a = max(0.0, (full - measured[f"{name}heads=0"]) / layers)
            f = max(0.0, (full - measured[f"{name}ffn=0"]) / layers)
            fix = max(1e-3 * full, full - layers * (a + f))
            a_k = max(0.0, (measured[f"{name}heads={k}"] - measured[f"{name}heads=0"]) / layers)
            f_f = max(0.0, (measured[f"{name}ffn={f_low}"] - measured[f"{name}ffn=0"]) / layers)
        att_low.append(a_k / attention_k if attention_k > 0 else 1.0)
        ffn_low.append(f_f / ffn_f if ffn_f > 0 else 1.0)
        one = measured.get(f"{name}layers=1")
        lay = max(0.0, (empty - one) / (layers - 1)) if one is not None and layers > 1 else 0.0
        lay = min(lay, 0.95 * fix / layers)  # the base (embeddings, head) is never free
        att.append(a / attention_h if attention_h > 0 else 1.0)
        ffn.append(f / ffn_h if ffn_h > 0 else 1.0)
        per_layer.append(lay)
        base.append(fix - layers * lay)
    # At the dense width: exactly the heads / FFN model (scale 1, base + L layer = fixed).
    att, ffn, att_low, ffn_low = (_affine_fit(c, widths, 1.0) for c in (att, ffn, att_low, ffn_low))
    per_layer = _affine_fit(per_layer, widths, per_layer[-1])
    base = _affine_fit(base, widths, max(fixed - layers * per_layer[-1], 0.0))
    return {"hidden": hidden, "widths": tuple(widths), "attention_scale": tuple(att),
            "ffn_scale": tuple(ffn), "layer_ms": tuple(per_layer), "base_ms": tuple(base),
            "scale_heads": k, "scale_dims": f_low, "attention_scale_low": tuple(att_low),
            "ffn_scale_low": tuple(ffn_low)}


def build_latency_table(config: Any, setting: LatencySetting, *, budget_s: float = 30.0,
                        progress: Optional[Progress] = None, seed: int = 0) -> LatencyTable:
    """Measure a table for the dense architecture of ``config`` (see the module doc).

    ``budget_s`` sets the number of interleaved rounds per variant (``MIN_ROUNDS`` to
    ``MAX_ROUNDS``) from a first timing of the dense model; the build takes about that long plus compaction."""
    key = table_key(config, setting)
    setting = setting.resolved()
    if setting.device == "cuda" and not torch.cuda.is_available():
        raise NNPruneError("--latency-device cuda: no CUDA device is available to this torch")
    cfg = dense_config(config)
    torch.manual_seed(seed)
    dense = model_class_for(cfg)(cfg).eval()
    H, F, L = key["heads"], key["ffn"], len(mask_groups(dense)) // 2
    heads, dims = head_grid(H), ffn_grid(F)
    variants: dict[str, tuple] = {"empty": (0, 0)}
    variants.update({f"heads={k}": (k, None) for k in heads if k != H})
    variants.update({f"ffn={f}": (None, f) for f in dims if f != F})
    width_depth = width_depth_support(dense) is None
    if width_depth:
        variants.update(_width_variants(key["hidden"], L, H, F))
    device = torch.device(setting.device)
    dtype = DTYPES[setting.dtype]
    previous_threads = torch.get_num_threads()
    start = time.perf_counter()
    try:
        if setting.device == "cpu":
            torch.set_num_threads(setting.threads)
        dense = dense.to(device=device, dtype=dtype)
        inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                  for k, v in make_inputs(dense, setting.batch_size, setting.seq_len).items()}
        with torch.inference_mode():
            def bind(m: nn.Module) -> Callable[[], Any]:
                return lambda: m(**inputs)

            first = time_interleaved({"dense": bind(dense)}, warmup=2, iters=3, device=device,
                                     cache=CacheState.WARM)
            t_dense = statistics.median(first["dense"])
            per_variant = budget_s / max(1, len(variants))
            # a warm round runs each model twice: at most four dense forwards
            rounds = int(min(MAX_ROUNDS, max(MIN_ROUNDS, per_variant / (4e-3 * t_dense))))
            ratios: dict[str, float] = {}
            dense_times: list[float] = []
            for i, (name, shape) in enumerate(variants.items()):
                model = _variant(dense, *shape).to(device=device, dtype=dtype)
                times = time_interleaved({"dense": bind(dense), "v": bind(model)}, warmup=2,
                                         iters=rounds, device=device, cache=CacheState.WARM)
                dense_times += times["dense"]
                ratios[name] = (percentile(times["v"], TIME_PERCENTILE)
                                / percentile(times["dense"], TIME_PERCENTILE))
                del model
                if progress is not None:
                    progress(i + 1, len(variants))
    finally:
        torch.set_num_threads(previous_threads)
    t_dense = percentile(dense_times, TIME_PERCENTILE)
    measured = {"dense": t_dense, **{n: r * t_dense for n, r in ratios.items()}}
    with_heads = {k: measured.get(f"heads={k}", t_dense) for k in heads}  # full FFNs
    with_dims = {f: measured.get(f"ffn={f}", t_dense) for f in dims}  # all heads
    # No unit costs less than none (a(0) = m(0) = 0): a noisy point below that is clamped first
    attention = monotone([max(0.0, (with_heads[k] - with_heads[0]) / L) for k in heads])
    ffn = monotone([max(0.0, (with_dims[f] - with_dims[0]) / L) for f in dims])
    fixed = t_dense - L * (attention[-1] + ffn[-1])
    if fixed <= 0:
        logger.warning("latency table: the parts no unit removes measured %.3f ms (noise); "
                       "taking 1%% of the dense time", fixed)
        fixed = 0.01 * t_dense
    extra = {}
    if width_depth:
        k, f = scale_points(H, F)
        low = (k, f, attention[heads.index(k)], ffn[dims.index(f)])
        extra = _width_depth_terms(measured, key["hidden"], L, attention[-1], ffn[-1], fixed, low)
    model = LatencyModel(L, H, F, tuple(heads), tuple(attention), tuple(dims), tuple(ffn), fixed,
                         **extra)
    return LatencyTable(key=key, model=model, measured=measured, rounds=rounds,
                        seconds=time.perf_counter() - start)


def latency_table(config: Any, setting: LatencySetting, *, cache_dir: str | Path | None = None,
                  rebuild: bool = False, budget_s: float = 30.0,
                  progress: Optional[Progress] = None) -> LatencyTable:
    """The cached table for ``config`` and ``setting`` on this machine, measured (and cached,
    atomically) when there is none or ``rebuild``."""
    key = table_key(config, setting)
    path = cache_path(key, cache_dir)
    if path.is_file() and not rebuild:
        try:
            table = read_table(path)
        except (NNPruneError, KeyError, TypeError, ValueError) as exc:
            logger.warning("ignoring the unreadable cached latency table %s (%s)", path, exc)
        else:
            if table.key == key:
                table.cached = True
                return table
    logger.info("measuring a latency table for %s at batch %d x %d tokens (%s, %s threads)",
                key["model_type"], setting.batch_size, setting.seq_len, setting.device,
                key["setting"]["threads"])
    table = build_latency_table(config, setting, budget_s=budget_s, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(table.to_dict(), indent=2) + "\n")
    table.path = str(path)
    return table




SHAPE_KEYS = ("model_type", "layers", "hidden", "heads", "head_dim", "ffn")


def check_table_fits(table: LatencyTable, config: Any) -> None:
    """Refuse (one line) a table measured for other shapes than ``config``'s dense architecture."""
    want = table_key(config, LatencySetting(**table.key["setting"]))
    diff = [f"{k} {table.key.get(k)} vs {want[k]}" for k in SHAPE_KEYS if table.key.get(k) != want[k]]
    if diff:
        where = f" {table.path}" if table.path else ""
        raise NNPruneError(f"latency table{where} was measured for another architecture "
                           f"(table vs model: {'; '.join(diff)})")


__all__ = ["DEFAULT_CACHE_DIR", "LatencySetting", "LatencyTable", "build_latency_table",
           "cache_path", "check_table_fits", "ffn_grid", "hardware_name", "head_grid",
           "latency_table", "read_table", "scale_points", "table_key", "width_grid"]
