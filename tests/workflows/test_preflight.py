"""Checks before work (issue 27): every input checked against the model, the data and the machine
before data is loaded or training starts; one ``error:`` line, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import minilm_path, save_tiny_model, tiny_config


def _run(capsys, *argv) -> tuple[int, str, str]:
    from nnprune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def _refused(capsys, *argv) -> str:
    """Run the command; it must stop with one ``error:`` line and exit code 2. Returns it."""
    rc, _, err = _run(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (rc, err)
    assert "Traceback" not in err
    return lines[0]


def _save(path: Path, **config) -> Path:
    """A tiny BERT classifier with ``config`` overrides, saved with the MiniLM tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(tiny_config("bert", **config))
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(path)
    return path


# ---------------------------------------------------------------------------------- output paths
def test_a_file_as_output_dir_is_refused_before_the_model_loads(tmp_path, toy_data, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    # the model does not even exist: the output folder is refused first
    line = _refused(capsys, "fine-prune", "sst2", "--model", tmp_path / "no-model", "--output-dir",
                    notes, "--data-dir", toy_data)
    assert f"--output-dir {notes} is a file" in line
    assert notes.read_text() == "my notes\n"
    line = _refused(capsys, "fine-prune", "sst2", "--model", tmp_path / "no-model", "--output-dir",
                    notes / "run", "--data-dir", toy_data)
    assert f"{notes} is a file" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_folder_that_cannot_be_written_is_refused(tiny_dir, toy_data, tmp_path, capsys):
    if os.geteuid() == 0:  # root writes anywhere chmod says no; sysfs takes no file from anyone
        target = Path("/sys/nnprune-preflight-test")
        if not Path("/sys").is_dir():
            pytest.skip("no /sys to try")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target = locked / "run"
    try:
        line = _refused(capsys, "prune", tiny_dir, "sst2", "--target-flops", "0.5",
                        "--output-dir", target, "--data-dir", toy_data)
        assert "is not writable" in line and not target.exists()
    finally:
        if os.geteuid() != 0:
            (tmp_path / "locked").chmod(0o700)


def test_not_enough_free_disk_is_refused(tmp_path):
    from nnprune.errors import NNPruneError
    from nnprune.workflows.preflight import check_free_disk

    free = shutil.disk_usage(tmp_path).free
    check_free_disk(tmp_path / "run", free // 4)  # fits
    with pytest.raises(NNPruneError, match=r"the run writes about .* free"):
        check_free_disk(tmp_path / "run", 2 * free)
    assert not (tmp_path / "run").exists()


def test_the_disk_estimate_covers_what_a_run_writes(tiny_dir, toy_data, tmp_path):
    """The estimate (parameters x checkpoints kept) against the bytes a real run left: at least
    as much, and not absurdly more."""
    from conftest import make_args

    from nnprune import load_config
    from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune
    from nnprune.workflows.preflight import parameter_count, run_bytes, saved_checkpoints

    out = tmp_path / "run"
    args = make_args(FinePruneArgs, task="sst2", model=str(tiny_dir), output_dir=out,
                     data_dir=toy_data, method="movement", target_density=0.5, max_steps=3,
                     save_steps=1, save_total_limit=2, batch_size=8, max_seq_length=16)
    fine_prune(args)
    written = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    tokenizer = sum(f.stat().st_size for f in out.glob("*") if f.is_file() and "token" in f.name
                    or f.name == "vocab.txt")
    per_checkpoint = [sum(f.stat().st_size for f in ck.rglob("*") if f.is_file())
                      for ck in out.glob("checkpoint-*")]
    assert len(per_checkpoint) == 2  # --save-total-limit 2
    estimate = run_bytes(parameter_count(load_config(tiny_dir)), args.training)
    assert saved_checkpoints(args.training) == 3  # one more while the newest is written
    assert written - tokenizer * 3 <= estimate <= 8 * written, (written, estimate)
    # a run that ends before its first save keeps no checkpoint
    short = make_args(FinePruneArgs, task="sst2", model="m", output_dir=out, max_steps=2,
                      save_steps=500).training
    assert saved_checkpoints(short) == 0


def test_a_json_file_that_is_a_folder_is_refused_before_work(tiny_dir, tmp_path, capsys):
    line = _refused(capsys, "count-params", tiny_dir, "--json-file", tmp_path)
    assert f"--json-file {tmp_path} is a folder" in line


# --------------------------------------------------------------------------- sequence lengths
def test_lengths_past_the_positions_are_one_line(tiny_dir, tmp_path, capsys):
    """speed and latency-table refuse them before anything is loaded or timed (BERT's 512
    positions; a forward that long fails deep in the embeddings)."""
    line = _refused(capsys, "speed", tiny_dir, "--seq-lens", "128,1000")
    assert line == (f"error: --seq-lens 1000: {tiny_dir} takes at most 512 tokens per sequence "
                    "(the positions of its bert config)")
    line = _refused(capsys, "latency-table", tiny_dir, "--seq-len", "1000",
                    "--cache-dir", tmp_path / "cache")
    assert "--seq-len 1000" in line and "at most 512 tokens" in line
    assert not (tmp_path / "cache").exists()
    line = _refused(capsys, "fine-prune", "sst2", "--model", tiny_dir, "--output-dir",
                    tmp_path / "o", "--target-speedup", "2", "--latency-seq-len", "1000")
    assert "--latency-seq-len 1000" in line and not (tmp_path / "o").exists()


def test_max_positions_by_architecture(tmp_path):
    from transformers import T5Config

    from nnprune import max_positions, supported_architectures

    assert max_positions(tiny_config("bert")) == 512
    # RoBERTa's positions start after the padding index: 514 rows, 512 (pad 1) or 513 (pad 0)
    assert max_positions(tiny_config("roberta")) == 513
    assert max_positions({"model_type": "roberta", "max_position_embeddings": 514,
                          "pad_token_id": 1}) == 512
    assert max_positions(tiny_config("bart")) == 512
    assert max_positions(T5Config()) is None  # relative positions
    assert max_positions({"model_type": "deberta-v2", "max_position_embeddings": 512}) is None
    assert {"bert", "modernbert", "t5"} <= set(supported_architectures())


def test_max_seq_length_past_the_positions_is_capped_with_a_warning(tiny_dir, toy_data, tmp_path,
                                                                   capsys, caplog):
    """As the transformers examples do: the data is cut to the length anyway."""
    out = tmp_path / "run"
    rc, stdout, err = _run(capsys, "fine-prune", "sst2", "--model", tiny_dir, "--output-dir", out,
                           "--data-dir", toy_data, "--method", "dense", "--max-steps", "1",
                           "--batch-size", "8", "--max-seq-length", "1000", "--json")
    assert rc == 0, err
    assert f"--max-seq-length 1000 is past the 512 positions of {tiny_dir}: using 512" in err
    recorded = json.loads((out / "nnprune_config.json").read_text())["training"]
    assert recorded["max_seq_length"] == 512
    rc, stdout, err = _run(capsys, "evaluate", "sst2", out, "--data-dir", toy_data,
                           "--max-seq-length", "2048", "--json")
    assert rc == 0, err
    assert json.loads(stdout)["max_seq_length"] == 512 and "using 512" in err


def test_prune_and_fill_cap_their_length_too(tiny_dir, tmp_path, caplog):
    from dataclasses import replace

    from conftest import make_args

    from nnprune.workflows import fill, prune

    args = prune.PruneArgs(checkpoint=str(tiny_dir), task="sst2", output_dir=tmp_path / "p",
                           target_flops=0.5, training=replace(prune.PRUNE_TRAINING,
                                                              max_seq_length=4096))
    assert prune.check_before_work(args).training.max_seq_length == 512
    filled = fill.check_before_work(make_args(
        fill.FillArgs, checkpoint=tiny_dir, task="sst2", output_dir=tmp_path / "f",
        teacher=str(tiny_dir), max_seq_length=600))
    assert filled.training.max_seq_length == 512
    assert "--max-seq-length 4096 is past the 512 positions" in caplog.text
    assert not (tmp_path / "p").exists() and not (tmp_path / "f").exists()


# -------------------------------------------------------------------------- model and tokenizer
def test_a_tokenizer_past_the_vocabulary_is_refused(toy_data, tmp_path, capsys):
    small = _save(tmp_path / "small-vocab", vocab_size=1000, num_labels=2)
    out = tmp_path / "run"
    line = _refused(capsys, "fine-prune", "sst2", "--model", small, "--output-dir", out,
                    "--data-dir", toy_data)
    assert "has 30,522 tokens but the model's vocabulary 1,000" in line and not out.exists()
    line = _refused(capsys, "evaluate", "sst2", small, "--data-dir", toy_data)
    assert "has 30,522 tokens" in line


def test_a_head_for_other_labels_is_refused_before_the_data(tmp_path, toy_data, capsys):
    three = _save(tmp_path / "three-labels", num_labels=3)
    three_arch = json.loads((three / "config.json").read_text())["architectures"]
    assert three_arch == ["BertForSequenceClassification"]
    out = tmp_path / "run"
    # no data folder at all: the head is refused before any data is looked for
    line = _refused(capsys, "fine-prune", "sst2", "--model", three, "--output-dir", out)
    assert "has 3 labels but task sst2 needs 2" in line and not out.exists()
    tiny = save_tiny_model(tmp_path / "tiny", "bert")
    line = _refused(capsys, "fine-prune", "sst2", "--model", tiny, "--output-dir", out,
                    "--method", "hybrid", "--teacher", three)
    assert f"checkpoint {three} has 3 labels" in line and not out.exists()


def test_cuda_where_there_is_none_is_refused(tiny_dir, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = _refused(capsys, "speed", tiny_dir, "--device", "cuda")
    assert line.startswith("error: --device cuda: no CUDA device")
    line = _refused(capsys, "latency-table", tiny_dir, "--device", "cuda",
                    "--cache-dir", tmp_path / "cache")
    assert line.startswith("error: --device cuda: no CUDA device")
    line = _refused(capsys, "fine-prune", "sst2", "--model", tiny_dir, "--output-dir",
                    tmp_path / "o", "--target-speedup", "2", "--latency-device", "cuda")
    assert line.startswith("error: --latency-device cuda: no CUDA device")
    assert not (tmp_path / "o").exists() and not (tmp_path / "cache").exists()


# ------------------------------------------------------------------------------------ the data
def test_data_left_empty_is_refused(tokenizer):
    from datasets import Dataset

    from nnprune.errors import NNPruneError
    from nnprune.tasks import TaskData
    from nnprune.workflows.preflight import check_data

    empty = Dataset.from_dict({"input_ids": []})
    some = Dataset.from_dict({"input_ids": [[1, 2]]})
    check_data(TaskData(train=some, eval={"validation": some}), "sst2")
    with pytest.raises(NNPruneError, match="no training example is left"):
        check_data(TaskData(train=empty, eval={"validation": some}), "sst2")
    with pytest.raises(NNPruneError, match="'validation' has no example"):
        check_data(TaskData(train=None, eval={"validation": empty}), "sst2", need_train=False)


# ------------------------------------------------------------------------- the order of arguments
def test_swapped_arguments_name_the_order(tiny_dir, tmp_path, capsys):
    """evaluate takes TASK CHECKPOINT, prune and fill CHECKPOINT TASK (users' scripts rely on
    both): swapped, the one line says which order the command takes."""
    out = tmp_path / "out"
    line = _refused(capsys, "prune", "sst2", tiny_dir, "--target-flops", "0.5", "--output-dir", out)
    assert f"unknown task '{tiny_dir}' (it is a folder; 'sst2' is a task)" in line
    assert "the order is `nnprune prune CHECKPOINT TASK`" in line
    line = _refused(capsys, "fill", "sst2", tiny_dir, "--teacher", tiny_dir, "--output-dir", out)
    assert "the order is `nnprune fill CHECKPOINT TASK`" in line
    line = _refused(capsys, "evaluate", tiny_dir, "sst2")
    assert "the order is `nnprune evaluate TASK CHECKPOINT`" in line
    assert not out.exists()
    line = _refused(capsys, "evaluate", "sst3", tiny_dir)  # a misspelt task: the known ones
    assert "unknown task 'sst3'" in line and "order" not in line and "sst2" in line


def test_missing_data_paths_are_refused_before_anything_loads(tmp_path, capsys):
    out = tmp_path / "out"
    line = _refused(capsys, "fine-prune", "sst2", "--model", tmp_path / "no-model",
                    "--output-dir", out, "--data-dir", tmp_path / "no-data")
    assert line == f"error: --data-dir {tmp_path / 'no-data'} does not exist"
    (tmp_path / "train.tsv").write_text("sentence\tlabel\n")
    line = _refused(capsys, "prune", tmp_path / "no-model", "sst2", "--target-flops", "0.5",
                    "--output-dir", out, "--data-dir", tmp_path / "train.tsv")
    assert "--data-dir" in line and "is a file" in line
    line = _refused(capsys, "fill", tmp_path / "no-model", "sst2", "--teacher", tmp_path,
                    "--output-dir", out, "--train-file", tmp_path)
    assert "--train-file" in line and "is a folder" in line
    assert not out.exists()
