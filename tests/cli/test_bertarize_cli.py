"""``nnprune bertarize`` and ``count-params`` on its outputs, through the CLI's error boundary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TOL, probe_outputs as _outputs, struct_masked as _struct_masked, tiny_probe as _inputs


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    from nnprune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    # Rich wraps at the (captured) terminal width: compare the output with whitespace collapsed.
    return int(exc.value.code or 0), " ".join(out.split()), err


@pytest.fixture()
def masked_ckpt(tmp_path, tokenizer) -> tuple[Path, dict]:
    """A struct-masked tiny BERT checkpoint (see ``_struct_masked``) and its reference logits."""
    from nnprune.pruning_core import build_config
    from nnprune.pruning_core.checkpoint import save_checkpoint

    model = _struct_masked("bert")
    path = save_checkpoint(model, tmp_path / "masked", config=build_config("struct"),
                           tokenizer=tokenizer)
    return path, model


def test_bertarize_plain_loads_with_stock_transformers(tmp_path, capsys, masked_ckpt):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    ckpt, masked = masked_ckpt
    out = tmp_path / "plain"
    rc, stdout, err = _run(capsys, "bertarize", ckpt, "--output", out, "--json-file", tmp_path / "r.json")
    assert rc == 0, err
    assert "exact" in stdout and "--compact would remove" in stdout
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["max_abs_diff"] <= TOL and result["masked"] and not result["compacted"]
    assert result["removable_heads"] == 2 + 4 and result["qk_empty"] == 1
    assert not any(k.endswith("mask_scores") for k in load_file(str(out / "model.safetensors")))
    cfg = json.loads((out / "config.json").read_text())
    assert "nnprune_layout" not in cfg and "auto_map" not in cfg
    assert (out / "tokenizer.json").is_file() or (out / "vocab.txt").is_file()
    stock = AutoModelForSequenceClassification.from_pretrained(out).eval()
    inputs = _inputs("bert")
    assert float((_outputs(stock, inputs)["logits"] - _outputs(masked, inputs)["logits"]).abs().max()) <= TOL


def test_bertarize_compact_and_count_params(tmp_path, capsys, masked_ckpt):
    import nnprune

    ckpt, masked = masked_ckpt
    out = tmp_path / "compact"
    rc, stdout, err = _run(capsys, "bertarize", ckpt, "--output", out, "--compact",
                           "--json-file", tmp_path / "r.json")
    assert rc == 0, err
    assert "2/4" in stdout and "0/4" in stdout and "42/64" in stdout and "0/64" in stdout
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["compacted"] and result["max_abs_diff"] <= TOL
    assert result["report"]["heads_removed"] == 6 and result["report"]["qk_empty"] == 1
    assert result["report"]["qk_empty_removed"] == 0
    assert (out / "nnprune_modeling.py").is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["auto_map"]["AutoModelForSequenceClassification"].endswith(
        "NNPruneBertForSequenceClassification")
    assert cfg["architectures"] == ["BertForSequenceClassification"]
    assert cfg["num_attention_heads"] == 4 and cfg["nnprune_original"]["num_attention_heads"] == 4
    info = json.loads((out / "nnprune_config.json").read_text())
    assert info["masked"] is False and info["compacted"] is True
    inputs = _inputs("bert")
    reloaded = nnprune.load_pretrained(out)
    assert float((_outputs(reloaded, inputs)["logits"] - _outputs(masked, inputs)["logits"]).abs().max()) <= TOL

    rc, stdout, err = _run(capsys, "count-params", out, "--json")
    assert rc == 0, err
    counts = json.loads(stdout)
    assert counts["compacted"] and not counts["masked"]
    assert [lc["heads"]["self"] for lc in counts["layers"]] == [{"kept": 2, "original": 4},
                                                               {"kept": 0, "original": 4}]
    assert [lc["ffn_dims"] for lc in counts["layers"]] == [{"kept": 42, "original": 64},
                                                          {"kept": 0, "original": 64}]
    # Against the dense ancestor: 2 layers x (4 x 32 x 32 + 2 x 32 x 64) weights.
    assert counts["original"] == 2 * (4 * 32 * 32 + 2 * 32 * 64)
    # layer 0: 2 heads of 8 in Q/K/V/O (head 2's query is zero) and 42 FFN dims
    kept = 4 * 32 * 16 - 8 * 32 + 2 * 32 * 42
    assert counts["remaining"] == kept
    assert counts["compression"] == pytest.approx(counts["original"] / kept)


def test_bertarize_allow_inexact_removes_qk_empty_heads(tmp_path, capsys, masked_ckpt):
    ckpt, _ = masked_ckpt
    rc, stdout, err = _run(capsys, "bertarize", ckpt, "--output", tmp_path / "inexact",
                           "--compact", "--allow-inexact", "--json-file", tmp_path / "r.json")
    assert rc == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["report"]["qk_empty_removed"] == 1 and result["report"]["exact"] is False
    assert "1 heads have only an empty query or key: removed" in stdout
    assert "max |logits difference|" in stdout


def test_bertarize_refuses_inexact_export(tmp_path, capsys, masked_ckpt, monkeypatch):
    from nnprune.pruning_core import bertarize as compact

    ckpt, _ = masked_ckpt
    out = tmp_path / "out"
    rc, _, err = _run(capsys, "bertarize", ckpt, "--output", out, "--no-card")  # an earlier output
    assert rc == 0, err
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    monkeypatch.setattr(compact, "max_abs_diff", lambda a, b: 0.5)
    rc, stdout, err = _run(capsys, "bertarize", ckpt, "--output", out, "--compact", "--overwrite")
    assert rc == 2
    assert "0.5" in err and "--allow-inexact" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".out", ".nnprune"))]
    rc, stdout, err = _run(capsys, "bertarize", ckpt, "--output", out, "--compact", "--allow-inexact",
                           "--overwrite")
    assert rc == 0, err
    assert "inexact (accepted)" in stdout and (out / "nnprune_modeling.py").is_file()


@pytest.mark.parametrize("damage", ["missing", "corrupted"])
def test_bertarize_bad_weights_one_line_error(tmp_path, capsys, masked_ckpt, damage):
    ckpt, _ = masked_ckpt
    weights = ckpt / "model.safetensors"
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:200])
    out = tmp_path / "never"
    rc, _, err = _run(capsys, "bertarize", ckpt, "--output", out)
    assert rc == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert ("no model.safetensors" in err) if damage == "missing" else ("corrupted" in err)
    assert not out.exists()


def test_bertarize_rejects_output_equal_to_checkpoint(capsys, masked_ckpt):
    ckpt, _ = masked_ckpt
    rc, _, err = _run(capsys, "bertarize", ckpt, "--output", ckpt)
    assert rc == 2 and "must differ" in err
    assert (ckpt / "model.safetensors").is_file()
