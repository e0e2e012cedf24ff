"""Width and depth learnt as masks in fine-pruning (issue 25, CoFi-style): ``hidden_size`` and
``prune_layers`` in the pruning config. The hidden mask follows its schedule to the width asked;
a layer whose gate is cut, or that is left empty, is removed; the masked model, its baked masks,
its compaction, its nnprune reload and its stock-transformers reload compute the same logits;
with a table that prices widths the speed target is met as the table predicts; patching and
unpatching without masks gives the model back; bad values are one-line errors. Tiny random
models built from configs."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import TOL, stock_reload_diffs, tiny_config, write_probe

from nnprune.errors import NNPruneError
from nnprune.pruning_core.compact import compact_model, max_abs_diff, model_outputs, probe_inputs
from nnprune.pruning_core.learned_width_depth import GatedLayerNorm, width_depth_masks
from nnprune.pruning_core.methods import build_config
from nnprune.pruning_core.pruner import patch_model, unpatch_model
from nnprune.pruning_core.width_depth import stream_sites

H = 32


def _model(model_type: str = "bert", layers: int = 3, seed: int = 0, head: str = "sequence"):
    from transformers import (AutoModelForQuestionAnswering, AutoModelForSequenceClassification,
                              ModernBertConfig)

    torch.manual_seed(seed)
    if model_type == "modernbert":
        config = ModernBertConfig(vocab_size=1000, hidden_size=H, num_hidden_layers=layers,
                                  num_attention_heads=4, intermediate_size=64,
                                  global_attn_every_n_layers=2, local_attention=4,
                                  max_position_embeddings=128, pad_token_id=0, bos_token_id=1,
                                  eos_token_id=2, cls_token_id=1, sep_token_id=2, num_labels=2)
    else:
        key = "n_layers" if model_type == "distilbert" else "num_hidden_layers"
        config = tiny_config(model_type, num_labels=2, **{key: layers})
    cls = AutoModelForQuestionAnswering if head == "qa" else AutoModelForSequenceClassification
    kw = {"attn_implementation": "eager"} if model_type == "modernbert" else {}
    model = cls.from_config(config, **kw).eval()
    with torch.no_grad():  # non-trivial LayerNorm affines: a slicing mistake shows in the logits
        for name, p in model.named_parameters():
            if "norm" in name.lower() and p.dim() == 1:
                p.add_(0.3 * torch.randn_like(p))
    return model


def _config(method: str = "struct", **overrides):
    # random scores: the masks at any cut differ from channel to channel, head to head
    return build_config(method, overrides={"score_init": "uniform", "score_init_scale": 1.0,
                                           **overrides})


def _labels(inputs):
    return torch.zeros(inputs["input_ids"].shape[0], dtype=torch.long)


def _train(model, pruner, steps: int, lr: float = 0.5):
    """A few steps on the probe batch (the scores only, plain SGD): the schedule runs to its end."""
    pruner.configure(steps)
    scores = pruner.mask_score_parameters()
    opt = torch.optim.SGD(scores, lr=lr)
    model.train()
    widths = []
    for step in range(steps):
        pruner.step(step)
        inputs = probe_inputs(model.config)
        loss = model(**inputs, labels=_labels(inputs)).loss + pruner.regularization_loss()
        loss.backward()
        opt.step()
        opt.zero_grad()
        widths.append(pruner.stats().get("pruning/hidden_width"))
    pruner.finalize()
    model.eval()
    return widths


def test_the_hidden_mask_reaches_the_asked_width_along_its_schedule():
    model = _model()
    pruner = patch_model(model, _config(hidden_size=20))
    masks = width_depth_masks(model)
    assert masks is not None and masks.hidden_scores.shape == (H,)
    assert any(id(masks.hidden_scores) == id(p) for p in pruner.mask_score_parameters())
    widths = _train(model, pruner, steps=10)
    assert widths[0] == H and widths[-1] == 20 and widths == sorted(widths, reverse=True)
    # the masked model's every stream norm keeps the same 20 channels and zeroes the others
    inputs = probe_inputs(model.config)
    keep = masks.kept_channels()
    assert len(keep) == 20
    with torch.no_grad():
        hidden = model.bert(**inputs).last_hidden_state
    pruned = [c for c in range(H) if c not in keep]
    assert bool((hidden[..., pruned] == 0).all()) and bool((hidden[..., keep] != 0).any())
    assert sum(isinstance(m, GatedLayerNorm) for m in model.modules()) == 1 + 2 * 3


def test_the_scores_learn_from_the_loss_straight_through():
    model = _model()
    pruner = patch_model(model, _config(hidden_size=16, prune_layers=True))
    pruner.configure(10)
    pruner.step(0)  # warm-up: every channel and layer still on
    model.train()
    inputs = probe_inputs(model.config)
    model(**inputs, labels=_labels(inputs)).loss.backward()
    masks = width_depth_masks(model)
    assert masks.hidden_scores.grad is not None and bool((masks.hidden_scores.grad != 0).all())
    assert masks.layer_scores.grad is not None and bool((masks.layer_scores.grad != 0).all())
    # what the gradient flows through computes what the eval masks (gathered channels) compute
    with torch.no_grad():
        masks.layer_scores[1] = -5.0
    pruner.finalize()
    model.eval()
    gathered = model_outputs(model, inputs)
    with torch.enable_grad():
        weighted = model(**inputs).logits
    assert weighted.requires_grad
    assert torch.allclose(weighted, gathered["logits"], atol=1e-5)


def test_scores_can_start_from_the_fisher_ranking_of_channels_and_layers():
    """``init_width_depth_from``: the post-training Fisher of the channels and layers orders
    their scores (standardised log-importance), as score_init=importance does for heads."""
    from nnprune.pruning_core.learned_width_depth import init_width_depth_from
    from nnprune.pruning_core.post_training import fisher_information, mask_groups

    model = _model(layers=2)
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(2):
        ids = torch.randint(1000, 2000, (4, 12), generator=g)
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                        "labels": torch.randint(0, 2, (4,), generator=g)})
    imp = fisher_information(model, batches, mask_groups(model), width_depth=True)
    pruner = patch_model(model, build_config("struct", overrides={"hidden_size": 16,
                                                                  "prune_layers": True}))
    masks = width_depth_masks(model)
    assert init_width_depth_from(masks, imp.hidden, imp.layers, scale=2.0) == 2
    assert torch.equal(torch.argsort(masks.hidden_scores.detach()), torch.argsort(imp.hidden.float()))
    assert float(masks.hidden_scores.detach().std()) == pytest.approx(2.0, rel=1e-4)
    assert (masks.layer_scores[0] > masks.layer_scores[1]) == bool(imp.layers[0] > imp.layers[1])
    pruner.finalize()
    keep = masks.kept_channels()
    assert keep == sorted(torch.argsort(imp.hidden, descending=True)[:16].tolist())

    # attach_masks with score_init=importance does the same from its importance batches
    import nnprune

    other = _model(layers=2)
    nnprune.attach_masks(other, "struct", importance_batches=batches, overrides={
        "hidden_size": 16, "prune_layers": True, "score_init": "importance"})
    attached = width_depth_masks(other)
    assert torch.equal(torch.argsort(attached.hidden_scores.detach()), torch.argsort(imp.hidden.float()))
    assert (attached.layer_scores[0] > attached.layer_scores[1]) == bool(imp.layers[0] > imp.layers[1])


def test_a_layer_whose_gate_is_off_or_that_is_empty_is_removed():
    model = _model(layers=3)
    pruner = patch_model(model, _config(prune_layers=True))
    masks = width_depth_masks(model)
    with torch.no_grad():
        masks.layer_scores.copy_(torch.tensor([3.0, -5.0, 3.0]))  # sigmoid(-5) < 0.1: gate off
    pruner.finalize()
    assert masks.final_layers() == [1]
    inputs = probe_inputs(model.config)
    with torch.no_grad():  # the masked model skips layer 1: its output is its input
        states = model.bert(**inputs, output_hidden_states=True).hidden_states
    assert torch.equal(states[1], states[2])
    report, masked = _compact(model, inputs)
    assert report.layers_removed == [1] and model.config.num_hidden_layers == 2

    # a layer left with no head and no FFN dimension goes too, whatever its gate
    model = _model(layers=3)
    pruner = patch_model(model, _config(prune_layers=True))
    masks = width_depth_masks(model)
    with torch.no_grad():
        masks.layer_scores.fill_(3.0)
        for p in pruner.layers:
            if p.site.layer == 2 and p.layer.mask_scores is not None:
                p.layer.mask_scores.fill_(-5.0)
    pruner.finalize()
    assert masks.final_layers() == [2]
    report, _ = _compact(model, probe_inputs(model.config))
    assert report.layers_removed == [2]


def _compact(model, inputs):
    """Bake and compact ``model``: both compute the masked logits (within TOL)."""
    masked = model_outputs(model, inputs)
    baked = unpatch_model(copy.deepcopy(model), apply_masks=True)
    assert max_abs_diff(masked, model_outputs(baked, inputs)) <= TOL
    report = compact_model(model)
    assert report.exact and max_abs_diff(masked, model_outputs(model, inputs)) <= TOL
    return report, masked


@pytest.mark.parametrize("model_type", ["bert", "distilbert", "electra", "modernbert"])
def test_baked_compacted_and_reloaded_models_compute_the_masked_logits(model_type, tmp_path):
    """Trained a few steps (so the training masks' path is the one that learnt them), then the
    eval masks: baked == compacted == nnprune reload of the masked checkpoint, compacted."""
    import nnprune
    from nnprune.pruning_core.checkpoint import load_model, save_checkpoint

    model = _model(model_type)
    config = _config(hidden_size=20, prune_layers=True)
    pruner = patch_model(model, config)
    _train(model, pruner, steps=6)
    with torch.no_grad():  # layer 1 certainly removed; layer 0 too, but on ModernBERT, whose
        width_depth_masks(model).layer_scores[:2] = -5.0  # stock class builds it differently
    pruner.finalize()
    inputs = probe_inputs(model.config)
    masked = model_outputs(model, inputs)
    # the masked checkpoint reloads with its learnt masks
    saved = save_checkpoint(model, tmp_path / "masked", config=config, extra=pruner.saved_info())
    loaded = load_model(saved)
    assert width_depth_masks(loaded.model) is not None
    assert max_abs_diff(masked, model_outputs(loaded.model, inputs)) <= TOL
    report, _ = _compact(loaded.model, inputs)
    assert 1 in report.layers_removed and (report.hidden_before, report.hidden_kept) == (H, 20)
    assert (0 in report.layers_removed) == (model_type != "modernbert")
    assert stream_sites(loaded.model).width == 20
    small = nnprune.load_pretrained(save_checkpoint(loaded.model, tmp_path / "small", config=None))
    assert max_abs_diff(masked, model_outputs(small, inputs)) <= TOL


def test_l0_gates_learn_the_width_and_layers_too():
    """L0: the hidden mask is a top-k of the log-alphas, a layer is kept while its hard-concrete
    gate is above one half; the eval masks bake and compact exactly."""
    model = _model()
    pruner = patch_model(model, build_config("l0", overrides={"hidden_size": 24,
                                                              "prune_layers": True}))
    _train(model, pruner, steps=6)
    with torch.no_grad():
        width_depth_masks(model).layer_scores[2] = -3.0  # its eval gate is 0
    pruner.finalize()
    report, _ = _compact(model, probe_inputs(model.config))
    assert report.layers_removed == [2] and report.hidden_kept == 24


def test_stock_transformers_reloads_the_compacted_model(tmp_path):
    from nnprune.pruning_core.checkpoint import save_checkpoint

    cases = []
    for model_type, head, auto in [("bert", "sequence", "AutoModelForSequenceClassification"),
                                   ("distilbert", "qa", "AutoModelForQuestionAnswering")]:
        model = _model(model_type, head=head)
        pruner = patch_model(model, _config(hidden_size=24, prune_layers=True))
        with torch.no_grad():
            width_depth_masks(model).layer_scores[2] = -5.0
        pruner.finalize()
        inputs = probe_inputs(model.config)
        report, masked = _compact(model, inputs)
        assert report.layers_removed == [2] and report.hidden_kept == 24
        path = save_checkpoint(model, tmp_path / model_type, config=None)
        write_probe(path, inputs, masked)
        cases.append((str(path), auto))
    diffs = stock_reload_diffs(cases, tmp_path)
    assert set(diffs) == {c[0] for c in cases} and max(diffs.values()) <= TOL, diffs


def test_patching_then_unpatching_without_masks_gives_the_model_back():
    model = _model("electra")  # a stream started by a projection (a hook, not a norm)
    inputs = probe_inputs(model.config)
    before = model_outputs(model, inputs)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    types = {n: type(m) for n, m in model.named_modules()}
    pruner = patch_model(model, _config(hidden_size=16, prune_layers=True))
    _train(model, pruner, steps=4, lr=0.0)
    unpatch_model(model, apply_masks=False)
    assert {n: type(m) for n, m in model.named_modules()} == types
    after = model.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in state)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert max_abs_diff(before, model_outputs(model, inputs)) == 0.0
    patch_model(model, _config(hidden_size=16))  # and it can be patched again


def _width_table(model_or_config):
    """The conftest table (1 ms a head, 0.1 ms an FFN dim, 2 ms fixed) measured at widths 8, 16
    and 32 too: a narrower stream scales its units, a layer costs 0.4 ms beyond them."""
    from nnprune.measure.latency import LatencySetting, LatencyTable, table_key
    from nnprune.pruning_core.latency_model import LatencyModel

    m = LatencyModel(2, 4, 64, (0, 1, 2, 3, 4), (0.0, 1.0, 2.0, 3.0, 4.0), (0, 32, 64),
                     (0.0, 3.2, 6.4), 2.0, hidden=32, widths=(8, 16, 32),
                     attention_scale=(0.25, 0.5, 1.0), ffn_scale=(0.25, 0.5, 1.0),
                     layer_ms=(0.1, 0.2, 0.4), base_ms=(0.5, 1.0, 1.2))
    setting = LatencySetting(batch_size=1, seq_len=16, threads=1)
    config = getattr(model_or_config, "config", model_or_config)
    return LatencyTable(key=table_key(config, setting), model=m)


@pytest.mark.parametrize("overrides", [{"hidden_size": 16}, {"hidden_size": 16, "prune_layers": True},
                                       {"prune_layers": True}])
def test_a_speed_target_is_met_as_a_width_pricing_table_predicts(overrides):
    """The latency cut prices the heads and FFN dimensions at the stream's width and the
    layers left: the compacted model's shape is what the cut priced, within the target."""
    import nnprune

    model = _model(layers=2)
    table = _width_table(model)
    pruning = nnprune.attach_masks(model, "struct", target_speedup=4.0, latency_table=table,
                                   overrides={"score_init": "uniform", "score_init_scale": 1.0,
                                              **overrides})
    pruning.configure(6)
    pruning.step(2)  # mid-schedule: the training cut prices the scheduled width
    mid = pruning.stats()
    assert 1.0 < mid["pruning/predicted_speedup"] < 4.0
    pruning.finalize()
    predicted = pruning.predicted_speedup()
    assert predicted >= 4.0
    inputs = probe_inputs(model.config)
    masked = model_outputs(model, inputs)
    compact_model(model)
    assert max_abs_diff(masked, model_outputs(model, inputs)) <= TOL
    shape = nnprune.model_shape(model)
    assert shape.hidden == overrides.get("hidden_size")
    assert shape.predicted_speedup(table) == pytest.approx(predicted)


def test_a_table_without_widths_is_refused_in_one_line():
    import nnprune
    from nnprune.measure.latency import LatencySetting, LatencyTable, table_key
    from nnprune.pruning_core.latency_model import LatencyModel

    model = _model(layers=2)
    plain = LatencyModel(2, 4, 64, (0, 1, 2, 3, 4), (0.0, 1.0, 2.0, 3.0, 4.0), (0, 32, 64),
                         (0.0, 3.2, 6.4), 2.0)
    table = LatencyTable(key=table_key(model.config, LatencySetting(batch_size=1, seq_len=16,
                                                                     threads=1)), model=plain)
    with pytest.raises(NNPruneError, match="measured without them") as err:
        nnprune.attach_masks(model, "struct", target_speedup=2.0, latency_table=table,
                             overrides={"hidden_size": 16})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("method, overrides, match", [
    ("struct", {"hidden_size": 0}, "whole number >= 1"),
    ("struct", {"hidden_size": "wide"}, "hidden_size"),
    ("struct", {"prune_layers": "maybe"}, "prune_layers"),
    ("magnitude", {"hidden_size": 16}, "learns none"),
    ("dense", {"prune_layers": True}, "prunes nothing"),
    ("movement", {"prune_layers": True}, "keeps a fraction"),
])
def test_bad_values_are_one_line_errors(method, overrides, match):
    with pytest.raises(NNPruneError, match=match) as err:
        build_config(method, overrides=overrides)
    assert "\n" not in str(err.value)


def test_what_the_model_cannot_take_is_a_one_line_error_and_leaves_it_unpatched():
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    from nnprune.pruning_core.masked import MaskedLinear

    from transformers import DebertaV2Config

    deberta = AutoModelForSequenceClassification.from_config(DebertaV2Config(
        vocab_size=1000, hidden_size=H, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, relative_attention=True, pos_att_type=["p2c", "c2p"]))
    cases = [(_model(), {"hidden_size": 40}, "wider than the model's stream"),
             (deberta, {"hidden_size": 16}, "relative-position embeddings"),
             (AutoModelForSequenceClassification.from_config(tiny_config("bart")),
              {"hidden_size": 16}, "encoder-decoder"),
             (AutoModelForMaskedLM.from_config(tiny_config("bert")), {"prune_layers": True},
              "tied to the input embeddings")]
    for model, overrides, match in cases:
        with pytest.raises(NNPruneError, match=match) as err:
            patch_model(model, _config(**overrides))
        assert "\n" not in str(err.value)
        assert not any(isinstance(m, MaskedLinear) for m in model.modules())


def test_the_options_are_saved_with_the_run_only_when_set():
    config = _config(hidden_size=16, prune_layers=True)
    data = config.to_dict()
    assert data["hidden_size"] == 16 and data["prune_layers"] is True
    assert type(config).from_dict(data) == config
    plain = _config().to_dict()
    assert "hidden_size" not in plain and "prune_layers" not in plain


def test_fine_prune_learns_the_width_and_layers_end_to_end(tmp_path):
    """``nnprune fine-prune --set hidden_size=16 --set prune_layers=true``: the masked output
    reloads with its learnt masks and compacts to a 16-wide stream."""
    import nnprune
    from conftest import cli_output, save_tiny_model, write_toy_sst2

    model = save_tiny_model(tmp_path / "tiny", "bert")
    data = write_toy_sst2(tmp_path / "data")
    out = tmp_path / "out"
    cli_output(["fine-prune", "sst2", "--model", model, "--data-dir", data, "--method", "struct",
                "--max-steps", "4", "--batch-size", "8", "--max-seq-length", "16",
                "--output-dir", out, "--set", "hidden_size=16", "--set", "prune_layers=true"])
    record = json.loads((out / "nnprune_config.json").read_text())
    assert record["pruning"]["hidden_size"] == 16 and record["pruning"]["prune_layers"] is True
    pruning = nnprune.FinePruning.from_pretrained(out)
    assert width_depth_masks(pruning.model).kept_channels() != list(range(H))
    small = nnprune.compact(pruning.model).model
    assert stream_sites(small).width == 16
    # bertarize writes it compacted; a plain checkpoint cannot hold a narrower stream
    with pytest.raises(nnprune.NNPruneError, match="cannot hold: pass --compact"):
        nnprune.bertarize_checkpoint(out, tmp_path / "plain")
    assert not (tmp_path / "plain").exists()
    cli_output(["bertarize", out, "--output", tmp_path / "small", "--compact"])
    assert stream_sites(nnprune.load_pretrained(tmp_path / "small")).width == 16

    # with a speed target, priced by a table that prices widths (its file, as a user passes it)
    from nnprune.pruning_core.checkpoint import load_config

    table = _width_table(load_config(model))
    (tmp_path / "table.json").write_text(json.dumps(table.to_dict()))
    cli_output(["fine-prune", "sst2", "--model", model, "--data-dir", data, "--method", "struct",
                "--max-steps", "4", "--batch-size", "8", "--max-seq-length", "16",
                "--target-speedup", "3", "--latency-table", tmp_path / "table.json",
                "--latency-batch-size", "1", "--latency-seq-len", "16", "--latency-threads", "1",
                "--output-dir", tmp_path / "fast", "--set", "hidden_size=16"])
    pruning = nnprune.FinePruning.from_pretrained(tmp_path / "fast")
    predicted = pruning.predicted_speedup()
    assert predicted >= 3.0
    small = nnprune.compact(pruning.model, ffn_multiple=1).model  # the units the cut priced
    assert nnprune.model_shape(small).predicted_speedup(table) == pytest.approx(predicted)
