"""What ``nnprune sweep`` runs: a sweep spec (a YAML or JSON file, or flags for the common case)
parsed into typed, validated dataclasses, and the points it expands to.

A spec names one fine-tuned dense model (the start of every route and the teacher every route
distils from), a task and its data, the routes, the speed targets and seeds, and one training
budget: every point gets the same teacher, data and budget (a route may change its recipe, or
its steps for a "4x the budget" variant, under a label of its own). Bad input is refused here,
in one line naming the file and the key, before any point starts::

    name: sst2-tradeoff
    task: sst2
    model: runs/sst2-dense            # relative paths: from where the command runs
    data_dir: ../shared/data/glue/SST-2
    routes: [hybrid-filled, struct, layer-drop, one-shot]
    targets: [1.5, 2, 3]
    seeds: [42]
    budget: {steps: 600, batch_size: 32, max_seq_length: 64, learning_rate: 5.0e-5}
    latency: {table: table.json, seq_len: 128, threads: 1}
    timing: {threads: [1, 2]}
    executor: {kind: local, workers: 2}

See docs/sweeps.md for every key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Optional

from nnprune import METHODS, CacheState
from nnprune.errors import NNPruneError
from nnprune.settings import TRACKERS, load_config_file, normalize_trackers, parse_assignments


class Phase(str, Enum):
    """How far a sweep goes: ``all`` (train, time, report), ``train`` (train and evaluate only:
    on a GPU or a cluster, timing later on the machine of the latency table), ``time`` (time what
    is trained, start nothing, report), ``report`` (read what is there, start nothing)."""

    ALL = "all"
    TRAIN = "train"
    TIME = "time"
    REPORT = "report"


class ExecutorKind(str, Enum):
    """Where the points are trained: ``local`` (N worker processes on this machine, GPU-aware),
    ``slurm`` (one submitit array job, a task per point), ``submitit-local`` and ``debug``
    (submitit's own local and in-process executors: the SLURM path without SLURM)."""

    LOCAL = "local"
    SLURM = "slurm"
    SUBMITIT_LOCAL = "submitit-local"
    DEBUG = "debug"


class RouteKind(str, Enum):
    """How a route makes its model from the dense one."""

    DENSE = "dense"  # the dense model itself, evaluated: the 1x point
    ONE_SHOT = "one-shot"  # nnprune prune --target-speedup S --then-fill STEPS
    LAYER_DROP = "layer-drop"  # DistilBERT's recipe: evenly spaced layers kept, then distilled
    FINE_PRUNE = "fine-prune"  # fine-prune --method M --target-speedup S (any method preset)


#: Route names that are not method presets; every other route is a ``fine-prune`` method.
SPECIAL_ROUTES = (RouteKind.DENSE.value, RouteKind.ONE_SHOT.value, RouteKind.LAYER_DROP.value)
SPEC_FILE = "sweep_spec.json"  # the resolved spec, in the work folder: what every point reads


def route_names() -> list[str]:
    """Every route a spec may name."""
    return [*SPECIAL_ROUTES, *(m for m in METHODS.names() if m not in SPECIAL_ROUTES)]


def slug(text: str) -> str:
    """A folder-name form of a route label: ``hybrid-filled (fill 450)`` -> ``hybrid-filled-fill-450``."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


# ---------------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class Budget:
    """The training budget every point gets (a route may change its ``steps``, under a label)."""

    steps: int = 600  # training steps of every route (hybrid-filled: both stages together)
    batch_size: int = 32
    max_seq_length: Optional[int] = None  # None: the task's (128 GLUE, 384 SQuAD)
    learning_rate: float = 5e-5
    fill_share: float = 0.5  # hybrid-filled: the share of the steps given to the fill stage
    score_init: str = "importance"  # fine-pruning routes: initial mask scores
    fill_init: str = "noise"  # hybrid-filled: what fills the zeros inside kept units
    calibration_samples: int = 2048  # one-shot: examples scored
    max_train_samples: Optional[int] = None
    max_eval_samples: Optional[int] = None  # None: the full dev set
    set: tuple[str, ...] = ()  # pruning-config overrides of every fine-pruning route

    def __post_init__(self) -> None:
        if self.steps < 2:
            raise NNPruneError(f"budget.steps must be >= 2, got {self.steps}")
        if self.batch_size < 1:
            raise NNPruneError(f"budget.batch_size must be >= 1, got {self.batch_size}")
        if self.learning_rate <= 0:
            raise NNPruneError(f"budget.learning_rate must be > 0, got {self.learning_rate}")
        if not 0 < self.fill_share < 1:
            raise NNPruneError(f"budget.fill_share must be in (0, 1), got {self.fill_share}")
        if self.calibration_samples < 32:
            raise NNPruneError(f"budget.calibration_samples must be >= 32, got {self.calibration_samples}")
        for name in ("max_train_samples", "max_eval_samples", "max_seq_length"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise NNPruneError(f"budget.{name} must be >= 1, got {value}")
        parse_assignments(self.set, option="budget.set")


@dataclass(frozen=True)
class LatencySpec:
    """The latency table the targets are cut with and the timings predicted by: a saved one
    (``table``), else measured here (cached) at this setting and saved in the work folder, so
    that every point, wherever it trains, cuts with the same one."""

    table: Optional[Path] = None
    batch_size: int = 1
    seq_len: int = 128
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("batch_size", "seq_len", "threads"):
            if getattr(self, name) < 1:
                raise NNPruneError(f"latency.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class TimingSpec:
    """The timing phase: every model against the dense one, interleaved in one process, at each
    thread count and batch size, sequence ``seq_len`` (default: the latency table's), with a
    ``warm`` or ``cold`` cache (:class:`nnprune.CacheState`; a point timed with the other is
    timed again)."""

    threads: tuple[int, ...] = (1,)  # the first is the plot's and --pick's
    batch_sizes: tuple[int, ...] = (1, 32)
    seq_len: Optional[int] = None
    iters: int = 10
    warmup: int = 3
    cache: CacheState = CacheState.WARM

    def __post_init__(self) -> None:
        if not self.threads or min(self.threads) < 1:
            raise NNPruneError(f"timing.threads must be counts >= 1, got {list(self.threads)}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise NNPruneError(f"timing.batch_sizes must be >= 1, got {list(self.batch_sizes)}")
        if self.iters < 1 or self.warmup < 0:
            raise NNPruneError("timing.iters must be >= 1 and timing.warmup >= 0")


@dataclass(frozen=True)
class ExecutorSpec:
    """Where the points train. ``local``: ``workers`` processes at once (default: one per GPU
    times ``workers_per_gpu``, else 1), the CPU threads split between them (``threads``
    each, default cores / workers). ``slurm``: one array job, a task per point, with
    ``partition``, ``account``, ``gpus`` per task, ``time_min``, ``cpus_per_task``, ``mem_gb``,
    at most ``array_parallelism`` at once, ``slurm`` extra sbatch parameters; a pre-empted or
    requeued task resumes its point."""

    kind: ExecutorKind = ExecutorKind.LOCAL
    workers: Optional[int] = None
    workers_per_gpu: int = 1
    threads: Optional[int] = None
    gpus: Optional[int] = None  # per point; None: 1 where there are GPUs (local), 1 (slurm)
    partition: Optional[str] = None
    account: Optional[str] = None
    time_min: int = 240
    cpus_per_task: int = 8
    mem_gb: int = 32
    array_parallelism: int = 64
    slurm: dict[str, Any] = field(default_factory=dict)  # more sbatch parameters (constraint, qos)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _enum(ExecutorKind, self.kind, "executor.kind"))
        for name in ("workers", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise NNPruneError(f"executor.{name} must be >= 1, got {value}")
        if self.gpus is not None and self.gpus < 0:
            raise NNPruneError(f"executor.gpus must be >= 0, got {self.gpus}")
        for name in ("workers_per_gpu", "time_min", "cpus_per_task", "mem_gb", "array_parallelism"):
            if getattr(self, name) < 1:
                raise NNPruneError(f"executor.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class RouteSpec:
    """One route of the sweep: a name from :func:`route_names`, and what it changes in the
    recipe, under ``label`` (default the route's name; ``"hybrid-filled (fill 450)"`` draws as a
    variant of hybrid-filled). ``set``: pruning-config overrides (fine-pruning routes);
    ``fill_share`` / ``fill_init``: the fill stage of a filling method (hybrid-filled);
    ``score_init``: fine-pruning routes; ``width_depth`` / ``hidden_size``: what the one-shot
    search may prune besides heads and FFN dimensions (``nnprune prune --heads-ffn-only``,
    ``--hidden-size N``; default: width and depth, the search choosing); ``alpha_hidden``: the
    one-shot fill's layer-wise distillation (``--distill-hidden``; fine-pruning routes:
    ``set: [alpha_hidden=W]``); ``measured_target``: the one-shot cut held to the speed measured
    on this machine (``--measured-target``); ``through``: the one-shot route in two steps, the
    dense model first cut to this speedup (heads and FFN dimensions only, so that the second cut
    can put them back) and filled for the sweep's budget of steps, then that model cut to the
    point's target (``nnprune prune`` of a compacted model) and filled for the route's steps;
    ``steps`` / ``learning_rate``: another budget for this route's points; ``targets`` /
    ``seeds``: this route's own (default the sweep's)."""

    route: str
    label: Optional[str] = None
    set: tuple[str, ...] = ()
    fill_share: Optional[float] = None
    fill_init: Optional[str] = None
    score_init: Optional[str] = None
    width_depth: Optional[bool] = None
    hidden_size: Optional[int] = None
    alpha_hidden: Optional[float] = None
    measured_target: Optional[bool] = None
    through: Optional[float] = None
    steps: Optional[int] = None
    learning_rate: Optional[float] = None
    targets: Optional[tuple[float, ...]] = None
    seeds: Optional[tuple[int, ...]] = None

    def __post_init__(self) -> None:
        if self.route not in route_names():
            raise NNPruneError(f"unknown route {self.route!r}; known: {', '.join(route_names())}")
        if self.label is None:
            object.__setattr__(self, "label", self.route)
        if not slug(self.label):
            raise NNPruneError(f"route label {self.label!r} has no letter or digit")
        kind = self.kind
        if self.set and kind is not RouteKind.FINE_PRUNE:
            raise NNPruneError(f"route {self.route}: set configures fine-pruning; {self.route} "
                               "has no pruning config")
        parse_assignments(self.set, option=f"route {self.label} set")
        fills = kind is RouteKind.FINE_PRUNE and METHODS.get(self.route).fill
        for name in ("fill_share", "fill_init"):
            if getattr(self, name) is not None and not fills:
                raise NNPruneError(f"route {self.route}: {name} is for a method with a fill stage "
                                   "(hybrid-filled)")
        if self.score_init is not None and kind is not RouteKind.FINE_PRUNE:
            raise NNPruneError(f"route {self.route}: score_init is for fine-pruning routes")
        for name in ("width_depth", "hidden_size", "alpha_hidden", "measured_target", "through"):
            if getattr(self, name) is not None and kind is not RouteKind.ONE_SHOT:
                raise NNPruneError(f"route {self.route}: {name} is for the one-shot route")
        if self.hidden_size is not None and (self.hidden_size < 1 or self.width_depth is False):
            raise NNPruneError(f"route {self.label}: hidden_size must be a positive width, and "
                               "needs width_depth")
        if self.through is not None and not self.through > 1:
            raise NNPruneError(f"route {self.label}: through is the first cut's speedup, > 1")
        if self.alpha_hidden is not None and self.alpha_hidden < 0:
            raise NNPruneError(f"route {self.label}: alpha_hidden must be >= 0")
        if self.fill_share is not None and not 0 < self.fill_share < 1:
            raise NNPruneError(f"route {self.label}: fill_share must be in (0, 1)")
        if self.steps is not None and self.steps < 2:
            raise NNPruneError(f"route {self.label}: steps must be >= 2")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise NNPruneError(f"route {self.label}: learning_rate must be > 0")
        if kind is RouteKind.DENSE and (self.targets or self.seeds or self.steps
                                        or self.learning_rate):
            raise NNPruneError("route dense is the dense model evaluated: no targets, seeds, "
                               "steps or learning rate")
        if self.targets is not None:
            _check_targets(self.targets, f"route {self.label} targets")

    @property
    def kind(self) -> RouteKind:
        return RouteKind(self.route) if self.route in SPECIAL_ROUTES else RouteKind.FINE_PRUNE

    @property
    def fills(self) -> bool:
        """A fine-pruning method with a fill stage (hybrid-filled)."""
        return self.kind is RouteKind.FINE_PRUNE and METHODS.get(self.route).fill

    def recipe(self, budget: Budget) -> dict[str, Any]:
        """What this route's points compute with, resolved against ``budget`` (part of every
        point's identity: a change trains the point again)."""
        out: dict[str, Any] = {"route": self.route, "steps": self.steps or budget.steps}
        if self.kind is RouteKind.FINE_PRUNE:
            out.update(set=[*budget.set, *self.set], score_init=self.score_init or budget.score_init)
        if self.fills:
            out.update(fill_share=self.fill_share or budget.fill_share,
                       fill_init=self.fill_init or budget.fill_init)
        if self.kind is RouteKind.ONE_SHOT:
            out["calibration_samples"] = budget.calibration_samples
            # only what differs from the default search, so points trained before these keys
            # existed (with that default) keep their identity
            if self.width_depth is False:
                out["width_depth"] = False
            if self.hidden_size is not None:
                out["hidden_size"] = self.hidden_size
            if self.alpha_hidden:
                out["alpha_hidden"] = self.alpha_hidden
            if self.measured_target:
                out["measured_target"] = True
            if self.through is not None:
                out.update(through=self.through, through_steps=budget.steps)
        return out

    def learning_rate_in(self, budget: "Budget") -> float:
        """This route's learning rate: its own, else the budget's."""
        return self.learning_rate or budget.learning_rate


@dataclass(frozen=True)
class NoiseSpec:
    """More seeds of some routes at one target: the run-to-run noise the table is read with."""

    target: float
    seeds: tuple[int, ...]
    routes: tuple[str, ...] = ("hybrid-filled", "one-shot")

    def __post_init__(self) -> None:
        _check_targets((self.target,), "noise.target")
        if not self.seeds:
            raise NNPruneError("noise.seeds: give at least one seed")


@dataclass(frozen=True)
class Point:
    """One model of the sweep: a route at a target with a seed (the dense point has neither)."""

    route: RouteSpec
    target: Optional[float] = None
    seed: Optional[int] = None

    @property
    def id(self) -> str:
        """Its folder name in the work folder: ``one-shot-x2-s42``, ``dense``."""
        if self.route.kind is RouteKind.DENSE:
            return "dense"
        return f"{slug(self.route.label)}-x{self.target:g}-s{self.seed}"


# ------------------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class SweepSpec:
    """A whole sweep (see the module doc); :meth:`points` expands it."""

    task: str
    model: Path  # the fine-tuned dense model: every route's start and teacher
    routes: tuple[RouteSpec, ...]
    targets: tuple[float, ...]
    name: Optional[str] = None  # default: the spec file's stem, else the task's name
    data_dir: Optional[Path] = None
    task_options: dict[str, str] = field(default_factory=dict)
    seeds: tuple[int, ...] = (42,)
    noise: Optional[NoiseSpec] = None
    budget: Budget = field(default_factory=Budget)
    latency: LatencySpec = field(default_factory=LatencySpec)
    timing: TimingSpec = field(default_factory=TimingSpec)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    work: Optional[Path] = None  # run folders; default runs/sweeps/<name>
    report_to: str = "none"  # the trackers of every point's training (--report-to)
    save_steps: int = 100  # a checkpoint every N steps: a killed or requeued point resumes there
    logging_steps: Optional[int] = None  # default: steps / 10, at most 50

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.name or self.task)
        if not slug(self.name):
            raise NNPruneError(f"name {self.name!r} has no letter or digit")
        if self.work is None:
            object.__setattr__(self, "work", Path("runs") / "sweeps" / slug(self.name))
        object.__setattr__(self, "report_to", normalize_trackers(self.report_to))
        if not self.routes:
            raise NNPruneError(f"routes: name at least one of {', '.join(route_names())}")
        labels = [r.label for r in self.routes]
        twice = sorted({lab for lab in labels if labels.count(lab) > 1})
        if twice:
            raise NNPruneError(f"routes: label {twice[0]!r} is used twice; give variants a label "
                               "of their own (label: 'hybrid-filled (fill 450)')")
        _check_targets(self.targets, "targets")
        if not self.seeds:
            raise NNPruneError("seeds: give at least one seed")
        for route in self.routes:
            low = [t for t in (route.targets or self.targets) if route.through and t <= route.through]
            if low:
                raise NNPruneError(f"route {route.label}: target {low[0]:g} is not beyond its "
                                   f"first cut (through {route.through:g})")
        if self.noise is not None:
            unknown = [r for r in self.noise.routes if r not in labels]
            if unknown:
                raise NNPruneError(f"noise.routes: {unknown[0]!r} is not a route of this sweep; "
                                   f"routes: {', '.join(labels)}")
        if self.save_steps < 1 or (self.logging_steps is not None and self.logging_steps < 1):
            raise NNPruneError("save_steps and logging_steps must be >= 1")
        work = self.work.resolve()
        model = self.model.resolve()
        if work == model or model in work.parents or work in model.parents:
            raise NNPruneError(f"work {self.work} and model {self.model} must not hold one another")

    # ------------------------------------------------------------------ expansion
    def points(self) -> list[Point]:
        """Every point: the dense one first (when a route names it), then each route at its
        targets with its first seed, and the noise seeds; in that order, each once."""
        out: list[Point] = []
        for route in self.routes:
            if route.kind is RouteKind.DENSE:
                out.append(Point(route))
                continue
            for target in route.targets or self.targets:
                out += [Point(route, target, seed) for seed in (route.seeds or self.seeds)[:1]]
        for route in self.routes:
            if route.kind is not RouteKind.DENSE:
                out += [Point(route, target, seed) for target in route.targets or self.targets
                        for seed in (route.seeds or self.seeds)[1:]]
        if self.noise is not None:
            for label in self.noise.routes:
                route = next(r for r in self.routes if r.label == label)
                out += [Point(route, self.noise.target, s) for s in self.noise.seeds]
        seen: dict[str, Point] = {}
        for p in out:
            seen.setdefault(p.id, p)
        return list(seen.values())

    def point(self, point_id: str) -> Point:
        for p in [self.dense_point, *self.points()]:
            if p.id == point_id:
                return p
        raise NNPruneError(f"sweep {self.name} has no point {point_id!r}")

    @property
    def dense_point(self) -> Point:
        """The dense model's point (evaluated whether or not a route names it: every table and
        picture is read against it)."""
        return Point(RouteSpec(RouteKind.DENSE.value))

    def logging_every(self, steps: int) -> int:
        return self.logging_steps or max(1, min(50, steps // 10))

    def data_key(self) -> dict[str, Any]:
        """What the dense point's evaluation depends on."""
        b = self.budget
        return {"task": self.task, "model": str(self.model), "data_dir": _str(self.data_dir),
                "task_options": dict(self.task_options), "max_seq_length": b.max_seq_length,
                "max_eval_samples": b.max_eval_samples}

    def point_key(self, point: Point, table_id: Optional[str]) -> dict[str, Any]:
        """Everything a point's result depends on: a finished point is reused, a started one
        resumed, only when its recorded key is this one."""
        if point.route.kind is RouteKind.DENSE:
            return self.data_key()
        b = self.budget
        return {**self.data_key(), "recipe": point.route.recipe(b), "target": point.target,
                "seed": point.seed, "batch_size": b.batch_size,
                "learning_rate": point.route.learning_rate_in(b),
                "max_train_samples": b.max_train_samples, "latency_table": table_id}

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


# ---------------------------------------------------------------------------------- parsing
def _check_targets(targets: Any, where: str) -> None:
    if not targets:
        raise NNPruneError(f"{where}: give at least one speed target (e.g. [1.5, 2, 3])")
    bad = [t for t in targets if not t > 1]
    if bad:
        raise NNPruneError(f"{where}: a speed target is a speedup > 1, got {bad[0]:g}")


def _enum(cls: type[Enum], value: Any, where: str) -> Any:
    if isinstance(value, cls):
        return value
    try:
        return cls(str(value))
    except ValueError:
        known = ", ".join(str(e.value) for e in cls)  # type: ignore[attr-defined]
        raise NNPruneError(f"{where}: unknown value {value!r}; known: {known}") from None


def _str(p: Optional[Path]) -> Optional[str]:
    return None if p is None else str(p)


def _plain(value: Any) -> Any:
    """JSON-ready: paths as strings, enums as their values, tuples as lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def _unwrap(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _convert(tp: Any, value: Any, where: str) -> Any:
    """``value`` (from YAML / JSON / a flag) as type ``tp``, or a one-line error."""
    tp, optional = _unwrap(tp)
    if value is None:
        if optional:
            return None
        raise NNPruneError(f"{where} must be given (got null)")
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if tp is RouteSpec and isinstance(value, str):
            value = {"route": value}
        if tp is NoiseSpec and not isinstance(value, Mapping):
            raise NNPruneError(f"{where} must be a mapping (target, seeds, routes)")
        return _build(tp, value, where)
    if origin is tuple:
        item = typing.get_args(tp)[0]
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise NNPruneError(f"{where} must be a mapping")
        return {str(k): (v if tp == dict[str, Any] else str(v)) for k, v in value.items()}
    try:
        if tp is bool:
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if tp is float:
            return float(value)
        if tp is Path:
            return Path(str(value)).expanduser()
        if tp is str:
            if isinstance(value, (dict, list)):
                raise ValueError(value)
            return str(value)
        if isinstance(tp, type) and issubclass(tp, Enum):
            return _enum(tp, value, where)
    except (TypeError, ValueError):
        name = getattr(tp, "__name__", str(tp))
        raise NNPruneError(f"{where} expects {name}, got {value!r}") from None
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    """Dataclass ``cls`` from a mapping, every key known and every value converted."""
    if not isinstance(data, Mapping):
        raise NNPruneError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise NNPruneError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(names)}")
    values = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise NNPruneError(f"{where or 'the sweep'}: {missing[0]!r} is required")
    try:
        return cls(**values)
    except NNPruneError as exc:
        raise NNPruneError(f"{where}: {exc}" if where else str(exc)) from None


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``data["budget"]["steps"] = value`` for key ``budget.steps``."""
    *parents, last = key.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise NNPruneError(f"{part} is not a section (a mapping); cannot set {key}")
        node = child
    node[last] = value


def load_spec(path: "str | Path | None" = None,
              overrides: Optional[Mapping[str, Any]] = None) -> SweepSpec:
    """The spec in ``path`` (YAML or JSON; ``None``: flags only) with ``overrides`` (dotted keys:
    ``budget.steps``, ``executor.workers``, ...; what the command's flags set) on top, every
    relative path resolved from the current folder. Any bad key or value is one line naming
    the file and the key."""
    data: dict[str, Any] = {}
    where = "the sweep"
    if path is not None:
        data = load_config_file(path)
        where = str(path)
        data.setdefault("name", Path(path).stem)
    for key, value in (overrides or {}).items():
        if value is not None:
            set_dotted(data, key, value)
    try:
        spec = _build(SweepSpec, data, "")
    except NNPruneError as exc:
        raise NNPruneError(f"{where}: {exc}") from None
    return resolve_paths(spec)


def resolve_paths(spec: SweepSpec) -> SweepSpec:
    """The spec with absolute paths (what the points read, from wherever they run)."""
    def absolute(p: Optional[Path]) -> Optional[Path]:
        return None if p is None else p.expanduser().resolve()

    return dataclasses.replace(
        spec, model=absolute(spec.model), data_dir=absolute(spec.data_dir), work=absolute(spec.work),
        latency=dataclasses.replace(spec.latency, table=absolute(spec.latency.table)))


def spec_from_dict(data: Mapping[str, Any]) -> SweepSpec:
    """A spec written by :meth:`SweepSpec.to_dict` (the work folder's ``sweep_spec.json``)."""
    return _build(SweepSpec, dict(data), "")


def read_saved_spec(work: Path) -> SweepSpec:
    """The resolved spec a sweep saved in its work folder (what a point process runs)."""
    path = Path(work) / SPEC_FILE
    try:
        return spec_from_dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise NNPruneError(f"{path}: not a sweep spec ({exc})") from None


def fingerprint(data: Any) -> str:
    """A short stable hash of JSON-able ``data``."""
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def table_fingerprint(path: Path) -> str:
    """A latency table file's identity in the point keys: its content, wherever it lies."""
    try:
        return fingerprint(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as exc:
        raise NNPruneError(f"latency table {path}: {exc}") from None


__all__ = ["Budget", "ExecutorKind", "ExecutorSpec", "LatencySpec", "NoiseSpec", "Phase", "Point",
           "RouteKind", "RouteSpec", "SPECIAL_ROUTES", "SPEC_FILE", "SweepSpec", "TRACKERS",
           "TimingSpec", "fingerprint", "load_spec", "table_fingerprint", "read_saved_spec", "resolve_paths",
           "route_names", "set_dotted", "slug", "spec_from_dict"]
