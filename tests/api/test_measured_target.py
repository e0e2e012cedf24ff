"""``nnprune.prune(..., measured_target=True)``: a speed target held to what this machine
measures, not to what the latency table predicts. A table that prices the model too fast is
corrected by timing each candidate against the dense model; a table of another machine, or a
FLOP target, is refused in one line."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

import nnprune
from nnprune.api.post_training import MEASURED_LOW, shape_speedup
from nnprune.errors import NNPruneError
from nnprune.measure.latency import LatencySetting

SEQ = 64
SETTING = LatencySetting(batch_size=1, seq_len=SEQ, threads=1)


@pytest.fixture(scope="module")
def model_and_table():
    """A BERT large enough that its layers, not Python, set its time (4 layers, hidden 256, 8
    heads, FFN 1024: ~3 ms a forward at 64 tokens on one thread), and a table measured here."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=512, hidden_size=256, num_hidden_layers=4, num_attention_heads=8,
                        intermediate_size=1024, max_position_embeddings=128, num_labels=2)
    model = BertForSequenceClassification(config).eval()
    table = nnprune.latency_table(model, setting=SETTING, budget_s=4.0, rebuild=True,
                                  cache_dir=None)
    return model, table


def _batches(n: int = 64) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 512, (n, SEQ), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    return [{"input_ids": ids[i:i + 16], "attention_mask": torch.ones(16, SEQ, dtype=torch.long),
             "labels": labels[i:i + 16]} for i in range(0, n, 16)]


def _optimistic(table):
    """The table made to price pruned shapes far faster than they run: each unit curve bent
    cubic (the first units removed save most of a block) and the fixed part at a fifth."""
    m = table.model

    def bent(units, ms):
        return tuple(ms[-1] * (u / units[-1]) ** 3 for u in units)

    model = dataclasses.replace(m, attention_ms=bent(m.heads, m.attention_ms),
                                ffn_ms=bent(m.ffn_dims, m.ffn_ms), fixed_ms=m.fixed_ms / 5,
                                base_ms=tuple(b / 5 for b in m.base_ms))
    return dataclasses.replace(table, model=model)


def _copy(model):
    return copy.deepcopy(model)


def test_an_optimistic_table_is_corrected_by_what_is_measured(model_and_table):
    model, table = model_and_table
    target = 2.0
    result = nnprune.prune(_copy(model), _batches(), target_speedup=target,
                           latency_table=_optimistic(table), measured_target=True,
                           width_depth=False)
    rounds = result.speed_rounds
    assert rounds and sum(r["taken"] for r in rounds) == 1
    assert {r["cache"] for r in rounds} == {"warm"}  # timed as the model serves
    first = rounds[0]
    # the table's first shape fits its (wrong) prices but measures short of the target
    assert first["predicted"] >= target * 0.99 and first["measured"] < target * (1 - MEASURED_LOW)
    # the correction lowers the budget and the shapes after it measure faster
    assert len(rounds) > 1 and rounds[1]["budget_ms"] < first["budget_ms"]
    assert max(r["measured"] for r in rounds[1:]) > first["measured"]
    taken = next(r for r in rounds if r["taken"])
    reached = [r["measured"] for r in rounds if r["measured"] >= target * (1 - MEASURED_LOW)]
    assert taken["measured"] == (min(reached) if reached else max(r["measured"] for r in rounds))
    assert result.measured_speedup == taken["measured"]
    # the model returned is the taken shape: timed again, it measures what was recorded
    again = nnprune.measure_speed(result.model, model, batch_sizes=[1], seq_lens=[SEQ],
                                  threads=1, warmup=3, iters=30).rows[0].speedup_paired
    assert again == pytest.approx(taken["measured"], rel=0.25)


def test_a_shape_is_timed_against_the_dense_model(model_and_table):
    """shape_speedup: the dense model cut to nothing but the embeddings and the head measures
    far faster than dense, and the dense model is left as it was."""
    from nnprune.pruning_core.post_training import ShapeChoice, mask_groups

    model, table = model_and_table
    before = {k: v.clone() for k, v in model.state_dict().items()}
    empty = ShapeChoice({g.key: [] for g in mask_groups(model)}, list(range(256)), [])
    assert shape_speedup(model, empty, False, SETTING) > 3.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_refusals_are_one_line(model_and_table):
    model, table = model_and_table
    elsewhere = dataclasses.replace(table, key={**table.key, "hardware": "another CPU (64 CPUs)"})
    with pytest.raises(NNPruneError, match="measured on another CPU .*measure one here"):
        nnprune.prune(_copy(model), _batches(), target_speedup=2.0, latency_table=elsewhere,
                      measured_target=True)
    with pytest.raises(NNPruneError, match="needs --target-speedup, not --target-flops"):
        nnprune.prune(_copy(model), _batches(), target_flops=0.5, measured_target=True)
