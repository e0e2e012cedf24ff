"""T5, Flan-T5 and mT5 (issue #13): roles (gated FFN sharing one score per dimension), compaction
with the relative position bias that layer 0 computes and every later layer reuses, same logits
and generations as the masked model, reload with nnprune and with stock transformers, FLOPs,
parameter counts and ONNX export of the compacted shapes. Tiny random models built from configs."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import SHARED_DATA, TOL, WITHOUT_NNPRUNE, minilm_path

D_MODEL, HEADS, FFN, BUCKETS = 32, 4, 64, 8
# t5: ReLU FFN (wi, wo); flan-t5: T5 v1.1 gated-GELU FFN (wi_0, wi_1, wo); mt5: gated, with a
# head size 12 that is not d_model / heads (32 / 4 = 8), as in mt5-small and flan-t5-small.
VARIANTS = {"t5": dict(feed_forward_proj="relu", d_kv=8),
            "flan-t5": dict(feed_forward_proj="gated-gelu", d_kv=8),
            "mt5": dict(feed_forward_proj="gated-gelu", d_kv=12)}
# Dense indices of the heads each attention keeps, per (stack, attention) and layer, and the FFN
# dims each layer keeps. "heads": layer 0's self-attention of the encoder keeps 2 heads (its
# bias table still feeds layer 1 at full width); the decoder's keeps all 4 while its layer 1
# keeps 2; cross-attention layer 0 keeps 2 and layer 1 all 4. "empty-first": every layer 0
# attention has no head left, yet layer 0 still makes the position bias of layer 1.
CASES = {
    "heads": {"heads": {("encoder", "self"): [[0, 2], [3]],
                        ("decoder", "self"): [[0, 1, 2, 3], [1, 2]],
                        ("decoder", "cross"): [[0, 1], [0, 1, 2, 3]]},
              "ffn": {"encoder": [42, 24], "decoder": [64, 0]}},
    "empty-first": {"heads": {("encoder", "self"): [[], [1, 3]],
                              ("decoder", "self"): [[], [2]],
                              ("decoder", "cross"): [[], [0, 3]]},
                    "ffn": {"encoder": [0, 42], "decoder": [24, 42]}},
}
GEN = {"max_new_tokens": 6, "do_sample": False}


def t5_config(variant: str, **overrides):
    """A tiny config: d_model 32, 4 heads, FFN 64, 2 layers per stack, vocab 1000."""
    from transformers import MT5Config, T5Config

    cls = MT5Config if variant == "mt5" else T5Config
    kw = dict(vocab_size=1000, d_model=D_MODEL, num_heads=HEADS, d_ff=FFN, num_layers=2,
              num_decoder_layers=2, relative_attention_num_buckets=BUCKETS,
              relative_attention_max_distance=20, dropout_rate=0.0, pad_token_id=0,
              eos_token_id=1, decoder_start_token_id=0, **VARIANTS[variant])
    kw.update(overrides)
    cfg = cls(**kw)
    cfg._attn_implementation = "eager"  # torch's FLOP counter sees the attention matmuls
    return cfg


def t5_model(variant: str, attn: str = "eager", **overrides):
    """A random tiny model whose matrices are redrawn N(0, 0.3): with T5's own initialisation a
    random tiny model greedily generates the pad token over and over, which checks little."""
    from transformers import AutoModelForSeq2SeqLM

    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(t5_config(variant, **overrides),
                                              attn_implementation=attn).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    return model


def _ffn_keep(size: int, kept: int) -> list[int]:
    """The FFN dims a layer keeps: all, every third one dropped (42), the last 24, or none."""
    if kept == size:
        return list(range(size))
    if kept == 42:
        return [i for i in range(size) if i % 3]
    return list(range(size - kept, size))


def masked_t5(variant: str, case: str, method: str = "struct", attn: str = "eager"):
    """A ``struct``-masked tiny model of ``variant`` pruned as ``CASES[case]`` says: a removed
    head has its value rows masked (all of a layer's heads: the attention output), a removed FFN
    dim its FFN-in score (shared by ``wi_0``, ``wi_1`` and ``wo``)."""
    from nnprune.pruning_core import Role, build_config, patch_model

    model = t5_model(variant, attn)
    pruner = patch_model(model, build_config(method))
    pruner.finalize()
    spec = CASES[case]
    for p in pruner.score_owners:
        s, site = p.layer.mask_scores, p.site
        s.data.fill_(5.0)
        if site.attention is not None:
            keep = spec["heads"][(site.stack, site.attention)][site.layer]
            if not keep and site.role is Role.ATTN_OUTPUT:
                s.data.fill_(-5.0)
            elif keep and site.role is Role.VALUE:
                s.data[[h for h in range(HEADS) if h not in keep]] = -5.0
        elif site.role is Role.FFN_IN:
            kept = _ffn_keep(FFN, spec["ffn"][site.stack][site.layer])
            s.data[[i for i in range(FFN) if i not in kept]] = -5.0
    return model


def _inputs(model) -> dict[str, torch.Tensor]:
    """The compaction probe (4 rows padded to different lengths) and 5 decoder tokens."""
    from nnprune.pruning_core.compact import probe_inputs

    inputs = probe_inputs(model.config)
    dec = inputs["input_ids"][:, :5].clone()
    dec[:, 0] = model.config.decoder_start_token_id
    return {**inputs, "decoder_input_ids": dec}


def _outputs(model, inputs):
    from nnprune.pruning_core.compact import model_outputs

    return model_outputs(model, inputs)


def _diff(a, b) -> float:
    from nnprune.pruning_core.compact import max_abs_diff

    return max_abs_diff(a, b)


@torch.no_grad()
def _generations(model, inputs) -> list[torch.Tensor]:
    """Greedy and 2-beam generations of 6 new tokens for the probe sources."""
    return [model.generate(inputs["input_ids"], attention_mask=inputs["attention_mask"],
                           num_beams=b, **GEN) for b in (1, 2)]


def _attention(model, stack: str, layer: int, name: str):
    block = getattr(model, stack).block[layer]
    return block.layer[0].SelfAttention if name == "self" else block.layer[1].EncDecAttention


# ----------------------------------------------------------------------------- roles


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_roles_and_gated_ffn_shares_one_score_per_dimension(variant):
    from nnprune.pruning_core import Role, build_config, find_sites, patch_model

    model = t5_model(variant)
    sites = find_sites(model)
    gated = variant != "t5"
    per_layer = {("encoder", 0): 4 + 2, ("decoder", 0): 8 + 2}
    for key, n in per_layer.items():
        found = [s for s in sites if (s.stack, s.layer) == key]
        assert len(found) == n + gated
        assert all(s.head_dim == VARIANTS[variant]["d_kv"] and s.num_heads == HEADS for s in found)
    ffn_in = [s.path for s in sites if s.role is Role.FFN_IN and (s.stack, s.layer) == ("decoder", 1)]
    names = ["wi_0", "wi_1"] if gated else ["wi"]
    assert ffn_in == [f"decoder.block.1.layer.2.DenseReluDense.{n}" for n in names]
    assert not any("relative_attention_bias" in s.path or "lm_head" in s.path for s in sites)

    pruner = patch_model(model, build_config("struct"))
    ffn = model.encoder.block[0].layer[1].DenseReluDense
    owner = ffn.wi_0 if gated else ffn.wi
    assert owner.owns_scores and owner.mask_scores.shape == (FFN, 1)
    borrowers = [ffn.wi_1, ffn.wo] if gated else [ffn.wo]
    assert all(b.score_source is owner and b.mask_scores is None for b in borrowers)
    assert owner.partners == borrowers
    assert owner.weights_per_score == D_MODEL * (1 + len(borrowers))
    # One score decides the rows of every FFN-in matrix and the column of FFN-out.
    pruner.finalize()
    owner.mask_scores.data.fill_(5.0)
    owner.mask_scores.data[[3, 7]] = -5.0
    for lin in [owner, *borrowers]:
        from nnprune.pruning_core.structure import effective_weight

        w, _ = effective_weight(lin)
        dims = w if lin is not ffn.wo else w.T
        assert (dims == 0).all(dim=1).nonzero().flatten().tolist() == [3, 7]


def test_gated_ffn_training_forward_uses_one_l0_sample_for_all_three_matrices():
    from nnprune.pruning_core import build_config, patch_model

    model = t5_model("flan-t5")
    patch_model(model, build_config("l0", overrides={"ffn_block": "ffn_dim"}))
    ffn = model.encoder.block[0].layer[1].DenseReluDense
    seen = {}

    def keep(name):
        def hook(module, args, output):
            seen[name] = (args[0].detach(), output.detach())
        return hook

    for name in ("wi_0", "wi_1", "wo"):
        getattr(ffn, name).register_forward_hook(keep(name))
    model.train()
    torch.manual_seed(1)
    model(**_inputs(model))
    block = ffn.wi_0._cached_mask.detach()  # the sample of this forward: (FFN, 1)
    assert bool((block < 1).any())  # a random sample, not the all-ones mask
    for name in ("wi_0", "wi_1", "wo"):
        lin = getattr(ffn, name)
        x, y = seen[name]
        expected = torch.nn.functional.linear(x, lin.weight.detach() * lin.expand(block.reshape(lin.grid)))
        assert torch.allclose(y, expected, atol=1e-6), name


# ----------------------------------------------------------------------------- compaction


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_compacted_matches_masked_logits_and_generations_and_reloads(tmp_path, variant, case):
    import nnprune
    from nnprune.pruning_core import unpatch_model
    from nnprune.pruning_core.checkpoint import save_checkpoint
    from nnprune.pruning_core.compact import compact_model

    model = masked_t5(variant, case)
    inputs = _inputs(model)
    masked = _outputs(model, inputs)
    generated = _generations(model, inputs)
    assert len({tuple(r.tolist()) for r in generated[0]}) > 1  # rows differ: a real check
    assert _diff(masked, _outputs(unpatch_model(copy.deepcopy(model), apply_masks=True), inputs)) <= TOL

    report = compact_model(model)
    spec = CASES[case]
    assert report.exact
    assert {(a.stack, a.name, a.layer): a.kept for a in report.attention} == {
        (st, name, i): len(k) for (st, name), per in spec["heads"].items() for i, k in enumerate(per)}
    assert {(f.stack, f.layer): f.kept for f in report.ffn} == {
        (st, i): n for st, dims in spec["ffn"].items() for i, n in enumerate(dims)}
    assert _diff(masked, _outputs(model, inputs)) <= TOL
    assert all(torch.equal(a, b) for a, b in zip(_generations(model, inputs), generated))

    d_kv = VARIANTS[variant]["d_kv"]
    layout = model.config.nnprune_layout
    for (stack, name), per_layer in spec["heads"].items():
        entry = layout["stacks"][stack]["attention"][name]
        assert entry["heads"] == [len(k) for k in per_layer] and entry["head_dim"] == d_kv
        assert entry["head_index"] == per_layer
        assert entry["passes_head_args"] and entry["head_args"] == ["position_bias"]
        assert entry.get("head_arg_maker") == ("compute_bias" if name == "self" else None)
        for i, kept in enumerate(per_layer):
            block = _attention(model, stack, i, name)
            if not kept:
                assert type(block).__name__ == "EmptyAttention"
                continue
            # Every per-head attribute the stock forward reads follows the kept heads.
            assert block.n_heads == len(kept) and block.inner_dim == len(kept) * d_kv
            assert block.key_value_proj_dim == d_kv and block.q.out_features == len(kept) * d_kv
    # The relative bias tables keep every dense head (layer 1 reads heads layer 0 dropped).
    for stack in ("encoder", "decoder"):
        table = _attention(model, stack, 0, "self").relative_attention_bias
        assert tuple(table.weight.shape) == (BUCKETS, HEADS)
    gated = variant != "t5"
    ffn = layout["stacks"]["encoder"]["ffn"]
    assert ffn["in"] == (["layer.1.DenseReluDense.wi_0", "layer.1.DenseReluDense.wi_1"] if gated
                         else "layer.1.DenseReluDense.wi")
    for stack, dims in spec["ffn"].items():
        for i, n in enumerate(dims):
            dense = getattr(model, stack).block[i].layer[-1].DenseReluDense
            ins = [dense.wi_0, dense.wi_1] if gated else [dense.wi]
            assert [lin.out_features for lin in ins] == [n] * len(ins) and dense.wo.in_features == n

    out = save_checkpoint(model, tmp_path / variant, config=None)
    reloaded = nnprune.load_pretrained(out)
    assert reloaded.config.nnprune_layout == layout
    assert _diff(masked, _outputs(reloaded, inputs)) <= TOL
    assert all(torch.equal(a, b) for a, b in zip(_generations(reloaded, inputs), generated))


@pytest.mark.parametrize("case", list(CASES))
def test_sdpa_attention_compacts_exactly(case):
    """SDPA (the default attention) folds the selected position bias into its float mask."""
    from nnprune.pruning_core.compact import compact_model

    model = masked_t5("flan-t5", case, attn="sdpa")
    assert model.encoder.block[1].layer[0].SelfAttention.config._attn_implementation == "sdpa"
    inputs = _inputs(model)
    masked, generated = _outputs(model, inputs), _generations(model, inputs)
    compact_model(model)
    assert _diff(masked, _outputs(model, inputs)) <= TOL
    assert all(torch.equal(a, b) for a, b in zip(_generations(model, inputs), generated))


def test_second_compaction_composes_the_head_index_of_layer_zero():
    """Compacted twice: layer 0 of the encoder goes from dense heads [0, 2] to [2], so it reads
    dense head 2 of its own bias table while layer 1 still reads dense head 3."""
    from nnprune.pruning_core.compact import compact_model

    model = masked_t5("flan-t5", "heads")
    compact_model(model)
    with torch.no_grad():
        model.encoder.block[0].layer[0].SelfAttention.v.weight[:8] = 0  # its local head 0
    inputs = _inputs(model)
    expected = _outputs(model, inputs)
    report = compact_model(model)
    assert [a.kept for a in report.attention if a.stack == "encoder"] == [1, 1]
    entry = model.config.nnprune_layout["stacks"]["encoder"]["attention"]["self"]
    assert entry["head_index"] == [[2], [3]]
    assert _diff(expected, _outputs(model, inputs)) <= TOL


# A process in which nnprune cannot be imported: stock transformers loads each compacted
# checkpoint with its remote code and prints the logit difference and whether the greedy and
# beam generations are the reference ones.
STOCK_SCRIPT = WITHOUT_NNPRUNE + r"""
import torch
import transformers
from safetensors.torch import load_file

transformers.logging.set_verbosity_error()
results = {}
for path in json.loads(sys.argv[1]):
    data = load_file(path + ".probe.safetensors")
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True).eval()
    assert type(model).__name__ == "NNPruneT5ForConditionalGeneration" or \
        type(model).__name__ == "NNPruneMT5ForConditionalGeneration", type(model)
    with torch.no_grad():
        logits = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"],
                       decoder_input_ids=data["decoder_input_ids"]).logits
        same = [torch.equal(model.generate(data["input_ids"], attention_mask=data["attention_mask"],
                                           num_beams=b, max_new_tokens=6, do_sample=False),
                            data[f"gen{b}"]) for b in (1, 2)]
    results[path] = [float((logits - data["logits"]).abs().max()), same]
assert not any(k == "nnprune" or k.startswith("nnprune.") for k in sys.modules)
print("RESULT " + json.dumps(results))
"""


def test_stock_transformers_reloads_compacted_t5_without_nnprune(tmp_path):
    from safetensors.torch import save_file

    from nnprune.pruning_core.checkpoint import save_checkpoint
    from nnprune.pruning_core.compact import compact_model

    paths = []
    for variant in VARIANTS:
        for case in CASES:
            model = masked_t5(variant, case)
            inputs = _inputs(model)
            ref = _outputs(model, inputs)["logits"]
            gen1, gen2 = _generations(model, inputs)
            compact_model(model)
            path = save_checkpoint(model, tmp_path / f"{variant}-{case}", config=None)
            tensors = {**inputs, "logits": ref, "gen1": gen1, "gen2": gen2}
            save_file({k: v.contiguous() for k, v in tensors.items()}, f"{path}.probe.safetensors")
            paths.append(str(path))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "hf_modules"))
    proc = subprocess.run([sys.executable, "-c", STOCK_SCRIPT, json.dumps(paths)], check=False,
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    results = json.loads(line[len("RESULT "):])
    assert set(results) == set(paths)
    for path, (diff, same) in results.items():
        assert diff <= TOL and same == [True, True], (path, diff, same)


# ----------------------------------------------------------------------------- counting


def _hand_flops(variant: str, case: str, batch: int, src: int, tgt: int) -> int:
    """Whole teacher-forced forward of ``masked_t5(variant, case)`` once compacted."""
    d_kv = VARIANTS[variant]["d_kv"]
    n_in = 1 if variant == "t5" else 2  # FFN-in matrices
    spec = CASES[case]
    total = 0
    for stack, length in (("encoder", src), ("decoder", tgt)):
        t = batch * length
        for i in range(2):
            for name, lk in (("self", length), ("cross", src)):
                per = spec["heads"].get((stack, name))
                if per is None:
                    continue
                inner = len(per[i]) * d_kv
                kv_rows = batch * lk
                total += 2 * t * D_MODEL * inner * 2  # Q, attention output
                total += 2 * kv_rows * D_MODEL * inner * 2  # K, V (cross: per source token)
                total += 2 * batch * length * lk * inner * 2  # Q K^T, probs x V
            total += 2 * t * D_MODEL * spec["ffn"][stack][i] * (n_in + 1)
    total += 2 * batch * tgt * D_MODEL * 1000  # lm_head
    return total


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_flops_of_the_compacted_shape(variant, case):
    from torch.utils.flop_counter import FlopCounterMode

    from nnprune.measure.flops import compacted_profile, count_flops, make_inputs
    from nnprune.pruning_core.compact import compact_model

    model = masked_t5(variant, case)
    B, S, T = 3, 19, 7
    predicted = compacted_profile(model).count(B, S, T).total  # before compacting, from the masks
    compact_model(model)
    c = count_flops(model, B, S, T)
    assert c.total == _hand_flops(variant, case, B, S, T) == predicted
    spec = CASES[case]
    dec = [lf for lf in c.layers if lf.stack == "decoder"]
    assert [lf.heads for lf in dec] == [
        {"self": len(spec["heads"][("decoder", "self")][i]),
         "cross": len(spec["heads"][("decoder", "cross")][i])} for i in range(2)]
    assert [lf.ffn_dims for lf in c.layers] == spec["ffn"]["encoder"] + spec["ffn"]["decoder"]
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(**make_inputs(model, B, S, T))
    assert fc.get_total_flops() == c.total


def _hand_params(variant: str, case: str) -> tuple[int, int]:
    """(remaining, original) linear weights of the transformer layers of the compacted model."""
    d_kv = VARIANTS[variant]["d_kv"]
    n_in = 1 if variant == "t5" else 2
    spec = CASES[case]
    remaining = sum(4 * D_MODEL * len(k) * d_kv for per in spec["heads"].values() for k in per)
    remaining += sum(D_MODEL * n * (n_in + 1) for dims in spec["ffn"].values() for n in dims)
    original = 6 * 4 * D_MODEL * HEADS * d_kv + 4 * D_MODEL * FFN * (n_in + 1)
    return remaining, original


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_param_counts_of_the_compacted_shape(variant):
    from nnprune.measure.counting import count_parameters
    from nnprune.pruning_core.compact import compact_model

    model = masked_t5(variant, "heads")
    counted_masked = count_parameters(model)
    compact_model(model)
    pc = count_parameters(model)
    spec = CASES["heads"]
    assert [lc.heads for lc in pc.layers] == [
        {name: [len(spec["heads"][(st, name)][i]), HEADS] for (s, name) in spec["heads"] if s == st}
        for st in ("encoder", "decoder") for i in range(2)]
    assert [lc.ffn_dims for lc in pc.layers] == [
        [n, FFN] for st in ("encoder", "decoder") for n in spec["ffn"][st]]
    assert pc.estimated_speedup == pytest.approx(counted_masked.estimated_speedup)
    assert (pc.remaining, pc.original) == _hand_params(variant, "heads")


# ----------------------------------------------------------------------------- export


@pytest.mark.parametrize("case", list(CASES))
def test_onnx_export_of_compacted_checkpoint(tmp_path, case):
    pytest.importorskip("onnxruntime")
    from nnprune.export.onnx import export_checkpoint
    from nnprune.pruning_core.checkpoint import save_checkpoint
    from nnprune.pruning_core.compact import compact_model

    model = masked_t5("flan-t5", case)
    compact_model(model)
    ckpt = save_checkpoint(model, tmp_path / "ckpt", config=None)
    exp = export_checkpoint(ckpt, tmp_path / "onnx")
    # Checked inside on another batch size and source / target length; 1e-3 is its own limit.
    assert exp.max_abs_diff < TOL
    assert exp.input_names == ["input_ids", "attention_mask", "decoder_input_ids"]


# ----------------------------------------------------------------------------- task


CNN_DM = SHARED_DATA / "cnn_dm"


@pytest.mark.skipif(not (CNN_DM / "cnn_stories").is_dir(), reason="shared CNN/DM data not available")
def test_fine_prune_cnn_dailymail_on_tiny_flan_t5(tmp_path, capsys):
    """Three ``struct`` steps of ``nnprune fine-prune cnn_dailymail`` on a tiny gated T5 (8 real
    stories), then the masked checkpoint compacts exactly and counts per stack."""
    import shutil

    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from nnprune.cli.main import main
    from nnprune.measure.counting import count_parameters
    from nnprune.pruning_core.checkpoint import load_model
    from nnprune.pruning_core.compact import compact_exactly
    from nnprune.tasks.cnn_dailymail import url_hash

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(t5_config(
        "flan-t5", vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id, decoder_start_token_id=tokenizer.pad_token_id))
    model.save_pretrained(tmp_path / "tiny-t5")
    tokenizer.save_pretrained(tmp_path / "tiny-t5")
    data = tmp_path / "cnn_dm"
    (data / "stories").mkdir(parents=True)
    (data / "url_lists").mkdir()
    for split in ("train", "val"):
        urls = [u for u in (CNN_DM / "url_lists" / f"all_{split}.txt").read_text().splitlines()
                if u.strip()][:4]
        (data / "url_lists" / f"all_{split}.txt").write_text("\n".join(urls) + "\n")
        for u in urls:
            shutil.copy(CNN_DM / "cnn_stories" / f"{url_hash(u)}.story", data / "stories")

    out = tmp_path / "run"
    fast = ["num_beams=2", "max_length=12", "min_length=2", "no_repeat_ngram_size=0"]
    with pytest.raises(SystemExit) as exc:
        main(["fine-prune", "cnn_dailymail", "--model", str(tmp_path / "tiny-t5"), "--output-dir",
              str(out), "--data-dir", str(data / "stories"), "--max-steps", "3",
              "--batch-size", "2", "--method", "struct", "--max-seq-length", "64",
              "--learning-rate", "1e-3", "--max-eval-samples", "4", "--logging-steps", "1",
              "--save-steps", "100", "--json-file", str(tmp_path / "result.json"),
              *[a for kv in fast for a in ("--task-option", kv)]])
    assert exc.value.code in (0, None), capsys.readouterr().err
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["steps"] == 3 and result["main_metric"] == "rouge2"
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert 0.0 <= result["metrics"][key] <= 100.0

    loaded = load_model(out)
    assert loaded.is_masked
    masked = loaded.model
    ffn = masked.encoder.block[0].layer[1].DenseReluDense
    assert ffn.wi_1.score_source is ffn.wi_0 and ffn.wo.score_source is ffn.wi_0
    pc = count_parameters(masked, seq_len=64)
    assert set(pc.by_stack) == {"encoder", "decoder"}
    dec = next(lc for lc in pc.layers if lc.stack == "decoder")
    assert set(dec.heads) == {"self", "cross"}
    report, diff = compact_exactly(masked)
    assert report.exact and diff <= TOL
