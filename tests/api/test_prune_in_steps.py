"""``nnprune.prune`` on a model pruned and compacted before: refused as it is, cut again through
``nnprune.expand`` with the target counted against the dense model."""

from __future__ import annotations

import pytest

from nnprune.errors import NNPruneError
from tests.pruning_core.test_width_depth import _calibration, _scaled_bert


def test_a_compacted_model_is_pruned_again_through_expand():
    import nnprune
    from nnprune.measure.flops import count_flops

    dense = _scaled_bert(dead=8)
    model = _scaled_bert(dead=8)
    first = nnprune.prune(model, _calibration(n_batches=4), target_flops=0.6, width_depth=False)
    with pytest.raises(NNPruneError, match=r"compacted: prune nnprune\.expand\(model\)"):
        nnprune.prune(model, _calibration(n_batches=4), target_flops=0.3)

    again = nnprune.expand(model)
    second = nnprune.prune(again, _calibration(n_batches=4), target_flops=0.3, width_depth=False)
    assert second.exactness <= 1e-4 and second.heads_kept <= first.heads_kept
    # the target and the prediction count against the dense model, not the first cut
    measured = count_flops(dense, 1, 12).total / count_flops(again, 1, 12).total
    assert measured == pytest.approx(second.predicted_speedup, rel=1e-6) and measured >= 1 / 0.3
    assert second.predicted_speedup > first.predicted_speedup
