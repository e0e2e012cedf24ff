"""The latency model (interpolation, monotone fit, reach) and the latency cut of the pruner."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from nnprune.errors import NNPruneError
from nnprune.pruning_core.config import PruningConfig
from nnprune.pruning_core.latency_model import LatencyModel, monotone
from nnprune.pruning_core.methods import build_config
from nnprune.pruning_core.pruner import patch_model


def _model(layers: int = 2, heads: int = 4, ffn: int = 64) -> LatencyModel:
    # 1 ms per head, 0.1 ms per FFN dim, 2 ms fixed: dense = 2 + L * (4 + 6.4)
    return LatencyModel(layers, heads, ffn, tuple(range(heads + 1)),
                        tuple(float(h) for h in range(heads + 1)), (0, 16, 32, 64),
                        (0.0, 1.6, 3.2, 6.4), 2.0)


def test_interpolation_prediction_and_reach():
    m = _model()
    assert m.attention(2) == 2.0 and m.attention(2.5) == 2.5
    assert m.ffn(24) == pytest.approx(2.4) and m.ffn(64) == pytest.approx(6.4)
    assert m.dense_ms == pytest.approx(2 + 2 * 10.4)
    assert m.predict([4, 0], [64, 0]) == pytest.approx(2 + 4 + 6.4)
    assert m.speedup([4, 4], [64, 64]) == pytest.approx(1.0)
    assert m.max_speedup == pytest.approx(22.8 / 2)
    assert m.budget_ms(2.0) == pytest.approx(11.4)
    with pytest.raises(NNPruneError, match="beyond reach.*11.40x"):
        m.budget_ms(12)
    with pytest.raises(NNPruneError, match="must be > 1"):
        m.budget_ms(1.0)
    assert LatencyModel.from_dict(m.to_dict()) == m


def test_bad_tables_are_refused():
    with pytest.raises(NNPruneError, match="must not decrease"):
        LatencyModel(1, 2, 8, (0, 1, 2), (0.0, 2.0, 1.0), (0, 8), (0.0, 1.0), 1.0)
    with pytest.raises(NNPruneError, match="rise strictly from 0 to 8"):
        LatencyModel(1, 2, 8, (0, 1, 2), (0.0, 1.0, 2.0), (0, 4), (0.0, 1.0), 1.0)
    with pytest.raises(NNPruneError, match="missing 'fixed_ms'"):
        LatencyModel.from_dict({k: v for k, v in _model().to_dict().items() if k != "fixed_ms"})


def test_monotone_fit_pools_an_outlier_instead_of_raising_everything_after_it():
    assert monotone([0, 1, 2, 3]) == [0, 1, 2, 3]
    # One slow point (9 between 2 and 4) is averaged with what follows it, not carried forward.
    fit = monotone([0, 1, 9, 4, 5, 6])
    assert fit == sorted(fit) and fit[-1] == 6 and fit[2] == pytest.approx(6.0)
    assert monotone([3, 1]) == [2, 2]


def test_speedup_and_density_targets_are_exclusive():
    with pytest.raises(NNPruneError, match="one target at a time"):
        PruningConfig(target_density=0.5, target_speedup=2.0)
    with pytest.raises(NNPruneError, match="threshold binarizer"):
        build_config("movement", target_speedup=2.0)
    with pytest.raises(NNPruneError, match="must be > 1"):
        build_config("struct", target_speedup=0.5)


def _patched(method: str, **overrides):
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config()).eval()
    config = build_config(method, target_speedup=2.0, overrides=overrides)
    return model, patch_model(model, config)


def test_struct_cut_meets_the_budget_with_the_most_units():
    model, pruner = _patched("struct")
    m = _model()
    pruner.use_latency(m)
    torch.manual_seed(1)
    for p in pruner.score_owners:
        p.layer.mask_scores.data.normal_()
    pruner.finalize()
    cut = pruner.latency_cut
    budget = m.budget_ms(2.0)
    cutoff = cut.cutoff(budget)
    heads, dims = cut.sizes(cutoff)
    assert m.predict(heads, dims) <= budget
    # the next lower score would keep one unit more and break the budget
    values = torch.unique(torch.cat([p.layer.mask_scores.detach().flatten()
                                     for p in pruner.score_owners]))
    lower = values[values < cutoff].max()
    assert m.predict(*cut.sizes(float(lower))) > budget
    assert pruner.predicted_speedup() == pytest.approx(m.dense_ms / m.predict(heads, dims))
    assert pruner.predicted_speedup() >= 2.0
    # The eval masks are that cut: a head is gone exactly when its value rows are masked.
    for i, layer in enumerate(model.bert.encoder.layer):
        v = layer.attention.self.value.block_mask(training=False)  # (heads, 1)
        o = layer.attention.output.dense.block_mask(training=False)  # (1, heads)
        alive = (v[:, 0] > 0) & (o[0] > 0)
        assert int(alive.sum()) == heads[i]
        ffn = layer.intermediate.dense.block_mask(training=False)  # (ffn, 1)
        assert int((ffn > 0).sum()) == dims[i]


def test_hybrid_head_counts_only_when_all_its_blocks_are_masked():
    model, pruner = _patched("hybrid-nt", attention_block="8x8")
    m = _model()
    pruner.use_latency(m)
    layer0 = model.bert.encoder.layer[0].attention
    value = layer0.self.value  # (32, 32) weight, 8x8 blocks: grid (4 heads, 4)
    for p in pruner.score_owners:
        p.layer.mask_scores.data.fill_(5.0)
    # head 1 of layer 0: three of its four value blocks low, one high -> still a whole head
    value.mask_scores.data[1, :3] = -5.0
    # head 2: every value block low -> removed
    value.mask_scores.data[2, :] = -5.0
    heads, dims = pruner.latency_cut.sizes(0.0)
    assert heads == [3, 4] and dims == [64, 64]


def test_target_density_of_the_schedule_follows_the_latency_cut():
    model, pruner = _patched("struct")
    pruner.use_latency(_model())
    pruner.configure(total_steps=10)
    pruner.step(0)  # warm-up: the budget is the dense latency, every block is kept
    assert pruner.target_at_progress() == pytest.approx(1.0)
    pruner.step(10)
    assert pruner.progress == 1.0 and pruner.target_at_progress() < 0.8
    stats = pruner.stats()
    assert stats["pruning/predicted_speedup"] >= 2.0


def test_configure_without_a_table_is_refused():
    _, pruner = _patched("struct")
    with pytest.raises(NNPruneError, match="needs a latency table"):
        pruner.configure(total_steps=10)
    with pytest.raises(NNPruneError, match="beyond reach"):
        pruner.config.target_speedup = 50.0
        pruner.use_latency(_model())
