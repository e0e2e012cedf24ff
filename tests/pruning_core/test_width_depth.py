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


# ------------------------------------------------------------------------------ post-training
def _calibration(n_batches: int = 3, batch: int = 8, seq: int = 12, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(1000, 2000, (batch, seq), generator=g)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                    "labels": torch.randint(0, 2, (batch,), generator=g)})
    return out


def _scaled_bert(layers: int = 3, dead: int = 0):
    """A tiny BERT with larger weights (gradients well above noise); the last ``dead``
    channels of the stream carry nothing (every LayerNorm on the stream zeroes them), so their
    Fisher is 0."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(tiny_config(
        "bert", num_labels=2, num_hidden_layers=layers, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(3.0)
        if dead:
            for path in stream_sites(model).all_norms():
                norm = model.get_submodule(path)
                norm.weight[H - dead:] = 0
                norm.bias[H - dead:] = 0
    return model


def test_channel_and_layer_fisher_equal_a_hand_computation():
    """Channel c's score = sum over examples of (d loss_n / d m_c)^2 with one mask shared by
    every read of the stream; layer l's = the same for the gate of its residual branch."""
    from nnprune.pruning_core.post_training import fisher_information, mask_groups
    from nnprune.pruning_core.width_depth import width_depth_scores

    model = _scaled_bert(layers=2)
    batches = _calibration(n_batches=2, batch=3)
    imp = fisher_information(model, batches, mask_groups(model), width_depth=True)
    hand_c, hand_l = torch.zeros(H, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    for batch in batches:
        for n in range(3):
            one = {k: v[n:n + 1] for k, v in batch.items()}
            c = torch.ones(1, H, requires_grad=True)
            lay = torch.ones(1, 2, requires_grad=True)
            with width_depth_scores(model, c, lay):
                loss = model(**one).loss
            gc, gl = torch.autograd.grad(loss, [c, lay])
            hand_c += gc[0].double() ** 2
            hand_l += gl[0].double() ** 2
    assert torch.allclose(imp.hidden, hand_c, rtol=1e-4, atol=1e-10)
    assert torch.allclose(imp.layers, hand_l, rtol=1e-4, atol=1e-10)
    assert bool((imp.layers > 0).all()) and bool((imp.hidden > 0).all())


def _importance(heads, dims, hidden, layers):
    """An Importance for 2-layer groups of 2 heads and 4 FFN dims each."""
    from nnprune.pruning_core.post_training import Importance, MaskGroup

    groups = [MaskGroup(("encoder", i, "self"), 2, 8, f"l{i}.o") for i in range(2)] + \
             [MaskGroup(("encoder", i, None), 4, 1, f"l{i}.ffn") for i in range(2)]
    diag = {g.key: torch.tensor(v, dtype=torch.float64)
            for g, v in zip(groups, [heads[0], heads[1], dims[0], dims[1]])}
    blocks = {k: torch.diag(v) for k, v in diag.items()}
    return groups, Importance(diag, blocks, 10, torch.tensor(hidden, dtype=torch.float64),
                              torch.tensor(layers, dtype=torch.float64))


def test_the_search_chooses_width_depth_and_units_within_the_budget():
    """Prices: a head 2 * w / 8, an FFN dim w / 8, a layer 1 beyond its units, 4 fixed."""
    from nnprune.pruning_core.post_training import UnitCosts, search_width_depth

    def costs(width, layers):
        return UnitCosts(2.0 * width / 8, width / 8, 4.0 + layers, 16)

    def price(choice):
        w, n = len(choice.channels), 2 - len(choice.removed_layers)
        c = costs(w, n)
        units = [len(v) for v in choice.kept.values()]
        heads, dims = sum(units[:2]), sum(units[2:])
        return c.total(heads, dims)

    groups, imp = _importance([[5, 1], [4, 3]], [[2, 2, 1, 0.5], [9, 1, 1, 1]],
                              [9.0, 8.0, 0.01, 0.02, 7.0, 0.03, 6.0, 5.0], [0.1, 50.0])
    widths = [2, 4, 6, 8]
    everything = search_width_depth(imp, groups, costs, 1e9, widths)
    assert everything.channels == list(range(8)) and everything.removed_layers == []
    assert all(len(v) == g.size for g, v in zip(groups, everything.kept.values()))
    ranking = [0, 1, 4, 6, 7, 5, 3, 2]  # channels by Fisher, most first
    assert price(everything) == 22.0
    for budget in (20.0, 14.0, 10.0, 8.0):
        choice = search_width_depth(imp, groups, costs, budget, widths)
        assert price(choice) <= budget
        # narrower than dense, keeping the most important channels (the near-zero ones go first)
        assert len(choice.channels) < 8
        assert choice.channels == sorted(ranking[:len(choice.channels)])
        # a removed layer is the one whose removal the Fisher prices lowest, its units with it
        assert choice.removed_layers in ([], [0])
        assert not any(choice.kept[g.key] for g in groups if g.key[1] in choice.removed_layers)
    tight = search_width_depth(imp, groups, costs, 8.0, widths)
    assert tight.removed_layers == [0]
    protected = search_width_depth(imp, groups, costs, 8.0, widths, protected=[0])
    assert protected.removed_layers in ([], [1]) and price(protected) <= 8.0
    with pytest.raises(NNPruneError, match="below what one layer"):
        search_width_depth(imp, groups, costs, 4.5, widths)


def test_prune_narrows_dead_channels_and_compacts_exactly(tmp_path):
    """Channels that carry nothing have no Fisher: a FLOP target narrows the stream to the live
    ones, the prediction is the compacted model's FLOPs, and stock transformers reloads it."""
    import nnprune
    from nnprune.measure.flops import count_flops
    from nnprune.pruning_core.checkpoint import save_checkpoint

    model, dense = _scaled_bert(dead=8), _scaled_bert(dead=8)
    result = nnprune.prune(model, _calibration(n_batches=4), target_flops=0.5)
    assert result.width_depth and result.hidden_total == H and result.hidden_kept <= H - 8
    assert set(result.kept["stream"]).isdisjoint(range(H - 8, H))
    assert result.exactness <= TOL
    measured = count_flops(dense, 1, 12).total / count_flops(model, 1, 12).total
    assert measured == pytest.approx(result.predicted_speedup, rel=1e-6) and measured >= 2.0
    assert sum(result.heads_per_layer) == result.heads_kept
    inputs = probe_inputs(model.config)
    path = save_checkpoint(model, tmp_path / "narrow", config=None)
    write_probe(path, inputs, model_outputs(model, inputs))
    diffs = stock_reload_diffs([(str(path), "AutoModelForSequenceClassification")], tmp_path)
    assert diffs[str(path)] <= TOL

    same = _scaled_bert(dead=8)
    only = nnprune.prune(same, _calibration(n_batches=4), target_flops=0.5, width_depth=False)
    assert not only.width_depth and only.hidden_kept == H and only.layers_removed == []


def test_a_speed_target_is_met_by_a_table_that_prices_width_and_depth(tmp_path):
    """With a table measured at several widths, the search meets the speed target as the table
    predicts it for the compacted model (its layout: width, layers left, units per layer); a
    table without widths prunes heads and FFN only and says why."""
    import json

    import nnprune
    from nnprune.measure.latency import LatencySetting, LatencyTable, table_key
    from nnprune.pruning_core.latency_model import LatencyModel

    model = _scaled_bert(layers=2, dead=8)
    setting = LatencySetting(batch_size=1, seq_len=12, threads=1)
    # the conftest table (1 ms a head, 0.1 ms an FFN dim, 2 ms fixed) measured at widths too
    m = LatencyModel(2, 4, 64, (0, 1, 2, 3, 4), (0.0, 1.0, 2.0, 3.0, 4.0), (0, 32, 64),
                     (0.0, 3.2, 6.4), 2.0, hidden=32, widths=(8, 16, 32),
                     attention_scale=(0.25, 0.5, 1.0), ffn_scale=(0.25, 0.5, 1.0),
                     layer_ms=(0.1, 0.2, 0.4), base_ms=(0.5, 1.0, 1.2))
    table = LatencyTable(key=table_key(model.config, setting), model=m)
    result = nnprune.prune(model, _calibration(n_batches=4), target_speedup=6.0,
                           latency_table=table)
    layout = model.config.nnprune_layout
    enc = layout["stacks"]["encoder"]
    width = layout.get("hidden", {}).get("size", H)
    predicted = m.speedup(enc["attention"]["self"]["heads"], enc["ffn"]["dims"], width=width)
    assert predicted == pytest.approx(result.predicted_speedup)
    assert predicted >= 6.0 * (1 - 0.006)
    assert result.exactness <= TOL and width == result.hidden_kept < H
    # what a sweep times the model by: its shape, the stream's width included
    shape = nnprune.model_shape(model)
    assert shape.hidden == width and shape.layers == len(enc["ffn"]["dims"])
    assert shape.predicted_speedup(table) == pytest.approx(result.predicted_speedup)

    plain = LatencyModel(2, 4, 64, (0, 1, 2, 3, 4), (0.0, 1.0, 2.0, 3.0, 4.0), (0, 32, 64),
                         (0.0, 3.2, 6.4), 2.0)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(LatencyTable(key=table_key(model.config, setting), model=plain).to_dict()))
    other = nnprune.prune(_scaled_bert(layers=2, dead=8), _calibration(n_batches=4),
                          target_speedup=2.0, latency_table=str(path))
    assert not other.width_depth and "without hidden widths" in other.width_depth_note


def test_the_prune_command_searches_width_and_depth_unless_told_heads_ffn_only(tmp_path):
    """``nnprune prune`` records whether the search could choose width and depth, prints the
    width kept and the layers removed, and --heads-ffn-only keeps today's search."""
    import json

    from conftest import cli_output, save_tiny_model, write_toy_sst2

    model = save_tiny_model(tmp_path / "model")
    data = write_toy_sst2(tmp_path / "data", n_train=64, n_dev=16)
    results = {}
    for flag in ("--width-depth", "--heads-ffn-only"):
        out = tmp_path / flag.strip("-")
        printed = cli_output(["prune", model, "sst2", "--output-dir", out, "--target-flops", "0.1",
                              "--data-dir", data, "--calibration-samples", "48",
                              "--max-seq-length", "32", "--no-speed-probe", flag,
                              "--json-file", tmp_path / f"{flag}.json"])
        results[flag] = (json.loads((tmp_path / f"{flag}.json").read_text()),
                         json.loads((out / "nnprune_config.json").read_text()), printed)
    wide, record, printed = results["--width-depth"]
    assert record["post_training"]["method"].startswith("fisher+search+width+depth")
    assert record["post_training"]["options"]["width_depth"] is True
    assert wide["hidden_total"] == 32 and "hidden width kept" in printed
    # the layers removed are counted, then named: "1 (layer 5)", where "5" read as five layers
    from types import SimpleNamespace

    from nnprune.cli.prune import _width_depth_rows

    def removed(layers):
        rec = SimpleNamespace(hidden_kept=24, hidden_total=32, layers_removed=layers)
        return dict(_width_depth_rows(rec))["layers removed"]
    assert [removed([5]), removed([1, 3]), removed([])] == ["1 (layer 5)", "2 (layers 1, 3)", "none"]
    assert "stream" in record["post_training"]["kept"]
    only, record, printed = results["--heads-ffn-only"]
    assert record["post_training"]["method"] == "fisher+search+rearrange"
    assert only["layers_removed"] == [] and "hidden width kept" not in printed


def test_pictures_and_card_show_the_narrowed_stream_and_the_removed_layer(tmp_path):
    """The pictures draw a removed layer as an empty row at its dense index and the kept
    channels at their dense rows; the card says the width and which layers are gone."""
    from nnprune.pruning_core.checkpoint import save_checkpoint
    from nnprune.report.card import write_card
    from nnprune.report.plots import ffn_data, heads_data, pattern_data

    model, _, _ = _pruned("bert")
    compact_model(model)
    heads, ffn, pattern = heads_data(model), ffn_data(model), pattern_data(model)
    assert heads.rows == ffn.rows == pattern.rows == ["layer 0", "layer 1 (removed)", "layer 2"]
    assert heads.kept.sum(1).tolist() == [2, 0, 4] and ffn.kept == [40, 0, 64]
    assert pattern.hidden_kept == 20
    value = pattern.panels[("layer 2", "v")]  # (hidden, heads x head size), factor 1
    assert value[KEEP].all() and not value[[c for c in range(H) if c not in KEEP]].any()
    assert not pattern.panels[("layer 1 (removed)", "ffn_in")].any()
    path = save_checkpoint(model, tmp_path / "narrow", config=None)
    card = write_card(path)
    text = (path / "README.md").read_text()
    assert "a hidden width of 20/32, 2/3 layers (removed: 1)" in text
    assert "| 1 (removed) |" in text and card is not None


def test_a_chosen_hidden_size_is_kept_and_the_rest_is_searched():
    import nnprune
    from nnprune.measure.flops import count_flops

    model, dense = _scaled_bert(), _scaled_bert()
    result = nnprune.prune(model, _calibration(n_batches=4), target_flops=0.4, hidden_size=16)
    assert result.hidden_kept == 16 and model.config.nnprune_layout["hidden"]["size"] == 16
    assert count_flops(dense, 1, 12).total / count_flops(model, 1, 12).total >= 2.5
    assert result.exactness <= TOL
    with pytest.raises(NNPruneError, match="needs --width-depth"):
        nnprune.prune(_scaled_bert(), _calibration(n_batches=4), target_flops=0.4,
                      hidden_size=16, width_depth=False)
    with pytest.raises(NNPruneError, match="between 8 and"):
        nnprune.prune(_scaled_bert(), _calibration(n_batches=4), target_flops=0.4, hidden_size=40)


def test_a_narrowed_shallower_checkpoint_fills_and_still_reloads(tmp_path):
    """The --then-fill stage trains a model pruned in width and depth (distilled from the dense
    one); the filled checkpoint keeps its layout and reloads with stock transformers."""
    import shutil

    from conftest import make_args, save_tiny_model, write_toy_sst2

    import nnprune
    from nnprune.pruning_core.checkpoint import save_checkpoint
    from nnprune.workflows.fill import FillArgs, fill

    dense = save_tiny_model(tmp_path / "dense")  # 2 layers
    data = write_toy_sst2(tmp_path / "data", n_train=32, n_dev=16)
    model = nnprune.load_pretrained(dense)
    apply_width_depth(model, KEEP, [1])
    compact_model(model)
    pruned = save_checkpoint(model, tmp_path / "pruned", config=None)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(dense / name, pruned / name)
    out = tmp_path / "filled"
    result = fill(make_args(FillArgs, checkpoint=pruned, task="sst2", output_dir=out,
                            teacher=str(dense), data_dir=data, max_steps=2, batch_size=8,
                            max_seq_length=32))
    assert "accuracy" in result.metrics
    filled = nnprune.load_pretrained(out)
    assert filled.config.nnprune_layout["hidden"]["size"] == 20
    assert filled.config.nnprune_layout["stacks"]["encoder"]["kept_layers"] == [0]
    inputs = probe_inputs(filled.config)
    write_probe(out, inputs, model_outputs(filled, inputs))
    diffs = stock_reload_diffs([(str(out), "AutoModelForSequenceClassification")], tmp_path)
    assert diffs[str(out)] <= TOL


def test_a_narrowed_shallower_model_exports_to_onnx_with_int8(tmp_path):
    """The scatter back to the dense width exports (a pad and a gather): onnxruntime computes
    the compacted model's logits, and the int8 export runs."""
    pytest.importorskip("onnxruntime")
    import nnprune

    model, _, _ = _pruned("bert")
    compact_model(model)
    exp = nnprune.export_onnx(model, tmp_path / "onnx", quantize="int8")
    assert exp.max_abs_diff < 1e-4 and exp.int8_max_abs_diff is not None


def test_the_card_repeats_the_width_options_of_a_prune_run():
    from nnprune.pruning_core.run_record import CommandOptions
    from nnprune.report.card import prune_command

    base = {"checkpoint": "runs/dense", "task": "sst2", "output_dir": "out", "target_speedup": 5}
    assert "width" not in prune_command(CommandOptions({**base, "width_depth": True}), "sst2")
    assert "--heads-ffn-only" in prune_command(CommandOptions({**base, "width_depth": False}), "sst2")
    assert "--hidden-size 192" in prune_command(
        CommandOptions({**base, "width_depth": True, "hidden_size": 192}), "sst2")
