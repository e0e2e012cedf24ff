"""nnprune.model_shape / drop_layers / evenly_spaced_layers / layers_for_speedup / shaped_model:
what a trade-off sweep measures and builds, on tiny models."""

from __future__ import annotations

import pytest
import torch

import nnprune
from tests.conftest import known_latency_table, tiny_bert


def _hidden(model, ids):
    return model.bert.embeddings(input_ids=ids)


def test_dropped_layers_compute_what_they_computed_in_the_full_model():
    model = tiny_bert(num_hidden_layers=4)
    keep = nnprune.evenly_spaced_layers(4, 2)
    assert keep == [0, 2]
    small = nnprune.drop_layers(model, keep)
    assert small.config.num_hidden_layers == 2 and nnprune.model_shape(small).layers == 2
    ids = torch.randint(0, 1000, (2, 8))
    with torch.no_grad():
        h = _hidden(model, ids)
        for new, old in enumerate(keep):
            a = model.bert.encoder.layer[old](h)
            b = small.bert.encoder.layer[new](h)
            a, b = (a[0] if isinstance(a, tuple) else a), (b[0] if isinstance(b, tuple) else b)
            assert torch.allclose(a, b)
        # embeddings and head are the full model's
        assert torch.equal(small.classifier.weight, model.classifier.weight)
    with pytest.raises(nnprune.NNPruneError, match="layer indices in"):
        nnprune.drop_layers(model, [0, 4])
    with pytest.raises(nnprune.NNPruneError, match="keep between 1 and 6"):
        nnprune.evenly_spaced_layers(6, 0)


def test_drop_layers_sets_the_layer_count_each_architecture_names():
    """DistilBERT counts its layers in ``n_layers``: the student's config says 1 there, and the
    student runs."""
    from transformers import AutoModelForSequenceClassification

    from tests.conftest import tiny_config

    model = AutoModelForSequenceClassification.from_config(tiny_config("distilbert")).eval()
    small = nnprune.drop_layers(model, [1])
    assert small.config.n_layers == 1 and len(small.distilbert.transformer.layer) == 1
    assert small(input_ids=torch.randint(0, 1000, (1, 8))).logits.shape == (1, 2)


def test_shape_and_prediction_of_a_compacted_model_and_of_its_config(tiny_dir, tmp_path):
    model = nnprune.load_pretrained(tiny_dir)
    table = nnprune.latency_table(model, path=known_latency_table(tiny_dir, tmp_path / "t.json"))
    full = nnprune.model_shape(model)
    assert (full.heads, full.ffn_dims) == ((4, 4), (64, 64)) and full.predicted_speedup(table) == 1.0
    # one layer dropped: 1 ms a head, 0.1 ms an FFN dim, 2 ms fixed -> 22.8 / 12.4
    assert nnprune.layers_for_speedup(table, 1.5) == (1, pytest.approx(22.8 / 12.4))
    # heads 0 and 1 of layer 0 and half the FFN of layer 1 removed
    with torch.no_grad():
        attn = model.bert.encoder.layer[0].attention
        attn.output.dense.weight[:, :16] = 0
        model.bert.encoder.layer[1].output.dense.weight[:, :32] = 0
    small = nnprune.compact(model).model
    shape = nnprune.model_shape(small)
    assert (shape.heads, shape.ffn_dims) == ((2, 4), (64, 32))
    assert shape.predicted_speedup(table) == pytest.approx(22.8 / (2 + 6 + 0.1 * 96))
    nnprune.save_pretrained(small, tmp_path / "small")
    (tmp_path / "small" / "model.safetensors").unlink()  # the weights stayed elsewhere
    again = nnprune.shaped_model(tmp_path / "small")
    assert nnprune.model_shape(again) == shape
    with pytest.raises(nnprune.NNPruneError, match="no config.json"):
        nnprune.shaped_model(tmp_path)
