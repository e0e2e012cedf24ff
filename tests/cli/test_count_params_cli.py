"""``nnprune count-params``: the parameters in all (MiniLM: 22.7M) and in the embeddings, beside
the papers' linear-weight counts; ``--json`` labels every count."""

from __future__ import annotations

import json

import pytest
from conftest import struct_masked


def _run(capsys, *argv) -> tuple[int, str, str]:
    from nnprune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_minilm_has_22_7m_parameters_of_which_11_9m_embeddings(minilm_dir, capsys):
    rc, out, err = _run(capsys, "count-params", minilm_dir)
    assert rc == 0, err
    assert "parameters: 22.7M (22,713,216), of which embeddings 11.9M (11,917,824)" in out
    rc, out, err = _run(capsys, "count-params", minilm_dir, "--json")
    assert rc == 0, err
    counts = json.loads(out)
    assert counts["parameters"] == {"total": 22_713_216, "original": 22_713_216,
                                    "embeddings": 11_917_824}
    # 6 layers x (4 x 384^2 + 2 x 384 x 1536) linear weights, all kept
    assert counts["remaining"] == counts["original"] == 6 * (4 * 384 * 384 + 2 * 384 * 1536)


def test_json_labels_every_count(tmp_path, tokenizer, capsys):
    """Kept against original, by name: never a bare [kept, original] pair."""
    from nnprune.pruning_core import build_config
    from nnprune.pruning_core.checkpoint import save_checkpoint

    masked = save_checkpoint(struct_masked("bert"), tmp_path / "masked",
                             config=build_config("struct"), tokenizer=tokenizer)
    rc, out, err = _run(capsys, "count-params", masked, "--json")
    assert rc == 0, err
    counts = json.loads(out)
    assert counts["masked"] is True
    layer0 = counts["layers"][0]
    assert layer0["heads"]["self"] == {"kept": 2, "original": 4}
    assert layer0["ffn_dims"] == {"kept": 42, "original": 64}
    assert layer0["matrices"]["q"] == {"kept": 32 * 32 - 8 * 32, "original": 32 * 32}  # head 2 out
    assert counts["by_stack"] == {"encoder": {"kept": counts["remaining"],
                                              "original": counts["original"]}}

    def pairs(value, path="counts"):
        if isinstance(value, list):
            assert not (len(value) == 2 and all(isinstance(v, int) for v in value)), path
            for i, v in enumerate(value):
                pairs(v, f"{path}[{i}]")
        elif isinstance(value, dict):
            for k, v in value.items():
                pairs(v, f"{path}.{k}")

    pairs(counts)
    # the masks cut nothing out of the stored weights; the scores are no parameters of the model
    assert counts["parameters"]["total"] == counts["parameters"]["original"]

    out_dir = tmp_path / "compact"
    rc, _, err = _run(capsys, "bertarize", masked, "--output", out_dir, "--compact", "--no-card")
    assert rc == 0, err
    rc, out, err = _run(capsys, "count-params", out_dir, "--json")
    assert rc == 0, err
    compact = json.loads(out)
    assert compact["compacted"] is True
    total, original = compact["parameters"]["total"], compact["parameters"]["original"]
    assert original == counts["parameters"]["total"]  # the dense ancestor's, rebuilt
    import nnprune

    assert total == sum(p.numel() for p in nnprune.load_pretrained(out_dir).parameters())
    assert total < original
    rc, out, err = _run(capsys, "count-params", out_dir)
    assert rc == 0, err
    assert f"of the dense model's {original / 1e6:.1f}M ({original:,})" in out
