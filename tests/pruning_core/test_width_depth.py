"""Pruning the hidden dimension and whole layers (issue 25): the masked model (LayerNorms over
the kept channels, removed layers skipped) compacts to a model with a narrower stream and fewer
layers that computes the same logits, reloads through nnprune and through stock transformers in a
process without nnprune; architectures that cannot be pruned so exactly say why in one line.
Tiny random models built from configs."""

from __future__ import annotations

import pytest
import torch
from conftest import TOL, stock_reload_diffs, tiny_config, write_probe, zero_units

from nnprune.errors import NNPruneError
from nnprune.pruning_core.compact import (compact_exactly, compact_model, max_abs_diff,
                                          model_outputs, probe_inputs)
from nnprune.pruning_core.width_depth import (MaskedLayerNorm, apply_width_depth, stream_sites,
                                              width_depth_support)

H = 32
# An unordered, gappy set of 20 channels: compaction must not assume a prefix.
KEEP = [31, 0, 2, 3, 5, 7, 8, 11, 12, 13, 17, 18, 19, 20, 23, 24, 26, 27, 29, 30]


def _config(model_type: str, layers: int = 3, **kw):
    from transformers import ModernBertConfig, MPNetConfig, XLMRobertaConfig

    if model_type == "modernbert":
        return ModernBertConfig(vocab_size=1000, hidden_size=H, num_hidden_layers=layers,
                                num_attention_heads=4, intermediate_size=64,
                                global_attn_every_n_layers=2, local_attention=4,
                                max_position_embeddings=128, pad_token_id=0, bos_token_id=1,
                                eos_token_id=2, cls_token_id=1, sep_token_id=2, num_labels=2, **kw)
    if model_type in ("mpnet", "xlm-roberta"):
        cls = MPNetConfig if model_type == "mpnet" else XLMRobertaConfig
        return cls(vocab_size=1000, hidden_size=H, num_hidden_layers=layers, num_attention_heads=4,
                   intermediate_size=64, max_position_embeddings=130, pad_token_id=1,
                   num_labels=2, **kw)
    key = "n_layers" if model_type == "distilbert" else "num_hidden_layers"
    return tiny_config(model_type, num_labels=2, **{key: layers}, **kw)


def _model(model_type: str, head: str = "sequence-classification", layers: int = 3, seed: int = 0):
    from transformers import (AutoModelForQuestionAnswering, AutoModelForSequenceClassification,
                              AutoModelForTokenClassification)

    cls = {"sequence-classification": AutoModelForSequenceClassification,
           "question-answering": AutoModelForQuestionAnswering,
           "token-classification": AutoModelForTokenClassification}[head]
    torch.manual_seed(seed)
    kw = {"attn_implementation": "eager"} if model_type == "modernbert" else {}
    model = cls.from_config(_config(model_type, layers), **kw).eval()
    with torch.no_grad():  # non-trivial LayerNorm affines: a slicing mistake shows in the logits
        for name, p in model.named_parameters():
            if "norm" in name.lower() and p.dim() == 1:
                p.add_(0.3 * torch.randn_like(p))
    return model


def _pruned(model_type: str, head: str = "sequence-classification", drop=(1,), keep=KEEP):
    """A tiny model with heads and FFN dims zeroed in layer 0, ``keep`` channels of the stream
    and the layers ``drop`` removed (the masked model), and its probe outputs."""
    model = _model(model_type, head)
    if model_type != "modernbert":  # ModernBERT's fused layers: covered by its own tests
        zero_units(model, {("encoder", 0): 2}, {("encoder", 0): 40})
    apply_width_depth(model, keep, drop)
    inputs = probe_inputs(model.config)
    return model, inputs, model_outputs(model, inputs)


ARCHS = ["bert", "roberta", "xlm-roberta", "distilbert", "electra", "mpnet", "modernbert"]


@pytest.mark.parametrize("model_type", ARCHS)
def test_width_and_depth_compact_exactly_and_reload(model_type, tmp_path):
    import nnprune
    from nnprune.pruning_core.checkpoint import save_checkpoint

    model, inputs, masked = _pruned(model_type)
    assert any(isinstance(m, MaskedLayerNorm) for m in model.modules())
    report = compact_model(model)
    assert max_abs_diff(masked, model_outputs(model, inputs)) <= TOL
    assert report.layers_removed == [1] and (report.hidden_before, report.hidden_kept) == (H, 20)
    sites = stream_sites(model)
    assert sites.width == 20 and len(sites.layers) == 2
    assert not any(isinstance(m, MaskedLayerNorm) for m in model.modules())
    layout = model.config.nnprune_layout
    assert layout["format"] == 2 and layout["hidden"]["index"] == sorted(KEEP)
    assert layout["stacks"]["encoder"]["kept_layers"] == [0, 2]
    layers_attr = "n_layers" if model_type == "distilbert" else "num_hidden_layers"
    assert getattr(model.config, layers_attr) == 2
    assert model.config.nnprune_original[layers_attr] == 3
    # The last hidden state comes back at the width the config names (zeros on pruned channels).
    with torch.no_grad():
        hidden = model.base_model(**inputs).last_hidden_state
    assert hidden.shape[-1] == H and bool((hidden[..., [c for c in range(H) if c not in KEEP]] == 0).all())

    reloaded = nnprune.load_pretrained(save_checkpoint(model, tmp_path / "c", config=None))
    assert reloaded.config.nnprune_layout == layout
    assert max_abs_diff(masked, model_outputs(reloaded, inputs)) <= TOL


@pytest.mark.parametrize("model_type, keep_layer", [("bert", 2), ("distilbert", 1), ("modernbert", 0)])
def test_a_model_left_with_one_layer_works(model_type, keep_layer, tmp_path):
    import nnprune
    from nnprune.pruning_core.checkpoint import save_checkpoint

    model, inputs, masked = _pruned(model_type, drop=[i for i in range(3) if i != keep_layer],
                                    keep=list(range(8, 24)))
    report, diff = compact_exactly(model)
    assert diff <= TOL and len(report.layers_removed) == 2
    assert model.config.nnprune_layout["stacks"]["encoder"]["kept_layers"] == [keep_layer]
    reloaded = nnprune.load_pretrained(save_checkpoint(model, tmp_path / "one", config=None))
    assert max_abs_diff(masked, model_outputs(reloaded, inputs)) <= TOL


def test_depth_alone_and_width_alone_compact_exactly():
    for keep, drop in ((None, [0, 2]), (KEEP, [])):
        model, inputs, masked = _pruned("bert", drop=drop, keep=keep)
        report, diff = compact_exactly(model)
        assert diff <= TOL
        assert report.layers_removed == drop
        assert report.hidden_kept == (len(keep) if keep else H)


def test_stock_transformers_reloads_without_nnprune(tmp_path):
    """Stock ``from_pretrained(trust_remote_code=True)`` in a process without nnprune: a narrower
    stream, fewer layers, a per-token head (QA) and a sequence head, the same logits."""
    from nnprune.pruning_core.checkpoint import save_checkpoint

    cases = []
    for model_type, head, auto in [
            ("bert", "sequence-classification", "AutoModelForSequenceClassification"),
            ("distilbert", "question-answering", "AutoModelForQuestionAnswering"),
            ("electra", "token-classification", "AutoModelForTokenClassification"),
            ("modernbert", "sequence-classification", "AutoModelForSequenceClassification")]:
        model, inputs, masked = _pruned(model_type, head, drop=[1, 2] if model_type == "bert" else [1])
        compact_model(model)
        path = save_checkpoint(model, tmp_path / f"{model_type}-narrow", config=None)
        write_probe(path, inputs, masked)
        cases.append((str(path), auto))
    diffs = stock_reload_diffs(cases, tmp_path)
    assert set(diffs) == {c[0] for c in cases}
    assert max(diffs.values()) <= TOL, diffs


def test_compacting_a_narrowed_model_again_composes_channels_and_layers(tmp_path):
    """Heads and FFN dims removed from an already narrowed model, then more channels and a
    layer: the layout's channel and layer indices stay the dense model's."""
    model, inputs, _ = _pruned("bert", drop=[1])
    compact_model(model)
    zero_units(model, {("encoder", 1): 1}, {})
    apply_width_depth(model, keep_channels=list(range(4, 20)), drop_layers=[0])
    masked = model_outputs(model, inputs)
    report, diff = compact_exactly(model)
    assert diff <= TOL and report.layers_removed == [0]
    layout = model.config.nnprune_layout
    assert layout["stacks"]["encoder"]["kept_layers"] == [2]
    assert layout["hidden"]["index"] == sorted(KEEP)[4:20]
    assert layout["stacks"]["encoder"]["attention"]["self"]["heads"] == [1]
    assert max_abs_diff(masked, model_outputs(model, inputs)) <= TOL


@pytest.mark.parametrize("case, match", [
    ("deberta-v2", "relative-position embeddings"),
    ("bart", "encoder-decoder"),
    ("tied", "tied to the input embeddings"),
])
def test_what_cannot_be_pruned_exactly_says_why_in_one_line(case, match):
    from transformers import (AutoModelForMaskedLM, AutoModelForSequenceClassification,
                              DebertaV2Config)

    if case == "deberta-v2":
        model = AutoModelForSequenceClassification.from_config(DebertaV2Config(
            vocab_size=1000, hidden_size=H, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, relative_attention=True, pos_att_type=["p2c", "c2p"]))
    elif case == "bart":
        model = AutoModelForSequenceClassification.from_config(tiny_config("bart"))
    else:
        model = AutoModelForMaskedLM.from_config(tiny_config("bert"))
    reason = width_depth_support(model)
    assert reason is not None and match in reason and "\n" not in reason
    with pytest.raises(NNPruneError, match=match):
        apply_width_depth(model, list(range(16)))


def test_bad_requests_are_one_line_errors():
    model = _model("bert")
    with pytest.raises(NNPruneError, match="at least one layer"):
        apply_width_depth(model, None, [0, 1, 2])
    with pytest.raises(NNPruneError, match="channels to keep"):
        apply_width_depth(model, [0, 40])
    with pytest.raises(NNPruneError, match="first layer cannot be removed"):
        apply_width_depth(_model("modernbert"), None, [0])
