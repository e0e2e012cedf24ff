"""``bertarize``: bake a masked checkpoint's final masks into a standard checkpoint, optionally
compacted, and prove the written folder computes what the masked model computed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from nnprune.errors import NNPruneError
from nnprune.io_utils import atomic_directory, check_output_dir
from nnprune.pruning_core.architectures import model_class_for
from nnprune.pruning_core.checkpoint import load_model, load_pretrained
from nnprune.pruning_core.compact import (EXACT_TOLERANCE, CompactionReport, compact_model,
                                          is_compacted, max_abs_diff, model_outputs,
                                          probe_inputs, write_remote_code)
from nnprune.pruning_core.learned_width_depth import final_width_depth
from nnprune.pruning_core.pruner import unpatch_model
from nnprune.pruning_core.run_record import write_config
from nnprune.pruning_core.structure import analyze_structure

TOKENIZER_FILES = ("tokenizer*.json", "tokenizer*.model", "vocab.*", "merges.txt", "spm.model",
                   "sentencepiece*.model", "special_tokens_map.json", "added_tokens.json",
                   "chat_template*")


@dataclass
class BertarizeResult:
    """What :func:`nnprune.bertarize_checkpoint` wrote and checked.

    Example::

        r = nnprune.bertarize_checkpoint("runs/x", "runs/x-small", compact=True)
        assert r.exact
        print(r.report.heads_removed if r.report else r.removable_heads)
    """

    checkpoint: str
    output: str
    masked: bool  # whether the input had masks
    compacted: bool  # whether the output has compacted shapes
    max_abs_diff: float  # largest |output logit difference| vs the input model, fp32
    tolerance: float
    allow_inexact: bool
    compared: list[str]  # output fields compared (logits, start_logits, ...)
    report: CompactionReport | None = None  # with compaction
    removable_heads: int = 0  # without compaction: heads / FFN dims --compact would remove
    removable_ffn_dims: int = 0
    qk_empty: int = 0

    @property
    def exact(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["report"] = self.report.to_dict() if self.report is not None else None
        out["exact"] = self.exact
        return out


def _try_tokenizer(path: Path) -> Any:
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    except Exception:  # noqa: BLE001 - no (readable) tokenizer: random ids are used instead
        return None


def _copy_tokenizer_files(src: Path, dst: Path) -> None:
    import shutil

    for pattern in TOKENIZER_FILES:
        for f in src.glob(pattern):
            if f.is_file() and not (dst / f.name).exists():
                shutil.copy2(f, dst / f.name)


def bertarize(checkpoint: str | Path, output: str | Path, *, compact: bool = False,
              allow_inexact: bool = False, tolerance: float = EXACT_TOLERANCE,
              ffn_multiple: int = 8, overwrite: bool = True) -> BertarizeResult:
    """Write ``checkpoint`` (masked or plain) as a standard checkpoint at ``output``.

    The final masks are baked into the weights and the scores dropped; with ``compact`` the
    removable heads and FFN dimensions are removed too (plus remote code, see module doc). The
    written folder is loaded back (stock ``from_pretrained`` when not compacted, nnprune when
    compacted) and its outputs compared with the input model's on a fixed batch: above
    ``tolerance`` the export fails and ``output`` is left as it was, unless ``allow_inexact``.
    ``output`` may be missing or empty, or a folder nnprune wrote with ``overwrite``; a file or a
    folder holding other files is refused before any work.
    """
    src, out = Path(checkpoint), Path(output)
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise NNPruneError("the output folder must differ from the checkpoint")
    check_output_dir(out, overwrite=overwrite)  # before loading anything; again when writing
    loaded = load_model(src)
    model = loaded.model
    inputs = probe_inputs(model.config, _try_tokenizer(src))
    reference = model_outputs(model, inputs)
    keep, removed = final_width_depth(model)
    if not compact and (removed or (keep is not None and len(keep) < model.config.hidden_size)):
        raise NNPruneError(f"{src}'s masks narrow the hidden dimension or remove layers, which a "
                           "plain (not compacted) checkpoint cannot hold: pass --compact")
    unpatch_model(model, apply_masks=True)
    result = BertarizeResult(str(src), str(out), loaded.is_masked, False, 0.0, tolerance,
                             allow_inexact, sorted(reference))
    if compact:
        result.report = compact_model(model, allow_inexact=allow_inexact, ffn_multiple=ffn_multiple)
        result.qk_empty = result.report.qk_empty
    else:
        structure = analyze_structure(model)
        result.removable_heads = sum(len(u.removable) for u in structure.attention)
        result.removable_ffn_dims = sum(len(u.removable) for u in structure.ffn)
        result.qk_empty = sum(len(u.qk_empty) for u in structure.attention)
    result.compacted = is_compacted(model.config)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        model.save_pretrained(str(tmp))
        if result.compacted:
            write_remote_code(model, tmp)
        _copy_tokenizer_files(src, tmp)
        if loaded.record is not None:
            write_config(tmp, replace(loaded.record, masked=False, bertarized_from=str(src),
                                      compacted=result.compacted))
        if result.compacted:
            reloaded = load_pretrained(tmp)
        else:
            try:
                reloaded = model_class_for(model.config).from_pretrained(str(tmp),
                                                                         dtype=torch.float32)
            except (OSError, ValueError, RuntimeError) as exc:
                raise NNPruneError(f"transformers cannot load the exported model: "
                                   f"{str(exc).splitlines()[0]}") from None
        result.max_abs_diff = max_abs_diff(reference, model_outputs(reloaded, inputs))
        if not result.exact and not allow_inexact:
            raise NNPruneError(
                f"the exported model's outputs differ from the input model's by up to "
                f"{result.max_abs_diff:.3g} (> {tolerance:g}); nothing was written to {out}. "
                "Pass --allow-inexact to accept the difference")
    return result


__all__ = ["BertarizeResult", "bertarize"]
