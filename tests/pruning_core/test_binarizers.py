"""The binarizer choice has one home: one :class:`Binarizer` per kind, which the config's checks,
the masked layers and the pruner ask instead of branching on the kind."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from nnprune.errors import NNPruneError
from nnprune.pruning_core.binarizers import BINARIZERS, BinarizerKind, binarizer_for
from nnprune.pruning_core.config import PruningConfig

PKG = Path(__file__).resolve().parents[2] / "nnprune" / "pruning_core"

# kind: (prunes, learns_scores, keep_fraction, global_score_cut, stochastic)
FLAGS = {
    BinarizerKind.NONE: (False, False, False, False, False),
    BinarizerKind.TOPK: (True, True, True, False, False),
    BinarizerKind.MAGNITUDE: (True, False, True, False, False),
    BinarizerKind.THRESHOLD: (True, True, False, True, False),
    BinarizerKind.SIGMOID_THRESHOLD: (True, True, False, True, False),
    BinarizerKind.L0: (True, True, False, False, True),
}


def test_every_kind_has_one_binarizer_with_its_flags():
    assert set(BINARIZERS) == set(BinarizerKind) == set(FLAGS)
    for kind, flags in FLAGS.items():
        b = binarizer_for(kind)
        assert b is binarizer_for(kind.value) is binarizer_for(b) and b.kind is kind
        assert (b.prunes, b.learns_scores, b.keep_fraction, b.global_score_cut,
                b.stochastic) == flags, kind
        config = PruningConfig(binarizer=kind, initial_threshold=0.5, final_threshold=0.5)
        assert (config.prunes, config.uses_scores) == flags[:2]


def test_thresholds_mean_what_the_binarizer_says():
    assert binarizer_for("sigmoid_threshold").score_cut(0.1) == pytest.approx(math.log(0.1 / 0.9))
    assert binarizer_for("threshold").score_cut(0.1) == 0.1
    with pytest.raises(NNPruneError, match=r"final_threshold is the fraction of weights kept by "
                                           r"magnitude; it must be in \(0, 1\], got 1.5"):
        PruningConfig(binarizer="magnitude", final_threshold=1.5)
    with pytest.raises(NNPruneError, match=r"for sigmoid_threshold must be in \[0, 1\)"):
        PruningConfig(binarizer="sigmoid_threshold", final_threshold=1.0)
    PruningConfig(binarizer="threshold", initial_threshold=-3.0, final_threshold=2.0)  # scores


def test_masks_at_a_level_or_at_a_shared_cut():
    s = torch.tensor([[-2.0, -0.5], [0.5, 2.0]], requires_grad=True)
    with torch.no_grad():
        assert binarizer_for("topk").block_mask(s, 0.5, False).tolist() == [[0, 0], [1, 1]]
        assert binarizer_for("threshold").block_mask(s, 0.0, False, cutoff=2.0).tolist() == [
            [0, 0], [0, 1]]
        gates = binarizer_for("l0").block_mask(s, 0.5, False, cutoff=2.0)  # no shared cut
        assert ((gates >= 0) & (gates <= 1)).all() and gates[1, 1] > 0
    hard = binarizer_for("sigmoid_threshold").block_mask(s, 0.5, True)
    hard.sum().backward()  # straight-through: the mask's gradient reaches the scores
    assert s.grad.tolist() == [[1, 1], [1, 1]]


def test_no_file_but_binarizers_branches_on_the_kind():
    branch = re.compile(r"BinarizerKind\.[A-Z_0-9]+")
    found = {name: branch.findall((PKG / name).read_text())
             for name in ("config.py", "masked.py", "pruner.py")}
    # the one left is the config field's default
    assert found == {"config.py": ["BinarizerKind.TOPK"], "masked.py": [], "pruner.py": []}
    assert "binarizer: BinarizerKind = BinarizerKind.TOPK" in (PKG / "config.py").read_text()
