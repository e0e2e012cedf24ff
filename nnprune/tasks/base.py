"""The task adapter protocol and the task registry.

A task adapter owns everything task-specific: where its data comes from (a hub dataset name or
local files), how examples become model features, which model head it needs, how its logits are
distilled from a teacher, and how its metric is computed. The training engine
(:mod:`nnprune.workflows.trainer`) knows nothing about any particular task.
"""

from __future__ import annotations

import functools
import pickle
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol

import numpy as np
import torch

from nnprune.errors import NNPruneError
from nnprune.registry import Registry


@dataclass
class DataArgs:
    """Where a task's data comes from and how much of it to use.

    Precedence: explicit ``train_file``/``validation_file`` > ``data_dir`` > the hub dataset.
    """

    data_dir: Optional[Path] = None
    train_file: Optional[Path] = None
    validation_file: Optional[Path] = None
    max_train_samples: Optional[int] = None
    max_eval_samples: Optional[int] = None
    max_seq_length: int = 128
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("data_dir", "train_file", "validation_file"):
            value = getattr(self, name)
            if value is not None:
                value = Path(value)
                setattr(self, name, value)
                if not value.exists():
                    raise NNPruneError(f"--{name.replace('_', '-')} {value} does not exist")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise NNPruneError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.max_seq_length < 8:
            raise NNPruneError(f"--max-seq-length must be >= 8, got {self.max_seq_length}")

    @property
    def uses_local_files(self) -> bool:
        return any(x is not None for x in (self.data_dir, self.train_file, self.validation_file))


@dataclass
class TaskData:
    """Tokenized features ready for the ``Trainer``.

    ``eval`` maps an evaluation split name (e.g. ``"validation_matched"``) to its features;
    ``eval_examples`` keeps the raw examples where post-processing needs them (SQuAD).
    """

    train: Any  # datasets.Dataset
    eval: dict[str, Any]
    eval_examples: dict[str, Any] = field(default_factory=dict)
    data_collator: Any = None


class TaskAdapter(ABC):
    """One task: data, preprocessing, model head, distillation targets and metric."""

    #: registry name, e.g. ``"sst2"``
    name: str = ""
    #: metric reported as "the" score of the task (used in the summary table)
    main_metric: str = "accuracy"
    #: tokens per example when the user does not say (SQuAD: 384)
    default_max_seq_length: int = 128
    #: the ``transformers`` model class-name suffix of the head this task trains and evaluates
    #: (``"ForSequenceClassification"``); ``""``: any head the adapter's ``build_model`` accepts
    head_suffix: str = ""
    #: whether ``nnprune prune`` tunes the kept units by least squares unless told (measured:
    #: it costs classification accuracy, and gains span-extraction F1)
    prune_tune: bool = False
    #: whether evaluation generates text (beam search), which an ONNX export of one forward pass
    #: cannot run (``evaluate --onnx`` refuses such tasks)
    evaluates_by_generation: bool = False

    def with_options(self, options: dict[str, str]) -> "TaskAdapter":
        """This task with ``--task-option key=value`` settings applied; a task without settings
        refuses any."""
        if options:
            raise NNPruneError(f"task {self.name} takes no --task-option (got "
                               f"{', '.join(repr(k) for k in sorted(options))})")
        return self

    def check_checkpoint(self, config: dict[str, Any], where: str) -> None:
        """Refuse (one line) a checkpoint whose ``config.json`` (as a dict) cannot serve this task:
        a model class with another head, or (subclasses) another label set. Called before any data
        is tokenized."""
        archs = [str(a) for a in config.get("architectures") or []]
        if self.head_suffix and archs and not any(a.endswith(self.head_suffix) for a in archs):
            raise NNPruneError(f"checkpoint {where} is a {', '.join(archs)} model; task {self.name} "
                               f"needs a *{self.head_suffix} head")

    @abstractmethod
    def load_data(self, tokenizer: Any, data: DataArgs, *, need_train: bool = True) -> TaskData:
        """Load, subsample and tokenize the data. Raises :class:`NNPruneError` on bad files."""

    @abstractmethod
    def build_model(self, model_name_or_path: str, **kwargs: Any) -> torch.nn.Module:
        """A model with this task's head, from a local path or hub name."""

    @abstractmethod
    def evaluate(self, trainer: Any, data: TaskData) -> dict[str, float]:
        """Run evaluation with ``trainer`` on every eval split; keys are ``"<split>_<metric>"``
        when there are several splits, else ``"<metric>"``."""

    def prediction_files(self) -> dict[str, Any]:
        """The prediction artefacts of the last :meth:`evaluate`: file name -> JSON-able object.

        The workflows write each one as a JSON file next to the results (``fine-prune`` /
        ``fill``: the output folder; ``evaluate``: its ``--predictions-dir``). SQuAD:
        ``predictions.json`` (and ``null_odds.json`` for v2.0) in the official scripts' formats.
        Default: none.
        """
        return {}

    def distillation_logits(self, outputs: Any) -> tuple[torch.Tensor, ...]:
        """The tensors of logits a teacher distils into the student, each ``(..., n_classes)``.

        Classification: ``(logits,)`` of shape ``(batch, num_labels)``; QA: start and end logits
        ``(batch, seq)``; seq2seq: decoder logits ``(batch, tgt_len, vocab)``.
        """
        return (outputs.logits,)

    def distillation_mask(self, inputs: dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        """Optional boolean mask over the leading dims of each distillation tensor
        (e.g. non-padded target tokens for seq2seq); ``None`` means every position counts."""
        return None


#: what the registry holds: a callable making a fresh adapter (an adapter class, or a preset bound
#: to the generic adapter it configures)
TaskFactory = Callable[[], TaskAdapter]

TASKS: Registry[TaskFactory] = Registry("task")


class TaskPreset(Protocol):
    """A named configuration of a generic adapter (``sst2`` of ``text-classification``, ...):
    a frozen dataclass whose ``name`` is the task name it is registered under."""

    @property
    def name(self) -> str: ...


def register_preset(preset: TaskPreset, adapter: Callable[..., TaskAdapter],
                    registry: Registry[TaskFactory] = TASKS) -> None:
    """Register ``preset`` under its name: ``get_task(preset.name)`` then builds
    ``adapter(preset=preset)``. A preset is data (columns, labels, files, metrics) the generic
    ``adapter`` reads, so a new named task needs no new adapter class."""
    registry.add(preset.name, functools.partial(adapter, preset=preset))


# ------------------------------------------------------------------------ helpers for adapters

#: transformers' names for unnamed labels
_GENERIC_LABEL = re.compile(r"LABEL_\d+")
#: the inputs kept when a tokenizer does not list its ``model_input_names``
_DEFAULT_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def predict_split(trainer: Any, ds: Any, split: str
                  ) -> tuple[np.ndarray, Optional[np.ndarray], Optional[float]]:
    """``trainer.predict`` on evaluation split ``split`` (features ``ds``) of a model with one
    logits output: ``(logits, label ids or None, loss or None)``. Of several outputs (a model
    asked for hidden states, ...) the logits are the first; the label ids are ``None`` when the
    trainer returns none (the caller reads them from ``ds``)."""
    out = trainer.predict(ds, metric_key_prefix=split)
    logits = out.predictions
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    labels = out.label_ids
    if isinstance(labels, (tuple, list)):
        labels = labels[0]
    loss = (out.metrics or {}).get(f"{split}_loss")
    return (np.asarray(logits), None if labels is None else np.asarray(labels),
            None if loss is None else float(loss))


def model_input_columns(tokenizer: Any, enc: Any) -> dict[str, list[Any]]:
    """The columns of tokenizer output ``enc`` that the model consumes (the tokenizer's
    ``model_input_names``). Only those: any other column (``offset_mapping``, ...) would reach
    the model's ``forward()`` through the collator."""
    names = getattr(tokenizer, "model_input_names", None) or _DEFAULT_INPUTS
    return {k: enc[k] for k in names if k in enc}


def encode_texts(tokenizer: Any, text_a: list[str], text_b: Optional[list[str]],
                 max_length: int) -> dict[str, list[Any]]:
    """The model inputs of single texts ``text_a``, or of pairs with ``text_b``, truncated to
    ``max_length`` tokens (variable-length lists, padded per batch by the collator)."""
    if text_b is None:
        enc = tokenizer(text_a, truncation=True, max_length=max_length)
    else:
        enc = tokenizer(text_a, text_b, truncation=True, max_length=max_length)
    return model_input_columns(tokenizer, enc)


def named_labels(id2label: Any) -> Optional[tuple[str, ...]]:
    """The label names of a model config's ``id2label`` (keys ``0..n-1``, int or str) in id
    order; ``None`` when it has none, its keys are not ``0..n-1``, its names repeat, or they are
    all transformers' generic ``LABEL_<i>``, which say nothing about the classes."""
    if not isinstance(id2label, dict) or not id2label:
        return None
    try:
        by_id = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError):
        return None
    if sorted(by_id) != list(range(len(by_id))):
        return None
    names = tuple(by_id[i] for i in range(len(by_id)))
    if all(_GENERIC_LABEL.fullmatch(n) for n in names) or len(set(names)) != len(names):
        return None
    return names


def auto_config(source: str | Path) -> Any:
    """``AutoConfig.from_pretrained(source)`` of a model folder or hub name, never running code
    the folder carries (``trust_remote_code=False``: a model type only that code knows is
    refused); a failure is a one-line error."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(source), trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise NNPruneError(f"cannot read the config of {str(source)!r}: "
                           f"{_first_line(exc)}") from None


def auto_model(auto_class: Any, source: str | Path, **kwargs: Any) -> torch.nn.Module:
    """``auto_class.from_pretrained(source, **kwargs)`` (an ``AutoModelFor...``), never running
    code the folder carries (``trust_remote_code=False``) nor unpickling anything but tensors
    (transformers reads ``pytorch_model.bin`` with ``weights_only=True``: a pickle that holds
    more is refused, not run); either is a one-line error naming ``source``. Weights that do not
    fit the model keep transformers' own error."""
    try:
        return auto_class.from_pretrained(str(source), trust_remote_code=False, **kwargs)
    except pickle.UnpicklingError:
        raise NNPruneError(f"cannot load the model from {source}: its pickled weights "
                           "(pytorch_model.bin) hold more than tensors; nnprune does not unpickle "
                           "them (re-save the model as safetensors from a source you trust)"
                           ) from None
    except (OSError, ValueError) as exc:
        raise NNPruneError(f"cannot load the model from {source}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    msg = str(exc).strip()
    return msg.splitlines()[0] if msg else type(exc).__name__


def add_label_names(kwargs: dict[str, Any], labels: Sequence[str]) -> dict[str, Any]:
    """``kwargs`` for ``from_pretrained`` with a classification head of ``labels`` (in id
    order): ``num_labels``, ``id2label`` and ``label2id`` set unless already given. Returns
    ``kwargs``."""
    id2label = dict(enumerate(labels))
    kwargs.setdefault("num_labels", len(id2label))
    kwargs.setdefault("id2label", id2label)
    kwargs.setdefault("label2id", {v: k for k, v in id2label.items()})
    return kwargs
