"""Checkpoints are data, never code: nnprune runs no Python a checkpoint folder carries and
unpickles none of its files.

Every folder here is poisoned: the modeling file its ``config.json`` ``auto_map`` names (nnprune's
own ``nnprune_modeling.py`` of a compacted model, or a foreign one), a custom tokenizer module its
``tokenizer_config.json`` ``auto_map`` names, and pickles (``pytorch_model.bin``,
``training_args.bin``, ``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``) whose unpickling
writes a marker file, as the Python modules do when imported. Every command that reads a folder
(evaluate, prune, fill, bertarize, count-params, speed, export-onnx, report, latency-table,
fine-prune --model and --resume) and the public loaders (``nnprune.load_pretrained``,
``inspect_checkpoint``, ``load_config``, ``FinePruning.from_pretrained``) run on them: the marker
never appears. A folder whose model only its own code can build (an unknown ``model_type``), or
whose weights are only pickled, is refused in one ``error:`` line. transformers would ask "Do you
wish to run the custom code? [y/N]" for such a folder when not told ``trust_remote_code=False``:
standard input answers "y" throughout, so a question asked is code run and the test fails.
"""

from __future__ import annotations

import ast
import io
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from conftest import (compact_masked, known_latency_table, minilm_path, save_tiny_model,
                      tiny_task_model, write_toy_sst2)

import nnprune
from nnprune.errors import NNPruneError
from nnprune.measure.latency import LatencySetting, cache_path, table_key
from nnprune.pruning_core.checkpoint import save_checkpoint
from nnprune.pruning_core.methods import build_config

PKG_ROOT = Path(__file__).resolve().parents[2] / "nnprune"

MODULE = '''
import pathlib
pathlib.Path({marker!r}).write_text("ran: " + __name__)

from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast


class EvilConfig(BertConfig):
    model_type = "evilbert"


class EvilModel(BertForSequenceClassification):
    config_class = EvilConfig


class EvilTokenizer(BertTokenizerFast):
    pass

'''


class _Payload:
    """Unpickling this writes the marker (``open(marker, "w")``), as an attacker's
    ``__reduce__`` would run anything."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"state": _Payload(marker)}))


def poison(folder: Path, marker: Path, *, model_type: str | None = None) -> Path:
    """Plant code and pickles in a model folder (see the module docstring); ``model_type``:
    also replace the config's model type (one only the folder's code knows)."""
    code = MODULE.format(marker=str(marker))
    cfg_path = folder / "config.json"
    cfg = json.loads(cfg_path.read_text())
    if (folder / "nnprune_modeling.py").is_file():
        # nnprune's own compacted model: its remote-code file (for stock transformers) tampered
        (folder / "nnprune_modeling.py").write_text(code + (folder / "nnprune_modeling.py").read_text())
    else:
        (folder / "evil_modeling.py").write_text(code)
        cfg["auto_map"] = {"AutoConfig": "evil_modeling.EvilConfig",
                           "AutoModel": "evil_modeling.EvilModel",
                           "AutoModelForSequenceClassification": "evil_modeling.EvilModel"}
    if model_type is not None:
        cfg["model_type"] = model_type
        cfg["architectures"] = ["EvilModel"]
    cfg_path.write_text(json.dumps(cfg))
    (folder / "evil_tokenization.py").write_text(code)
    tok_path = folder / "tokenizer_config.json"
    tok = json.loads(tok_path.read_text())
    tok["auto_map"] = {"AutoTokenizer": ["evil_tokenization.EvilTokenizer",
                                         "evil_tokenization.EvilTokenizer"]}
    tok_path.write_text(json.dumps(tok))
    for name in ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth",
                 "pytorch_model.bin"):
        write_pickle(folder / name, marker)
    return folder


@pytest.fixture(autouse=True)
def user_says_yes(monkeypatch, tmp_path):
    """A user who answers "y" to transformers' "run the custom code?" question; remote code
    copied to a private modules cache, never the user's."""
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n" * 1000))
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "hf_modules"))


def _struct_masked():
    """A struct-masked tiny BERT: heads 1 and 3 and every third FFN dimension of each layer
    masked."""
    from nnprune.pruning_core import Role, patch_model

    model = tiny_task_model("bert")
    pruner = patch_model(model, build_config("struct"))
    pruner.finalize()
    for p in pruner.score_owners:
        p.layer.mask_scores.data.fill_(5.0)
        if p.site.role is Role.VALUE:
            p.layer.mask_scores.data[[1, 3]] = -5.0
        elif p.site.role is Role.FFN_IN:
            p.layer.mask_scores.data[::3] = -5.0
    return model


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Poisoned folders, one marker file each: ``plain`` (a fine-tuned tiny BERT), ``masked``
    (a struct-masked one), ``compacted`` (nnprune's compacted model, with its remote-code file),
    ``foreign`` (a model type only its own code builds), ``pickled`` (weights only pickled);
    ``data``: a small SST-2 folder; ``table``: a latency table of the tiny BERT, also in the
    latency cache ``cache`` (``latency-table`` reads it there instead of measuring for a minute)."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("poisoned")
    tok = AutoTokenizer.from_pretrained(minilm_path())
    out = {"data": write_toy_sst2(root / "data", n_train=32, n_dev=8)}
    plain = save_tiny_model(root / "plain", "bert")
    out["table"] = Path(known_latency_table(plain, root / "table.json"))
    masked = _struct_masked()
    save_checkpoint(masked, root / "masked", config=build_config("struct"), tokenizer=tok)
    compact_masked(masked)
    save_checkpoint(masked, root / "compacted", tokenizer=tok)
    assert (root / "compacted" / "nnprune_modeling.py").is_file()
    save_tiny_model(root / "foreign", "bert")
    pickled = save_tiny_model(root / "pickled", "bert")
    (pickled / "model.safetensors").unlink()
    for name in ("plain", "masked", "compacted", "foreign", "pickled"):
        marker = root / f"{name}.marker"
        poison(root / name, marker, model_type="evilbert" if name == "foreign" else None)
        out[name] = root / name
    key = table_key(nnprune.load_config(plain), LatencySetting(batch_size=1, seq_len=16, threads=1))
    out["cache"] = root / "cache"
    out["cache"].mkdir()
    shutil.copy(out["table"], cache_path(key, out["cache"]))
    return out


def markers(folders) -> list[str]:
    return sorted(p.name for p in folders["data"].parent.glob("*.marker"))


def run(capsys, *argv) -> tuple[int, str]:
    """``nnprune ARGV`` in-process: (exit code, stderr)."""
    from nnprune.cli.main import main

    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    return code, capsys.readouterr().err


def one_error_line(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]


# ------------------------------------------------------------------------------ public loaders


def test_public_loaders_build_nnprune_classes_and_run_nothing(folders):
    for name in ("plain", "masked", "compacted"):
        info = nnprune.inspect_checkpoint(folders[name])
        config = nnprune.load_config(folders[name])
        model = nnprune.load_pretrained(folders[name])
        assert type(model).__module__.startswith("transformers.models.bert"), type(model)
        assert type(config).__module__.startswith("transformers.models.bert"), type(config)
        assert info.kind.value == name if name != "plain" else info.kind.value == "plain"
    assert nnprune.FinePruning.from_pretrained(folders["masked"]).model is not None
    assert markers(folders) == []


@pytest.mark.parametrize("name, needle", [("foreign", "its own Python code"),
                                          ("pickled", "pickled weights")])
def test_public_loaders_refuse_what_only_code_or_pickles_hold(folders, name, needle):
    loaders = [nnprune.load_pretrained, nnprune.FinePruning.from_pretrained]
    if name == "foreign":  # a pickled model's config is plain JSON: read like any other
        loaders += [nnprune.load_config, nnprune.inspect_checkpoint]
    for load in loaders:
        with pytest.raises(NNPruneError) as e:
            load(folders[name])
        assert "\n" not in str(e.value)
        assert needle in str(e.value), str(e.value)
    assert markers(folders) == []


@pytest.mark.parametrize("archs", [["AutoModelForSequenceClassification"], ["logging"], [3]])
def test_config_architectures_name_model_classes_only(folders, tmp_path, archs):
    # config.json is data: a name that is no transformers model class builds nothing
    folder = shutil.copytree(folders["plain"], tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "architectures": archs}))
    with pytest.raises(NNPruneError, match="names no transformers model class") as e:
        nnprune.load_pretrained(folder)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------ every command


def _commands(f, tmp: Path) -> list[tuple[str, list]]:
    """(folder kind, argv) of every command that reads a folder, on the kinds it takes
    (``latency-table`` reads the config alone: a pickled model is fine there)."""
    data, table = f["data"], f["table"]
    train = ["--data-dir", data, "--max-steps", "2", "--batch-size", "4", "--max-seq-length", "16",
             "--save-steps", "100"]
    return [
        ("plain", ["evaluate", "sst2", f["plain"], "--data-dir", data, "--max-seq-length", "16"]),
        ("compacted", ["evaluate", "sst2", f["compacted"], "--data-dir", data,
                       "--max-seq-length", "16"]),
        ("masked", ["evaluate", "sst2", f["masked"], "--data-dir", data, "--max-seq-length", "16"]),
        ("plain", ["prune", f["plain"], "sst2", "--output-dir", tmp / "prune", "--target-flops",
                   "0.6", "--data-dir", data, "--calibration-samples", "32", "--max-seq-length",
                   "16", "--no-speed-probe"]),
        ("masked", ["fill", f["masked"], "sst2", "--output-dir", tmp / "fill", "--teacher",
                    f["plain"], *train]),
        ("masked", ["bertarize", f["masked"], "-o", tmp / "bert", "--compact"]),
        ("compacted", ["count-params", f["compacted"]]),
        ("masked", ["count-params", f["masked"]]),
        ("compacted", ["speed", f["compacted"], "--batch-sizes", "1", "--seq-lens", "8",
                       "--warmup", "1", "--iters", "2", "--baseline", f["plain"]]),
        ("compacted", ["export-onnx", f["compacted"], tmp / "onnx"]),
        ("compacted", ["report", f["compacted"], "-o", tmp / "report"]),
        ("plain", ["latency-table", f["plain"], "--seq-len", "16", "--threads", "1",
                   "--cache-dir", f["cache"]]),
        ("plain", ["fine-prune", "sst2", "--model", f["plain"], "--output-dir", tmp / "fp",
                   "--method", "struct", "--target-density", "0.5", "--latency-table", table,
                   *train]),
    ]


def test_every_command_reads_poisoned_folders_and_runs_nothing(folders, tmp_path, capsys):
    failed = []
    for kind, argv in _commands(folders, tmp_path):
        code, err = run(capsys, *argv)
        if code != 0:
            failed.append((argv[0], kind, err[-600:]))
        assert markers(folders) == [], (argv, err[-2000:])
    assert failed == []


@pytest.mark.parametrize("name, needle", [("foreign", "its own Python code"),
                                          ("pickled", "pickled weights")])
def test_every_command_refuses_what_only_code_or_pickles_hold(folders, tmp_path, capsys, name,
                                                              needle):
    for _, argv in _commands(folders, tmp_path):
        if name == "pickled" and argv[0] == "latency-table":
            continue  # the config alone: read as any other (test above)
        argv = [folders[name] if a in (folders["plain"], folders["masked"], folders["compacted"])
                else a for a in argv]
        code, err = run(capsys, *argv)
        assert code == 2, (argv, err[-2000:])
        one_error_line(err)
        assert markers(folders) == [], (argv, err[-2000:])


def test_resume_unpickles_nothing(folders, tmp_path, capsys):
    # a run saved a checkpoint; its optimizer / scheduler / RNG files are then replaced by
    # pickles that run code: --resume refuses them in one line and runs none of it
    out = tmp_path / "run"
    argv = ["fine-prune", "sst2", "--model", save_tiny_model(tmp_path / "m", "bert"),
            "--output-dir", out, "--method", "struct", "--target-density", "0.5",
            "--latency-table", folders["table"], "--data-dir", folders["data"],
            "--batch-size", "4", "--max-seq-length", "16", "--save-steps", "1"]
    code, err = run(capsys, *argv, "--max-steps", "1")
    assert code == 0, err[-3000:]
    marker = tmp_path / "resume.marker"
    for name in ("rng_state.pth", "optimizer.pt", "scheduler.pt", "training_args.bin"):
        write_pickle(out / "checkpoint-1" / name, marker)
    code, err = run(capsys, *argv, "--max-steps", "2", "--resume")
    assert code == 2, err[-3000:]
    one_error_line(err, "checkpoint-1")
    assert not marker.exists()


# ------------------------------------------------------------------------------ the source


def test_every_transformers_loader_in_nnprune_is_told_not_to_run_remote_code():
    """``from_pretrained`` of an Auto class anywhere in nnprune passes
    ``trust_remote_code=False`` (the tests above run the commands; this keeps new calls honest);
    ``torch.load`` passes ``weights_only=True``; nothing calls ``pickle.load``."""
    offenders = []
    for path in sorted(PKG_ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            kw = {k.arg: k.value for k in node.keywords}
            owner = node.func.value
            owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            where = f"{path.relative_to(PKG_ROOT.parent)}:{node.lineno}"
            if node.func.attr == "from_pretrained" and str(owner_name).startswith("Auto"):
                flag = kw.get("trust_remote_code")
                if not (isinstance(flag, ast.Constant) and flag.value is False):
                    offenders.append(where)
            if node.func.attr == "load" and owner_name == "torch":
                flag = kw.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    offenders.append(where)
            if node.func.attr in ("load", "loads") and owner_name in ("pickle", "dill", "joblib"):
                offenders.append(where)
    assert offenders == []


def test_the_markers_would_fire(folders, tmp_path):
    """The poison works: stock transformers told to trust the folder runs its code, and a
    plain unpickling runs the payload (so a marker-free run above means nothing ran)."""
    from transformers import AutoConfig

    marker = tmp_path / "check.marker"
    folder = shutil.copytree(folders["foreign"], tmp_path / "copy")
    poison(folder, marker)
    AutoConfig.from_pretrained(str(folder), trust_remote_code=True)
    assert marker.read_text().startswith("ran")
    marker.unlink()
    with open(folder / "rng_state.pth", "rb") as fh:
        pickle.load(fh)  # noqa: S301 - the point: this is what must never happen in nnprune
    assert marker.exists()
    with pytest.raises(Exception):  # noqa: B017 - torch's own refusal type varies
        torch.load(folder / "optimizer.pt", weights_only=True)
