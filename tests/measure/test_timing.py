"""Interleaved timing with a warm or a cold cache (``nnprune speed --cache``)."""

from __future__ import annotations

import json
import time

import pytest
from conftest import cli_output as _cli

import nnprune
from nnprune.errors import NNPruneError
from nnprune.measure.timing import CacheState, time_interleaved


def _logged(names: list[str], log: list[str]) -> dict:
    def fn(name: str):
        return lambda: log.append(name)
    return {n: fn(n) for n in names}


def test_warm_times_each_call_right_after_one_of_its_own_and_cold_after_the_other():
    log: list[str] = []
    times = time_interleaved(_logged(["dense", "small"], log), warmup=1, iters=4,
                             cache=CacheState.WARM)
    assert [len(t) for t in times.values()] == [4, 4]
    # warm-up, then per round each model twice in a row (untimed, timed), the order alternating
    assert log == ["dense", "small"] + ["dense"] * 2 + ["small"] * 4 + ["dense"] * 4 + ["small"] * 4 + ["dense"] * 2
    log.clear()
    times = time_interleaved(_logged(["dense", "small"], log), warmup=1, iters=4,
                             cache=CacheState.COLD)
    assert [len(t) for t in times.values()] == [4, 4]
    assert log == ["dense", "small"] * 5  # each call after the other's


def test_a_model_slow_after_the_other_one_is_fast_warm_and_slow_cold():
    """What the cache does to a small model, in miniature: a call that follows the other
    function's is slower (its data were evicted). Warm timing sees the steady state, cold the
    penalty; the other function is the same either way."""
    last = [""]

    def small():
        time.sleep(0.012 if last[0] != "small" else 0.002)
        last[0] = "small"

    def dense():
        time.sleep(0.02)
        last[0] = "dense"

    fns = {"dense": dense, "small": small}
    warm = time_interleaved(fns, warmup=1, iters=3, cache=CacheState.WARM)
    cold = time_interleaved(fns, warmup=1, iters=3, cache=CacheState.COLD)
    assert max(warm["small"]) < 8 < min(cold["small"])
    assert min(warm["dense"]) >= 19 and min(cold["dense"]) >= 19


def test_cache_state_parses_text_and_refuses_unknown_names_in_one_line():
    assert nnprune.CacheState.parse("COLD") is CacheState.COLD
    with pytest.raises(NNPruneError, match=r"^unknown --cache 'hot'; known: warm, cold$"):
        CacheState.parse("hot", "--cache")


def test_speed_cli_records_the_cache_and_refuses_an_unknown_one(tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification

    from conftest import tiny_config

    model = AutoModelForSequenceClassification.from_config(tiny_config("bert"))
    model.save_pretrained(tmp_path / "m")
    args = ["speed", str(tmp_path / "m"), "--batch-sizes", "1", "--seq-lens", "8", "--iters", "2",
            "--warmup", "0", "--threads", "1"]
    rep = json.loads(_cli(args + ["--cache", "cold", "--json"]))
    assert rep["cache"] == "cold" and len(rep["rows"][0]["model_times_ms"]) == 2
    assert json.loads(_cli(args + ["--json"]))["cache"] == "warm"  # the default
    from nnprune.cli.main import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(args + ["--cache", "hot"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and err == "error: unknown --cache 'hot'; known: warm, cold"
