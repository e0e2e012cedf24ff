"""Unit tests of the pruning engine on tiny real models."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config
from transformers import AutoModelForSequenceClassification

from nnprune.errors import NNPruneError
from nnprune.pruning_core import (BlockSpec, MaskedLinear, PruningConfig, Role, build_config,
                                  find_sites, patch_model, unpatch_model)
from nnprune.pruning_core import binarizers as B
from nnprune.pruning_core.config import BinarizerKind, StructureKind
from nnprune.pruning_core.masked import resolve_block
from nnprune.pruning_core.schedule import CubicSchedule
from nnprune import distillation_loss


def tiny_model(model_type: str = "bert", seed: int = 0):
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(tiny_config(model_type, num_labels=2)).eval()


def masked(out_f=8, in_f=12, rows=2, cols=3, binarizer=BinarizerKind.TOPK, seed=0) -> MaskedLinear:
    torch.manual_seed(seed)
    layer = MaskedLinear(in_f, out_f, block_rows=rows, block_cols=cols, binarizer=binarizer)
    with torch.no_grad():
        layer.mask_scores.normal_()
    return layer


# ----------------------------------------------------------------------------- binarizers
@pytest.mark.parametrize("keep", [0.1, 0.25, 0.5, 0.9, 1.0])
def test_topk_keeps_exact_fraction(keep):
    scores = torch.randn(40, 25)
    mask = B.topk_mask(scores, keep)
    assert int(mask.sum()) == round(keep * 1000)
    # The kept entries are the largest ones.
    assert scores[mask.bool()].min() >= scores[~mask.bool()].max() if keep < 1 else True


def test_threshold_and_sigmoid_threshold():
    s = torch.tensor([-3.0, -1.0, 0.0, 2.0])
    assert B.threshold_mask(s, -0.5).tolist() == [0, 0, 1, 1]
    # sigmoid: 0.047, 0.269, 0.5, 0.88
    assert B.sigmoid_threshold_mask(s, 0.1).tolist() == [0, 1, 1, 1]
    assert B.sigmoid_threshold_mask(s, 0.6).tolist() == [0, 0, 0, 1]


def test_l0_gates_deterministic_at_eval_and_sparse():
    log_alpha = torch.tensor([-5.0, -2.4, 0.0, 5.0])
    g = B.hard_concrete(log_alpha, training=False)
    # sigmoid(a) * 1.2 - 0.1 clamped: exactly 0 below sigmoid(a) = 1/12
    expected = (torch.sigmoid(log_alpha) * 1.2 - 0.1).clamp(0, 1)
    assert torch.equal(g, expected)
    assert g[0] == 0 and g[1] == 0 and g[3] == 1
    torch.manual_seed(0)
    samples = torch.stack([B.hard_concrete(torch.zeros(1000), training=True) for _ in range(3)])
    assert 0 < samples.mean() < 1 and (samples == 0).any() and (samples == 1).any()


def test_straight_through_gradient_is_identity():
    torch.manual_seed(0)
    layer = MaskedLinear(12, 8, bias=False, block_rows=2, block_cols=3, binarizer=BinarizerKind.TOPK)
    with torch.no_grad():
        layer.mask_scores.normal_()
    layer.train()
    layer.threshold = 0.5
    x = torch.randn(5, 12)
    layer(x).sum().backward()
    # dL/dM[i, j] = sum_n x[n, j] * W[i, j] for kept *and* pruned entries (straight-through),
    # and each block score receives the sum over its block.
    grad_mask = (torch.ones(5, 8).T @ x) * layer.weight.detach()
    expected = grad_mask.reshape(4, 2, 4, 3).sum(dim=(1, 3))
    assert torch.allclose(layer.mask_scores.grad, expected, atol=1e-5)
    assert (layer.block_mask(training=True) == 0).any()  # pruned blocks got gradient too


def test_magnitude_mask_keeps_largest_blocks():
    layer = MaskedLinear(4, 4, block_rows=2, block_cols=2, binarizer=BinarizerKind.MAGNITUDE)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 1, 5, 5], [1, 1, 5, 5], [9, 9, 0, 0], [9, 9, 0, 0]]))
    layer.final_threshold = 0.5
    assert layer.block_mask(training=False).tolist() == [[0, 1], [1, 0]]


# ----------------------------------------------------------------------------- blocks
def test_block_expansion_and_bias_row_mask():
    layer = MaskedLinear(6, 4, block_rows=2, block_cols=3, binarizer=BinarizerKind.THRESHOLD)
    with torch.no_grad():
        layer.mask_scores.copy_(torch.tensor([[1.0, -1.0], [-1.0, -1.0]]))
    layer.final_threshold = 0.0
    block = layer.block_mask(training=False)
    full = layer.expand(block)
    assert full.tolist() == [[1, 1, 1, 0, 0, 0]] * 2 + [[0] * 6] * 2
    assert layer.row_mask(block).tolist() == [1, 1, 0, 0]
    lin = layer.to_linear(apply_mask=True)
    assert torch.equal(lin.bias[2:], torch.zeros(2)) and torch.equal(lin.bias[:2], layer.bias[:2])


@pytest.mark.parametrize("spec,role,expected", [
    ("32x16", Role.QUERY, (32, 16)), ("row", Role.QUERY, (1, 64)), ("column", Role.KEY, (64, 1)),
    ("head", Role.VALUE, (16, 64)), ("head", Role.ATTN_OUTPUT, (64, 16)),
    ("ffn_dim", Role.FFN_IN, (1, 64)), ("ffn_dim", Role.FFN_OUT, (64, 1)),
])
def test_resolve_block_shapes(spec, role, expected):
    assert resolve_block(BlockSpec.parse(spec), role, 64, 64, num_heads=4) == expected


def test_block_that_does_not_divide_is_a_clear_error():
    model = tiny_model()
    cfg = build_config("hybrid-nt", overrides={"attention_block": "5x5"})
    with pytest.raises(NNPruneError, match=r"block shape 5x5 .* does not divide the weight 32x32"):
        patch_model(model, cfg)


def test_shared_ffn_mask_prunes_rows_and_matching_columns():
    model = tiny_model()
    pruner = patch_model(model, build_config("movement", overrides={"ffn_block": "ffn_dim"}))
    ffn = [p for p in pruner if p.site.role in (Role.FFN_IN, Role.FFN_OUT)]
    fin, fout = ffn[0].layer, ffn[1].layer
    assert fin.mask_scores.shape == (64, 1) and fout.mask_scores is None and fout.score_source is fin
    pruner.configure(10)
    pruner.finalize()
    with torch.no_grad():
        fin.mask_scores.normal_()
    rows = fin.expand(fin.block_mask(training=False)).all(dim=1)
    cols = fout.expand(fout.block_mask(training=False)).all(dim=0)
    assert torch.equal(rows, cols)
    assert int(rows.sum()) == round(0.1 * 64)
    # In training the FFN-out layer reuses the very mask tensor of the FFN-in layer.
    model.train()
    fin.threshold = 0.5
    model(torch.randint(0, 100, (2, 7)))
    assert torch.equal(fout.block_mask().flatten(), fin._cached_mask.flatten())


def test_head_structure_masks_whole_heads():
    model = tiny_model()
    pruner = patch_model(model, build_config("struct"))
    q = next(p.layer for p in pruner if p.site.role is Role.QUERY)
    o = next(p.layer for p in pruner if p.site.role is Role.ATTN_OUTPUT)
    assert q.grid == (4, 1) and o.grid == (1, 4)


def test_global_topk_keeps_fraction_of_all_weights():
    model = tiny_model()
    cfg = build_config("movement", overrides={"global_topk": "true", "attention_block": "4x4"})
    pruner = patch_model(model, cfg)
    torch.manual_seed(1)
    for i, p in enumerate(pruner.mask_score_parameters()):
        with torch.no_grad():
            p.normal_(mean=float(i % 3), std=1.0)  # matrices differ: global != per-matrix
    pruner.configure(10)
    pruner.finalize()
    assert abs(pruner.density() - 0.1) < 0.01
    per_matrix = [p.layer.kept_weights() / p.layer.weight.numel() for p in pruner]
    assert max(per_matrix) - min(per_matrix) > 0.1


# ----------------------------------------------------------------------------- roles
@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert", "electra"])
def test_roles_found_for_each_encoder(model_type):
    sites = find_sites(tiny_model(model_type))
    assert len(sites) == 2 * 6
    assert {s.role for s in sites} == set(Role) - {Role.QKV}  # QKV: fused layers (ModernBERT)


def test_bart_roles_have_ten_matrices_per_decoder_layer():
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_config(tiny_config("bart"))
    sites = find_sites(model)
    dec = [s for s in sites if s.stack == "decoder" and s.layer == 0]
    assert len(dec) == 10 and {s.attention for s in dec} == {"self", "cross", None}
    assert len([s for s in sites if s.stack == "encoder" and s.layer == 0]) == 6


def test_unknown_architecture_error_names_supported():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    with pytest.raises(NNPruneError, match="'gpt2' is not supported; supported model types: bart, bert"):
        find_sites(model)


def test_pattern_that_matches_nothing_lists_what_was_found(monkeypatch):
    from nnprune.pruning_core import architectures as A

    broken = A.ArchitectureRoles("bert", (A.StackRoles(
        name="encoder", layers=r"encoder\.block\.(\d+)", heads_attr="num_attention_heads",
        attentions=A._BERT_STACK.attentions, ffn_in="x", ffn_out="y", ffn_attr="intermediate_size"),))
    monkeypatch.setitem(A.ARCHITECTURES, "bert", broken)
    with pytest.raises(NNPruneError, match=r"no linear layer matches .*linear layers found: bert\.encoder"):
        find_sites(tiny_model())


# ----------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("model_type", ["bert", "distilbert"])
@pytest.mark.parametrize("method", ["movement", "hybrid-nt", "struct", "l0", "magnitude"])
def test_patch_unpatch_round_trip(model_type, method):
    model = tiny_model(model_type)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randint(0, 1000, (2, 9))
    ref = model(x).logits
    overrides = {"attention_block": "8x8"} if method == "hybrid-nt" else None
    pruner = patch_model(model, build_config(method, overrides=overrides))
    assert len(pruner) == 12 and sum(isinstance(m, MaskedLinear) for m in model.modules()) == 12
    unpatch_model(model, apply_masks=False)
    assert not any(isinstance(m, MaskedLinear) for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(model(x).logits, ref)


def test_bertarize_gives_same_outputs_as_masked():
    model = tiny_model()
    pruner = patch_model(model, build_config("movement"))
    for p in pruner.mask_score_parameters():
        with torch.no_grad():
            p.normal_()
    pruner.configure(10)
    pruner.finalize()
    x = torch.randint(0, 1000, (3, 11))
    masked_out = model(x).logits
    density = pruner.density()
    unpatch_model(model, apply_masks=True)
    assert torch.allclose(model(x).logits, masked_out, atol=1e-6)
    lin = [m for n, m in model.named_modules() if n.endswith("attention.self.query")][0]
    assert abs(float((lin.weight != 0).float().mean()) - 0.1) < 0.01 and abs(density - 0.1) < 1e-3


def test_patching_twice_is_refused():
    model = tiny_model()
    patch_model(model, build_config("movement"))
    with pytest.raises(NNPruneError, match="already patched"):
        patch_model(model, build_config("movement"))


# ----------------------------------------------------------------------------- schedule
def test_cubic_schedule_values():
    s = CubicSchedule.build(1.0, 0.1, initial_warmup=10, final_warmup=20, total_steps=110)
    assert s.value(0) == 1.0 and s.value(10) == 1.0
    assert s.value(90) == pytest.approx(0.1) and s.value(110) == pytest.approx(0.1)
    # halfway through the 80 pruning steps: 0.1 + 0.9 * 0.5^3
    assert s.value(50) == pytest.approx(0.1 + 0.9 * 0.125)
    assert s.progress(50) == pytest.approx(1 - 0.125)


def test_schedule_fractions_and_sigmoid_direction():
    s = CubicSchedule.build(0.0, 0.1, initial_warmup=0.1, final_warmup=0.3, total_steps=100)
    assert (s.warmup_steps, s.cooldown_steps) == (10, 30)
    vals = [s.value(t) for t in range(0, 101, 10)]
    assert vals == sorted(vals) and vals[0] == 0.0 and vals[-1] == pytest.approx(0.1)


def test_regularization_ramps_with_schedule_and_splits_groups():
    model = tiny_model()
    cfg = build_config("hybrid-nt", overrides={"attention_block": "8x8", "attention_lambda": "2",
                                               "ffn_lambda": "3"})
    pruner = patch_model(model, cfg)
    pruner.configure(100)
    pruner.step(0)
    assert float(pruner.regularization_loss()) == 0.0
    pruner.step(100)
    # scores start at 0 -> sigmoid = 0.5 in every layer
    assert float(pruner.regularization_loss()) == pytest.approx(2 * 0.5 + 3 * 0.5)


def test_l0_regularization_is_expected_density():
    model = tiny_model()
    pruner = patch_model(model, build_config("l0", overrides={"attention_lambda": "1", "ffn_lambda": "0"}))
    pruner.configure(10)
    pruner.step(10)
    expected = torch.sigmoid(torch.tensor(2.197 - 2 / 3 * math.log(0.1 / 1.1)))
    assert float(pruner.regularization_loss()) == pytest.approx(float(expected), rel=1e-5)


# ----------------------------------------------------------------------------- distillation
def test_distillation_loss_matches_hand_computation():
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    T = 2.0
    p_t = torch.softmax(t / T, -1)
    hand = sum(float((p_t[i] * (p_t[i].log() - torch.log_softmax(s[i] / T, -1))).sum())
               for i in range(2)) / 2 * T * T
    assert float(distillation_loss(s, t, T)) == pytest.approx(hand, rel=1e-6)
    ref = F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean") * T * T
    assert float(distillation_loss(s, t, T)) == pytest.approx(float(ref), rel=1e-6)
    assert float(distillation_loss(t, t, T)) == pytest.approx(0.0, abs=1e-7)


def test_regression_distillation_is_mse_and_an_empty_mask_pulls_nothing():
    s = torch.tensor([[1.0], [3.0]], requires_grad=True)
    t = torch.tensor([[2.0], [1.0]])
    # one output: a softmax would be constant (loss 0); the student matches the value instead
    assert float(distillation_loss(s, t, 2.0)) == pytest.approx((1 + 4) / 2)
    none = torch.zeros(2, dtype=torch.bool)
    loss = distillation_loss(s, t, 2.0, mask=none)
    assert float(loss) == 0.0
    loss.backward()
    assert s.grad is not None and float(s.grad.abs().sum()) == 0.0


# ----------------------------------------------------------------------------- config
def test_config_validation_messages():
    with pytest.raises(NNPruneError, match=r"target density must be in \(0, 1\]"):
        build_config("movement", target_density=1.5)
    with pytest.raises(NNPruneError, match="unknown method 'nope'; known: block, dense, hybrid"):
        build_config("nope")
    with pytest.raises(NNPruneError, match="pass --teacher"):
        build_config("hybrid")
    with pytest.raises(NNPruneError, match="unknown block shape 'banana'"):
        PruningConfig(attention_block="banana")
    with pytest.raises(NNPruneError, match="unknown pruning config key 'nope'"):
        build_config("movement", overrides={"nope": 1})


def test_target_density_sets_topk_final_threshold_and_config_round_trips():
    cfg = build_config("movement", target_density=0.3)
    assert cfg.final_threshold == 0.3
    again = PruningConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.attention_block == BlockSpec(StructureKind.BLOCK, 1, 1)


@pytest.mark.parametrize("method", ["hybrid-nt", "soft-movement"])
def test_target_density_of_threshold_methods_is_exact_and_survives_reload(method, tmp_path):
    """Soft methods with a target keep the global score quantile at the scheduled density: the
    density is exact during training and at eval, and a reloaded checkpoint has the same masks."""
    from nnprune.pruning_core.checkpoint import load_model, save_checkpoint

    model = tiny_model()
    overrides = {"attention_block": "8x8"} if method == "hybrid-nt" else None
    cfg = build_config(method, target_density=0.4, overrides=overrides)
    pruner = patch_model(model, cfg)
    torch.manual_seed(0)
    for s in pruner.mask_score_parameters():
        with torch.no_grad():
            s.normal_(0.0, 2.0)
    pruner.configure(100)
    pruner.step(40)  # mid-schedule
    assert abs(pruner.density(training=True) - pruner.target_at_progress()) < 0.02
    pruner.finalize()
    assert abs(pruner.density() - 0.4) < 0.02
    x = torch.randint(0, 1000, (2, 9))
    masked = model(x).logits
    save_checkpoint(model, tmp_path / "ck", config=cfg)
    # Baked straight after loading, before any forward or density call computes a cut.
    baked = load_model(tmp_path / "ck").model
    unpatch_model(baked, apply_masks=True)
    assert torch.allclose(baked(x).logits, masked, atol=1e-5)
    loaded = load_model(tmp_path / "ck")
    assert loaded.pruner.density() == pytest.approx(pruner.density())
    assert torch.allclose(loaded.model(x).logits, masked, atol=1e-6)
    unpatch_model(loaded.model, apply_masks=True)  # bertarize bakes the same quantile masks
    assert torch.allclose(loaded.model(x).logits, masked, atol=1e-5)
    assert not loaded.model._forward_pre_hooks  # the global-cut hook left with the masks
