"""Saving and loading checkpoints: masked (scores kept), or plain Hugging Face ones.

A masked checkpoint is a normal ``save_pretrained`` folder whose state dict also holds the
``mask_scores`` of every masked layer, plus ``nnprune_config.json`` with the pruning config that
re-patches the model on load. Weights are read with safetensors only (no unpickling).

A checkpoint is data, never code: nnprune builds models with transformers' own classes and never
runs Python a folder carries (the modeling file an ``auto_map`` names, nnprune's own
``nnprune_modeling.py`` included: that file is for stock transformers with
``trust_remote_code=True``). Every transformers loader is called with ``trust_remote_code=False``,
and a folder whose model type only its own code knows is refused in one line
(:func:`check_no_remote_code`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import torch.nn as nn

from nnprune.errors import NNPruneError
from nnprune.io_utils import atomic_directory
from nnprune.pruning_core.architectures import model_class_for
from nnprune.pruning_core.compact import apply_saved_layout, is_compacted, write_remote_code
from nnprune.pruning_core.compact_modeling import LAYOUT_ATTR, ORIGINAL_ATTR
from nnprune.pruning_core.config import CONFIG_FILE, LATENCY_KEY, PruningConfig
from nnprune.pruning_core.masked import MaskedLinear
from nnprune.pruning_core.pruner import Pruner, patch_model, unpatch_model
from nnprune.pruning_core.run_record import RunConfig, read_config, write_config


class CheckpointKind(str, Enum):
    """What a checkpoint folder holds (a ``str`` enum: compares equal to its value).

    Example::

        if nnprune.inspect_checkpoint("runs/x").kind is nnprune.CheckpointKind.MASKED:
            small = nnprune.compact(nnprune.FinePruning.from_pretrained("runs/x").model).model
    """

    PLAIN = "plain"  # a stock Hugging Face model (dense, or with baked-in zeros)
    MASKED = "masked"  # nnprune masked layers with their scores (re-patched on load)
    COMPACTED = "compacted"  # heads / FFN dims removed: per-layer sizes in config.nnprune_layout


def _kind(config: dict[str, Any], masked: bool) -> CheckpointKind:
    if masked:
        return CheckpointKind.MASKED
    if config.get(LAYOUT_ATTR) or config.get(ORIGINAL_ATTR):
        return CheckpointKind.COMPACTED
    return CheckpointKind.PLAIN


def read_config_json(path: "str | Path") -> dict[str, Any]:
    """The checkpoint folder's ``config.json`` as a dict, or a one-line error (also for a model
    only the folder's own code builds: :func:`check_no_remote_code`)."""
    p = check_dir(path)
    try:
        data = json.loads((p / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
        raise NNPruneError(f"cannot read {p / 'config.json'}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise NNPruneError(f"{p / 'config.json'} is not a JSON object")
    check_no_remote_code(p, data)
    return data


def check_no_remote_code(folder: Path, config: dict[str, Any]) -> None:
    """Refuse (one line) a folder whose ``config.json`` names a model type transformers does
    not know but its own Python code (``auto_map``) would build: nnprune never runs it. A known
    model type with an ``auto_map`` (nnprune's compacted models) is built by transformers' own
    classes and passes."""
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type")
    auto_map = config.get("auto_map")
    if not auto_map or (isinstance(model_type, str) and model_type in CONFIG_MAPPING):
        return
    ref = auto_map.get("AutoConfig") if isinstance(auto_map, dict) else auto_map
    raise NNPruneError(f"checkpoint {folder}: model type {model_type!r} is not one transformers "
                       f"knows; only its own Python code ({folder.name}/config.json auto_map: "
                       f"{str(ref)[:80]}) builds it, and nnprune never runs code from a checkpoint "
                       "folder")


def load_config(source: "str | Path") -> Any:
    """The ``transformers`` config of a model folder or hub name (one-line error if none).
    Never runs a folder's own code (``trust_remote_code=False``)."""
    from transformers import AutoConfig

    folder = Path(source)
    if (folder / "config.json").is_file():
        read_config_json(folder)  # a model only the folder's code knows: refused, naming it
    try:
        return AutoConfig.from_pretrained(str(source), trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise NNPruneError(f"cannot read the config of {str(source)!r}: "
                           f"{str(exc).splitlines()[0]}") from None


def checkpoint_kind(path: "str | Path") -> CheckpointKind:
    """The kind of the checkpoint folder ``path``, from its config files (no weights read)."""
    record = read_config(path)
    return _kind(read_config_json(path), record is not None and record.masked)


class CheckpointMismatchError(NNPruneError, RuntimeError):
    """Saved weight shapes differ from the model the config builds (a ``RuntimeError`` too, as
    ``load_state_dict`` raised before)."""


@dataclass
class LoadedModel:
    model: nn.Module
    pruner: Optional[Pruner]  # None for plain checkpoints
    record: Optional[RunConfig]  # its nnprune_config.json (None: it has none, a plain model)

    @property
    def is_masked(self) -> bool:
        return self.pruner is not None and len(self.pruner) > 0

    @property
    def kind(self) -> CheckpointKind:
        return _kind(self.model.config.to_dict(), self.is_masked)


def check_dir(path: "str | Path") -> Path:
    p = Path(path)
    if not p.exists():
        raise NNPruneError(f"checkpoint {p} does not exist")
    if not p.is_dir():
        raise NNPruneError(f"checkpoint {p} is not a folder")
    if not (p / "config.json").is_file():
        raise NNPruneError(f"checkpoint {p} has no config.json; is it a Hugging Face model folder?")
    return p


def _conversion_hint(p: Path) -> str:
    """The one-line command that re-saves a pickled-only folder as safetensors, for its class."""
    try:
        archs = json.loads((p / "config.json").read_text()).get("architectures") or []
    except (OSError, json.JSONDecodeError, AttributeError):
        archs = []
    name = archs[0] if archs and str(archs[0]).isidentifier() else "AutoModel"
    where = str(p).replace("\\", "/").replace("'", "\\'")
    return (f"convert it once (this unpickles it: only for a source you trust) with: python -c "
            f"\"from transformers import {name}; {name}.from_pretrained('{where}')"
            f".save_pretrained('{where}', safe_serialization=True)\"")


def read_state_dict(path: "str | Path") -> dict[str, Any]:
    """All tensors of a checkpoint folder's safetensors file(s) (one file or a sharded index).

    Keys come back as saved; :func:`load_model` maps legacy names onto the model's."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    index = p / "model.safetensors.index.json"
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise NNPruneError(f"{index} is corrupted: {exc}") from None
    elif (p / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        pickled = sorted(f.name for f in p.glob("*.bin"))
        if pickled:
            raise NNPruneError(f"checkpoint {p} has no model.safetensors, only pickled weights "
                               f"({', '.join(pickled[:3])}{', ...' if len(pickled) > 3 else ''}), "
                               f"which nnprune does not load; {_conversion_hint(p)}")
        raise NNPruneError(f"checkpoint {p} has no model.safetensors")
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


def _match_keys(state: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """Map a saved state dict's keys onto ``model``'s the way ``from_pretrained`` does.

    - legacy LayerNorm names ``gamma`` / ``beta`` (TF-era BERTs) become ``weight`` / ``bias``;
    - the base-model prefix (``bert.``, ``model.``, ...) is added when the model has it and the
      checkpoint (saved from the bare model) lacks it, or stripped when a bare model is loaded
      from a checkpoint saved with a head; the head's own weights are then dropped, as
      ``from_pretrained`` does.
    Renames only ever go to a key the model has that the checkpoint does not hold already.
    """
    expected = set(model.state_dict().keys())
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key not in expected:
            for old, new in ((".gamma", ".weight"), (".beta", ".bias")):
                if key.endswith(old) and "norm" in key.lower():
                    key = key[: -len(old)] + new
                    break
        out[key] = value
    prefix = getattr(model, "base_model_prefix", "") or ""
    if not prefix:
        return out
    dot = prefix + "."
    model_has = any(k.startswith(dot) for k in expected)
    ckpt_has = any(k.startswith(dot) for k in out)
    if model_has and not ckpt_has:
        # A bare-model checkpoint loaded into a model with a head: the head stays missing.
        return {(dot + k if dot + k in expected and k not in expected else k): v
                for k, v in out.items()}
    if ckpt_has and not model_has:
        # A checkpoint saved with a head, loaded as the bare model: keep the base model's weights.
        return {k[len(dot):]: v for k, v in out.items() if k.startswith(dot)}
    return out


def _non_persistent_buffers(model: nn.Module) -> set[str]:
    """Buffers the model recreates itself (``persistent=False``, e.g. ``position_ids``)."""
    names = set()
    for mod_name, mod in model.named_modules():
        for buf in getattr(mod, "_non_persistent_buffers_set", ()):
            names.add(f"{mod_name}.{buf}" if mod_name else buf)
    return names


def _ignore_patterns(model: nn.Module, attr: str) -> Optional["re.Pattern[str]"]:
    """The model's ``_keys_to_ignore_on_load_*`` regexes (v5 merges its children's on the
    instance), plus the legacy buffers transformers itself drops for unexpected keys."""
    patterns = set(getattr(model, attr, None) or ())
    if attr == "_keys_to_ignore_on_load_unexpected":
        buffers = [name for name, _ in model.named_buffers()]
        if any(b.endswith("position_ids") for b in buffers):
            patterns.add(r"(^|\.)position_ids$")  # persistent before transformers 4.31
        if any(b.endswith("rotary_emb.inv_freq") for b in buffers):
            patterns.add(r"rotary_emb\.inv_freq")
    if not patterns:
        return None
    return re.compile("|".join(f"({pat})" for pat in sorted(patterns)))


def load_model(path: "str | Path", *, prune_config: Optional[PruningConfig] = None) -> LoadedModel:
    """Load a checkpoint folder as the model it was saved as.

    Masked checkpoints (with ``nnprune_config.json`` and masks) come back patched, with a
    :class:`Pruner` whose layers sit on their final threshold.
    """
    from transformers import AutoConfig

    p = check_dir(path)
    read_config_json(p)  # a model only the folder's own code builds: refused, naming it
    record = read_config(p)
    try:
        config = AutoConfig.from_pretrained(str(p), trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise NNPruneError(f"cannot read {p / 'config.json'}: {str(exc).splitlines()[0]}") from None
    cls = model_class_for(config)
    state = read_state_dict(p)
    # Magnitude pruning has no scores, so the saved flag is what marks a masked checkpoint.
    is_masked = (record is not None and record.masked) or any(k.endswith("mask_scores")
                                                              for k in state)
    if is_masked and (record is None or record.pruning is None) and prune_config is None:
        raise NNPruneError(f"checkpoint {p} has mask scores but no {CONFIG_FILE}")
    model = cls(config)
    if is_compacted(config):
        # Compacted checkpoint: shrink the stock layers to the saved shapes before loading.
        apply_saved_layout(model, getattr(config, LAYOUT_ATTR))
    pruner = None
    if is_masked:
        pcfg = prune_config or record.pruning  # type: ignore[union-attr]
        pruner = patch_model(model, pcfg)
        if pcfg.target_speedup is not None and len(pruner):
            # Its masks are the latency cut of the saved scores: the same table rebuilds them.
            table = record.latency_table if record is not None else None
            if table is None:
                raise NNPruneError(f"checkpoint {p} was pruned to a target speedup but its "
                                   f"{CONFIG_FILE} has no {LATENCY_KEY!r} to rebuild its masks")
            pruner.use_latency(table.model)
    # What from_pretrained accepts, accepted here too: legacy names, a base-model prefix
    # present or not, old persistent buffers the model now recreates (position_ids), the
    # model's _keys_to_ignore_on_load_* patterns. Tied weights (e.g. BART's lm_head) are saved
    # once; they are re-tied below.
    state = _match_keys(state, model)
    recreated = _non_persistent_buffers(model)
    state = {k: v for k, v in state.items() if k not in recreated}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches: one line for the CLI, still a RuntimeError
        lines = [ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln]
        raise CheckpointMismatchError(f"checkpoint {p} does not match its config: "
                                      f"{lines[0] if lines else str(exc).splitlines()[0]}") from None
    tied = set(_tied_keys(model))
    ignore_missing = _ignore_patterns(model, "_keys_to_ignore_on_load_missing")
    ignore_unexpected = _ignore_patterns(model, "_keys_to_ignore_on_load_unexpected")
    missing = [k for k in missing if k not in tied
               and not (ignore_missing is not None and ignore_missing.search(k))]
    unexpected = [k for k in unexpected
                  if not (ignore_unexpected is not None and ignore_unexpected.search(k))]
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
    return LoadedModel(model, pruner, record)


def _tied_keys(model: nn.Module) -> list[str]:
    """Keys that alias another parameter (v5: ``all_tied_weights_keys`` target -> source)."""
    keys = getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None)
    return list(keys or [])


def save_checkpoint(model: nn.Module, output_dir: "str | Path", *,
                    config: Optional[PruningConfig] = None, tokenizer: Any = None,
                    extra: Optional[dict[str, Any]] = None,
                    record: Optional[RunConfig] = None, overwrite: bool = True) -> Path:
    """Write ``model`` (masked or plain) atomically with its tokenizer and its run record:
    ``record`` (its ``masked`` set from the model), else ``config`` with the run record fields
    in ``extra`` (``Pruner.saved_info()``); neither: no ``nnprune_config.json``. A folder nnprune
    wrote is replaced only with ``overwrite``; one holding other files, never
    (:func:`nnprune.io_utils.atomic_directory`)."""
    out = Path(output_dir)
    masked = any(isinstance(m, MaskedLinear) for m in model.modules())
    if record is None and config is not None:
        record = RunConfig.from_dict({**(extra or {}), "pruning": config.to_dict(),
                                      "masked": masked}, "run config")
    elif record is not None:
        record = replace(record, pruning=config or record.pruning, masked=masked)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        model.save_pretrained(str(tmp))
        if is_compacted(model.config):
            # Compacted: nnprune_modeling.py + auto_map, so stock transformers can load it too.
            write_remote_code(model, tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        if record is not None:
            write_config(tmp, record)
    return out


@dataclass
class CheckpointModel:
    """A checkpoint loaded for timing or export, with what kind it is and what to tell the user."""

    model: nn.Module
    kind: CheckpointKind
    notes: list[str] = field(default_factory=list)


def load_checkpoint_model(path: "str | Path") -> CheckpointModel:
    """Load a masked, bertarized, compacted or plain checkpoint folder for timing or export,
    with notes on why it may not be faster (masked; plain with all-zero heads still computed)."""
    from nnprune.pruning_core.structure import analyze_structure

    loaded = load_model(path)
    kind = loaded.kind
    notes = []
    if kind is CheckpointKind.MASKED:
        notes.append("masked checkpoint: not compacted, its layers keep their full size (and "
                     "compute their masks every forward), so it will not be faster; timed as is. "
                     "Compact it first.")
    elif kind is CheckpointKind.PLAIN:
        try:
            st = analyze_structure(loaded.model)
        except NNPruneError:  # an architecture without layer roles: nothing to say
            st = None
        heads = sum(len(u.removable) for u in st.attention) if st else 0
        dims = sum(len(u.removable) for u in st.ffn) if st else 0
        if heads or dims:
            notes.append(f"plain full-size checkpoint with {heads} all-zero heads and {dims} "
                         "all-zero FFN dims that are still computed; compact it to make it faster")
    return CheckpointModel(loaded.model.eval(), kind, notes)


def load_pretrained(path: str | Path, *, bake_masks: bool = False) -> nn.Module:
    """Load a plain, bertarized, compacted or masked checkpoint folder as an eval-mode model.

    Compacted checkpoints are rebuilt to their saved shapes before the weights are read;
    masked ones come back patched (with their final masks), or baked into plain layers with
    ``bake_masks``. Weights are read from safetensors only.

    Example::

        model = nnprune.load_pretrained("runs/sst2-hybrid/compact")
    """
    loaded = load_model(path)
    model = loaded.model
    if bake_masks and loaded.is_masked:
        unpatch_model(model, apply_masks=True)
    model.eval()
    return model
