"""The run record: ``nnprune_config.json`` and ``nnprune_results.json``, as types, written and
read here and nowhere else.

Every folder nnprune saves a model to records how it was made (:class:`RunConfig`, in
``nnprune_config.json``: the pruning config that re-patches a masked checkpoint, the task, the
options of the command, the stages of a filled model, ...) and, once it is evaluated, its results
(``nnprune_results.json``: a :class:`FinePruneResult`, :class:`FillResult` or
:class:`PruneResult`). Readers (loading a checkpoint, the model card, ``evaluate``, ``fill``,
``prune --resume``, the benchmarks) call :func:`read_config` / :func:`read_results` and read
fields; writers build the types and call :func:`write_config` / :func:`write_results` /
:func:`update_results`.

Schema versions. Each file carries ``schema_version`` (:data:`SCHEMA_VERSION`). A file without
one is version 0: the layout nnprune wrote before this module, which is read as it is (version 1
is that layout plus ``schema_version`` and the ``kind`` of every results object, so older
nnprune versions still read new files). The version goes up only for a change an older reader
would misread; such a file is refused with one line (upgrade nnprune) rather than half
understood. Keys a reader does not know at its own version or an older one (written by a later
nnprune that added something, or by hand) are kept: each record holds them in ``extra`` and
writes them back unchanged. The pruning config is the exception: each of its keys changes the
masks, so one it does not know is refused.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

from nnprune.errors import NNPruneError
from nnprune.io_utils import atomic_write_text
from nnprune.pruning_core.config import CONFIG_FILE, RESULTS_FILE, PruningConfig, parse_enum
from nnprune.pruning_core.latency_model import LatencyModel

#: The layout this nnprune writes; files of a higher version are refused.
SCHEMA_VERSION = 1
VERSION_KEY = "schema_version"
KIND_KEY = "kind"  # which results type a results object is (version 1 on)


class RecordError(NNPruneError, ValueError):
    """A record that does not have the shape of its type (one line, with where)."""


# ------------------------------------------------------------------------------ conversion
def _dump(value: Any) -> Any:
    """A field's value as JSON-ready data (nested records, configs, enums, paths converted)."""
    if isinstance(value, (Record, PruningConfig, LatencyModel, CommandOptions)):
        return value.to_dict()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _load(tp: Any, value: Any, where: str) -> Any:
    """``value`` (JSON data) as type ``tp``: records, configs, enums, paths and containers of
    them are built; scalars are checked, never converted (what was written is what is read)."""
    if tp is Any:
        return value
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return _load(args[0], value, where)
        if all(isinstance(a, type) and issubclass(a, RESULT_TYPES) for a in args):
            return results_from_dict(value, where)
        raise RecordError(f"{where}: no rule to read a {tp}")  # pragma: no cover - declarations
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise RecordError(f"{where} must be a list, got {type(value).__name__}")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        return [_load(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where} must be a mapping, got {type(value).__name__}")
        item = typing.get_args(tp)[1] if typing.get_args(tp) else Any
        if item in (float, int, str):
            # what a run measured (metrics, seconds, ...): kept as written, whatever a task put
            # there; a checkpoint must load whatever its metrics hold
            return dict(value)
        return {k: _load(item, v, f"{where}.{k}") for k, v in value.items()}
    if value is None:
        raise RecordError(f"{where} must not be null")
    if isinstance(tp, type):
        if issubclass(tp, Enum):
            return parse_enum(tp, value, where)
        if issubclass(tp, Path):
            return Path(value)
        if issubclass(tp, Record):
            return tp.from_dict(value, where)
        if tp in (PruningConfig, LatencyModel, CommandOptions):
            if not isinstance(value, dict):
                raise RecordError(f"{where} must be a mapping, got {type(value).__name__}")
            try:
                return tp.from_dict(value)
            except RecordError:
                raise
            except NNPruneError as exc:
                raise RecordError(f"{where}: {exc}") from None
        if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if tp is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if tp in (str, bool) and isinstance(value, tp):
            return value
        raise RecordError(f"{where} must be {tp.__name__}, got {value!r}")
    return value  # pragma: no cover - a declaration this reader has no rule for


class Record:
    """What every record type shares: ``to_dict`` / ``from_dict`` driven by its dataclass fields
    (nested records, configs, enums and paths converted), and the keys it does not know kept in
    its ``extra`` field (written back as they were).

    Class settings: ``OMIT_DEFAULTS`` leaves out fields at their default (``None``, an empty
    list) unless their metadata says ``always``: a config records only what its run had; a
    result writes every field, as ``dataclasses.asdict`` did;
    ``DERIVED`` names properties written for older readers and recomputed when read back."""

    OMIT_DEFAULTS: ClassVar[bool] = False
    DERIVED: ClassVar[tuple[str, ...]] = ()
    extra: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data, in field order; ``extra`` keys after the fields."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            if f.name == "extra" or not f.metadata.get("recorded", True):
                continue
            value = getattr(self, f.name)
            if self.OMIT_DEFAULTS and value == _default(f) and not f.metadata.get("always"):
                continue
            out[f.name] = _dump(value)
        for name in self.DERIVED:
            out[name] = _dump(getattr(self, name))
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Optional[str] = None) -> Any:
        """The record ``data`` (JSON data) holds; one-line :class:`RecordError` when a field has
        the wrong shape or a required one is missing."""
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise RecordError(f"{where} must be a mapping, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        known = set(cls.DERIVED) | {KIND_KEY}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name == "extra" or not f.metadata.get("recorded", True):
                continue
            known.add(f.name)
            if f.name in data:
                values[f.name] = _load(hints[f.name], data[f.name], f"{where}.{f.name}")
            elif f.default is MISSING and f.default_factory is MISSING:
                raise RecordError(f"{where} has no {f.name!r}")
        extra = {k: v for k, v in data.items() if k not in known}
        try:
            return cls(**values, extra=extra)  # type: ignore[call-arg]
        except RecordError:
            raise
        except NNPruneError as exc:
            raise RecordError(f"{where}: {exc}") from None


def _default(f: Any) -> Any:
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else MISSING


def _extra() -> Any:
    """The ``extra`` field of a record: keys it does not know, kept as read."""
    return field(default_factory=dict, repr=False, kw_only=True)


@dataclass(frozen=True)
class CommandOptions:
    """The options of the command that made a folder (its ``training`` entry), as the command
    recorded them: field name -> JSON value of its options dataclass (``FinePruneArgs`` or
    ``FillArgs`` with the ``TrainingOptions`` fields flat; ``prune`` records its sequence length
    alone). The options are declared by those dataclasses, not again here: this keeps what was
    recorded, and reads the values the engine itself needs."""

    values: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not all(isinstance(k, str) for k in self.values):
            raise RecordError("recorded options must be keyed by option name")

    def value(self, name: str) -> Any:
        """The recorded value of option ``name`` (``None``: not recorded)."""
        return self.values.get(name)

    @property
    def max_seq_length(self) -> Optional[int]:
        v = self.values.get("max_seq_length")
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    @property
    def seed(self) -> Optional[int]:
        v = self.values.get("seed")
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    @property
    def order_seed(self) -> Optional[int]:
        """The seed that ordered the training examples (``data_seed``, else ``seed``)."""
        v = self.values.get("data_seed")
        return v if isinstance(v, int) and not isinstance(v, bool) else self.seed

    @property
    def task_options(self) -> dict[str, Any]:
        """The ``--task-option`` settings (``{}`` when none were recorded)."""
        found = self.values.get("task_options")
        return {str(k): v for k, v in found.items()} if isinstance(found, dict) else {}

    def to_dict(self) -> dict[str, Any]:
        return dict(self.values)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CommandOptions":
        return cls(dict(data))


# ------------------------------------------------------------------------------ results
class ResultsKind(str, Enum):
    """Which command's results a results object holds."""

    FINE_PRUNE = "fine_prune"  # FinePruneResult: a training run (fine-prune, the dense baseline)
    FILL = "fill"  # FillResult
    PRUNE = "prune"  # PruneResult: post-training pruning
    # what prune records in the pruned model's config before evaluating it: the dense metrics
    BEFORE_PRUNING = "before_pruning"


@dataclass
class FinePruneResult(Record):
    """What a training run (``fine-prune``, each stage of ``hybrid-filled``) measured at its end."""

    KIND: ClassVar[ResultsKind] = ResultsKind.FINE_PRUNE

    output_dir: Path
    metrics: dict[str, float]
    main_metric: str
    density: float  # over the pruned matrices (1.0 for dense)
    group_density: dict[str, float]
    estimated_speedup: float
    compression: float
    train_seconds: float
    steps: int
    # the task's prediction files written beside the final model (SQuAD: predictions.json, ...)
    prediction_files: list[str] = field(default_factory=list)
    # --target-speedup: predicted (latency table) and measured speedup of the compacted model
    # (SpeedCheck.to_dict: shown as it is, never read back)
    speed_check: Optional[dict[str, Any]] = None
    # fine-prune --method auto: the route it chose and why (RouteChoice.to_dict)
    route: Optional[dict[str, Any]] = None
    extra: dict[str, Any] = _extra()

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), KIND_KEY: self.KIND.value}


@dataclass
class FillResult(FinePruneResult):
    """A :class:`FinePruneResult` of the filled model (density, compression and speedup against
    the original dense architecture) plus what fill did."""

    KIND: ClassVar[ResultsKind] = ResultsKind.FILL

    checkpoint: str = ""  # the fine-pruned checkpoint that was filled
    compacted: bool = False  # whether any head or FFN dimension was removed (ever)
    heads_kept: int = 0
    heads_original: int = 0
    ffn_dims_kept: int = 0
    ffn_dims_original: int = 0
    reinitialized: int = 0  # zeros inside kept heads / FFN dims filled (noise or weights)
    reinit_std: float = 0.0
    fill_init: str = "noise"  # FillInit's value
    # the pruning stage's results, when it recorded them
    prune: Optional["RunResults"] = None


@dataclass
class PruneResult(Record):
    """What ``nnprune prune`` measured: the metrics of the model it was given (the dense one, or
    with ``pruned_before`` an earlier cut) and of the pruned one, what was kept, FLOPs and speed
    against the dense model, time per phase."""

    KIND: ClassVar[ResultsKind] = ResultsKind.PRUNE
    DERIVED: ClassVar[tuple[str, ...]] = ("metrics",)

    output_dir: str
    task: str
    main_metric: str
    metrics_before: dict[str, float]
    metrics_after: dict[str, float]
    heads_kept: int
    heads_total: int
    ffn_dims_kept: int
    ffn_dims_total: int
    flops_before: float  # one forward, batch 1, max_seq_length tokens
    flops_after: float
    predicted_speedup: float  # latency table (target_speedup) or FLOP ratio (target_flops)
    measured_speedup: Optional[float]  # probe at the latency setting, interleaved against dense
    calibration_samples: int
    max_seq_length: int
    exactness: float  # max |logit difference| compacted vs masked
    seconds: dict[str, float]  # per phase
    tune_error: dict[str, list[float]] = field(default_factory=dict)  # group -> [before, after]
    heads_per_layer: list[int] = field(default_factory=list)
    ffn_dims_per_layer: list[int] = field(default_factory=list)
    metrics_filled: Optional[dict[str, float]] = None
    predicted_by: str = "flops"  # or "latency table"
    speed_setting: dict[str, Any] = field(default_factory=dict)  # where speed was predicted/measured
    # width and depth (issue 25): the residual stream's width kept / dense, the dense indices of
    # the layers removed (None / []: not searched, or nothing removed)
    hidden_kept: Optional[int] = None
    hidden_total: Optional[int] = None
    layers_removed: list[int] = field(default_factory=list)
    # --measured-target: every shape timed on the way (budget_ms, predicted, measured, taken);
    # measured_speedup is then the taken one's
    speed_rounds: list[dict[str, Any]] = field(default_factory=list)
    # pruning in steps: the checkpoint was compacted by an earlier cut, so metrics_before are its
    # own, not the dense model's (the FLOPs and speeds still count against the dense model)
    pruned_before: bool = False
    # the compacted model, in memory only (never recorded)
    model: Any = field(default=None, repr=False, compare=False, metadata={"recorded": False})
    extra: dict[str, Any] = _extra()

    @property
    def metrics(self) -> dict[str, float]:
        """The pruned model's metrics (before any fill), under the name every result uses:
        what a teacher's results are read for."""
        return self.metrics_after

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        # "metrics" first, as prune always wrote it
        return {"metrics": out.pop("metrics"), **out, KIND_KEY: self.KIND.value}


@dataclass
class BeforePruning(Record):
    """What ``prune`` records with the pruned model before evaluating it: the dense model's
    metrics (the pruned model's come in :class:`PruneResult`, in the results file)."""

    KIND: ClassVar[ResultsKind] = ResultsKind.BEFORE_PRUNING

    main_metric: str
    metrics_before: dict[str, float]
    extra: dict[str, Any] = _extra()

    @property
    def metrics(self) -> dict[str, float]:
        """No metric of the model itself yet."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), KIND_KEY: self.KIND.value}


RunResults = Union[FinePruneResult, FillResult, PruneResult, BeforePruning]
RESULT_TYPES = (FinePruneResult, PruneResult, BeforePruning)  # FillResult is a FinePruneResult
_BY_KIND: dict[ResultsKind, type] = {
    ResultsKind.FINE_PRUNE: FinePruneResult, ResultsKind.FILL: FillResult,
    ResultsKind.PRUNE: PruneResult, ResultsKind.BEFORE_PRUNING: BeforePruning}


def _v0_kind(data: dict[str, Any]) -> ResultsKind:
    """The kind of a version 0 results object, which did not name it: by the fields only that
    kind has. (Version 1 records its ``kind``; this is the one place that looks.)"""
    if "metrics_after" in data:
        return ResultsKind.PRUNE
    if "metrics_before" in data:
        return ResultsKind.BEFORE_PRUNING
    if "heads_original" in data or "reinitialized" in data:
        return ResultsKind.FILL
    return ResultsKind.FINE_PRUNE


def results_from_dict(data: Any, where: str = "results") -> RunResults:
    """The results object ``data`` holds (any kind; see :class:`ResultsKind`)."""
    if not isinstance(data, dict):
        raise RecordError(f"{where} must be a mapping, got {type(data).__name__}")
    kind = parse_enum(ResultsKind, data[KIND_KEY], f"{where}.{KIND_KEY}") if KIND_KEY in data \
        else _v0_kind(data)
    return _BY_KIND[kind].from_dict(data, where)


# ------------------------------------------------------------------------------ config
class Stage(str, Enum):
    PRUNE = "prune"  # the checkpoint a fill started from, as it recorded itself
    FILL = "fill"


@dataclass
class StageRecord(Record):
    """One stage of a filled model (``stages``): the pruning stage as its checkpoint recorded
    itself, then each fill."""

    OMIT_DEFAULTS: ClassVar[bool] = True

    stage: Stage
    checkpoint: Optional[str] = None  # the folder the stage saved (every stage nnprune writes)
    pruning: Optional[PruningConfig] = None
    training: Optional[CommandOptions] = None
    results: Optional[RunResults] = None
    masked: Optional[bool] = None  # prune stage: whether its checkpoint was masked
    # fill stage: the compaction (CompactionReport.to_dict, shown as it is) and the refill
    compaction: Optional[dict[str, Any]] = None
    reinit_std: Optional[float] = None
    fill_init: Optional[str] = None
    reinitialized: Optional[int] = None
    extra: dict[str, Any] = _extra()

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.stage is Stage.PRUNE:  # what version 0 wrote, nulls included
            for name in ("masked", "pruning", "training", "results"):
                out.setdefault(name, None)
        return out


@dataclass
class AutoRecord(Record):
    """``fine-prune --method auto``: the command's options (the one command that made the
    folder, whichever route it took) and the route it chose and why (RouteChoice.to_dict)."""

    training: CommandOptions
    route: dict[str, Any]
    extra: dict[str, Any] = _extra()


@dataclass
class PostTrainingRecord(Record):
    """How ``nnprune prune`` made the folder."""

    method: str  # "fisher+search", "+rearrange", "+lstsq"
    options: CommandOptions  # PruneArgs.to_dict
    calibration_examples: int
    max_seq_length: int
    kept: dict[str, list[int]]  # units kept, by mask group label
    flops: dict[str, float]  # "before", "after"
    predicted_speedup: float
    speed_setting: dict[str, Any]  # LatencySetting.to_dict, resolved
    extra: dict[str, Any] = _extra()


@dataclass
class LatencyRecord(Record):
    """The latency table a ``target_speedup`` run cut its masks with: its model (what rebuilds
    the masks of a masked checkpoint) and, in a final save, what it was measured on
    (``LatencyTable.to_dict``)."""

    OMIT_DEFAULTS: ClassVar[bool] = True

    model: LatencyModel
    format: Optional[int] = None
    key: Optional[dict[str, Any]] = None
    measured: Optional[dict[str, float]] = None
    rounds: Optional[int] = None
    seconds: Optional[float] = None
    extra: dict[str, Any] = _extra()


@dataclass
class RunConfig(Record):
    """``nnprune_config.json``: how the folder's model was made. Every field but ``masked`` is
    optional: a Trainer checkpoint records the pruning config (and latency model) alone, a
    final save what its command knew."""

    OMIT_DEFAULTS: ClassVar[bool] = True

    pruning: Optional[PruningConfig] = None  # re-patches a masked checkpoint
    # mask scores saved with the weights (magnitude pruning has none: this says so); always
    # written, as every version wrote it
    masked: bool = field(default=False, metadata={"always": True})
    task: Optional[str] = None
    base_model: Optional[str] = None
    training: Optional[CommandOptions] = None  # the options of the command that made it
    results: Optional[RunResults] = None  # as the results file holds them when it was saved
    stages: list[StageRecord] = field(default_factory=list)  # a filled model's stages
    auto: Optional[AutoRecord] = None  # made by fine-prune --method auto
    post_training: Optional[PostTrainingRecord] = None  # made by nnprune prune
    latency_table: Optional[LatencyRecord] = None  # a target_speedup's table
    filled_from: Optional[str] = None  # fill: the checkpoint it filled
    compacted: Optional[bool] = None  # fill, bertarize: the layers were compacted
    bertarized_from: Optional[str] = None  # bertarize: the checkpoint it baked
    extra: dict[str, Any] = _extra()

    def __post_init__(self) -> None:
        if self.masked and self.pruning is None:
            raise RecordError("a masked checkpoint's record needs its pruning config")

    @property
    def is_filled(self) -> bool:
        return any(s.stage is Stage.FILL for s in self.stages)

    def teacher(self) -> Optional[str]:
        """The teacher it was distilled from: its own config's, else a stage's."""
        for config in [self.pruning] + [s.pruning for s in self.stages]:
            if config is not None and config.teacher:
                return config.teacher
        return None

    def options(self) -> Optional[CommandOptions]:
        """The options its folder was trained with: the command's own, else (a fill output made
        by an older layout) the latest stage that recorded some."""
        if self.training is not None:
            return self.training
        return next((s.training for s in reversed(self.stages) if s.training is not None), None)


# ------------------------------------------------------------------------------ files
def _read_json(path: Path) -> Optional[dict[str, Any]]:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NNPruneError(f"{path} is corrupted: {exc}") from None
    if not isinstance(data, dict):
        raise NNPruneError(f"{path} is corrupted: it holds no JSON object")
    version = data.pop(VERSION_KEY, 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise NNPruneError(f"{path} is corrupted: {VERSION_KEY} {version!r}")
    if version > SCHEMA_VERSION:
        raise NNPruneError(f"{path} was written by a newer nnprune (run record schema "
                           f"{version}; this one reads up to {SCHEMA_VERSION}): upgrade nnprune")
    return data


def _write_json(path: Path, data: dict[str, Any], *, sort_keys: bool) -> Path:
    payload = {VERSION_KEY: SCHEMA_VERSION, **data}
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=sort_keys, default=str) + "\n")
    return path


def read_config(folder: "str | Path") -> Optional[RunConfig]:
    """The :class:`RunConfig` of ``folder`` (``None``: it records none); a one-line error for a
    corrupted file, a newer schema, or a record of the wrong shape."""
    path = Path(folder) / CONFIG_FILE
    data = _read_json(path)
    if data is None:
        return None
    try:
        return RunConfig.from_dict(data, "run config")
    except NNPruneError as exc:  # a RecordError, or a config's or an enum's own check
        raise NNPruneError(f"{path} is not a valid nnprune run config: {exc}") from None


def write_config(folder: "str | Path", record: RunConfig) -> Path:
    """Write ``record`` as ``folder/nnprune_config.json``, atomically (keys sorted)."""
    return _write_json(Path(folder) / CONFIG_FILE, record.to_dict(), sort_keys=True)


def read_results(folder: "str | Path") -> Optional[RunResults]:
    """The results recorded in ``folder`` (``None``: none yet); one-line errors as
    :func:`read_config`."""
    path = Path(folder) / RESULTS_FILE
    data = _read_json(path)
    if data is None:
        return None
    try:
        return results_from_dict(data)
    except NNPruneError as exc:
        raise NNPruneError(f"{path} is not a valid nnprune results file: {exc}") from None


def write_results(folder: "str | Path", results: RunResults) -> Path:
    """Write ``results`` as ``folder/nnprune_results.json``, atomically (fields in order)."""
    return _write_json(Path(folder) / RESULTS_FILE, results.to_dict(), sort_keys=False)


def update_results(folder: "str | Path", **changes: Any) -> RunResults:
    """Set fields of the results recorded in ``folder`` (``speed_check``, ``route``, ...) and
    write them back; returns the new results."""
    results = read_results(folder)
    if results is None:
        raise NNPruneError(f"{Path(folder) / RESULTS_FILE} does not exist: no results to add to")
    updated = replace(results, **changes)
    write_results(folder, updated)
    return updated


def update_config(folder: "str | Path", **changes: Any) -> RunConfig:
    """Set fields of the config recorded in ``folder`` and write it back."""
    record = read_config(folder)
    if record is None:
        raise NNPruneError(f"{Path(folder) / CONFIG_FILE} does not exist")
    updated = replace(record, **changes)
    write_config(folder, updated)
    return updated


def latency_record(table: dict[str, Any]) -> LatencyRecord:
    """The record of a latency table (``LatencyTable.to_dict()``, or ``{"model": ...}``)."""
    return LatencyRecord.from_dict(table, "latency_table")


__all__ = [
    "AutoRecord", "BeforePruning", "CONFIG_FILE", "CommandOptions", "FillResult",
    "FinePruneResult", "LatencyRecord", "PostTrainingRecord", "PruneResult", "RESULTS_FILE",
    "Record", "RecordError", "ResultsKind", "RunConfig", "RunResults", "SCHEMA_VERSION", "Stage",
    "StageRecord", "latency_record", "read_config", "read_results", "results_from_dict",
    "update_config", "update_results", "write_config", "write_results",
]
