"""The pruning scalars of :class:`nnprune.PruningCallback` in a stock ``Trainer``: in the
Trainer's log history whatever the callbacks' order, and in the trackers' curves (TensorBoard
here) when the callback is installed ahead of them."""

from __future__ import annotations

import logging

import pytest

import nnprune
from tests.api.test_public_api import _args, _dataset
from tests.conftest import tiny_bert

STATS = ("pruning/density", "pruning/density_attention", "pruning/density_ffn",
         "pruning/threshold", "pruning/lambda_attention", "pruning/target_density",
         "pruning/heads_kept", "pruning/ffn_dims_kept")


def test_callback_passed_to_the_trainer_fills_its_log_history(tokenizer, tmp_path, caplog):
    from transformers import Trainer

    model = tiny_bert()
    pruning = nnprune.attach_masks(model, "hybrid-nt", target_density=0.5)
    trainer = Trainer(model=model, args=_args(tmp_path, 8), train_dataset=_dataset(tokenizer),
                      callbacks=[nnprune.PruningCallback(pruning)])
    trainer.train()
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert [e["step"] for e in logged] == [4, 8]
    for entry in logged:
        assert all(k in entry for k in STATS), sorted(entry)
    assert logged[-1]["pruning/target_density"] == pytest.approx(0.5)


def test_installed_ahead_of_the_trackers_the_curves_hold_the_scalars(tokenizer, tmp_path, caplog):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from transformers import Trainer

    def run(out, install: bool):
        model = tiny_bert()
        pruning = nnprune.attach_masks(model, "hybrid-nt", target_density=0.5)
        args = _args(out, 8)
        args.report_to = ["tensorboard"]
        callback = nnprune.PruningCallback(pruning)
        trainer = Trainer(model=model, args=args, train_dataset=_dataset(tokenizer),
                          callbacks=None if install else [callback])
        if install:
            callback.install(trainer)
        trainer.train()
        files = sorted(out.rglob("events.out.tfevents.*"))
        acc = EventAccumulator(str(files[0].parent))
        acc.Reload()
        return acc.Tags()["scalars"], pruning

    with caplog.at_level(logging.WARNING, logger="nnprune"):
        tags, _ = run(tmp_path / "passed", install=False)
    assert "train/loss" in tags and "train/pruning/density" not in tags
    assert "PruningCallback(pruning).install(trainer)" in caplog.text  # said why, and the fix
    tags, pruning = run(tmp_path / "installed", install=True)
    assert all(f"train/{k}" in tags for k in STATS), sorted(tags)
    assert pruning.density() == pytest.approx(0.5, abs=0.05)  # and it pruned as it should
    moved = [float(p.detach().abs().max()) for p in pruning.score_parameters()]
    assert max(moved) > 0.01  # the scores had their own optimizer, as when passed in callbacks
