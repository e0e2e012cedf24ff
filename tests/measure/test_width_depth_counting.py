"""Parameter counts of a model pruned in width and depth (issue 25): removed layers are rows
with nothing kept at their dense index, the stream's width is reported."""

from __future__ import annotations

from test_width_depth_measure import _bert, _narrow

from nnprune.measure.counting import count_parameters


def test_parameter_counts_know_the_width_and_the_removed_layer():
    narrow, dense = count_parameters(_narrow(), 16), count_parameters(_bert(), 16)
    assert narrow.original == dense.original
    # layer 0: Q/K/V 2 heads x 8 rows x 20 columns, O its transpose, FFN 40 x 20 twice;
    # layer 2: 4 heads and 64 FFN dims at 20 columns
    assert narrow.remaining == (4 * 16 * 20 + 2 * 40 * 20) + (4 * 32 * 20 + 2 * 64 * 20)
    assert narrow.hidden_size == [20, 32] and dense.hidden_size == [32, 32]
    assert [(lc.layer, lc.removed) for lc in narrow.layers] == [(0, False), (1, True), (2, False)]
    removed = narrow.layers[1]
    assert removed.heads == {"self": [0, 4]} and removed.ffn_dims == [0, 64]
    assert all(k == 0 for k, _ in removed.matrices.values())
    assert narrow.unit_totals() == ((6, 12), (104, 192))
    assert narrow.to_dict()["layers"][1]["removed"] is True
    assert narrow.estimated_speedup > 1.5
