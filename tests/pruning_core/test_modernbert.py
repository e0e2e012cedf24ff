"""ModernBERT (issue #13): the fused Wqkv (rows [q; k; v]) and the fused GLU Wi (rows [input;
gate], one score per FFN dimension for both) are pruned, compacted and reloaded exactly, with
the alternating global / sliding-window attention; FLOPs and ONNX export of the compacted
shapes. Tiny random sequence classifiers built from configs (no downloads)."""

from __future__ import annotations


import pytest
import torch
from conftest import TOL, assert_reloads, compact_masked, stock_reload_diffs, write_probe
from nnprune.pruning_core.compact import max_abs_diff, model_outputs, probe_inputs

H, HEADS, HEAD_DIM, FFN, LABELS = 32, 4, 8, 64, 2
# Dense indices of the heads each layer keeps, and the FFN dims it keeps. Layer 0: heads 1 and
# 3 lose their values (removable), head 2 its key (qk-empty: kept); layer 1: no head and no FFN
# dim left; layer 2: one head; FFN: every third dim dropped / all / the last 24.
KEPT_HEADS = [[0, 2], [], [3]]
KEPT_FFN = [42, 0, 24]


def mb_config(**overrides):
    """Hidden 32, 3 layers of 4 heads of 8, FFN 64: layers 0 and 2 attend globally, layer 1
    within a window of 2 tokens each side (``local_attention`` 4), so the probe's 16 tokens
    see both kinds."""
    from transformers import ModernBertConfig

    kw = dict(vocab_size=1000, hidden_size=H, num_hidden_layers=3, num_attention_heads=HEADS,
              intermediate_size=FFN, global_attn_every_n_layers=2, local_attention=4,
              max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2,
              cls_token_id=1, sep_token_id=2, num_labels=LABELS)
    kw.update(overrides)
    return ModernBertConfig(**kw)


def mb_model(attn: str = "eager", **overrides):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(
        mb_config(**overrides), attn_implementation=attn).eval()


def masked_mb(attn: str = "eager", method: str = "struct"):
    """A ``struct``-masked tiny model pruned as ``KEPT_HEADS`` / ``KEPT_FFN`` say. Wqkv has one
    score per head of each section: ``[q heads; k heads; v heads]``, 12 in all."""
    from nnprune.pruning_core import Role, build_config, patch_model

    model = mb_model(attn)
    pruner = patch_model(model, build_config(method))
    pruner.finalize()
    for p in pruner.score_owners:
        s, site = p.layer.mask_scores, p.site
        s.data.fill_(5.0)
        keep = KEPT_HEADS[site.layer]
        if site.role is Role.QKV:
            s.data[[2 * HEADS + h for h in range(HEADS) if h not in keep]] = -5.0  # values
            if site.layer == 0:
                s.data[HEADS + 2] = -5.0  # the key of head 2
        elif site.role is Role.ATTN_OUTPUT and not keep:
            s.data.fill_(-5.0)
        elif site.role is Role.FFN_IN:
            n = KEPT_FFN[site.layer]
            drop = [i for i in range(FFN) if i % 3 == 0] if n == 42 else list(range(FFN - n))
            s.data[drop] = -5.0
    return model


def _probe(model):
    return probe_inputs(model.config)  # random ids, rows padded to different lengths


def test_roles_fused_qkv_and_glu_share_scores_by_section():
    from nnprune.pruning_core import Role, build_config, find_sites, patch_model
    from nnprune.pruning_core.structure import effective_weight

    model = mb_model()
    sites = find_sites(model)
    assert [(s.path, s.role, s.parts) for s in sites if s.layer == 0] == [
        ("model.layers.0.attn.Wqkv", Role.QKV, 3), ("model.layers.0.attn.Wo", Role.ATTN_OUTPUT, 1),
        ("model.layers.0.mlp.Wi", Role.FFN_IN, 2), ("model.layers.0.mlp.Wo", Role.FFN_OUT, 1)]
    assert model.config.layer_types == ["full_attention", "sliding_attention", "full_attention"]

    pruner = patch_model(model, build_config("struct"))
    pruner.finalize()
    attn, mlp = model.model.layers[0].attn, model.model.layers[0].mlp
    assert attn.Wqkv.grid == (3 * HEADS, 1) and attn.Wqkv.block_rows == HEAD_DIM
    assert mlp.Wi.grid == (FFN, 1) and mlp.Wi.row_tiles == 2 and mlp.Wo.score_source is mlp.Wi
    assert mlp.Wi.weights_per_score == 3 * H  # a row of input and gate, a column of Wo
    mlp.Wi.mask_scores.data.fill_(5.0)
    mlp.Wi.mask_scores.data[[3, 7]] = -5.0
    w, _ = effective_weight(mlp.Wi)
    assert (w == 0).all(dim=1).nonzero().flatten().tolist() == [3, 7, FFN + 3, FFN + 7]
    w, _ = effective_weight(mlp.Wo)
    assert (w == 0).all(dim=0).nonzero().flatten().tolist() == [3, 7]
    attn.Wqkv.mask_scores.data.fill_(5.0)
    attn.Wqkv.mask_scores.data[HEADS + 1] = -5.0  # key of head 1: rows 40..47
    w, _ = effective_weight(attn.Wqkv)
    zero = (w == 0).all(dim=1).nonzero().flatten().tolist()
    assert zero == list(range(H + HEAD_DIM, H + 2 * HEAD_DIM))


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_compacted_matches_masked_and_reloads_with_nnprune(tmp_path, attn):
    model = masked_mb(attn)
    report, inputs, masked = compact_masked(model)
    assert [(a.kept, a.qk_empty) for a in report.attention] == [(2, 1), (0, 0), (1, 0)]
    assert [f.kept for f in report.ffn] == KEPT_FFN
    layout = model.config.nnprune_layout["stacks"]["encoder"]
    assert layout["attention"]["self"]["fused_qkv"] and layout["ffn"]["in_parts"] == 2
    assert layout["attention"]["self"]["heads"] == [len(k) for k in KEPT_HEADS]
    assert layout["ffn"]["dims"] == KEPT_FFN
    layers = model.model.layers
    assert type(layers[1].attn).__name__ == "EmptyAttention"
    for layer, kept, ffn in zip(layers, KEPT_HEADS, KEPT_FFN):
        if kept:
            assert layer.attn.Wqkv.out_features == 3 * len(kept) * HEAD_DIM
            assert layer.attn.head_dim == HEAD_DIM
        assert layer.mlp.Wi.out_features == 2 * ffn and layer.mlp.Wo.in_features == ffn
    # The sliding window of layer 1 and the global attention of layers 0 and 2 stay as they were.
    assert [layer.attention_type for layer in layers] == model.config.layer_types

    assert_reloads(model, inputs, masked, tmp_path / "mb")


def test_compaction_is_checked_against_a_wrong_head_selection():
    """The probe does see the heads: keeping layer 0's value rows of the wrong heads shows."""
    from nnprune.pruning_core.compact import compact_model

    model = masked_mb()
    inputs = _probe(model)
    masked = model_outputs(model, inputs)
    compact_model(model)
    with torch.no_grad():
        w = model.model.layers[0].attn.Wqkv.weight
        w[2 * 2 * HEAD_DIM:] = w[2 * 2 * HEAD_DIM:].flip(0)  # the 2 kept heads' value rows swapped
    assert max_abs_diff(masked, model_outputs(model, inputs)) > 1e-3


def test_stock_transformers_reloads_compacted_without_nnprune(tmp_path):

    from nnprune.pruning_core.checkpoint import save_checkpoint
    from nnprune.pruning_core.compact import compact_model

    cases = []
    for attn in ("eager", "sdpa"):
        model = masked_mb(attn)
        inputs = _probe(model)
        ref = model_outputs(model, inputs)
        compact_model(model)
        path = save_checkpoint(model, tmp_path / attn, config=None)
        write_probe(path, inputs, ref)
        cases.append((str(path), "AutoModelForSequenceClassification"))
    diffs = stock_reload_diffs(cases, tmp_path)
    assert set(diffs) == {c[0] for c in cases}
    assert max(diffs.values()) <= TOL, diffs


def _hand_flops(batch: int, seq: int) -> int:
    """Whole forward of ``masked_mb()`` once compacted, from the layer sizes."""
    t = batch * seq
    total = 0
    for kept, f in zip(KEPT_HEADS, KEPT_FFN):
        inner = len(kept) * HEAD_DIM
        total += 2 * t * H * 3 * inner + 2 * t * inner * H  # Wqkv, Wo
        total += 2 * t * H * 2 * f + 2 * t * f * H  # Wi (input and gate), Wo
        total += 2 * batch * seq * seq * inner * 2  # Q K^T, probs x V (a window counts in full)
    total += 2 * batch * H * H + 2 * batch * H * LABELS  # head dense on [CLS], classifier
    return total


def test_flops_of_the_compacted_shape():
    from torch.utils.flop_counter import FlopCounterMode

    from nnprune.measure.flops import compacted_profile, count_flops, make_inputs
    from nnprune.pruning_core.compact import compact_model

    model = masked_mb()
    B, S = 3, 19
    predicted = compacted_profile(model).count(B, S).total  # before compacting, from the masks
    compact_model(model)
    c = count_flops(model, B, S)
    assert c.total == _hand_flops(B, S) == predicted
    assert [lf.heads["self"] for lf in c.layers] == [len(k) for k in KEPT_HEADS]
    assert [lf.ffn_dims for lf in c.layers] == KEPT_FFN
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(**make_inputs(model, B, S))
    assert fc.get_total_flops() == c.total


def test_param_counts_of_the_compacted_shape():
    from nnprune.measure.counting import count_parameters
    from nnprune.pruning_core.compact import compact_model

    model = masked_mb()
    compact_model(model)
    pc = count_parameters(model)
    assert list(pc.layers[0].matrices) == ["qkv", "o", "ffn_in", "ffn_out"]
    assert [lc.heads["self"] for lc in pc.layers] == [[len(k), HEADS] for k in KEPT_HEADS]
    # Layer 0: Q of heads 0 and 2, K of head 0 (head 2's key is masked), V and O of both.
    layer0 = 2 * HEAD_DIM * H + HEAD_DIM * H + 2 * 2 * HEAD_DIM * H + 3 * 42 * H
    layer2 = 4 * HEAD_DIM * H + 3 * 24 * H
    assert pc.remaining == layer0 + layer2
    assert pc.original == 3 * (4 * H * H + 3 * H * FFN)


def test_onnx_export_of_compacted_checkpoint(tmp_path):
    pytest.importorskip("onnxruntime")
    from nnprune.export.onnx import export_checkpoint
    from nnprune.pruning_core.checkpoint import save_checkpoint
    from nnprune.pruning_core.compact import compact_model

    model = masked_mb("sdpa")
    compact_model(model)
    ckpt = save_checkpoint(model, tmp_path / "ckpt", config=None)
    exp = export_checkpoint(ckpt, tmp_path / "onnx")
    # Checked inside at another batch / length with padding; 1e-3 is the export's own limit.
    assert exp.max_abs_diff < TOL
    assert exp.input_names == ["input_ids", "attention_mask"]
