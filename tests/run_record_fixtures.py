"""Run records nnprune wrote before they had a schema version (v0), as test checkpoint folders.

``tests/pruning_core/fixtures/run_records/v0`` holds the ``nnprune_config.json``,
``nnprune_results.json`` and ``config.json`` of real runs made with the code of commit c7d205c
(tiny BERT, toy SST-2; see its README.md), their run folder written as ``@RUNS@``.
:func:`materialize` lays them out again under a folder of the test's, with weights of the
recorded shapes: a masked record gets mask scores from its pruning config, a compacted one the
recorded per-layer sizes. The weights are random (seed 0): what the files record is under test,
not what a model computes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

V0 = Path(__file__).resolve().parent / "pruning_core" / "fixtures" / "run_records" / "v0"
RUNS = "@RUNS@"  # the recorded run folder, in the fixture files
RECORD_FILES = ("nnprune_config.json", "nnprune_results.json")


def v0_names() -> list[str]:
    """Every recorded folder, relative to the run folder (``hybrid``, ``auto/prune``, ...)."""
    return sorted(str(p.parent.relative_to(V0)) for p in V0.rglob("config.json"))


def materialize(root: Path, names: "list[str] | None" = None, *, tokenizer: bool = False) -> Path:
    """The v0 folders ``names`` (default: all) under ``root`` (``@RUNS@`` read as ``root``), with
    weights; returns ``root``. ``tokenizer``: also save MiniLM's tokenizer in each (for
    evaluation or training)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from nnprune.pruning_core.architectures import model_class_for
    from nnprune.pruning_core.compact import apply_saved_layout, is_compacted
    from nnprune.pruning_core.compact_modeling import LAYOUT_ATTR
    from nnprune.pruning_core.config import PruningConfig
    from nnprune.pruning_core.pruner import patch_model

    tok = None
    if tokenizer:
        from conftest import minilm_path

        tok = AutoTokenizer.from_pretrained(minilm_path())
    for name in names or v0_names():
        src, dst = V0 / name, root / name
        dst.mkdir(parents=True, exist_ok=True)
        texts = {f.name: f.read_text().replace(RUNS, str(root)) for f in src.iterdir()
                 if f.is_file()}
        (dst / "config.json").write_text(texts["config.json"])
        config = AutoConfig.from_pretrained(str(dst))
        torch.manual_seed(0)
        model = model_class_for(config)(config)
        if is_compacted(config):
            apply_saved_layout(model, getattr(config, LAYOUT_ATTR))
        record = json.loads(texts.get("nnprune_config.json", "{}"))
        if record.get("masked"):
            patch_model(model, PruningConfig.from_dict(record["pruning"]))
        model.save_pretrained(str(dst))
        if tok is not None:
            tok.save_pretrained(str(dst))
        for fname, text in texts.items():  # the recorded files, over what saving wrote
            (dst / fname).write_text(text)
    return root


def copy_records(src: Path, dst: Path) -> None:
    """The record files of folder ``src`` into ``dst`` (nothing else)."""
    for name in RECORD_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
