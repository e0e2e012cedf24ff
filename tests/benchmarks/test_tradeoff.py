"""``benchmarks/tradeoff.py`` pieces that decide which files a report reads."""

from __future__ import annotations

import importlib.util
import sys

from conftest import REPO


def _tradeoff():
    spec = importlib.util.spec_from_file_location("tradeoff", REPO / "benchmarks" / "tradeoff.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up while being built
    spec.loader.exec_module(mod)
    return mod


def test_a_moved_point_is_timed_from_where_it_is_now(tmp_path):
    """Run folders trained on a GPU machine (other paths) or gathered into one --work keep
    their recorded timed_dir; the model is then found at the same place under the folder."""
    timed_dir = _tradeoff().timed_dir
    out = tmp_path / "work" / "struct-x3-s42"
    (out / "compact").mkdir(parents=True)
    gpu = {"timed_dir": "/gpu/runs/tradeoff/struct-x3-s42/compact"}
    assert timed_dir(gpu, out) == out / "compact"
    assert timed_dir({"timed_dir": "/gpu/runs/tradeoff/struct-x3-s42"}, out) == out
    here = {"timed_dir": str(out / "compact")}
    assert timed_dir(here, out) == out / "compact"
