"""Typed pruning configuration: enums, the block specification and :class:`PruningConfig`.

A :class:`PruningConfig` is saved in ``nnprune_config.json`` next to every checkpoint (the run
record, :mod:`nnprune.pruning_core.run_record`), so a run can be reproduced and a masked
checkpoint can be re-patched when it is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Optional

from nnprune.errors import NNPruneError
from nnprune.pruning_core.binarizers import Binarizer, BinarizerKind, binarizer_for
from nnprune.settings import apply_assignments, parse_assignments

# The run record's files (their types: nnprune.pruning_core.run_record)
CONFIG_FILE = "nnprune_config.json"
RESULTS_FILE = "nnprune_results.json"  # the metrics fine-prune / fill / prune write beside a model
# nnprune_config.json key of the latency table a target_speedup run cut its masks with ({"model":
# LatencyModel.to_dict(), ...}): a masked checkpoint needs it to rebuild its masks
LATENCY_KEY = "latency_table"


class StructureKind(str, Enum):
    """Shape of the blocks that share one mask score."""

    DENSE = "dense"  # not pruned
    BLOCK = "block"  # M x N blocks (1 x 1 = unstructured)
    ROW = "row"  # whole output rows
    COLUMN = "column"  # whole input columns
    HEAD = "head"  # whole attention heads: rows of Q/K/V, columns of the attention output
    FFN_DIM = "ffn_dim"  # FFN dimensions shared by FFN-in rows and FFN-out columns


class RegularizationKind(str, Enum):
    NONE = "none"
    L1 = "l1"  # mean of sigmoid(scores)
    L0 = "l0"  # expected L0 norm of hard-concrete gates


class ScoreInit(str, Enum):
    CONSTANT = "constant"
    UNIFORM = "uniform"
    KAIMING = "kaiming"
    # from the post-training importance (Fisher information) of each head / FFN dimension of the
    # model being pruned, measured before training starts (see post_training.init_scores_from)
    IMPORTANCE = "importance"


_BLOCK_RE = re.compile(r"^(\d+)x(\d+)$")


@dataclass(frozen=True)
class BlockSpec:
    """What one mask score covers. Parsed from ``"32x32"``, ``"1x1"``, ``"row"``, ``"column"``,
    ``"head"``, ``"ffn_dim"`` or ``"dense"``."""

    kind: StructureKind
    rows: int = 1
    cols: int = 1

    @classmethod
    def parse(cls, text: "str | BlockSpec") -> "BlockSpec":
        if isinstance(text, BlockSpec):
            return text
        t = str(text).strip().lower().replace("×", "x")
        m = _BLOCK_RE.match(t)
        if m:
            rows, cols = int(m.group(1)), int(m.group(2))
            if rows < 1 or cols < 1:
                raise NNPruneError(f"block shape {text!r} must have positive sides")
            return cls(StructureKind.BLOCK, rows, cols)
        aliases = {"col": "column", "cols": "column", "rows": "row", "heads": "head",
                   "ffn": "ffn_dim", "1d_alt": "ffn_dim", "none": "dense"}
        t = aliases.get(t, t)
        try:
            kind = StructureKind(t)
        except ValueError:
            raise NNPruneError(
                f"unknown block shape {text!r}; use MxN (e.g. 32x32), row, column, head, ffn_dim "
                "or dense") from None
        if kind is StructureKind.BLOCK:
            raise NNPruneError("block shape 'block' needs sides, e.g. 32x32")
        return cls(kind)

    def __str__(self) -> str:
        if self.kind is StructureKind.BLOCK:
            return f"{self.rows}x{self.cols}"
        return self.kind.value


def check_speedup_target(speedup: Optional[float], density: Optional[float] = None) -> None:
    """One-line errors for a ``--target-speedup`` that is not a speedup, or given together with
    a ``--target-density`` (one target at a time); the one check of every command taking it."""
    if speedup is not None and not speedup > 1:
        raise NNPruneError(f"--target-speedup must be > 1 (a speedup), got {speedup}")
    if speedup is not None and density is not None:
        raise NNPruneError("one target at a time: pass --target-speedup or --target-density, "
                           "not both")


# Options written to a run record only when set (records, cards and their golden files of runs
# that do not use them stay as they were).
_UNSAVED_AT_DEFAULT = ("hidden_size", "prune_layers", "alpha_hidden")


def _is_fraction_or_steps(value: float) -> bool:
    return value >= 0 and (value < 1 or float(value).is_integer())


@dataclass
class PruningConfig:
    """Every knob of a fine-pruning run. Field names are the keys of config files and of
    ``--set key=value`` overrides.

    Schedule positions (``initial_warmup``, ``final_warmup``) are fractions of training when in
    [0, 1) and step counts when whole numbers >= 1.

    Example::

        config = nnprune.PruningConfig(binarizer="sigmoid_threshold", attention_block="head",
                                       ffn_block="ffn_dim", regularization="l1",
                                       attention_lambda=20, ffn_lambda=20, final_threshold=0.1)
        nnprune.attach_masks(model, config=config, target_density=0.4, total_steps=1000)
    """

    method: str = "custom"
    binarizer: BinarizerKind = BinarizerKind.TOPK
    # --- what is pruned, and in which blocks
    attention_block: BlockSpec = field(default_factory=lambda: BlockSpec(StructureKind.BLOCK, 1, 1))
    ffn_block: BlockSpec = field(default_factory=lambda: BlockSpec(StructureKind.BLOCK, 1, 1))
    global_topk: bool = False
    # --- cubic schedule of the threshold (keep fraction for topK/magnitude)
    initial_threshold: float = 1.0
    final_threshold: float = 0.1
    initial_warmup: float = 0.1
    final_warmup: float = 0.3
    # --- regularization of the mask scores
    regularization: RegularizationKind = RegularizationKind.NONE
    attention_lambda: float = 0.0
    ffn_lambda: float = 0.0
    decoder_lambda_scale: float = 1.0  # multiplies both lambdas on decoder layers (BART: 2)
    # --- density target (beyond the paper): topK schedules to it, regularized methods adapt lambda
    target_density: Optional[float] = None
    # --- or a speedup target: masks cut in latency units by a measured latency table (one
    # target at a time; see nnprune.pruning_core.latency_model)
    target_speedup: Optional[float] = None
    # integral gain of the density controller, per pruning phase (log-lambda units per unit of
    # density error, spread over the steps between warm-up and cool-down)
    density_controller_gain: float = 50.0
    # --- width and depth (issue 25, CoFi-style): learnt masks over the hidden dimension and
    # whole layers (see nnprune.pruning_core.learned_width_depth); off by default
    # the residual stream's width at the end (one score per channel, a top-k on its own cubic
    # schedule from the dense width down to this); None: the stream keeps every channel
    hidden_size: Optional[int] = None
    # one gate score per layer: a layer whose gate is cut, or whose heads and FFN dimensions
    # are all pruned, is removed (skipped by the masked model, taken out by compaction)
    prune_layers: bool = False
    # --- mask scores
    score_init: ScoreInit = ScoreInit.CONSTANT
    score_init_scale: float = 0.0
    mask_scores_learning_rate: float = 1e-2
    # --- distillation
    teacher: Optional[str] = None
    alpha_ce: float = 1.0
    alpha_teacher: float = 0.0
    temperature: float = 2.0
    # layer-wise distillation (TinyBERT, CoFi): the mean squared error between the student's
    # hidden states and the teacher's at the layers and channels the student kept, this weight
    # on top of the logits' (0: logits only)
    alpha_hidden: float = 0.0

    def __post_init__(self) -> None:
        self.binarizer = parse_enum(BinarizerKind, self.binarizer, "binarizer")
        self.regularization = parse_enum(RegularizationKind, self.regularization, "regularization")
        self.score_init = parse_enum(ScoreInit, self.score_init, "score_init")
        self.attention_block = BlockSpec.parse(self.attention_block)
        self.ffn_block = BlockSpec.parse(self.ffn_block)
        if self.attention_block.kind is StructureKind.FFN_DIM:
            raise NNPruneError("attention_block cannot be ffn_dim (that shape is for the FFN)")
        if self.ffn_block.kind is StructureKind.HEAD:
            raise NNPruneError("ffn_block cannot be head (that shape is for attention)")
        if self.target_density is not None and not 0 < self.target_density <= 1:
            raise NNPruneError(f"target density must be in (0, 1], got {self.target_density}")
        check_speedup_target(self.target_speedup, self.target_density)
        binarizer = self.binarizer_rules
        for name in ("initial_threshold", "final_threshold"):
            binarizer.check_threshold(name, getattr(self, name))
        for name in ("initial_warmup", "final_warmup"):
            if not _is_fraction_or_steps(getattr(self, name)):
                raise NNPruneError(
                    f"{name} must be a fraction in [0, 1) or a whole number of steps, got "
                    f"{getattr(self, name)}")
        if (self.initial_warmup < 1 and self.final_warmup < 1
                and self.initial_warmup + self.final_warmup >= 1):
            raise NNPruneError("initial_warmup + final_warmup must leave room for pruning (< 1)")
        for name in ("attention_lambda", "ffn_lambda", "decoder_lambda_scale", "density_controller_gain",
                     "mask_scores_learning_rate", "alpha_ce", "alpha_teacher", "alpha_hidden"):
            if getattr(self, name) < 0:
                raise NNPruneError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise NNPruneError(f"temperature must be > 0, got {self.temperature}")
        if self.alpha_ce + self.alpha_teacher <= 0:
            raise NNPruneError("alpha_ce + alpha_teacher must be > 0")
        if self.target_density is not None and self.prunes:
            if binarizer.keep_fraction:  # the density is its final keep fraction
                self.final_threshold = self.target_density
            elif self.regularization is RegularizationKind.NONE:
                raise NNPruneError(
                    f"--target-density needs a topk/magnitude binarizer or a regularization; "
                    f"method {self.method!r} has binarizer {self.binarizer.value} and none")
        self._check_width_depth(binarizer)
        if self.target_speedup is not None and self.prunes and not binarizer.global_score_cut:
            raise NNPruneError(
                f"--target-speedup cuts the mask scores at a latency budget, which needs a "
                f"threshold binarizer (methods struct, hybrid, hybrid-filled, hybrid-nt, block, "
                f"soft-movement); method {self.method!r} uses {self.binarizer.value}")

    def _check_width_depth(self, binarizer: Binarizer) -> None:
        if self.hidden_size is not None and (isinstance(self.hidden_size, bool)
                                             or not isinstance(self.hidden_size, int)
                                             or self.hidden_size < 1):
            raise NNPruneError(f"hidden_size is the stream's width to keep, a whole number >= 1; "
                               f"got {self.hidden_size!r}")
        if not isinstance(self.prune_layers, bool):
            raise NNPruneError(f"prune_layers must be true or false, got {self.prune_layers!r}")
        if not self.learns_width_depth:
            return
        what = "hidden_size" if self.hidden_size is not None else "prune_layers"
        if not binarizer.prunes:
            raise NNPruneError(f"{what} needs a pruning method; method {self.method!r} prunes nothing")
        if not binarizer.learns_scores:
            raise NNPruneError(f"{what} learns mask scores; method {self.method!r} uses "
                               f"{self.binarizer.value}, which learns none (use struct, hybrid-nt, "
                               "movement, ...)")
        if self.prune_layers and binarizer.keep_fraction:
            raise NNPruneError(f"prune_layers cuts layer gates at a score threshold; method "
                               f"{self.method!r} uses {self.binarizer.value}, which keeps a "
                               "fraction of each matrix (use struct, hybrid-nt, soft-movement, "
                               "block or l0)")

    # ------------------------------------------------------------------ helpers
    @property
    def learns_width_depth(self) -> bool:
        """Whether the hidden dimension or whole layers are learnt as masks too."""
        return self.hidden_size is not None or self.prune_layers

    @property
    def binarizer_rules(self) -> Binarizer:
        """What the binarizer choice means (:func:`~nnprune.pruning_core.binarizers.binarizer_for`)."""
        return binarizer_for(self.binarizer)

    @property
    def prunes(self) -> bool:
        return self.binarizer_rules.prunes

    @property
    def uses_scores(self) -> bool:
        """Whether the masks come from learned mask scores (not magnitude, not none)."""
        return self.binarizer_rules.learns_scores

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in _UNSAVED_AT_DEFAULT and v == f.default:
                continue  # a record of a run without them reads as before they existed
            out[f.name] = v.value if isinstance(v, Enum) else str(v) if isinstance(v, BlockSpec) else v
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PruningConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise NNPruneError(
                f"unknown pruning config key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)

    def replace(self, **changes: Any) -> "PruningConfig":
        """A copy with ``changes`` applied and validated (strings are converted by the fields'
        declared types, see :mod:`nnprune.settings`)."""
        return apply_assignments(self, changes, what="pruning config")


def parse_enum(enum_cls: type[Enum], value: Any, name: str) -> Any:
    """``value`` (a member, or its value in any case, ``-`` for ``_``) as a member of
    ``enum_cls``; anything else is a one-line error naming ``name`` and the known values."""
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(str(value).lower().replace("-", "_"))
    except ValueError:
        known = ", ".join(e.value for e in enum_cls)
        raise NNPruneError(f"unknown {name} {value!r}; known: {known}") from None


__all__ = [
    "BinarizerKind", "StructureKind", "RegularizationKind", "ScoreInit", "BlockSpec",
    "PruningConfig", "check_speedup_target", "parse_assignments", "parse_enum",
    "CONFIG_FILE", "LATENCY_KEY", "RESULTS_FILE",
]
