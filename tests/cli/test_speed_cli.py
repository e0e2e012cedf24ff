"""``nnprune speed`` on a model pruned with ``--target-speedup``: the setting it was pruned for
(recorded with it) is timed first, and said so."""

from __future__ import annotations

import json

import pytest
from conftest import known_latency_table, save_tiny_model, write_toy_sst2


def _run(capsys, *argv) -> tuple[int, str, str]:
    from nnprune.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.fixture(scope="module")
def sped_up(tmp_path_factory):
    """A tiny BERT fine-pruned to 2x at batch 1 x 16 tokens, 1 thread (a known latency table)."""
    from conftest import make_args

    from nnprune.workflows.fine_prune import FinePruneArgs, fine_prune

    root = tmp_path_factory.mktemp("speed")
    tiny = save_tiny_model(root / "tiny", "bert")
    data = write_toy_sst2(root / "data")
    table = known_latency_table(tiny, root / "table.json")
    out = root / "run"
    fine_prune(make_args(FinePruneArgs, task="sst2", model=str(tiny), output_dir=out,
                         data_dir=data, method="hybrid-nt", target_speedup=2.0,
                         latency_table=table, max_steps=2, batch_size=8, max_seq_length=16))
    return out


def test_speed_times_the_setting_the_model_was_pruned_for_first(sped_up, capsys):
    from nnprune.workflows.speed import pruned_for

    target = pruned_for(sped_up)
    assert (target["batch_size"], target["seq_len"], target["threads"]) == (1, 16, 1)
    assert target["target_speedup"] == 2.0
    rc, out, err = _run(capsys, "speed", sped_up, "--warmup", "1", "--iters", "2", "--json")
    assert rc == 0, err
    report = json.loads(out)
    rows = [(r["batch_size"], r["seq_len"]) for r in report["rows"]]
    assert rows[0] == (1, 16)  # first: what --target-speedup 2 was cut for
    assert {(1, 128), (32, 384)} <= set(rows)  # then the usual grid
    assert report["threads"] == 1 and report["pruned_for"]["seq_len"] == 16
    assert report["notes"][0].startswith("pruned for batch 1 x 16, cpu, 1 threads")
    assert "--target-speedup 2" in report["notes"][0]
    # a grid of the user's own is theirs; the setting's length still leads the lengths not given
    rc, out, err = _run(capsys, "speed", sped_up, "--warmup", "1", "--iters", "2", "--json",
                        "--batch-sizes", "2", "--threads", "2")
    assert rc == 0, err
    report = json.loads(out)
    assert [(r["batch_size"], r["seq_len"]) for r in report["rows"]] == [(2, 16), (2, 128), (2, 384)]
    assert report["threads"] == 2


def test_a_model_without_a_speed_target_gets_the_usual_grid(tmp_path, capsys):
    from nnprune.workflows.speed import pruned_for

    tiny = save_tiny_model(tmp_path / "tiny", "bert")
    assert pruned_for(tiny) is None
    rc, out, err = _run(capsys, "speed", tiny, "--warmup", "1", "--iters", "2", "--json",
                        "--batch-sizes", "1")
    assert rc == 0, err
    report = json.loads(out)
    assert [r["seq_len"] for r in report["rows"]] == [128, 384] and report["pruned_for"] is None
