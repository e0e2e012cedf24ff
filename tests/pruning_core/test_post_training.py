"""Post-training pruning engine: Fisher scores, the FLOP-budget search, rearrangement and the
least-squares tuning, on tiny real BERTs."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_config

from nnprune.pruning_core.post_training import (Importance, UnitCosts, apply_masks,
                                                fisher_information, mask_groups, masked_inputs,
                                                rearrange, search_masks, tune_layerwise)


def _model(layers: int = 2, seed: int = 0):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    cfg = tiny_config("bert", num_hidden_layers=layers, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)
    model = AutoModelForSequenceClassification.from_config(cfg).eval()
    with torch.no_grad():  # larger weights: gradients and reconstruction errors well above noise
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(3.0)
    return model


def _batches(n_batches: int = 3, batch: int = 4, seq: int = 12, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(1000, 2000, (batch, seq), generator=g)
        mask = torch.ones_like(ids)
        mask[0, seq - 4:] = 0  # one padded example
        out.append({"input_ids": ids, "attention_mask": mask,
                    "labels": torch.randint(0, 2, (batch,), generator=g)})
    return out


def test_head_fisher_equals_a_hand_computation_on_one_layer():
    """Fisher of head h = sum over examples of (d loss_n / d m_h)^2, with each example's gradient
    taken alone (batch of one, a scalar mask per head) — the batched per-example trick must agree."""
    model = _model(layers=1)
    groups = mask_groups(model)
    heads = next(g for g in groups if g.is_heads)
    batches = _batches()
    imp = fisher_information(model, batches, groups)
    hand = torch.zeros(heads.size, dtype=torch.float64)
    for batch in batches:
        for n in range(batch["input_ids"].shape[0]):
            one = {k: v[n:n + 1] for k, v in batch.items()}
            m = torch.ones(heads.size, requires_grad=True)
            with masked_inputs(model, [heads], {heads.key: m}):
                loss = model(**one).loss
            (g,) = torch.autograd.grad(loss, [m])
            hand += g.double() ** 2
    assert imp.samples == 12
    assert torch.allclose(imp.diagonal[heads.key], hand, rtol=1e-4, atol=1e-10)
    assert float(hand.min()) > 0  # every head matters a little: the test can fail
    # the block's diagonal is the diagonal Fisher
    assert torch.allclose(imp.blocks[heads.key].diagonal(), imp.diagonal[heads.key])
    # gradients only: no weight received a gradient, none changed
    assert all(p.grad is None for p in model.parameters())


def _importance(groups, values):
    diag = {g.key: torch.tensor(values[g.key], dtype=torch.float64) for g in groups}
    return Importance(diag, {k: torch.diag(v) for k, v in diag.items()}, 1)


def test_search_meets_the_flop_budget_exactly_and_keeps_the_most_important():
    model = _model()
    groups = mask_groups(model)
    costs = UnitCosts(head=100.0, ffn_dim=10.0, fixed=1000.0, seq_len=8)
    g = torch.Generator().manual_seed(0)
    values = {grp.key: torch.rand(grp.size, generator=g).tolist() for grp in groups}
    imp = _importance(groups, values)
    full = costs.total(8, 128)
    for keep in (0.4, 0.6, 0.85):
        budget = full * keep
        kept = search_masks(imp, groups, costs, budget)
        heads = sum(len(v) for k, v in kept.items() if k[2] is not None)
        dims = sum(len(v) for k, v in kept.items() if k[2] is None)
        used = costs.total(heads, dims)
        assert used <= budget < used + costs.ffn_dim or dims == 128  # nothing more fits
        # optimal: brute force over the number of heads agrees
        best = max(sum(sorted((v for k, vs in values.items() if k[2] is not None for v in vs),
                              reverse=True)[:h]) +
                   sum(sorted((v for k, vs in values.items() if k[2] is None for v in vs),
                              reverse=True)[:min(128, int((budget - 1000 - 100 * h) // 10))])
                   for h in range(9) if budget - 1000 - 100 * h >= 0)
        got = sum(values[k][i] for k, v in kept.items() for i in v)
        assert got == pytest.approx(best)


def test_search_refuses_a_budget_below_the_fixed_cost():
    from nnprune.errors import NNPruneError

    model = _model()
    groups = mask_groups(model)
    imp = _importance(groups, {g.key: [1.0] * g.size for g in groups})
    with pytest.raises(NNPruneError, match="ask for a smaller speedup"):
        search_masks(imp, groups, UnitCosts(1.0, 1.0, 500.0, 8), 100.0)


def test_rearrangement_sees_interactions_the_diagonal_misses():
    """Heads 0 and 1 each look cheap to prune, but pruning both together costs a lot (a positive
    interaction); the rearrangement keeps one of them and prunes head 2 instead."""
    model = _model(layers=1)
    groups = [g for g in mask_groups(model) if g.is_heads]
    (heads,) = groups
    block = torch.diag(torch.tensor([1.0, 1.0, 1.5, 9.0], dtype=torch.float64))
    block[0, 1] = block[1, 0] = 5.0
    imp = Importance({heads.key: block.diagonal().clone()}, {heads.key: block}, 1)
    kept = {heads.key: [2, 3]}  # what the diagonal alone chooses: prune the two "cheapest"
    out = rearrange(imp, groups, kept)
    assert len(out[heads.key]) == 2 and 3 in out[heads.key] and out[heads.key] != [2, 3]


def _reconstruction_errors(model, dense, groups, batches):
    """Squared error of each output projection's output against the dense model's."""
    errs = {}
    for g in groups:
        got, want = [], []
        h1 = model.get_submodule(g.out_path).register_forward_hook(lambda m, a, o: got.append(o))
        h2 = dense.get_submodule(g.out_path).register_forward_hook(lambda m, a, o: want.append(o))
        with torch.no_grad():
            for b in batches:
                model(**b)
                dense(**b)
        h1.remove()
        h2.remove()
        errs[g.label] = sum(float(((a - b)[bt["attention_mask"].bool()] ** 2).sum())
                            for a, b, bt in zip(got, want, batches))
    return errs


def test_least_squares_tuning_reduces_reconstruction_error_and_never_increases_it():
    model = _model()
    dense = copy.deepcopy(model)
    groups = mask_groups(model)
    kept = {g.key: list(range(0, g.size, 2)) for g in groups}  # every other unit
    batches = _batches()
    plain = copy.deepcopy(model)
    apply_masks(plain, groups, kept)
    report = tune_layerwise(model, dense, groups, kept, batches)
    assert all(report.after[k] <= report.before[k] * (1 + 1e-9) for k in report.before)
    assert sum(report.after.values()) < 0.9 * sum(report.before.values())  # it really helps
    # measured on the models themselves (the first group sees identical inputs in both):
    first = groups[0].label
    e_plain = _reconstruction_errors(plain, dense, groups[:1], batches)[first]
    e_tuned = _reconstruction_errors(model, dense, groups[:1], batches)[first]
    assert e_tuned < e_plain
    assert e_plain == pytest.approx(report.before[first], rel=1e-4)
    assert e_tuned == pytest.approx(report.after[first], rel=1e-4)
    # pruned units are zero (removable by compaction), kept ones are not
    from nnprune.pruning_core.structure import analyze_structure

    st = analyze_structure(model)
    for unit in st.attention:
        assert unit.kept == [0, 2]
    for unit in st.ffn:
        assert unit.kept == list(range(0, 64, 2))


def test_encoder_decoder_models_are_refused_clearly():
    from transformers import AutoModelForSeq2SeqLM

    from nnprune.errors import NNPruneError

    model = AutoModelForSeq2SeqLM.from_config(tiny_config("bart"))
    with pytest.raises(NNPruneError, match="encoder-decoder models are not supported yet"):
        mask_groups(model)


def test_scores_start_from_the_importance_ranking():
    """score_init=importance: every 32x32-style block of a head (rows of Q/K/V, columns of the
    output) and every FFN dimension starts at its unit's standardised log-importance."""
    from nnprune.pruning_core import build_config, patch_model
    from nnprune.pruning_core.architectures import Role
    from nnprune.pruning_core.post_training import init_scores_from

    model = _model()
    groups = mask_groups(model)
    values = {g.key: [float(2 ** i) for i in range(g.size)] for g in groups}
    imp = _importance(groups, values)
    pruner = patch_model(model, build_config("hybrid-nt", overrides={
        "attention_block": "8x8", "score_init": "importance"}))
    assert all(float(p.layer.mask_scores.detach().abs().max()) == 0 for p in pruner.score_owners)
    assert init_scores_from(pruner.layers, imp, groups, scale=2.0) == len(pruner.score_owners)
    for p in pruner.score_owners:
        s = p.layer.mask_scores.detach()
        if p.site.role is Role.ATTN_OUTPUT:  # columns follow heads 0..3 (head_dim 8 = one block)
            assert torch.all(s[:, 1:] > s[:, :-1]) and torch.all(s == s[:1])
        elif p.site.role.is_attention:  # rows follow heads
            assert torch.all(s[1:] > s[:-1]) and torch.all(s == s[:, :1])
        else:  # FFN dims: 64 increasing importances
            assert torch.all(s[1:, 0] > s[:-1, 0])
    heads = torch.cat([p.layer.mask_scores.detach()[:, 0] for p in pruner.score_owners
                       if p.site.role is Role.QUERY])
    assert float(heads.mean()) == pytest.approx(0.0, abs=1e-5)  # standardised over all heads
