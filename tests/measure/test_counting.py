"""``nnprune.count_parameters``: the parameters in all and in the embeddings, beside the papers'
linear-weight counts, with labelled ``to_dict()``."""

from __future__ import annotations

from conftest import tiny_bert, tiny_task_model

import nnprune


def _stored(model) -> int:
    return sum(p.numel() for p in model.state_dict().values())


def test_every_parameter_once_and_the_embeddings():
    model = tiny_bert()
    count = nnprune.count_parameters(model)
    assert count.total_parameters == sum(p.numel() for p in model.parameters())
    emb = model.bert.embeddings
    assert count.embedding_parameters == sum(e.weight.numel() for e in (
        emb.word_embeddings, emb.position_embeddings, emb.token_type_embeddings))
    assert count.original_total_parameters == count.total_parameters
    d = count.to_dict()
    assert d["parameters"] == {"total": count.total_parameters,
                               "original": count.total_parameters,
                               "embeddings": count.embedding_parameters}
    assert d["layers"][0]["ffn_dims"] == {"kept": 64, "original": 64}


def test_tied_embeddings_count_once():
    """BART's encoder, decoder and LM head share one embedding table."""
    model = tiny_task_model("bart", "seq2seq")
    count = nnprune.count_parameters(model)
    assert count.total_parameters == sum(p.numel() for p in model.parameters())
    assert count.total_parameters < _stored(model)  # the state dict repeats the shared table


def test_mask_scores_are_not_parameters_of_the_model():
    model = tiny_bert()
    before = nnprune.count_parameters(model).total_parameters
    nnprune.attach_masks(model, "movement", target_density=0.5, total_steps=10)
    assert any("mask_scores" in n for n, _ in model.named_parameters())
    assert nnprune.count_parameters(model).total_parameters == before
