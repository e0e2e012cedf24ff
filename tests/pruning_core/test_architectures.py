"""XLM-RoBERTa, MPNet and DeBERTa-v2/v3 (issue #13): prune -> compact -> same logits as the masked
model -> save -> reload with nnprune and with stock transformers; FLOPs, parameter counts and ONNX
export of the compacted shapes. Tiny random models built from configs (no downloads)."""

from __future__ import annotations


import pytest
import torch
from conftest import TOL, assert_reloads, compact_masked, stock_reload_diffs, write_probe

from nnprune.errors import NNPruneError
from nnprune.pruning_core.compact import max_abs_diff, model_outputs, probe_inputs

H, HEADS, HEAD_DIM, FFN, LABELS = 32, 4, 8, 64, 2
# What ``masked_model`` leaves removable: dense indices of the kept heads, kept FFN dims, per layer.
KEPT_HEADS = [[0, 2], [], [3]]
KEPT_FFN = [42, 0, 24]
# deberta-v3: shared query/key projections for positions (v3 default), log buckets, no conv.
# deberta-v2: own pos_key_proj / pos_query_proj, plain relative positions, the xlarge conv layer.
CASES = ["xlm-roberta", "mpnet", "deberta-v3", "deberta-v2"]
DEBERTA = {"deberta-v3": dict(share_att_key=True, position_buckets=16, max_relative_positions=-1,
                              norm_rel_ebd="layer_norm", position_biased_input=False),
           "deberta-v2": dict(share_att_key=False, position_buckets=-1, max_relative_positions=24,
                              conv_kernel_size=3, position_biased_input=True)}


def arch_config(case: str, **overrides):
    """A tiny config: hidden 32, 3 layers of 4 heads of 8, FFN 64, vocab 1000, 2 labels."""
    from transformers import DebertaV2Config, MPNetConfig, XLMRobertaConfig

    kw = dict(vocab_size=1000, hidden_size=H, num_hidden_layers=len(KEPT_HEADS),
              num_attention_heads=HEADS, intermediate_size=FFN, num_labels=LABELS)
    if case == "xlm-roberta":
        cfg = XLMRobertaConfig(max_position_embeddings=130, pad_token_id=1, **kw, **overrides)
    elif case == "mpnet":
        cfg = MPNetConfig(max_position_embeddings=130, pad_token_id=1, **kw, **overrides)
    else:
        cfg = DebertaV2Config(max_position_embeddings=128, relative_attention=True,
                              pos_att_type=["p2c", "c2p"], **{**kw, **DEBERTA[case], **overrides})
    cfg._attn_implementation = "eager"  # torch's FLOP counter sees the attention matmuls
    return cfg


def arch_model(case: str, **overrides):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(arch_config(case, **overrides)).eval()


def masked_model(case: str):
    """A ``struct``-masked tiny model. Layer 0: V of heads 1 and 3 masked (removable), Q of head 2
    masked (qk-empty, kept), every third FFN dim masked; layer 1: the whole attention output and
    FFN masked (no head, no dim left); layer 2: V of heads 0-2 masked (one head left), FFN dims
    0-39 masked."""
    from nnprune.pruning_core import Role, build_config, patch_model

    model = arch_model(case)
    pruner = patch_model(model, build_config("struct"))
    pruner.finalize()
    for p in pruner.score_owners:
        s, site = p.layer.mask_scores, p.site
        s.data.fill_(5.0)
        if site.layer == 0 and site.role is Role.VALUE:
            s.data[[1, 3]] = -5.0
        elif site.layer == 0 and site.role is Role.QUERY:
            s.data[2] = -5.0
        elif site.layer == 0 and site.role is Role.FFN_IN:
            s.data[::3] = -5.0
        elif site.layer == 1 and site.role in (Role.ATTN_OUTPUT, Role.FFN_IN):
            s.data.fill_(-5.0)
        elif site.layer == 2 and site.role is Role.VALUE:
            s.data[[0, 1, 2]] = -5.0
        elif site.layer == 2 and site.role is Role.FFN_IN:
            s.data[:40] = -5.0
    return model


def _probe(model):
    return probe_inputs(model.config)  # random ids, rows padded to different lengths


def _blocks(model, case: str) -> list:
    """The module holding Q/K/V of every layer."""
    base = model.base_model
    name = {"mpnet": "attn"}.get(case, "self")
    return [getattr(layer.attention, name) for layer in base.encoder.layer]


@pytest.mark.parametrize("case", CASES)
def test_compacted_matches_masked_and_reloads_with_nnprune(tmp_path, case):
    model = masked_model(case)
    report, inputs, masked = compact_masked(model)
    assert [(a.kept, a.qk_empty) for a in report.attention] == [(2, 1), (0, 0), (1, 0)]
    assert [f.kept for f in report.ffn] == KEPT_FFN
    spec = model.config.nnprune_layout["stacks"]["encoder"]["attention"]["self"]
    assert spec["heads"] == [len(k) for k in KEPT_HEADS]
    assert model.config.nnprune_layout["stacks"]["encoder"]["ffn"]["dims"] == KEPT_FFN

    blocks = _blocks(model, case)
    assert type(blocks[1]).__name__ == "EmptyAttention"
    for block, kept in ((blocks[0], 2), (blocks[2], 1)):
        # Every per-head attribute the stock forward reads follows the kept heads.
        assert block.num_attention_heads == kept and block.all_head_size == kept * HEAD_DIM
        assert block.attention_head_size == HEAD_DIM
    if case == "mpnet":
        assert spec["head_args"] == ["position_bias"] and spec["head_index"] == KEPT_HEADS
        assert [blocks[0].nnprune_head_index, blocks[2].nnprune_head_index] == [[0, 2], [3]]
    else:
        assert "head_args" not in spec and "head_index" not in spec
    if case == "deberta-v2":
        projections = ["attention.self.pos_key_proj", "attention.self.pos_query_proj"]
        assert spec["head_linears"] == projections
        for block, kept in zip(blocks, KEPT_HEADS):
            assert block.pos_key_proj.out_features == block.pos_query_proj.out_features == 8 * len(kept)
    else:  # share_att_key (v3): position scores reuse the compacted query/key layers
        assert "head_linears" not in spec
        assert not any(hasattr(b, "pos_key_proj") for b in blocks)

    assert_reloads(model, inputs, masked, tmp_path / case)


def _second_compaction_mpnet():
    """MPNet compacted twice: the second pass also drops dense head 2 of layer 0 (local head 1),
    so the layer's index into the shared position bias must compose to ``[0]``."""
    from nnprune.pruning_core.compact import compact_model

    model = masked_model("mpnet")
    compact_model(model)
    with torch.no_grad():
        v = model.mpnet.encoder.layer[0].attention.attn.v
        v.weight[HEAD_DIM:] = 0
        v.bias[HEAD_DIM:] = 0
    inputs = _probe(model)
    expected = model_outputs(model, inputs)
    report = compact_model(model)
    assert [a.kept for a in report.attention] == [1, 0, 1]
    return model, inputs, expected


def test_mpnet_second_compaction_composes_the_head_index():
    model, inputs, expected = _second_compaction_mpnet()
    spec = model.config.nnprune_layout["stacks"]["encoder"]["attention"]["self"]
    assert spec["head_index"] == [[0], [], [3]]
    assert max_abs_diff(expected, model_outputs(model, inputs)) <= TOL
    # A single kept head would broadcast against all 4 bias heads without the selection.
    assert model.mpnet.encoder.layer[0].attention.attn.nnprune_head_index == [0]


def test_stock_transformers_reloads_compacted_without_nnprune(tmp_path):

    from nnprune.pruning_core.checkpoint import save_checkpoint
    from nnprune.pruning_core.compact import compact_model

    models = []
    for case in CASES:
        model = masked_model(case)
        inputs = _probe(model)
        ref = model_outputs(model, inputs)
        compact_model(model)
        models.append((case, model, inputs, ref))
    models.append(("mpnet-twice", *_second_compaction_mpnet()))
    cases = []
    for name, model, inputs, ref in models:
        path = save_checkpoint(model, tmp_path / name, config=None)
        write_probe(path, inputs, ref)
        cases.append((str(path), "AutoModelForSequenceClassification"))
    diffs = stock_reload_diffs(cases, tmp_path)
    assert set(diffs) == {c[0] for c in cases}
    assert max(diffs.values()) <= TOL, diffs


def _hand_flops(case: str, batch: int, seq: int) -> int:
    """Whole forward of ``masked_model(case)`` once compacted, from the layer sizes."""
    t = batch * seq
    total = 0
    for kept, f in zip(KEPT_HEADS, KEPT_FFN):
        inner = len(kept) * HEAD_DIM
        total += 2 * t * H * inner * 3 + 2 * t * inner * H  # Q, K, V, attention output
        total += 2 * t * H * f * 2  # FFN in, out
        total += 2 * batch * seq * seq * inner * 2  # Q K^T, probs x V
        if case.startswith("deberta"):
            cfg = DEBERTA[case]
            rel = 2 * (cfg["position_buckets"] if cfg["position_buckets"] > 0
                       else cfg["max_relative_positions"])
            total += 2 * batch * seq * rel * inner * 2  # content->position, position->content
            # The relative embeddings projected once per forward for both terms (by query_proj
            # and key_proj with share_att_key, else by pos_query_proj and pos_key_proj).
            total += 2 * rel * H * inner * 2
    if case == "deberta-v2":
        total += 2 * t * H * H * 3  # the convolution after layer 0 (kernel 3)
    total += 2 * batch * H * H + 2 * batch * H * LABELS  # pooler / head dense, classifier
    return total


@pytest.mark.parametrize("case", CASES)
def test_flops_and_param_counts_of_the_compacted_shape(case):
    from torch.utils.flop_counter import FlopCounterMode

    from nnprune.measure.counting import count_parameters
    from nnprune.measure.flops import compacted_profile, count_flops, make_inputs
    from nnprune.pruning_core.compact import compact_model

    model = masked_model(case)
    B, S = 3, 19
    predicted = compacted_profile(model).count(B, S).total  # before compacting, from the masks
    counted_masked = count_parameters(model)
    compact_model(model)
    c = count_flops(model, B, S)
    assert c.total == _hand_flops(case, B, S) == predicted
    assert [lf.heads["self"] for lf in c.layers] == [len(k) for k in KEPT_HEADS]
    assert [lf.ffn_dims for lf in c.layers] == KEPT_FFN
    # Grad mode on: under no_grad the counter's module tracker rejects DeBERTa-v2's position
    # projections, applied to a slice of a parameter (requires_grad, no grad_fn).
    with FlopCounterMode(display=False) as fc:
        model(**make_inputs(model, B, S))
    assert fc.get_total_flops() == c.total

    pc = count_parameters(model)
    assert [lc.heads["self"] for lc in pc.layers] == [[len(k), HEADS] for k in KEPT_HEADS]
    assert [lc.ffn_dims for lc in pc.layers] == [[f, FFN] for f in KEPT_FFN]
    # Q keeps head 0 only (head 2's query is masked to zero); K, V and O two heads; FFN 42 dims.
    layer0 = HEAD_DIM * H + 3 * 2 * HEAD_DIM * H + 2 * 42 * H
    layer2 = 4 * HEAD_DIM * H + 2 * 24 * H
    assert pc.remaining == layer0 + layer2
    assert pc.original == len(KEPT_HEADS) * (4 * H * H + 2 * H * FFN)
    # The masked model still counts the non-zero Q/K of its removable heads, but predicts the
    # same whole-layer speedup as the compacted model has.
    assert counted_masked.remaining > pc.remaining
    assert pc.estimated_speedup == pytest.approx(counted_masked.estimated_speedup)


@pytest.mark.parametrize("case", CASES)
def test_onnx_export_of_compacted_checkpoint(tmp_path, case):
    pytest.importorskip("onnxruntime")
    from nnprune.export.onnx import export_checkpoint
    from nnprune.pruning_core.checkpoint import save_checkpoint
    from nnprune.pruning_core.compact import compact_model

    model = masked_model(case)
    compact_model(model)
    ckpt = save_checkpoint(model, tmp_path / "ckpt", config=None)
    (ckpt / "spm.model").write_bytes(b"stand-in")  # DeBERTa-v3's tokenizer file
    exp = export_checkpoint(ckpt, tmp_path / "onnx")
    # Checked inside at another batch / length with padding; 1e-3 is the export's own limit.
    assert exp.max_abs_diff < TOL
    assert exp.input_names == ["input_ids", "attention_mask"]
    assert (tmp_path / "onnx" / "spm.model").read_bytes() == b"stand-in"


def test_unsupported_architecture_is_one_line_pointing_to_the_guide():
    from pathlib import Path

    from nnprune.pruning_core.architectures import architecture_for

    with pytest.raises(NNPruneError) as exc:
        architecture_for("gpt2")
    msg = str(exc.value)
    assert "\n" not in msg and "'gpt2' is not supported; supported model types: " in msg
    for supported in ("deberta-v2", "mpnet", "xlm-roberta"):
        assert supported in msg
    assert "docs/adding-an-architecture.md" in msg
    guide = Path(__file__).resolve().parents[2] / "docs" / "adding-an-architecture.md"
    assert guide.is_file()
