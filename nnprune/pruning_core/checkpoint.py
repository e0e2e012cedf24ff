"""Saving and loading checkpoints: masked (scores kept), or plain Hugging Face ones.

A masked checkpoint is a normal ``save_pretrained`` folder whose state dict also holds the
``mask_scores`` of every masked layer, plus ``nnprune_config.json`` with the pruning config that
re-patches the model on load. Weights are read with safetensors only (no unpickling).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch.nn as nn

from nnprune.errors import NNPruneError
from nnprune.pruning_core.config import PruningConfig, read_nnprune_config
from nnprune.pruning_core.pruner import Pruner, patch_model


class CheckpointMismatchError(NNPruneError, RuntimeError):
    """Saved weight shapes differ from the model the config builds (a ``RuntimeError`` too, as
    ``load_state_dict`` raised before)."""


@dataclass
class LoadedModel:
    model: nn.Module
    pruner: Optional[Pruner]  # None for plain checkpoints
    info: dict[str, Any]  # contents of nnprune_config.json ({} for plain checkpoints)

    @property
    def is_masked(self) -> bool:
        return self.pruner is not None and len(self.pruner) > 0


def _check_dir(path: "str | Path") -> Path:
    p = Path(path)
    if not p.exists():
        raise NNPruneError(f"checkpoint {p} does not exist")
    if not p.is_dir():
        raise NNPruneError(f"checkpoint {p} is not a folder")
    if not (p / "config.json").is_file():
        raise NNPruneError(f"checkpoint {p} has no config.json; is it a Hugging Face model folder?")
    return p


def read_state_dict(path: "str | Path") -> dict[str, Any]:
    """All tensors of a checkpoint folder's safetensors file(s)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    index = p / "model.safetensors.index.json"
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError) as exc:
            raise NNPruneError(f"{index} is corrupted: {exc}") from None
    elif (p / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        pickled = [f.name for f in p.glob("*.bin")]
        hint = f" (found {', '.join(pickled)}: pickled weights are not loaded)" if pickled else ""
        raise NNPruneError(f"checkpoint {p} has no model.safetensors{hint}")
    state: dict[str, Any] = {}
    for name in files:
        f = p / name
        if not f.is_file():
            raise NNPruneError(f"checkpoint {p} is missing weight file {name}")
        try:
            state.update(load_file(str(f)))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise NNPruneError(f"weight file {f} is corrupted or unreadable: "
                               f"{str(exc).splitlines()[0]}") from None
    return state


def model_class_for(config: Any) -> type:
    import transformers

    archs = getattr(config, "architectures", None) or []
    for name in archs:
        # A model saved after loading through nnprune_modeling.py (remote code) names its
        # NNPrune-prefixed class; the stock class plus the saved layout rebuild it.
        if name.startswith("NNPrune") and not hasattr(transformers, name):
            name = name[len("NNPrune"):]
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls
    raise NNPruneError(f"config.architectures {archs} names no transformers model class")


def load_model(path: "str | Path", *, prune_config: Optional[PruningConfig] = None) -> LoadedModel:
    """Load a checkpoint folder as the model it was saved as.

    Masked checkpoints (with ``nnprune_config.json`` and masks) come back patched, with a
    :class:`Pruner` whose layers sit on their final threshold.
    """
    from transformers import AutoConfig

    p = _check_dir(path)
    info = read_nnprune_config(p) or {}
    try:
        config = AutoConfig.from_pretrained(str(p))
    except (OSError, ValueError) as exc:
        raise NNPruneError(f"cannot read {p / 'config.json'}: {str(exc).splitlines()[0]}") from None
    cls = model_class_for(config)
    state = read_state_dict(p)
    # Magnitude pruning has no scores, so the saved flag is what marks a masked checkpoint.
    is_masked = bool(info.get("masked")) or any(k.endswith("mask_scores") for k in state)
    if is_masked and "pruning" not in info and prune_config is None:
        raise NNPruneError(f"checkpoint {p} has mask scores but no nnprune_config.json")
    model = cls(config)
    if getattr(config, "nnprune_layout", None):
        # Compacted checkpoint: shrink the stock layers to the saved shapes before loading.
        from nnprune.pruning_core.compact import apply_saved_layout

        apply_saved_layout(model, config.nnprune_layout)
    pruner = None
    if is_masked:
        pcfg = prune_config or PruningConfig.from_dict(info["pruning"])
        pruner = patch_model(model, pcfg)
    # Tied weights (e.g. BART's lm_head) are saved once; they are re-tied below.
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches: one line for the CLI, still a RuntimeError
        lines = [ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln]
        raise CheckpointMismatchError(f"checkpoint {p} does not match its config: "
                                      f"{lines[0] if lines else str(exc).splitlines()[0]}") from None
    tied = set(_tied_keys(model))
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        what = (f"missing {', '.join(missing[:5])}" if missing else "") + (
            f"{'; ' if missing else ''}unexpected {', '.join(unexpected[:5])}" if unexpected else "")
        raise NNPruneError(f"checkpoint {p} does not match its config: {what}")
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    model.eval()
    if pruner is not None:
        # After the weights: a global cut (quantile masks, global topK) is computed from the
        # loaded scores; computed before, it would come from the initial ones.
        pruner.finalize()
    return LoadedModel(model, pruner, info)


def _tied_keys(model: nn.Module) -> list[str]:
    """Keys that alias another parameter (v5: ``all_tied_weights_keys`` target -> source)."""
    keys = getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None)
    return list(keys or [])


def save_checkpoint(model: nn.Module, output_dir: "str | Path", *, config: Optional[PruningConfig],
                    tokenizer: Any = None, extra: Optional[dict[str, Any]] = None) -> Path:
    """Write ``model`` (masked or plain) atomically with its tokenizer and nnprune config."""
    from nnprune.io_utils import atomic_directory
    from nnprune.pruning_core.config import save_pruning_config
    from nnprune.pruning_core.masked import MaskedLinear

    out = Path(output_dir)
    masked = any(isinstance(m, MaskedLinear) for m in model.modules())
    with atomic_directory(out) as tmp:
        model.save_pretrained(str(tmp))
        if getattr(model.config, "nnprune_layout", None):
            # Compacted: nnprune_modeling.py + auto_map, so stock transformers can load it too.
            from nnprune.pruning_core.compact import write_remote_code

            write_remote_code(model, tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        if config is not None:
            save_pruning_config(config, tmp, {"masked": masked, **(extra or {})})
    return out
