"""The training options shared by every command that trains (``fine-prune``, ``fill``, the two
stages of ``hybrid-filled``) and by ``evaluate``'s data options: one frozen dataclass, one source
of truth.

Each field's ``metadata["help"]`` is the command-line help: the CLI builds its ``--epochs``,
``--batch-size``, ... options from these fields (:func:`nnprune.cli.common.training_options`), so
an option is declared once, validated once (``__post_init__``) and recorded once (``to_dict``,
saved in ``nnprune_config.json``). The object is frozen: a workflow that needs another value (the
fill stage's budget, the task's default sequence length) makes a copy with
:func:`dataclasses.replace`, never changes its caller's options.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from nnprune.errors import NNPruneError


def _opt(default: Any, help: str) -> Any:  # noqa: A002 - the CLI's word
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainingOptions:
    """How to train: budget, optimiser, data, logging and checkpointing."""

    epochs: float = _opt(1.0, "Training epochs (ignored with --max-steps).")
    max_steps: Optional[int] = _opt(None, "Training steps; overrides --epochs.")
    batch_size: int = _opt(32, "Per-device training batch size.")
    eval_batch_size: Optional[int] = _opt(None, "Per-device evaluation batch size (default: --batch-size).")
    learning_rate: float = _opt(3e-5, "Learning rate of the weights (mask scores, when pruning, use "
                                      "mask_scores_learning_rate).")
    warmup: float = _opt(0.1, "Learning-rate warm-up: a fraction of the steps (< 1) or a step count.")
    weight_decay: float = _opt(0.0, "Weight decay of the weights (never of the mask scores).")
    seed: int = _opt(42, "Random seed (data order, initialisation, dropout).")
    data_seed: Optional[int] = _opt(None, "Seed of the training data order alone (default: --seed; "
                                          "fill picks another one than the run it starts from).")
    max_seq_length: Optional[int] = _opt(None, "Tokens per example (default: what the checkpoint was "
                                               "trained with, else the task's: 128 GLUE, 384 SQuAD).")
    data_dir: Optional[Path] = _opt(None, "Task data folder: GLUE-style (train.tsv, dev.tsv) or SQuAD "
                                          "JSON (train-v1.1.json, dev-v1.1.json).")
    train_file: Optional[Path] = _opt(None, "Training file: tsv/csv/json/jsonl, or official SQuAD JSON.")
    validation_file: Optional[Path] = _opt(None, "Evaluation file: tsv/csv/json/jsonl, or official "
                                                 "SQuAD JSON.")
    max_train_samples: Optional[int] = _opt(None, "Use at most this many training examples.")
    max_eval_samples: Optional[int] = _opt(None, "Evaluate on at most this many examples.")
    logging_steps: int = _opt(50, "Log every N steps.")
    save_steps: int = _opt(500, "Save a checkpoint (for --resume) every N steps.")
    save_total_limit: int = _opt(2, "Keep at most this many checkpoint-* folders.")
    eval_steps: Optional[int] = _opt(None, "Also evaluate every N steps (the model as it is being "
                                           "trained: masks at the current threshold).")
    resume: bool = _opt(False, "Continue from the last checkpoint in --output-dir.")
    overwrite: bool = _opt(False, "Start again even if --output-dir holds checkpoints (their "
                                  "folders are removed).")

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
        if self.resume and self.overwrite:
            raise NNPruneError("--resume continues a run and --overwrite starts it again: pass one")

    @property
    def order_seed(self) -> int:
        """The seed that orders the training examples."""
        return self.seed if self.data_seed is None else self.data_seed

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values, as recorded in ``nnprune_config.json``."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


__all__ = ["TrainingOptions"]
