"""Measuring models pruned in width and depth (issue 25): FLOPs equal a hand count, the FLOP
profile restores the dense ancestor, and latency tables price hidden widths and removed layers
(lookups on a known table; what a measured one holds)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config, zero_units

from nnprune.errors import NNPruneError
from nnprune.measure.flops import count_flops, flop_profile
from nnprune.pruning_core.compact import compact_model
from nnprune.pruning_core.latency_model import LatencyModel
from nnprune.pruning_core.width_depth import apply_width_depth

KEEP = list(range(4, 24))  # 20 of 32 channels


def _bert(layers: int = 3):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(
        tiny_config("bert", num_labels=2, num_hidden_layers=layers)).eval()


def _narrow():
    """Layer 0 keeps 2 heads and 40 FFN dims, layer 1 is removed, the stream keeps 20 of 32."""
    model = _bert()
    zero_units(model, {("encoder", 0): 2}, {("encoder", 0): 40})
    apply_width_depth(model, KEEP, [1])
    compact_model(model)
    return model


def _layer_flops(seq: int, width: int, heads: int, ffn: int, head_dim: int = 8) -> float:
    inner = heads * head_dim
    linear = 2 * seq * (3 * width * inner + inner * width + 2 * width * ffn)
    attention = 2 * seq * seq * 2 * inner  # Q K^T and softmax(.) V
    return linear + attention


def test_flops_of_a_narrowed_shallower_bert_equal_a_hand_count():
    model, seq = _narrow(), 16
    head = 2 * 32 * 32 + 2 * 32 * 2  # pooler and classifier read the dense width (scattered back)
    hand = _layer_flops(seq, 20, 2, 40) + _layer_flops(seq, 20, 4, 64) + head
    assert count_flops(model, 1, seq).total == hand
    # the profile gives the dense ancestor back: full width, every layer, every unit
    dense = flop_profile(model).resized(
        {("encoder", i, "self"): 4 for i in range(3)}, {("encoder", i): 64 for i in range(3)},
        hidden=32, layers={"encoder": 3})
    assert dense.count(1, seq).total == count_flops(_bert(), 1, seq).total == \
        3 * _layer_flops(seq, 32, 4, 64) + head


def _table() -> LatencyModel:
    """The conftest table (2 layers: 1 ms a head, 0.1 ms an FFN dim, 2 ms fixed, dense 22.8 ms)
    measured at widths 8, 16, 32 too."""
    return LatencyModel(2, 4, 64, (0, 1, 2, 3, 4), (0.0, 1.0, 2.0, 3.0, 4.0), (0, 32, 64),
                        (0.0, 3.2, 6.4), 2.0, hidden=32, widths=(8, 16, 32),
                        attention_scale=(0.25, 0.5, 1.0), ffn_scale=(0.25, 0.5, 1.0),
                        layer_ms=(0.1, 0.2, 0.4), base_ms=(0.5, 1.0, 1.2))


def test_latency_lookups_for_hidden_widths_and_removed_layers():
    m = _table()
    assert m.has_width_depth and m.dense_ms == pytest.approx(22.8)
    assert m.predict([4, 4], [64, 64], width=32) == pytest.approx(22.8)
    # at a measured width: base 1.0, 2 layers of 0.2, heads and FFN at half their time
    assert m.predict([4, 4], [64, 64], width=16) == pytest.approx(1.0 + 0.4 + 0.5 * 8 + 0.5 * 12.8)
    # between widths 16 and 32: every term interpolated linearly
    assert m.predict([4, 4], [64, 64], width=24) == pytest.approx(1.1 + 0.6 + 0.75 * 8 + 0.75 * 12.8)
    # one layer left (2 heads, 32 dims) at width 8
    assert m.predict([2], [32], width=8) == pytest.approx(0.5 + 0.1 + 0.25 * 2 + 0.25 * 3.2)
    assert m.speedup([2], [32], width=8) == pytest.approx(22.8 / 1.9)
    assert m.max_speedup == pytest.approx(11.4) and m.max_speedup_width_depth == pytest.approx(38.0)
    assert m.budget_ms(20, width_depth=True) == pytest.approx(22.8 / 20)
    with pytest.raises(NNPruneError, match="beyond reach"):
        m.budget_ms(20)
    assert LatencyModel.from_dict(m.to_dict()) == m


def test_thin_units_on_a_narrow_stream_are_priced_by_the_low_scales():
    """Scales measured with a few units (1 head, 32 FFN dims) too: a layer's scale goes from the
    low one (at or below those counts) to the full one (all units), linearly in its units."""
    from dataclasses import asdict

    m = LatencyModel(**{**asdict(_table()), "scale_heads": 1, "scale_dims": 32,
                        "attention_scale_low": (0.5, 0.75, 1.0), "ffn_scale_low": (0.5, 0.75, 1.0)})
    assert m.unit_scales(16, 1, 32) == (0.75, 0.75) and m.unit_scales(16, 4, 64) == (0.5, 0.5)
    assert m.unit_scales(16, 2.5, 48) == pytest.approx((0.625, 0.625))
    assert m.unit_scales(32, 1, 8) == (1.0, 1.0)  # the dense width: the curves as measured
    # layer 1: 1 head and 32 dims at the low scale; layer 2: everything at the full scale
    assert m.predict([1, 4], [32, 64], width=16) == pytest.approx(
        1.0 + 2 * 0.2 + 0.75 * (1.0 + 3.2) + 0.5 * (4.0 + 6.4))
    assert m.predict([4, 4], [64, 64], width=32) == pytest.approx(22.8)
    assert LatencyModel.from_dict(m.to_dict()) == m


def test_a_table_without_widths_prices_heads_and_ffn_only():
    m = LatencyModel(2, 4, 64, (0, 1, 2, 3, 4), (0.0, 1.0, 2.0, 3.0, 4.0), (0, 32, 64),
                     (0.0, 3.2, 6.4), 2.0)
    assert not m.has_width_depth and "widths" not in m.to_dict()
    assert m.max_speedup_width_depth == m.max_speedup
    with pytest.raises(NNPruneError, match="2 layers"):
        m.predict([4], [64])
    with pytest.raises(NNPruneError, match="without hidden widths"):
        m.predict([4, 4], [64, 64], width=16)
    with pytest.raises(NNPruneError, match="must not decrease"):
        LatencyModel(**{**_table().to_dict(), "layer_ms": (0.3, 0.2, 0.4)})


def test_a_measured_table_holds_widths_and_layer_costs(tmp_path):
    from nnprune.measure.latency import LatencySetting, latency_table, width_grid

    cfg = tiny_config("bert", num_hidden_layers=3)
    cfg.architectures = ["BertForSequenceClassification"]
    table = latency_table(cfg, LatencySetting(batch_size=1, seq_len=16, threads=1),
                          cache_dir=tmp_path, budget_s=0.5)
    m = table.model
    assert width_grid(32) == [8, 16, 24, 32] and width_grid(384)[:2] == [48, 96]
    assert m.has_width_depth and m.widths == (8, 16, 24, 32) and m.hidden == 32
    assert {"layers=1", "width=8", "width=8,heads=0", "width=8,ffn=0", "width=8,empty",
            "width=8,layers=1"} <= set(table.measured)
    assert m.attention_scale[-1] == m.ffn_scale[-1] == 1.0
    assert all(0 <= v <= 1 for v in m.attention_scale + m.ffn_scale)
    assert (m.scale_heads, m.scale_dims) == (1, 8) and m.attention_scale_low[-1] == 1.0
    assert {"width=8,heads=1", "width=8,ffn=8"} <= set(table.measured)
    assert m.base_ms[-1] + 3 * m.layer_ms[-1] == pytest.approx(m.fixed_ms)
    assert m.predict([4] * 3, [64] * 3, width=32) == pytest.approx(table.measured["dense"])
    assert m.predict([4], [64], width=8) < m.dense_ms


def test_width_terms_are_fitted_affine_in_the_width_robust_to_a_noisy_width():
    from nnprune.measure.latency import _affine_fit

    widths = [8, 16, 24, 32]
    exact = [0.2 + 0.8 * w / 32 for w in widths]
    assert _affine_fit(exact, widths, 1.0) == pytest.approx(exact)
    noisy = [exact[0], exact[1] + 0.4, exact[2], 1.0]  # one slow spell at width 16
    fit = _affine_fit(noisy, widths, 1.0)
    assert fit == pytest.approx(exact)  # the other widths agree: the noisy one is outvoted
    assert _affine_fit([2.0, 3.0, 1.5], [10, 20, 30], 1.5)[-1] == 1.5  # alpha clamped to [0, 1]
    assert _affine_fit([1.0, 1.0], [16, 32], 0.0) == [0.0, 0.0]
