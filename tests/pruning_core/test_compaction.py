"""Compaction: masked == bertarized == compacted, reload through nnprune and stock transformers."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TOL, stock_reload_diffs, struct_masked, tiny_config, write_probe
from conftest import tiny_task_model as _model

SEQ2SEQ = {"bart"}


def _inputs(model_type: str):
    from nnprune.pruning_core.compact import probe_inputs

    return probe_inputs(tiny_config(model_type))


def _diff(a, b) -> float:
    from nnprune.pruning_core.compact import max_abs_diff

    return max_abs_diff(a, b)


def _outputs(model, inputs):
    from nnprune.pruning_core.compact import model_outputs

    return model_outputs(model, inputs)


def _struct_bart(model):
    """``model`` with larger weights (greedy decoding of a random tiny model varies more),
    patched with ``struct`` masks on their final threshold: ``(model, pruner)``."""
    from nnprune.pruning_core import build_config, patch_model

    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    pruner = patch_model(model, build_config("struct"))
    pruner.finalize()
    return model, pruner


@pytest.mark.parametrize("model_type,head", [
    ("bert", "sequence-classification"), ("roberta", "sequence-classification"),
    ("electra", "sequence-classification"), ("distilbert", "question-answering"),
    ("bart", "seq2seq")])
def test_masked_bertarized_compacted_agree(tmp_path, model_type, head):
    import nnprune
    from nnprune.pruning_core import unpatch_model
    from nnprune.pruning_core.checkpoint import load_model, save_checkpoint
    from nnprune.pruning_core.compact import MODELING_FILE, compact_model
    from nnprune.measure.counting import count_parameters

    model = struct_masked(model_type, head)
    inputs = _inputs(model_type)
    masked = _outputs(model, inputs)
    bertarized = unpatch_model(copy.deepcopy(model), apply_masks=True)
    assert _diff(masked, _outputs(bertarized, inputs)) <= TOL

    report = compact_model(model)
    assert not any(type(m).__name__ == "MaskedLinear" for m in model.modules())
    assert _diff(masked, _outputs(model, inputs)) <= TOL
    kinds = {"self", "cross"} if model_type in SEQ2SEQ else {"self"}
    for a in report.attention:
        assert a.name in kinds and a.original == 4 and a.before == 4
        assert (a.kept, a.qk_empty, a.qk_empty_removed) == ((2, 1, 0) if a.layer == 0 else (0, 0, 0))
    for f in report.ffn:
        assert (f.original, f.kept) == ((64, 64 - 22) if f.layer == 0 else (64, 0))
    assert report.exact and report.changed and report.params_after < report.params_before
    layout = model.config.nnprune_layout
    assert layout["stacks"]["encoder"]["attention"]["self"]["heads"] == [2, 0]
    assert layout["stacks"]["encoder"]["ffn"]["dims"] == [42, 0]
    if model_type in SEQ2SEQ:
        assert layout["stacks"]["decoder"]["attention"]["cross"]["heads"] == [2, 0]
    heads_attr = "encoder_attention_heads" if model_type in SEQ2SEQ else (
        "n_heads" if model_type == "distilbert" else "num_attention_heads")
    assert model.config.nnprune_original[heads_attr] == 4

    out = save_checkpoint(model, tmp_path / "compact", config=None)
    assert (out / MODELING_FILE).is_file()
    assert json.loads((out / "config.json").read_text())["auto_map"]
    reloaded = nnprune.load_pretrained(out)
    assert _diff(masked, _outputs(reloaded, inputs)) <= TOL
    pc = count_parameters(load_model(out).model)
    enc = [lc for lc in pc.layers if lc.stack == "encoder"]
    assert [lc.heads["self"] for lc in enc] == [[2, 4], [0, 4]]
    assert [lc.ffn_dims for lc in enc] == [[42, 64], [0, 64]]
    assert pc.compression > 1



def test_bart_generation_with_empty_first_decoder_self_attention(tmp_path):
    """The cache's length is read from layer 0: an empty self-attention there must keep it."""
    import nnprune
    from nnprune.pruning_core import Role
    from nnprune.pruning_core.checkpoint import save_checkpoint
    from nnprune.pruning_core.compact import compact_model

    model, pruner = _struct_bart(_model("bart", "seq2seq"))
    for p in pruner.score_owners:
        p.layer.mask_scores.data.fill_(5.0)
        if (p.site.stack, p.site.layer, p.site.attention, p.site.role) == (
                "decoder", 0, "self", Role.ATTN_OUTPUT):
            p.layer.mask_scores.data.fill_(-5.0)
    inputs = _inputs("bart")
    kw = {"attention_mask": inputs["attention_mask"], "max_new_tokens": 6, "do_sample": False}
    with torch.no_grad():
        greedy, beams = (model.generate(inputs["input_ids"], num_beams=b, **kw) for b in (1, 2))
    compact_model(model)
    assert type(model.model.decoder.layers[0].self_attn).__name__ == "EmptyAttention"
    save_checkpoint(model, tmp_path / "bart", config=None)
    reloaded = nnprune.load_pretrained(tmp_path / "bart")
    with torch.no_grad():
        assert torch.equal(model.generate(inputs["input_ids"], num_beams=1, **kw), greedy)
        assert torch.equal(reloaded.generate(inputs["input_ids"], num_beams=2, **kw), beams)


@pytest.mark.parametrize("kwarg", ["cache", "past_key_values"])
def test_empty_self_attention_extends_cache_under_either_kwarg_name(kwarg):
    """transformers 5.24 hands attention blocks the cache as ``cache=`` (before: ``past_key_values=``)."""
    from transformers import DynamicCache, EncoderDecoderCache

    from nnprune.pruning_core.compact_modeling import EmptyAttention

    empty = EmptyAttention({}, None, head_dim=8, layer_idx=0)
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    hidden = torch.zeros(2, 3, 32)
    for step, length in enumerate((3, 4)):
        out, _ = empty(hidden[:, : 3 if step == 0 else 1], **{kwarg: cache})
        assert cache.get_seq_length() == length and out.shape[-1] == 0
    empty(hidden, key_value_states=hidden, **{kwarg: cache})  # cross-attention caches nothing
    assert cache.get_seq_length() == 4 and cache.cross_attention_cache.get_seq_length() == 0


def test_bart_generation_with_every_first_layer_attention_empty_eager():
    """Encoder self-, decoder self- and cross-attention of layer 0 all empty, eager attention."""
    from transformers import AutoModelForSeq2SeqLM

    from nnprune.pruning_core import Role
    from nnprune.pruning_core.compact import compact_model

    torch.manual_seed(0)
    model, pruner = _struct_bart(
        AutoModelForSeq2SeqLM.from_config(tiny_config("bart"), attn_implementation="eager").eval())
    for p in pruner.score_owners:
        empty = p.site.layer == 0 and p.site.role is Role.ATTN_OUTPUT
        p.layer.mask_scores.data.fill_(-5.0 if empty else 5.0)
    inputs = _inputs("bart")
    kw = {"attention_mask": inputs["attention_mask"], "max_new_tokens": 6, "do_sample": False}
    with torch.no_grad():
        expected = [model.generate(inputs["input_ids"], num_beams=b, **kw) for b in (1, 2)]
    compact_model(model)
    assert sum(type(m).__name__ == "EmptyAttention" for m in model.modules()) == 3
    with torch.no_grad():
        for b, want in zip((1, 2), expected):
            assert torch.equal(model.generate(inputs["input_ids"], num_beams=b, **kw), want)


def test_qk_empty_heads_removed_only_when_inexact_allowed():
    from nnprune.pruning_core.compact import compact_model

    model = struct_masked("bert")
    inputs = _inputs("bert")
    masked = _outputs(model, inputs)
    report = compact_model(model, allow_inexact=True)
    first = next(a for a in report.attention if a.layer == 0)
    assert (first.kept, first.qk_empty, first.qk_empty_removed) == (1, 1, 1)
    assert not report.exact and report.qk_empty_removed == 1
    assert model.config.nnprune_layout["stacks"]["encoder"]["attention"]["self"]["heads"] == [1, 0]
    assert _diff(masked, _outputs(model, inputs)) > 0  # a uniform-attention head was dropped


def test_nothing_removable_leaves_model_unchanged():
    from nnprune.pruning_core.compact import compact_model

    model = _model("bert")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = compact_model(model)
    assert not report.changed and report.heads_removed == 0 and report.ffn_dims_removed == 0
    assert getattr(model.config, "nnprune_layout", None) is None
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_hybrid_blocks_compact_exactly_and_reinit_zeros():
    from nnprune.pruning_core import Role, build_config, patch_model, unpatch_model
    from nnprune.pruning_core.compact import compact_model, reinit_zeros
    from nnprune.pruning_core.structure import analyze_structure

    model = _model("bert")
    pruner = patch_model(model, build_config("hybrid-nt", overrides={"attention_block": "8x8"}))
    pruner.finalize()
    g = torch.Generator().manual_seed(3)
    for p in pruner.score_owners:
        s = p.layer.mask_scores
        s.data = torch.randn(s.shape, generator=g) * 3
        if p.site.layer == 0 and p.site.role is Role.VALUE:
            s.data[0] = -5.0  # head 0's value rows: one 8-row block row
    inputs = _inputs("bert")
    masked = _outputs(model, inputs)

    plain = unpatch_model(copy.deepcopy(model), apply_masks=True)
    removable = [(u.layer, u.removable) for u in analyze_structure(plain).attention]
    assert 0 in dict(removable)[0]
    n = reinit_zeros(plain, std=0.01, generator=torch.Generator().manual_seed(0))
    assert n > 0  # zero blocks inside kept heads
    assert [(u.layer, u.removable) for u in analyze_structure(plain).attention] == removable

    report = compact_model(model)
    assert report.heads_removed >= 1 and report.exact
    assert _diff(masked, _outputs(model, inputs)) <= TOL
    zeros = sum(int((model.get_submodule(s.path).weight == 0).sum())
                for s in analyze_structure(model).sites)
    assert zeros > 0
    assert reinit_zeros(model, std=0.01) == zeros
    assert sum(int((model.get_submodule(s.path).weight == 0).sum())
               for s in analyze_structure(model).sites) == 0


def test_load_pretrained_masked_and_bad_layout(tmp_path):
    import nnprune
    from nnprune.errors import NNPruneError
    from nnprune.pruning_core import build_config
    from nnprune.pruning_core.checkpoint import save_checkpoint
    from nnprune.pruning_core.compact import (
        apply_saved_layout,
        compact_model,
        model_layout,
    )

    model = struct_masked("bert")
    inputs = _inputs("bert")
    masked = _outputs(model, inputs)
    save_checkpoint(model, tmp_path / "masked", config=build_config("struct"))
    loaded = nnprune.load_pretrained(tmp_path / "masked")
    assert any(type(m).__name__ == "MaskedLinear" for m in loaded.modules())
    baked = nnprune.load_pretrained(tmp_path / "masked", bake_masks=True)
    assert not any(type(m).__name__ == "MaskedLinear" for m in baked.modules())
    assert _diff(masked, _outputs(baked, inputs)) <= TOL

    compact_model(model)
    layout = model_layout(model)
    assert layout == model.config.nnprune_layout
    bad = copy.deepcopy(layout)
    bad["stacks"]["encoder"]["ffn"]["dims"] = [1]
    with pytest.raises(NNPruneError, match="nnprune_layout"):
        apply_saved_layout(_model("bert"), bad)





def test_stock_transformers_loads_compacted_without_nnprune(tmp_path):

    from nnprune.pruning_core.checkpoint import save_checkpoint
    from nnprune.pruning_core.compact import compact_model

    cases = []
    for model_type, head, auto in [
            ("bert", "sequence-classification", "AutoModelForSequenceClassification"),
            ("distilbert", "question-answering", "AutoModelForQuestionAnswering"),
            ("bart", "seq2seq", "AutoModelForSeq2SeqLM")]:
        model = struct_masked(model_type, head)
        inputs = _inputs(model_type)
        ref = _outputs(model, inputs)
        compact_model(model)
        path = save_checkpoint(model, tmp_path / f"{model_type}-compact", config=None)
        write_probe(path, inputs, ref)
        cases.append((str(path), auto))
    diffs = stock_reload_diffs(cases, tmp_path)
    assert set(diffs) == {c[0] for c in cases}
    assert max(diffs.values()) <= TOL, diffs


def test_import_nnprune_stays_light():
    code = ("import sys, nnprune; assert 'torch' not in sys.modules, 'torch'; "
            "assert callable(nnprune.load_pretrained)")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_ffn_multiple_pads_with_zero_dims_exactly():
    """Layer 0 keeps 42 of 64 FFN dims; with ffn_multiple=8 it is stored as 48 (6 zero dims)."""
    from nnprune.pruning_core.compact import compact_model
    from nnprune.measure.counting import count_parameters

    reference = struct_masked("bert")
    inputs = _inputs("bert")
    expected = _outputs(reference, inputs)
    padded, plain = struct_masked("bert"), struct_masked("bert")
    report = compact_model(padded, ffn_multiple=8)
    compact_model(plain)
    sizes = [m.out_features for n, m in padded.named_modules() if n.endswith("intermediate.dense")]
    assert sizes == [48, 0]
    assert [r.kept for r in report.ffn] == [42, 0]
    assert _diff(_outputs(padded, inputs), expected) < 1e-5
    # The padding dims are zero: counts of useful weights and dims do not change.
    a, b = count_parameters(padded), count_parameters(plain)
    assert a.remaining == b.remaining and [lc.ffn_dims[0] for lc in a.layers] == [42, 0]


def test_reinit_zeros_of_a_compacted_model_with_an_empty_ffn():
    """fill re-initialises the zeros of a compacted model in which a layer's whole FFN was pruned
    (struct_masked empties layer 1's): nothing is left to re-initialise there, and every zero
    inside the other kept units (head 2's masked Q rows) gets a value."""
    from nnprune.pruning_core.compact import compact_model, reinit_zeros
    from nnprune.pruning_core.structure import analyze_structure

    model = struct_masked("bert")
    compact_model(model)
    assert [u.size for u in analyze_structure(model).ffn][1] == 0
    zeros = sum(int((model.get_submodule(s.path).weight == 0).sum())
                for s in analyze_structure(model).sites)
    assert zeros > 0
    assert reinit_zeros(model, std=0.01, generator=torch.Generator().manual_seed(0)) == zeros


def _masked_any(case: str):
    """A ``struct``-masked tiny model of ``case`` with a layer left empty (see struct_masked,
    test_architectures.masked_model, test_modernbert.masked_mb)."""
    from tests.pruning_core.test_architectures import CASES, masked_model
    from tests.pruning_core.test_modernbert import masked_mb

    if case in CASES:
        return masked_model(case)
    if case == "modernbert":
        return masked_mb()
    return struct_masked(case, "question-answering" if case == "distilbert" else
                         "sequence-classification")


@pytest.mark.parametrize("case", ["bert", "roberta", "electra", "distilbert", "xlm-roberta",
                                  "mpnet", "deberta-v3", "deberta-v2", "modernbert"])
def test_expand_is_the_inverse_of_compact(case):
    """expand puts back what compaction removed as zeros: the dense shapes, the same outputs, and
    compacting it again gives the very same layout (MPNet's kept heads back at their dense
    indices; the empty attention block a stock one again)."""
    import nnprune
    from nnprune.pruning_core.compact import (compact_model, dense_baseline, is_compacted,
                                              probe_inputs)

    model = _masked_any(case)
    compact_model(model)
    layout = copy.deepcopy(model.config.nnprune_layout)
    inputs = probe_inputs(model.config)
    small = _outputs(model, inputs)

    state = torch.random.get_rng_state()
    big = nnprune.expand(model)
    assert torch.equal(torch.random.get_rng_state(), state)  # a caller's RNG is left as it was
    assert big is not model and not is_compacted(big.config) and not big.training
    dense = dense_baseline(model)
    assert {k: v.shape for k, v in big.state_dict().items()} == {
        k: v.shape for k, v in dense.state_dict().items()}
    assert not any(type(m).__name__ == "EmptyAttention" for m in big.modules())
    assert _diff(small, _outputs(big, inputs)) <= TOL
    assert is_compacted(model.config)  # the model passed in is left as it was

    compact_model(big)
    assert big.config.nnprune_layout == layout
    assert _diff(small, _outputs(big, inputs)) <= TOL


def test_expand_refuses_a_narrowed_stream_and_leaves_a_dense_model_alone():
    import nnprune
    from nnprune.errors import NNPruneError
    from tests.pruning_core.test_width_depth import _calibration, _scaled_bert

    dense = _model("bert")
    assert nnprune.expand(dense) is dense
    narrow = _scaled_bert(dead=8)
    assert nnprune.prune(narrow, _calibration(n_batches=4), target_flops=0.5).hidden_kept < 32
    with pytest.raises(NNPruneError, match="narrower hidden dimension or fewer layers"):
        nnprune.expand(narrow)
