"""Typed settings: the ``key=value`` parser behind ``--set`` (pruning config fields),
``--task-option`` (task settings such as summarization's generation settings) and config files;
the flag spelling of a dataclass field as a command-line option (:func:`option_flag`); and
:class:`TrainingOptions`, the training options every command that trains shares.

Values are converted by the field's declared type, read with :func:`typing.get_type_hints`
(``Optional[X]`` / ``X | None`` accept ``none``/``null``; ``bool`` accepts true/false, yes/no,
on/off, 1/0; enums and other types are left to the dataclass's ``__post_init__``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import reprlib
import types
import typing
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from nnprune.errors import NNPruneError
from nnprune.io_utils import OVERWRITE_HELP

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_assignments(items: Iterable[str], *, option: str) -> dict[str, str]:
    """``["a=1", "b-c=x"]`` -> ``{"a": "1", "b_c": "x"}``; a malformed item is a one-line error
    naming ``option``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise NNPruneError(f"{option} expects key=value, got {_quoted(item)}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def _quoted(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for a one-line message, cut past ``limit`` characters; a container is
    abbreviated as it is written (a YAML alias bomb's nested lists would take forever)."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = limit
    text = short.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# LatencySetting's fields as command-line options: --latency-device, --latency-seq-len, ...
LATENCY_OPTION_PREFIX = "latency_"


def option_flag(name: str, prefix: str = "") -> str:
    """The command-line flag of the dataclass field ``name`` (``max_seq_length`` ->
    ``--max-seq-length``; ``prefix`` ``latency_``: ``--latency-seq-len``): the one spelling the
    CLI declares its options with and the model card rebuilds commands with."""
    return "--" + (prefix + name).replace("_", "-")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``Optional[X]`` / ``X | None`` -> ``(X, True)``; anything else -> ``(tp, False)``."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def field_types(cls: type) -> dict[str, Any]:
    """The declared (resolved) type of every field of dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def coerce(cls: type, key: str, value: Any, *, what: str = "") -> Any:
    """``value`` converted to the declared type of field ``key`` of dataclass ``cls``: a string
    (``--set``, ``--task-option``) is parsed; a typed value (a YAML or JSON config file, Python)
    is checked (an int is a float, a whole float an int, a number the text of a text setting).
    Unknown keys, values of another type and numbers that are not finite are one-line errors."""
    kinds = field_types(cls)
    label = what or cls.__name__
    if not isinstance(key, str) or key not in kinds:
        raise NNPruneError(f"unknown {label} key {_quoted(key)}; known: {', '.join(sorted(kinds))}")
    tp, optional = _unwrap_optional(kinds[key])
    name = getattr(tp, "__name__", str(tp))
    if not isinstance(value, str):
        return _typed(label, key, tp, optional, value)
    text = value.strip()
    if optional and text.lower() in ("none", "null", ""):
        return None
    try:
        if tp is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(text)
        if tp is int:
            return int(text)
        if tp is float:
            number = float(text)
            if not math.isfinite(number):
                raise NNPruneError(f"{label} {key} expects a finite number, got {_quoted(value)}")
            return number
    except ValueError:
        raise NNPruneError(f"{label} {key} expects a{'n' if name[0] in 'aeiou' else ''} {name}, "
                           f"got {_quoted(value)}") from None
    return value  # str, enums, block specs...: parsed by the dataclass itself


def _typed(label: str, key: str, tp: Any, optional: bool, value: Any) -> Any:
    """A value that is not a string, checked against field ``key``'s type ``tp`` (``optional``:
    ``None`` is allowed); see :func:`coerce`."""
    name = getattr(tp, "__name__", str(tp))
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if value is None:
        if optional:
            return None
    elif not isinstance(tp, type):
        return value  # a generic type (tuple[...], ...): its dataclass checks it
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if number and float(value).is_integer():
            return int(value)
    elif tp is float:
        if number:
            if not math.isfinite(value):
                raise NNPruneError(f"{label} {key} expects a finite number, got {_quoted(value)}")
            return float(value)
    elif isinstance(value, tp):
        return value  # an enum member, a BlockSpec, a Path...
    elif number or isinstance(value, os.PathLike):
        return str(value)  # the text of a text setting (a teacher path, a block size "32")
    article = "an" if name[0] in "aeiou" else "a"
    raise NNPruneError(f"{label} {key} expects {article} {name}, got {_quoted(value)}")


def apply_assignments(obj: Any, values: dict[str, Any], *, what: str = "") -> Any:
    """A copy of dataclass instance ``obj`` with ``values`` (strings or typed) converted and
    applied; the copy's ``__post_init__`` validates them."""
    cls = type(obj)
    changes = {k: coerce(cls, k, v, what=what) for k, v in values.items()}
    return dataclasses.replace(obj, **changes)


# ---------------------------------------------------------------------------- training options
def _opt(default: Any, help: str, *, result: bool = False) -> Any:  # noqa: A002 - the CLI's word
    """A field declaring an option; ``result``: it changes what the run computes (the model card
    repeats it in the command that reproduces the run)."""
    return field(default=default, metadata={"help": help, "result": result})


@dataclass(frozen=True)
class TrainingOptions:
    """How to train: budget, optimiser, data, logging and checkpointing; shared by every command
    that trains (``fine-prune``, ``fill``, the stages of ``hybrid-filled``, ``prune``'s
    calibration and ``--then-fill``).

    Each field declares its command-line option, once: type, default, flag (:meth:`flag`),
    ``metadata["help"]`` and whether it changes what a run computes (``metadata["result"]``,
    :meth:`result_options`: what the model card's reproduce command repeats). The CLI builds the
    options from the fields (:func:`nnprune.cli.common.dataclass_options`); a command that gives
    one another meaning or default (``prune``'s calibration batch size) says so where it takes
    them (``nnprune.workflows.prune.PRUNE_TRAINING_HELP``), without declaring it again. Validated
    once (``__post_init__``), recorded once (``to_dict``, in ``nnprune_config.json``). Frozen: a
    workflow that needs another value (the fill stage's budget, the task's sequence length)
    makes a copy with :func:`dataclasses.replace`. It lives with the other settings so that every
    layer reads the same declarations: the workflows and the CLI (``nnprune.workflows.options``)
    and the model card rebuilding a recorded command."""

    epochs: float = _opt(1.0, "Training epochs (ignored with --max-steps).", result=True)
    max_steps: Optional[int] = _opt(None, "Training steps; overrides --epochs.", result=True)
    batch_size: int = _opt(32, "Per-device training batch size.", result=True)
    eval_batch_size: Optional[int] = _opt(None, "Per-device evaluation batch size (default: --batch-size).")
    learning_rate: float = _opt(3e-5, "Learning rate of the weights (mask scores, when pruning, use "
                                      "mask_scores_learning_rate).", result=True)
    warmup: float = _opt(0.1, "Learning-rate warm-up: a fraction of the steps (< 1) or a step count.",
                         result=True)
    weight_decay: float = _opt(0.0, "Weight decay of the weights (never of the mask scores).",
                               result=True)
    seed: int = _opt(42, "Random seed (data order, initialisation, dropout).", result=True)
    data_seed: Optional[int] = _opt(None, "Seed of the training data order alone (default: --seed; "
                                          "fill picks another one than the run it starts from).")
    max_seq_length: Optional[int] = _opt(None, "Tokens per example (default: what the checkpoint was "
                                               "trained with, else the task's: 128 GLUE, 384 SQuAD).",
                                         result=True)
    data_dir: Optional[Path] = _opt(None, "Task data folder: GLUE-style (train.tsv, dev.tsv) or SQuAD "
                                          "JSON (train-v1.1.json, dev-v1.1.json).", result=True)
    train_file: Optional[Path] = _opt(None, "Training file: tsv/csv/json/jsonl, or official SQuAD JSON.",
                                      result=True)
    validation_file: Optional[Path] = _opt(None, "Evaluation file: tsv/csv/json/jsonl, or official "
                                                 "SQuAD JSON.", result=True)
    max_train_samples: Optional[int] = _opt(None, "Use at most this many training examples.",
                                            result=True)
    max_eval_samples: Optional[int] = _opt(None, "Evaluate on at most this many examples.",
                                           result=True)
    logging_steps: int = _opt(50, "Log every N steps.")
    save_steps: int = _opt(500, "Save a checkpoint (for --resume) every N steps.")
    save_total_limit: int = _opt(2, "Keep at most this many checkpoint-* folders.")
    eval_steps: Optional[int] = _opt(None, "Also evaluate every N steps (the model as it is being "
                                           "trained: masks at the current threshold).")
    report_to: str = _opt("none", "Experiment tracker(s) of the training curves (loss, pruning "
                                  "scalars, evaluations), through the Trainer's integrations: none, "
                                  "tensorboard (OUTPUT/tensorboard, offline), wandb, mlflow; "
                                  "comma-separated for several.")
    resume: bool = _opt(False, "Continue from the last checkpoint in --output-dir.")
    overwrite: bool = _opt(False, OVERWRITE_HELP + " A run starts again: what nnprune wrote "
                                  "there is removed when it starts.")

    def __post_init__(self) -> None:
        for name in ("data_dir", "train_file", "validation_file"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if self.max_steps is not None and self.max_steps < 1:
            raise NNPruneError(f"--max-steps must be >= 1, got {self.max_steps}")
        if self.epochs <= 0:
            raise NNPruneError(f"--epochs must be > 0, got {self.epochs}")
        for name in ("batch_size", "logging_steps", "save_steps", "save_total_limit"):
            if getattr(self, name) < 1:
                raise NNPruneError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_batch_size", "eval_steps", "max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise NNPruneError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.learning_rate <= 0:
            raise NNPruneError(f"--learning-rate must be > 0, got {self.learning_rate}")
        if self.warmup < 0 or self.weight_decay < 0:
            raise NNPruneError("--warmup and --weight-decay must be >= 0")
        if self.max_seq_length is not None and self.max_seq_length < 8:
            raise NNPruneError(f"--max-seq-length must be >= 8, got {self.max_seq_length}")
        object.__setattr__(self, "report_to", normalize_trackers(self.report_to))
        if self.resume and self.overwrite:
            raise NNPruneError("--resume continues a run and --overwrite starts it again: pass one")

    @property
    def trackers(self) -> list[str]:
        """``report_to`` as the Trainer's list (empty for ``none``)."""
        return [] if self.report_to == "none" else self.report_to.split(",")

    @property
    def order_seed(self) -> int:
        """The seed that orders the training examples."""
        return self.seed if self.data_seed is None else self.data_seed

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def flag(cls, name: str) -> str:
        """The command-line flag of field ``name`` (``--max-seq-length``)."""
        if name not in cls.names():
            raise KeyError(name)
        return option_flag(name)

    @classmethod
    def result_options(cls) -> list[str]:
        """The fields that change what a run computes, in declaration order (what a command
        that reproduces the run must repeat; logging and checkpointing are left out)."""
        return [f.name for f in fields(cls) if f.metadata.get("result")]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values, as recorded in ``nnprune_config.json``."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}



#: ``--report-to`` values: the Trainer integrations nnprune's runs report to (``none``: none).
TRACKERS = ("none", "tensorboard", "wandb", "mlflow")


def normalize_trackers(value: Any) -> str:
    """``--report-to`` checked and normalised: ``"none"`` or known trackers, comma-separated in
    the order given, each once (a list is accepted too); anything else is a one-line error."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    names = list(dict.fromkeys(str(v).strip().lower() for v in items if str(v).strip()))
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise NNPruneError(f"--report-to: unknown tracker {unknown[0]!r}; known: {', '.join(TRACKERS)}")
    if len(names) > 1 and "none" in names:
        raise NNPruneError("--report-to none means no tracker: do not combine it with others")
    return ",".join(names) or "none"


def load_config_file(path: "str | Path") -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``, plain data only: ``yaml.safe_load``) or JSON mapping of
    config overrides; UTF-8, a byte-order mark and Windows line ends are fine. Anything else is a
    one-line error naming the file and, for a syntax error or bytes that are not UTF-8, the
    line."""
    p = Path(path)
    if not p.is_file():
        raise NNPruneError(f"config file {p} does not exist")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise NNPruneError(f"config file {p}: cannot read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise NNPruneError(f"config file {p}: line {line}: not valid UTF-8 (byte "
                           f"0x{raw[exc.start]:02x}); re-save it as UTF-8") from None
    yaml_file = p.suffix.lower() in (".yaml", ".yml")
    try:
        if yaml_file:
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NNPruneError(f"config file {p}: line {exc.lineno} column {exc.colno}: not valid "
                           f"JSON: {exc.msg}") from None
    except Exception as exc:  # noqa: BLE001 - every YAML error (and a nesting too deep) is the user's
        raise NNPruneError(f"config file {p}: {_yaml_problem(exc, 'YAML' if yaml_file else 'JSON')}"
                           ) from None
    if not isinstance(data, dict):
        raise NNPruneError(f"config file {p} must contain a mapping of keys to values, not "
                           f"{'nothing' if data is None else type(data).__name__}")
    odd = [k for k in data if not isinstance(k, str)]
    if odd:
        raise NNPruneError(f"config file {p}: key {_quoted(odd[0])} is not a name (keys are "
                           "setting names such as final_threshold)")
    return data


def _yaml_problem(exc: BaseException, kind: str) -> str:
    """A YAML parser's error as ``line N column C: not valid YAML: problem``, on one line."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{where}not valid {kind}: {' '.join(str(problem).split())}"

__all__ = ["LATENCY_OPTION_PREFIX", "TRACKERS", "TrainingOptions", "normalize_trackers", "load_config_file", "apply_assignments", "coerce", "field_types", "option_flag",
           "parse_assignments"]
