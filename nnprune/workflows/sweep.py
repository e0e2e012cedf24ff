"""``nnprune sweep``: accuracy against measured speed, route by route, from one spec.

Phases (:class:`~nnprune.workflows.sweep_spec.Phase`):

1. *Check* (always, before any point starts): the spec (:mod:`~nnprune.workflows.sweep_spec`),
   the model (the start and teacher of every route) and the data, the trackers, the executor,
   the latency table (read, or measured here and saved in the work folder so that every machine
   cuts with it) and every target against its reach, every fine-pruning recipe. Bad input is
   one line naming it.
2. *Train* (``all``, ``train``): every point not trained yet with this sweep's key goes to the
   executor (:mod:`~nnprune.workflows.sweep_executors`); each trains and evaluates in its own
   folder (:mod:`~nnprune.workflows.sweep_points`). A failing point is recorded as failed with
   its log's last lines; the others go on.
3. *Time* (``all``, ``time``): here, one model at a time, on the machine the latency table
   belongs to: every trained point against the dense model, interleaved, at each thread count
   and batch size (a model whose weights stayed on the training machine is timed on random
   weights of its saved shapes).
4. *Report* (always): the table, ``sweep.json``, ``sweep.csv`` and ``sweep.png`` (metric
   against measured speedup, the Pareto front drawn) in the work folder; ``--pick S`` copies the
   best point at least S times faster into a folder of its own, with its model card.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import nnprune
from nnprune import LatencySetting
from nnprune.errors import NNPruneError
from nnprune.io_utils import atomic_directory, atomic_write_text
from nnprune.workflows.sweep_executors import make_executor
from nnprune.workflows.sweep_points import (LOG_FILE, POINT_FILE, State, log_tail,
                                            mark_failed, read_record, write_record)
from nnprune.workflows.sweep_spec import (SPEC_FILE, Phase, Point, RouteKind, SweepSpec,
                                          table_fingerprint)
from nnprune.workflows.tracking import TENSORBOARD_DIR, check_trackers, write_tensorboard_scalars

logger = logging.getLogger(__name__)

TABLE_FILE = "latency_table.json"  # the table every point cuts with, in the work folder
REPORT_STEM = "sweep"  # sweep.json, sweep.csv, sweep.png in the work folder
PICK_FILE = "sweep_pick.json"  # in a picked model's folder: the point it is


@dataclass(frozen=True)
class SweepArgs:
    """One ``nnprune sweep`` call: the spec, how far to go, and what to hand over."""

    spec: SweepSpec
    phase: Phase = Phase.ALL
    dry_run: bool = False
    retime: bool = False  # time every trained point again (a busy machine spoilt the timings)
    detach: bool = False  # submit a cluster's jobs and return (collect with --phase time later)
    pick: Optional[float] = None  # hand over the best point at least this fast
    pick_out: Optional[Path] = None
    pick_tolerance: float = 0.03  # a point within 3% under the speed still counts as that fast
    # also draw the picture to plot_file, with only the routes labelled plot_routes (all if
    # empty) and the dense model: a picture of some routes for a page or a talk
    plot_file: Optional[Path] = None
    plot_routes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "plot_routes", tuple(self.plot_routes))
        if self.plot_routes and self.plot_file is None:
            raise NNPruneError("--plot-route chooses the routes of --plot-file's picture: add "
                               "--plot-file PATH.png")
        try:
            object.__setattr__(self, "phase", Phase(self.phase))
        except ValueError:
            raise NNPruneError(f"--phase: unknown phase {self.phase!r}; known: "
                               f"{', '.join(p.value for p in Phase)}") from None
        if self.pick is not None and self.pick < 1:
            raise NNPruneError(f"--pick takes a speedup >= 1, got {self.pick:g}")
        if not 0 <= self.pick_tolerance < 0.5:
            raise NNPruneError(f"--pick-tolerance must be in [0, 0.5), got {self.pick_tolerance}")


@dataclass
class SweepResult:
    """What a sweep left: every point's record (dense first), the Pareto front's point ids, the
    files written and, with ``--pick``, the picked point; with ``--dry-run`` only the plan."""

    name: str
    task: str
    work: Path
    main_metric: Optional[str] = None
    scale: float = 1.0  # 100: a fraction shown in points
    dense: Optional[dict[str, Any]] = None
    points: list[dict[str, Any]] = field(default_factory=list)
    pareto: list[str] = field(default_factory=list)
    noise: dict[str, Any] = field(default_factory=dict)
    threads: list[int] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    picked: Optional[dict[str, Any]] = None
    plan: list[dict[str, Any]] = field(default_factory=list)
    executor: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [p for p in self.points if p.get("state") == State.FAILED]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["work"] = str(self.work)
        return out


# ------------------------------------------------------------------------------------ checks
def check_inputs(spec: SweepSpec, phase: Phase) -> None:
    """The files and packages the sweep needs, one line for the first missing one."""
    from nnprune.tasks import get_task

    task = get_task(spec.task, dict(spec.task_options))
    if not (spec.model / "config.json").is_file():
        raise NNPruneError(f"model {spec.model}: no fine-tuned model there (no config.json); it "
                           "is the start and the teacher of every route")
    task.check_checkpoint(nnprune.inspect_checkpoint(spec.model).config, str(spec.model))
    if spec.data_dir is not None and not spec.data_dir.is_dir():
        raise NNPruneError(f"data_dir {spec.data_dir} does not exist")
    if spec.latency.table is not None and not spec.latency.table.is_file():
        raise NNPruneError(f"latency.table {spec.latency.table} does not exist")
    if phase in (Phase.ALL, Phase.TRAIN):
        check_trackers([] if spec.report_to == "none" else spec.report_to.split(","))


def check_work(work: Path) -> None:
    """The work folder: new, empty, or a sweep's (it holds the sweep's spec): never a folder of
    the user's files, which a sweep would write among (and whose point folders it replaces)."""
    if work.exists() and not work.is_dir():
        raise NNPruneError(f"work {work} is a file, not a folder; nnprune does not replace it: "
                           "choose another path")
    ours = (work / SPEC_FILE).is_file() or all(
        (e / POINT_FILE).is_file() for e in work.iterdir()) if work.is_dir() else True
    if not ours:
        first = next(e.name for e in sorted(work.iterdir()) if not (e / POINT_FILE).is_file())
        raise NNPruneError(f"work {work} holds {first}, which is not a sweep's; nnprune never writes "
                           "among your files: choose a new or empty folder")


def check_recipes(spec: SweepSpec) -> None:
    """Every fine-pruning route's config built as its points will build it (method, teacher,
    target, score init and ``set`` overrides): an unknown key or a bad value is refused now."""
    from nnprune.settings import parse_assignments

    for route in spec.routes:
        if route.kind is not RouteKind.FINE_PRUNE:
            continue
        recipe = route.recipe(spec.budget)
        overrides = parse_assignments([f"score_init={recipe['score_init']}", *recipe["set"]],
                                      option=f"route {route.label} set")
        try:
            nnprune.method_config(route.route, teacher=str(spec.model),
                                  target_speedup=(route.targets or spec.targets)[0],
                                  overrides=overrides)
        except NNPruneError as exc:
            raise NNPruneError(f"route {route.label}: {exc}") from None


def resolve_table(spec: SweepSpec, *, measure: bool) -> tuple[Optional["nnprune.LatencyTable"], Optional[Path]]:
    """The sweep's latency table and its file: ``latency.table`` if given, else the one an
    earlier run saved in the work folder, else (``measure``) one measured here (cached) and
    saved there. ``(None, None)`` when there is none yet and ``measure`` is false (dry run)."""
    config = nnprune.load_config(str(spec.model))
    saved = spec.work / TABLE_FILE
    lat = spec.latency
    setting = LatencySetting(batch_size=lat.batch_size, seq_len=lat.seq_len, threads=lat.threads)
    if lat.table is not None:
        return nnprune.latency_table(config, path=lat.table), lat.table
    if saved.is_file():
        return nnprune.latency_table(config, path=saved), saved
    if not measure:
        return None, None
    table = nnprune.latency_table(config, setting=setting)
    spec.work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, json.dumps(table.to_dict(), indent=2) + "\n")
    return table, saved


def check_reach(spec: SweepSpec, table: "nnprune.LatencyTable") -> None:
    """Every target within what removing heads and FFN dimensions can give by ``table``."""
    for p in spec.points():
        if p.target is None:
            continue
        if p.route.kind is RouteKind.LAYER_DROP:
            continue  # keeps the layer count closest to the target, whatever it is
        try:
            table.model.budget_ms(p.target)
        except NNPruneError:
            raise NNPruneError(f"route {p.route.label}: target {p.target:g}x is beyond the latency "
                               f"table's reach ({table.model.max_speedup:.2f}x at most)") from None


# ---------------------------------------------------------------------------------- planning
def plan_of(spec: SweepSpec, points: list[Point], table_id: Optional[str]) -> list[dict[str, Any]]:
    """What a run would do with each point: ``new``, ``resume`` (started or failed with this
    key), ``reuse`` (trained), ``done`` (timed), ``retrain`` (another budget's folder)."""
    out = []
    for p in points:
        record = read_record(spec.work / p.id)
        key = spec.point_key(p, table_id) if table_id is not None or p.target is None else None
        if record is None:
            status = "new" if not (spec.work / p.id).exists() else "retrain"
        elif key is not None and record["key"] != key:
            status = "retrain"
        else:
            status = {State.STARTED: "resume", State.FAILED: "resume", State.TRAINED: "reuse",
                      State.TIMED: "done"}[State(record["state"])]
        out.append({"id": p.id, "route": p.route.label, "target": p.target, "seed": p.seed,
                    "steps": None if p.target is None else p.route.recipe(spec.budget)["steps"],
                    "status": status})
    return out


def all_points(spec: SweepSpec) -> list[Point]:
    """The dense point first (every table is read against it), then the spec's points."""
    return [spec.dense_point] + [p for p in spec.points() if p.route.kind is not RouteKind.DENSE]


# ------------------------------------------------------------------------------------ timing
def _has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


def time_point(spec: SweepSpec, ctx_table: "nnprune.LatencyTable", record: dict[str, Any],
               folder: Path, threads: list[int]) -> dict[str, Any]:
    """Time one trained point against the dense model at ``threads``; its shape and the table's
    prediction; returns the record, updated."""
    t = spec.timing
    if record.get("timed_dir") is None:  # the dense model: the baseline itself
        shape = nnprune.model_shape(nnprune.load_pretrained(spec.model, bake_masks=True))
        speed = {f"t{n}": {**{f"b{b}": 1.0 for b in t.batch_sizes}} for n in threads}
        return {**record, "shape": shape.to_dict(), "predicted": 1.0,
                "speed": {**record.get("speed", {}), **speed}}
    model_dir = folder / record["timed_dir"]
    random_weights = not _has_weights(model_dir)
    if random_weights:
        logger.info("%s: no weights here (trained elsewhere); timed on random weights of its "
                    "shapes", record["id"])
        model: Any = nnprune.shaped_model(model_dir)
    else:
        model = nnprune.load_pretrained(model_dir, bake_masks=True)
    shape = nnprune.model_shape(model)
    seq = t.seq_len or spec.latency.seq_len
    speed = dict(record.get("speed") or {})
    report = record.get("speed_report")
    for n in threads:
        rep = nnprune.measure_speed(model, spec.model, batch_sizes=list(t.batch_sizes),
                                    seq_lens=[seq], threads=n, warmup=t.warmup, iters=t.iters,
                                    cache=t.cache)
        row: dict[str, float] = {}
        for r in rep.rows:
            row[f"b{r.batch_size}"] = round(r.speedup, 3)
            row[f"b{r.batch_size}_min"] = round(r.speedup_min, 3)
            row[f"b{r.batch_size}_ms"] = round(r.model_ms, 2)
            row[f"b{r.batch_size}_dense_ms"] = round(r.baseline_ms, 2)
        row["flops"] = round(rep.rows[0].theoretical_speedup, 3)
        speed[f"t{n}"] = row
        if n == spec.timing.threads[0]:
            report = {**rep.to_dict(), "model": str(model_dir)}
    predicted = shape.predicted_speedup(ctx_table)
    return {**record, "shape": shape.to_dict(),
            "predicted": None if predicted is None else round(predicted, 3),
            "speed": speed, "speed_report": report, "timed_on_random_weights": random_weights,
            "cpu": (report or {}).get("cpu")}


def time_phase(spec: SweepSpec, table: "nnprune.LatencyTable", table_id: Optional[str],
               points: list[Point], retime: bool) -> None:
    """Time every trained point (here, one at a time); a finished one only at thread counts it
    lacks, unless ``retime``. A timing that fails is recorded on its point; the others go on."""
    wanted = list(spec.timing.threads)
    for p in points:
        folder = spec.work / p.id
        record = read_record(folder)
        if record is None or record["key"] != spec.point_key(p, table_id):
            continue
        if record["state"] not in (State.TRAINED, State.TIMED):
            continue
        have = {int(k[1:]) for k in (record.get("speed") or {})}
        cache = spec.timing.cache.value
        # timed with the other cache, or before the cache was a setting (one forward each,
        # alternating: neither): every thread count is timed again, none of it kept
        other_cache = record.get("speed_cache") != cache
        todo = (wanted if retime or other_cache or record["state"] == State.TRAINED
                else [n for n in wanted if n not in have])
        if not todo:
            continue
        logger.info("%s: timing at %s thread(s)", p.id, ",".join(map(str, todo)))
        try:
            timing = {**record, "speed": {}} if other_cache else record
            record = {**time_point(spec, table, timing, folder, todo), "speed_cache": cache}
        except NNPruneError as exc:
            record = {**record, "timing_error": str(exc)}
            write_record(folder, record)
            logger.error("%s: timing failed: %s", p.id, exc)
            continue
        record.pop("timing_error", None)
        record["state"] = State.TIMED
        write_record(folder, record)
        _tensorboard_final(spec, folder, record)


def _tensorboard_final(spec: SweepSpec, folder: Path, record: dict[str, Any]) -> None:
    """The measured speed and the final metric into the point's TensorBoard run (reported to
    TensorBoard): they are known only after the run, in this phase."""
    board = folder / "run" / TENSORBOARD_DIR
    if "tensorboard" not in spec.report_to or not board.is_dir():
        return
    first = (record.get("speed") or {}).get(f"t{spec.timing.threads[0]}") or {}
    scalars = {f"measured_speedup_b{b}": first.get(f"b{b}") for b in spec.timing.batch_sizes}
    scalars["predicted_speedup"] = record.get("predicted")
    steps = record["key"].get("recipe", {}).get("steps", 0)
    write_tensorboard_scalars(board, {k: v for k, v in scalars.items() if v is not None}, steps)


# ---------------------------------------------------------------------------------- reporting
def pareto_front(points: list[tuple[str, float, float]]) -> list[str]:
    """The ids of the points (id, speedup, metric) no other point beats on both: at least as
    fast and at least as good, better on one. Ordered by speedup."""
    front = []
    for pid, s, m in points:
        beaten = any((s2 >= s and m2 >= m) and (s2 > s or m2 > m) for _, s2, m2 in points)
        if not beaten:
            front.append((s, pid))
    return [pid for _, pid in sorted(front)]


def front_of(points: list[dict[str, Any]], dense: Optional[dict[str, Any]],
             threads: int) -> list[str]:
    """The Pareto front's point ids among ``points`` with a metric and a batch-1 speed at
    ``threads``, and the dense model (at 1x) when it has a metric."""
    candidates = [(p["id"], speed_of(p, threads), p["metric"]) for p in points
                  if p.get("metric") is not None and speed_of(p, threads) is not None]
    if dense and dense.get("metric") is not None:
        candidates.append((dense["id"], 1.0, dense["metric"]))
    return pareto_front(candidates)  # type: ignore[arg-type]


def speed_of(record: dict[str, Any], threads: int, batch: int = 1) -> Optional[float]:
    return ((record.get("speed") or {}).get(f"t{threads}") or {}).get(f"b{batch}")


def noise_of(points: list[dict[str, Any]], scale: float) -> dict[str, Any]:
    """Per route label and target with several seeds: each seed's metric and the spread."""
    groups: dict[tuple[str, float], dict[int, float]] = {}
    for p in points:
        if p.get("metric") is not None and p.get("target") is not None:
            groups.setdefault((p["label"], p["target"]), {})[p["seed"]] = scale * p["metric"]
    out = {}
    for (label, target), by_seed in groups.items():
        if len(by_seed) >= 2:
            out[f"{label} @ {target:g}x"] = {
                "by_seed": by_seed, "spread": round(max(by_seed.values()) - min(by_seed.values()), 2)}
    return out


def shape_text(shape: Optional[dict[str, Any]], full: Optional[dict[str, Any]]) -> str:
    """``width 192 · 5/6 layers · 27/72h 2776/9216f``: what differs from the dense shape ``full``
    (the stream's width, the layers left, the heads and FFN dimensions kept)."""
    if not shape:
        return "-"
    if not full:
        return f"{shape['layers']}L {shape['heads']}h {shape['ffn_dims']}f"
    parts = []
    if shape.get("hidden"):
        parts.append(f"width {shape['hidden']}")
    if shape["layers"] != full["layers"]:
        parts.append(f"{shape['layers']}/{full['layers']} layers")
    whole = shape["layers"] / full["layers"]  # the units of the layers left, every one kept
    if (shape["heads"], shape["ffn_dims"]) != (full["heads"] * whole, full["ffn_dims"] * whole) \
            or not parts:
        parts.append(f"{shape['heads']}/{full['heads']}h {shape['ffn_dims']}/{full['ffn_dims']}f")
    return " · ".join(parts)


def table_rows(result: SweepResult) -> list[list[Any]]:
    """The results table: route, target, seed, metric, Δ vs dense, shape, predicted speedup,
    measured b1/b32 at each thread count, wall seconds, state."""
    dense = result.dense or {}
    full = dense.get("shape")
    base = dense.get("metric")
    rows = []
    for p in ([dense] if dense else []) + result.points:
        metric = p.get("metric")
        value = "-" if metric is None else f"{result.scale * metric:.2f}"
        delta = ("-" if metric is None or base is None
                 else f"{result.scale * (metric - base):+.2f}")
        speeds = []
        for n in result.threads:
            b1, b32 = speed_of(p, n, 1), speed_of(p, n, 32)
            speeds.append("-" if b1 is None else f"{b1:.2f}x/{b32:.2f}x" if b32 is not None
                          else f"{b1:.2f}x")
        pred = p.get("predicted")
        star = "*" if p.get("id") in result.pareto else ""
        rows.append([p.get("label", p.get("route")) + star,
                     "-" if p.get("target") is None else f"{p['target']:g}x",
                     "-" if p.get("seed") is None else str(p["seed"]), value, delta,
                     shape_text(p.get("shape"), full), "-" if pred is None else f"{pred:.2f}x",
                     *speeds, "-" if p.get("wall_seconds") is None else f"{p['wall_seconds']:.0f}",
                     str(p.get("state", "-"))])
    return rows


def table_columns(result: SweepResult) -> list[str]:
    metric = result.main_metric or "metric"
    return ["route", "target", "seed", metric + (" (%)" if result.scale == 100 else ""), "Δ",
            "shape", "pred", *[f"b1/b32 @{n}t" for n in result.threads], "wall s", "state"]


def write_csv(result: SweepResult, path: Path) -> None:
    """One row per point, flat: what a spreadsheet or pandas reads."""
    cols = ["id", "route", "label", "target", "seed", "state", "metric", "delta", "layers",
            "heads", "ffn_dims", "predicted"]
    cols += [f"b{b}_t{n}" for n in result.threads for b in (1, 32)]
    cols += ["wall_seconds", "pareto", "error"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    writer.writeheader()
    base = (result.dense or {}).get("metric")
    for p in ([result.dense] if result.dense else []) + result.points:
        shape = p.get("shape") or {}
        row = {k: p.get(k) for k in ("id", "route", "label", "target", "seed", "state", "metric",
                                     "predicted", "wall_seconds", "error")}
        row.update(layers=shape.get("layers"), heads=shape.get("heads"),
                   ffn_dims=shape.get("ffn_dims"), pareto=p.get("id") in result.pareto,
                   delta=(None if p.get("metric") is None or base is None
                          else round(p["metric"] - base, 6)))
        for n in result.threads:
            for b in (1, 32):
                row[f"b{b}_t{n}"] = speed_of(p, n, b)
        writer.writerow(row)
    atomic_write_text(path, buf.getvalue())


def draw(result: SweepResult, spec: SweepSpec, path: Path,
         labels: Sequence[str] = ()) -> Optional[dict[str, list[tuple[float, float]]]]:
    """The trade-off picture: metric against measured speedup at batch 1 (first thread count),
    a curve per route (variants dashed), the dense model as a star, the Pareto front (of the
    points drawn). ``labels``: only these routes (and dense); default every one. Returns the
    curves drawn (route -> [(speedup, metric)]), or None when there was too little to draw."""
    from nnprune.report.plots import TradeoffPoint, tradeoff_plot

    n = result.threads[0]
    pts = []
    dense = result.dense
    if dense is not None and dense.get("metric") is not None:
        pts.append(TradeoffPoint("dense", 1.0, result.scale * dense["metric"], "dense"))
    points = [p for p in result.points if not labels or p["label"] in labels]
    first_seed = {}
    for p in points:
        first_seed.setdefault((p["label"], p["target"]), p["seed"])
    for p in points:
        s = speed_of(p, n)
        if s is None or p.get("metric") is None or p["seed"] != first_seed[(p["label"], p["target"])]:
            continue
        label = f"{p['target']:g}x"
        if p["route"] == RouteKind.LAYER_DROP.value and p.get("shape"):
            label += f": {p['shape']['layers']}L"
        pts.append(TradeoffPoint(p["label"], s, result.scale * p["metric"],
                                 label if p["label"] == p["route"] else None))
    if len(pts) < 2:
        return None
    by_id = {p["id"]: p for p in ([dense] if dense else []) + points}
    pareto = front_of(points, dense, n) if labels else result.pareto
    front = [(speed_of(by_id[i], n) or 1.0, result.scale * by_id[i]["metric"]) for i in pareto]
    b = spec.budget
    metric = (result.main_metric or "metric") + (" (%)" if result.scale == 100 else "")
    name = spec.task if spec.name == spec.task else f"{spec.name}: {spec.task}"
    title = (f"{name}, {b.steps} steps x batch {b.batch_size}"
             f"{f' x seq {b.max_seq_length}' if b.max_seq_length else ''}, every route distilled "
             f"from the dense model\nspeed: batch 1 x seq {spec.timing.seq_len or spec.latency.seq_len}"
             f", {n} thread{'s' if n > 1 else ''}; grey: Pareto front")
    return tradeoff_plot(pts, path, metric=metric, title=title, front=front)


def collect(spec: SweepSpec, table_id: Optional[str], points: list[Point]) -> SweepResult:
    """Every point's record with this sweep's key (dense apart), the Pareto front and noise."""
    result = SweepResult(spec.name, spec.task, spec.work, threads=list(spec.timing.threads))
    for p in points:
        folder = spec.work / p.id
        record = read_record(folder)
        if record is None or record["key"] != spec.point_key(p, table_id):
            record = {"id": p.id, "route": p.route.route, "label": p.route.label,
                      "target": p.target, "seed": p.seed, "state": "not run"}
        elif record["state"] == State.FAILED and not record.get("log_tail"):
            record["log_tail"] = log_tail(folder)
        record = {k: v for k, v in record.items() if k != "key"}
        if p.route.kind is RouteKind.DENSE:
            result.dense = {**record, "label": "dense"}
        else:
            result.points.append(record)
    dense = result.dense or {}
    if dense.get("metric") is not None:
        result.main_metric = dense.get("main_metric")
        result.scale = 100.0 if dense["metric"] <= 1 else 1.0
    else:
        found = next((p for p in result.points if p.get("metric") is not None), None)
        if found:
            result.main_metric = found.get("main_metric")
            result.scale = 100.0 if found["metric"] <= 1 else 1.0
    n = result.threads[0]
    result.pareto = front_of(result.points, result.dense, n)
    result.noise = noise_of(result.points, result.scale)
    return result


def write_report(result: SweepResult, spec: SweepSpec, plot_file: Optional[Path] = None,
                 plot_routes: Sequence[str] = ()) -> None:
    """``sweep.json``, ``sweep.csv`` and ``sweep.png`` in the work folder; ``plot_file``: the
    picture also there, of ``plot_routes`` only when given."""
    work = spec.work
    json_path, csv_path, png_path = (work / f"{REPORT_STEM}{ext}" for ext in (".json", ".csv", ".png"))
    result.files = {"json": str(json_path), "csv": str(csv_path)}
    if draw(result, spec, png_path) is not None:
        result.files["png"] = str(png_path)
    if plot_file is not None and draw(result, spec, plot_file, plot_routes) is not None:
        result.files["plot"] = str(plot_file)
    write_csv(result, csv_path)
    atomic_write_text(json_path, json.dumps({**result.to_dict(), "spec": spec.to_dict()},
                                            indent=2, default=str) + "\n")


# --------------------------------------------------------------------------------------- pick
def pick(result: SweepResult, speedup: float, out: Optional[Path], tolerance: float) -> dict[str, Any]:
    """The best point (highest metric; the faster of a tie) measured at least ``speedup`` times
    faster (within ``tolerance`` under it) at batch 1 on the first thread count, its model
    copied into ``out`` (default ``WORK/picked-<S>x``) with its model card."""
    from nnprune.report.card import write_card

    n = result.threads[0]
    floor = speedup * (1 - tolerance)
    eligible = [p for p in result.points if p.get("state") == State.TIMED
                and p.get("metric") is not None and (speed_of(p, n) or 0) >= floor]
    if not eligible:
        fastest = max((speed_of(p, n) or 0 for p in result.points), default=0)
        raise NNPruneError(f"--pick {speedup:g}: no timed point is at least {floor:.2f}x fast at "
                           f"batch 1, {n} thread(s) (the fastest: {fastest:.2f}x)")
    best = max(eligible, key=lambda p: (p["metric"], speed_of(p, n)))
    src = result.work / best["id"] / best["timed_dir"]
    if not _has_weights(src):
        raise NNPruneError(f"--pick {speedup:g}: {best['id']} is the best, but its weights are not "
                           f"in {src} (trained elsewhere): copy them back first")
    out = Path(out) if out is not None else result.work / f"picked-{speedup:g}x"
    pick_record = {"sweep": result.name, "point": best["id"], "route": best["label"],
                   "target": best["target"], "seed": best["seed"], "metric": best["metric"],
                   "main_metric": best["main_metric"], "speed": best.get("speed"),
                   "asked_speedup": speedup, "from": str(src)}
    # The output policy (docs/outputs.md): an earlier pick (a folder nnprune wrote) is replaced
    # whole, atomically; a file, or a folder holding the user's files, is refused in one line.
    with atomic_directory(out, overwrite=True, option="--pick-out") as tmp:
        for f in src.iterdir():  # the model's files; not its checkpoints, stages or curves
            if f.is_file() and not f.name.startswith(".") and f.name not in (POINT_FILE, LOG_FILE):
                shutil.copy2(f, tmp / f.name)
        atomic_write_text(tmp / PICK_FILE, json.dumps(pick_record, indent=2) + "\n")
    evaluation = {"task": result.task, "main_metric": best["main_metric"],
                  "metrics": {best["main_metric"]: best["metric"]}, "checkpoint": str(out)}
    card = write_card(out, speed=best.get("speed_report"), evaluation=evaluation, overwrite=True)
    logger.info("picked %s (%s %.4f, %.2fx at batch 1): %s", best["id"], best["main_metric"],
                best["metric"], speed_of(best, n), out)
    return {**pick_record, "folder": str(out), "card": str(card.card)}


# --------------------------------------------------------------------------------------- main
def sweep(args: SweepArgs) -> SweepResult:
    """Run the sweep ``args.spec`` as far as ``args.phase`` (see the module doc)."""
    started = time.perf_counter()
    spec = args.spec
    check_inputs(spec, args.phase)
    check_recipes(spec)
    check_plot(spec, args.plot_file, args.plot_routes)
    executor = make_executor(spec.executor, spec.work, spec.name)  # refuses a missing engine now
    starts = args.phase in (Phase.ALL, Phase.TRAIN) and not args.dry_run
    if args.phase in (Phase.ALL, Phase.TRAIN):
        check_work(spec.work)  # a dry run says what the run would refuse
    if starts:
        executor.preflight()
    table, table_path = resolve_table(spec, measure=starts or args.phase is Phase.TIME)
    if table is not None:
        check_reach(spec, table)
    table_id = table_fingerprint(table_path) if table_path is not None else None
    points = all_points(spec)
    if args.dry_run:
        result = SweepResult(spec.name, spec.task, spec.work, plan=plan_of(spec, points, table_id),
                             executor=executor.describe(), threads=list(spec.timing.threads))
        if table is None:
            result.executor.append("latency table: none yet, measured here on the first run "
                                   f"(batch {spec.latency.batch_size} x {spec.latency.seq_len}, "
                                   f"{spec.latency.threads} thread(s))")
        return result
    # every point process reads the spec and the table from the work folder
    spec.work.mkdir(parents=True, exist_ok=True)
    saved = dataclasses.replace(spec, latency=dataclasses.replace(spec.latency, table=table_path))
    atomic_write_text(spec.work / SPEC_FILE, json.dumps(saved.to_dict(), indent=2) + "\n")
    if starts:
        todo = [p.id for p in points
                if (read_record(spec.work / p.id) or {}).get("key") != spec.point_key(p, table_id)
                or (read_record(spec.work / p.id) or {}).get("state") not in (State.TRAINED, State.TIMED)]
        for line in executor.describe():
            logger.info("%s", line)
        logger.info("sweep %s: %d point(s) to train, %d trained earlier", spec.name, len(todo),
                    len(points) - len(todo))
        by_id = {p.id: p for p in points}
        for outcome in executor.run(todo, detach=args.detach):
            record = read_record(spec.work / outcome.point_id)
            if not outcome.ok and (record is None or record["state"] != State.TRAINED):
                key = spec.point_key(by_id[outcome.point_id], table_id)
                record = mark_failed(spec.work / outcome.point_id, outcome.reason or "failed", key)
                logger.error("%s failed: %s", outcome.point_id, record.get("error"))
    if args.phase in (Phase.ALL, Phase.TIME) and not args.detach and table is not None:
        time_phase(spec, table, table_id, points, args.retime)
    result = collect(spec, table_id, points)
    result.executor = executor.describe()
    result.wall_seconds = round(time.perf_counter() - started, 1)
    if args.pick is not None:
        result.picked = pick(result, args.pick, args.pick_out, args.pick_tolerance)
    write_report(result, spec, args.plot_file, args.plot_routes)
    return result


def check_plot(spec: SweepSpec, path: Optional[Path], labels: Sequence[str]) -> None:
    """One line for a ``--plot-route`` that names no route of the spec (with the labels it has)
    or a ``--plot-file`` that cannot be written, before any point starts."""
    from nnprune.workflows.preflight import check_output_file

    check_output_file(path, "--plot-file")
    known = [r.label for r in spec.routes if r.kind is not RouteKind.DENSE]
    for label in labels:
        if label not in known:
            raise NNPruneError(f"--plot-route {label!r} is no route of the sweep; its routes: "
                               f"{'; '.join(map(repr, known))}")


__all__ = ["PICK_FILE", "REPORT_STEM", "SweepArgs", "SweepResult", "TABLE_FILE", "all_points",
           "check_inputs", "check_reach", "check_recipes", "check_work", "collect", "draw", "front_of",
           "pareto_front",
           "pick", "plan_of", "resolve_table", "speed_of", "sweep", "table_columns", "table_rows",
           "time_phase", "time_point", "write_csv", "write_report"]
