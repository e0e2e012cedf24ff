"""``speed --generate`` for seq2seq (issue #6): full ``generate`` time of a compacted tiny BART
against its dense baseline, exactly N new tokens on both, next to the teacher-forced forward."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import save_tiny_model, tiny_config
from test_speed_flops import compact, save_pair
from typer.testing import CliRunner

from nnprune.errors import NNPruneError

EOS = 102  # tiny_config("bart")


def _bart_pair():
    """A tiny BART (hidden 64, 4 heads, FFN 256, 2+2 layers) whose LM head strongly prefers EOS
    (so that without forcing, generate would stop at once), and the same with half of its decoder
    heads (self and cross attention) and FFN dims compacted away."""
    from transformers import AutoModelForSeq2SeqLM

    torch.manual_seed(0)
    cfg = tiny_config("bart", d_model=64, encoder_ffn_dim=256, decoder_ffn_dim=256)
    dense = AutoModelForSeq2SeqLM.from_config(cfg).eval()
    with torch.no_grad():
        dense.final_logits_bias[0, EOS] = 50.0
    half = compact(copy.deepcopy(dense), {("decoder", i): 2 for i in range(2)},
                   {("decoder", i): 128 for i in range(2)})
    return dense, half


@pytest.fixture(scope="module")
def bart_dirs(tmp_path_factory):
    return save_pair(tmp_path_factory.mktemp("speed-s2s"), *_bart_pair())


def test_eos_biased_bart_stops_at_once_without_forcing():
    """The premise of the tests below: left alone, these models end every sequence at once."""
    dense, half = _bart_pair()
    ids = torch.randint(1000, 30000, (2, 12))
    with torch.inference_mode():
        for m in (dense, half):
            out = m.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8)
            assert out.shape[1] == 2 and (out[:, 1] == EOS).all()


def test_speed_cli_generate_compacted_bart(bart_dirs):
    from nnprune.cli.main import app

    dense_dir, half_dir = bart_dirs
    res = CliRunner().invoke(app, [
        "speed", str(half_dir), "--baseline", str(dense_dir), "--generate", "--max-new-tokens", "8",
        "--batch-sizes", "2", "--seq-lens", "16,24", "--threads", "1", "--warmup", "1",
        "--iters", "3", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["model_kind"] == "compacted" and rep["max_new_tokens"] == 8 and rep["num_beams"] == 1
    # The teacher-forced forward rows are still there, with the decoder's FLOPs halved.
    assert [(r["batch_size"], r["seq_len"]) for r in rep["rows"]] == [(2, 16), (2, 24)]
    assert all(1.0 < r["theoretical_speedup"] < 2.0 for r in rep["rows"])
    gen = rep["generate_rows"]
    assert [(r["batch_size"], r["seq_len"]) for r in gen] == [(2, 16), (2, 24)]
    for r in gen:
        assert r["new_tokens"] == 8 and r["num_beams"] == 1
        assert r["model_p90_ms"] >= r["model_ms"] > 0 and r["baseline_p90_ms"] >= r["baseline_ms"] > 0
        assert r["model_tokens_per_s"] == pytest.approx(2 * 8 * 1000.0 / r["model_ms"])
        assert r["speedup"] == pytest.approx(r["baseline_ms"] / r["model_ms"])
        assert len(r["model_times_ms"]) == len(r["baseline_times_ms"]) == 3


def test_run_speed_generate_beams_default_baseline_and_exact_length():
    from nnprune.measure.timing import GenerateRunner, generation_config_for
    from nnprune.api.speed import run_speed

    dense, half = _bart_pair()
    rep = run_speed("half", model=half, generate=True, max_new_tokens=5, num_beams=2,
                    batch_sizes=[3], seq_lens=[10], threads=1, warmup=0, iters=2)
    (row,) = rep.generate_rows
    assert "random weights" in rep.baseline  # the dense architecture rebuilt from the config
    assert row.new_tokens == 5 and row.num_beams == 2 and row.model_ms > 0 and row.baseline_ms > 0
    # Both runners really produced 5 tokens per sequence, EOS only (forced) at the very end.
    cfg = generation_config_for(half, 5, 2)
    assert cfg.min_new_tokens == cfg.max_new_tokens == 5 and not cfg.do_sample
    from nnprune.measure.flops import make_inputs

    for m in (dense, half):
        runner = GenerateRunner(m, torch.device("cpu"), "m", cfg)
        with torch.inference_mode():
            out = runner.bind(make_inputs(m, 3, 10))()
        assert runner.new_tokens() == 5 and out.shape == (3, 6)
        assert not (out[:, 1:-1] == EOS).any()
    # A short or early-ended output is refused.
    runner.last = torch.tensor([[101, 7, EOS, 0, 0, 0], [101, 7, 8, 9, 10, 11]])
    with pytest.raises(NNPruneError, match="ended early"):
        runner.new_tokens()
    runner.last = torch.tensor([[101, 7, EOS]])
    with pytest.raises(NNPruneError, match="2 new tokens"):
        runner.new_tokens()


def test_generate_refused_for_non_seq2seq_models(tmp_path, capsys, bart_dirs):
    from transformers import AutoModelForSequenceClassification

    from nnprune.cli.main import main
    from nnprune.api.speed import run_speed

    bert = save_tiny_model(tmp_path / "bert", "bert")
    with pytest.raises(SystemExit) as exc:
        main(["speed", str(bert), "--generate", "--batch-sizes", "1", "--seq-lens", "8"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "seq2seq" in err and "BertForSequenceClassification" in err
    # BART with a classification head has no generate either; --onnx cannot generate.
    torch.manual_seed(0)
    cls = AutoModelForSequenceClassification.from_config(tiny_config("bart")).eval()
    with pytest.raises(NNPruneError, match="BartForSequenceClassification"):
        run_speed("cls", model=cls, generate=True, batch_sizes=[1], seq_lens=[8])
    with pytest.raises(NNPruneError, match="--onnx"):
        run_speed(bart_dirs[1], generate=True, onnx=True)
    with pytest.raises(NNPruneError, match="max-new-tokens"):
        run_speed(bart_dirs[1], generate=True, max_new_tokens=0)
