"""``nnprune sweep`` as a library: the spec and its errors (one line, before any point starts),
a real sweep of tiny models on the local executor with two workers (trained, evaluated, timed,
reported, reused, a failing point recorded while the others go on, the best point picked), a
point killed mid-run that resumes, and the submitit path (its local executor, and the SLURM job
it would submit)."""

from __future__ import annotations

import csv
import json
import os
import pickle
import re
import signal
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import REPO, known_latency_table, save_tiny_model, write_toy_sst2

from nnprune import CacheState
from nnprune.errors import NNPruneError
from nnprune.workflows.sweep import SweepArgs, pareto_front, sweep
from nnprune.workflows.sweep_executors import LocalExecutor, Outcome, PointTask, Slot, local_slots
from nnprune.workflows.sweep_points import State, read_record, write_record
from nnprune.workflows.sweep_spec import (ExecutorSpec, Phase, load_spec, route_names,
                                          table_fingerprint)

TINY_BUDGET = {"steps": 4, "batch_size": 8, "max_seq_length": 16, "max_train_samples": 32,
               "max_eval_samples": 16, "calibration_samples": 32}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    model = save_tiny_model(root / "tiny-bert", "bert")
    return {"model": model, "data": write_toy_sst2(root / "toy"),
            "table": Path(known_latency_table(model, root / "table.json")), "root": root}


def _spec_file(inputs, work: Path, **extra) -> Path:
    import yaml

    data = {"task": "sst2", "model": str(inputs["model"]), "data_dir": str(inputs["data"]),
            "routes": ["one-shot", "hybrid-filled", "layer-drop", "struct"], "targets": [1.5],
            "seeds": [42], "budget": dict(TINY_BUDGET),
            "latency": {"table": str(inputs["table"]), "seq_len": 16},
            "timing": {"threads": [1], "iters": 2, "warmup": 1},
            "executor": {"kind": "local", "workers": 2}, "work": str(work), "save_steps": 2}
    data.update(extra)
    path = work.parent / f"{work.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO),
            "TQDM_DISABLE": "1"}


# ------------------------------------------------------------------------------------- spec
def test_a_spec_file_expands_to_its_points_and_flags_override_it(inputs, tmp_path):
    path = _spec_file(inputs, tmp_path / "w", routes=[
        "one-shot", {"route": "hybrid-filled", "label": "hybrid-filled (fill 75%)", "fill_share": 0.75,
                     "targets": [2]},
        {"route": "struct", "set": ["attention_lambda=20"]}, "dense"],
        targets=[1.5, 2], seeds=[42, 43], noise={"target": 2, "seeds": [44], "routes": ["one-shot"]})
    spec = load_spec(path)
    assert spec.name == "w" and spec.model == inputs["model"].resolve()
    ids = [p.id for p in spec.points()]
    assert ids == ["one-shot-x1.5-s42", "one-shot-x2-s42", "hybrid-filled-fill-75-x2-s42",
                   "struct-x1.5-s42", "struct-x2-s42", "dense",
                   "one-shot-x1.5-s43", "one-shot-x2-s43", "hybrid-filled-fill-75-x2-s43",
                   "struct-x1.5-s43", "struct-x2-s43", "one-shot-x2-s44"]
    variant = spec.point("hybrid-filled-fill-75-x2-s42").route
    assert variant.recipe(spec.budget)["fill_share"] == 0.75 and variant.fills
    # every point shares the model (start and teacher), the data and the budget
    keys = [spec.point_key(p, "t") for p in spec.points() if p.target]
    assert {(k["model"], k["data_dir"], k["batch_size"], k["learning_rate"]) for k in keys} == {
        (str(inputs["model"].resolve()), str(inputs["data"].resolve()), 8, 5e-5)}
    flagged = load_spec(path, {"budget.steps": 10, "targets": "3", "executor.workers": 3,
                               "routes": "one-shot,layer-drop"})
    assert flagged.budget.steps == 10 and flagged.targets == (3.0,)
    assert flagged.executor.workers == 3 and [r.route for r in flagged.routes] == ["one-shot", "layer-drop"]
    assert flagged.budget.batch_size == 8  # the file's, where no flag says otherwise


def test_a_route_brings_its_own_learning_rate_and_measured_target(inputs, tmp_path):
    """A route's ``learning_rate`` replaces the budget's for its points only (their identity and
    their training options), and ``measured_target`` reaches the one-shot cut; routes without
    them keep the identity they always had."""
    from nnprune.workflows.sweep_points import PointContext, training_options

    spec = load_spec(_spec_file(inputs, tmp_path / "w", targets=[2], routes=[
        "one-shot", {"route": "one-shot", "label": "fast", "learning_rate": 2e-4,
                     "measured_target": True}]))
    plain, fast = spec.point("one-shot-x2-s42"), spec.point("fast-x2-s42")
    assert spec.point_key(plain, "t")["learning_rate"] == 5e-5
    assert spec.point_key(fast, "t")["learning_rate"] == 2e-4
    assert "measured_target" not in plain.route.recipe(spec.budget)
    assert fast.route.recipe(spec.budget)["measured_target"] is True
    ctx = PointContext(spec, None, None)
    assert training_options(ctx, fast, 10, False).learning_rate == 2e-4
    assert training_options(ctx, plain, 10, False).learning_rate == 5e-5


@pytest.mark.parametrize("change, message", [
    ({"budgte": {"steps": 3}}, "unknown key 'budgte'"),
    ({"budget": {"stpes": 3}}, "budget: unknown key 'stpes'"),
    ({"routes": ["one-shot", "pruned-somehow"]}, "unknown route 'pruned-somehow'; known: dense, one-shot"),
    ({"targets": [0.5]}, "a speed target is a speedup > 1, got 0.5"),
    ({"targets": "fast"}, "targets[0] expects float, got 'fast'"),
    ({"routes": ["one-shot", "one-shot"]}, "label 'one-shot' is used twice"),
    ({"routes": [{"route": "one-shot", "set": ["attention_lambda=0"]}]}, "has no pruning config"),
    ({"routes": [{"route": "struct", "fill_share": 0.7}]}, "fill_share is for a method with a fill stage"),
    ({"noise": {"target": 2, "seeds": [43], "routes": ["hybrid-nt"]}}, "noise.routes: 'hybrid-nt' is not a route"),
    ({"executor": {"kind": "kubernetes"}}, "executor.kind: unknown value 'kubernetes'; known: local, slurm"),
    ({"report_to": "comet"}, "unknown tracker 'comet'"),
    ({"budget": {"fill_share": 1.5}}, "budget.fill_share must be in (0, 1)"),
    ({"routes": [{"route": "struct", "hidden_size": 16}]}, "hidden_size is for the one-shot route"),
    ({"routes": [{"route": "one-shot", "width_depth": False, "hidden_size": 16}]},
     "hidden_size must be a positive width, and needs width_depth"),
    ({"routes": [{"route": "struct", "measured_target": True}]},
     "measured_target is for the one-shot route"),
    ({"routes": [{"route": "one-shot", "learning_rate": 0}]}, "learning_rate must be > 0"),
    ({"routes": [{"route": "struct", "through": 1.5}]}, "through is for the one-shot route"),
    ({"routes": [{"route": "one-shot", "through": 1}]}, "through is the first cut's speedup, > 1"),
    ({"routes": [{"route": "one-shot", "through": 2}], "targets": [1.5, 3]},
     "route one-shot: target 1.5 is not beyond its first cut (through 2)"),
])
def test_bad_spec_is_one_line_naming_the_file_and_key(inputs, tmp_path, change, message):
    path = _spec_file(inputs, tmp_path / "w", **change)
    with pytest.raises(NNPruneError) as err:
        load_spec(path)
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text


@pytest.mark.parametrize("change, message", [
    ({"model": "missing-model"}, "no fine-tuned model there"),
    ({"data_dir": "no-such-data"}, "data_dir"),
    ({"targets": [15]}, "target 15x is beyond the latency table's reach"),
    ({"routes": [{"route": "struct", "set": ["no_such_field=1"]}]}, "route struct: unknown"),
    ({"latency": {"table": "nowhere.json"}}, "latency.table"),
])
def test_bad_input_is_refused_before_any_point_starts(inputs, tmp_path, change, message):
    work = tmp_path / "w"
    spec = load_spec(_spec_file(inputs, work, **change))
    for dry_run in (True, False):
        with pytest.raises(NNPruneError, match=message.replace("(", r"\(").replace(")", r"\)")):
            sweep(SweepArgs(spec, dry_run=dry_run))
    assert not work.exists()  # nothing started, nothing written


def test_every_spec_kept_in_the_repo_parses():
    specs = sorted((REPO / "sweeps").glob("*.yaml"))
    assert {p.stem for p in specs} >= {"sst2", "squad", "sst2-cpu"}
    for path in specs:
        spec = load_spec(path)
        assert spec.points() and all(r.route in route_names() for r in spec.routes), path
    cpu = load_spec(REPO / "sweeps" / "sst2-cpu.yaml")
    assert sorted(p.id for p in cpu.points()) == sorted(
        f"{r}-x{t}-s42" for r in ("one-shot", "hybrid-filled") for t in (2, 3))


def test_local_slots_split_the_machine():
    cpu = local_slots(ExecutorSpec(workers=2), gpu_count=0, cpu_count=8)
    assert [(s.gpus, s.threads) for s in cpu] == [(None, 4), (None, 4)]
    gpus = local_slots(ExecutorSpec(workers_per_gpu=2), gpu_count=2, cpu_count=16)
    assert [s.gpus for s in gpus] == [(0,), (0,), (1,), (1,)] and gpus[0].threads == 4
    assert [s.gpus for s in local_slots(ExecutorSpec(gpus=2), 4, 8)] == [(0, 1), (2, 3)]
    assert [s.gpus for s in local_slots(ExecutorSpec(gpus=0, workers=2), 2, 8)] == [(), ()]
    with pytest.raises(NNPruneError, match="hold 2"):
        local_slots(ExecutorSpec(workers=3), gpu_count=2, cpu_count=8)


def test_a_worker_sees_the_gpus_of_its_slot_only(local_sweep):
    spec, _, _ = local_sweep
    ex = LocalExecutor(spec.executor, spec.work, slots=[Slot(0, (1,), 4), Slot(1, None, 2)])
    assert ex.command("p", ex.slots[0])[:2] == ["env", "CUDA_VISIBLE_DEVICES=1"]
    assert ex.command("p", ex.slots[1])[1:5] == ["-m", "nnprune", "sweep-point", str(spec.work)]
    assert ex.command("p", ex.slots[1])[-2:] == ["--threads", "2"]
    # a CPU point on a GPU machine runs with the GPUs hidden: here, for real
    hidden = LocalExecutor(spec.executor, spec.work, slots=[Slot(0, (), 1)])
    assert hidden.command("dense", hidden.slots[0])[:2] == ["env", "CUDA_VISIBLE_DEVICES="]
    record = spec.work / "dense" / "sweep_point.json"
    saved = record.read_text()
    record.unlink()  # the dense point evaluated again, in a worker with no GPU
    try:
        assert hidden.run(["dense"]) == [Outcome("dense", True)]
        assert read_record(spec.work / "dense")["state"] == State.TRAINED
    finally:
        record.write_text(saved)


def test_pareto_front_keeps_what_nothing_beats():
    pts = [("dense", 1.0, 0.90), ("a", 1.5, 0.91), ("b", 2.0, 0.88), ("c", 2.0, 0.85),
           ("d", 3.0, 0.80), ("e", 1.4, 0.89)]
    assert pareto_front(pts) == ["a", "b", "d"]


# ------------------------------------------------------------------------- a real local sweep
@pytest.fixture(scope="module")
def local_sweep(inputs):
    """Four routes at 1.5x and the dense point on the local executor, 2 workers; the one-shot
    point's output folder blocked by a file: it fails, the others go on."""
    work = inputs["root"] / "local"
    spec = load_spec(_spec_file(inputs, work, report_to="tensorboard"))
    blocked = spec.point("one-shot-x1.5-s42")
    folder = work / blocked.id
    folder.mkdir(parents=True)
    (folder / "run").write_text("not a folder")
    (folder / "sweep_point.json").write_text(json.dumps({
        "id": blocked.id, "state": "started", "attempts": 1,
        "key": spec.point_key(blocked, table_fingerprint(inputs["table"]))}))
    start = time.perf_counter()
    # timing tiny models on a busy machine is noise: pick among everything at least half as fast
    result = sweep(SweepArgs(spec, pick=1.0, pick_tolerance=0.45))
    return spec, result, time.perf_counter() - start


def test_local_sweep_trains_times_and_reports_every_point(local_sweep):
    spec, result, _ = local_sweep
    work = spec.work
    assert result.dense["state"] == State.TIMED and 0 <= result.dense["metric"] <= 1
    assert result.dense["shape"]["heads"] == 8
    by_id = {p["id"]: p for p in result.points}
    ok = ["hybrid-filled-x1.5-s42", "layer-drop-x1.5-s42", "struct-x1.5-s42"]
    for pid in ok:
        p = by_id[pid]
        assert p["state"] == State.TIMED, (pid, p.get("error"), p.get("log_tail"))
        assert 0 <= p["metric"] <= 1 and p["speed"]["t1"]["b1"] > 0 and p["speed"]["t1"]["b32"] > 0
        log = (work / pid / "sweep.log").read_text()  # the worker's own output, whole
        assert f"{pid}: training (attempt 1)" in log and re.search(r"step \d+/\d+ \| loss", log), log[-500:]
    # cut by the known table (1 ms a head, 0.1 ms an FFN dim, 2 ms fixed)
    assert by_id["layer-drop-x1.5-s42"]["shape"]["layers"] == 1
    assert by_id["layer-drop-x1.5-s42"]["predicted"] == pytest.approx(22.8 / 12.4, abs=1e-3)
    for pid in ("hybrid-filled-x1.5-s42", "struct-x1.5-s42"):
        assert by_id[pid]["predicted"] == pytest.approx(1.5, rel=0.12)
    # the failing point: recorded with its error and its log's last lines; the sweep went on
    failed = by_id["one-shot-x1.5-s42"]
    assert failed["state"] == State.FAILED and "run" in failed["error"]
    assert failed["log_tail"] and any("one-shot-x1.5-s42" in line for line in failed["log_tail"])
    # the report: JSON, CSV, the picture; the Pareto front among the timed points
    report = json.loads((work / "sweep.json").read_text())
    assert {p["id"] for p in report["points"]} == set(by_id) and report["pareto"] == result.pareto
    assert set(result.pareto) <= set(ok) | {"dense"} and result.pareto
    rows = list(csv.DictReader((work / "sweep.csv").open()))
    assert [r["id"] for r in rows][0] == "dense" and len(rows) == 5
    assert (work / "sweep.png").stat().st_size > 10_000
    # the points' TensorBoard runs sit side by side under the work folder
    assert sorted(p.parent.parent.name for p in work.glob("*/run/tensorboard")) == sorted(ok)


def test_a_picture_of_some_routes_is_drawn_where_asked(local_sweep, tmp_path):
    """``--plot-file`` / ``--plot-route``: the report phase also draws the picture of the routes
    named (and dense) to a file of the user's; a label the sweep lacks is one line naming its
    routes, before anything is written."""
    from nnprune.workflows.sweep import all_points, collect, draw, resolve_table

    spec, _, _ = local_sweep
    out = tmp_path / "pics" / "two-routes.png"
    result = sweep(SweepArgs(spec, phase=Phase.REPORT, plot_file=out,
                             plot_routes=("struct", "layer-drop")))
    assert result.files["plot"] == str(out) and out.stat().st_size > 10_000
    _, table_path = resolve_table(spec, measure=False)
    curves = draw(collect(spec, table_fingerprint(table_path), all_points(spec)), spec,
                  tmp_path / "again.png", ("struct",))
    assert curves is not None and set(curves) - {"Pareto front"} == {"dense", "struct"}
    with pytest.raises(NNPruneError, match=r"--plot-route 'strcut' is no route of the sweep; "
                                           r"its routes: 'one-shot'; 'hybrid-filled'"):
        sweep(SweepArgs(spec, phase=Phase.REPORT, plot_file=tmp_path / "x.png", plot_routes=("strcut",)))
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(NNPruneError, match="add --plot-file"):
        SweepArgs(spec, plot_routes=("struct",))


def test_pick_hands_over_the_best_point_with_its_model_card(local_sweep):
    spec, result, _ = local_sweep
    picked = result.picked
    assert picked is not None
    fast = [p for p in result.points if p["state"] == State.TIMED and p["speed"]["t1"]["b1"] >= 0.55]
    best = max(p["metric"] for p in fast)
    assert picked["metric"] == best
    out = Path(picked["folder"])
    assert (out / "README.md").is_file() and (out / "config.json").is_file()
    assert not any(p.is_dir() for p in out.iterdir() if p.name != "images")  # no checkpoints, stages
    import nnprune

    model = nnprune.load_pretrained(out)
    assert nnprune.model_shape(model).to_dict() == next(
        p for p in result.points if p["id"] == picked["point"])["shape"]


def test_pick_never_replaces_the_users_files_and_replaces_an_earlier_pick(local_sweep, tmp_path):
    from nnprune.workflows.sweep import pick

    _, result, _ = local_sweep
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("keep me\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("notes\n")
    for out, needle in ((mine, "keep.txt"), (notes, "not a folder")):
        with pytest.raises(NNPruneError, match=needle):
            pick(result, 1.0, out, 0.45)
    assert (mine / "keep.txt").read_text() == "keep me\n" and sorted(p.name for p in mine.iterdir()) == ["keep.txt"]
    assert notes.read_text() == "notes\n"
    out = tmp_path / "picked"
    first = pick(result, 1.0, out, 0.45)
    (out / "config.json").write_text("{}")  # replaced whole by the next pick
    again = pick(result, 1.0, out, 0.45)
    assert again["point"] == first["point"] and json.loads((out / "config.json").read_text()) != {}


def test_a_second_run_reuses_finished_points_and_retries_the_failed_one(local_sweep, inputs):
    spec, first, _ = local_sweep
    work = spec.work
    weights = {p: next((work / p).glob("run/**/model.safetensors")) for p in
               ("hybrid-filled-x1.5-s42", "layer-drop-x1.5-s42", "struct-x1.5-s42")}
    stamps = {p: w.stat().st_mtime_ns for p, w in weights.items()}
    plan = sweep(SweepArgs(spec, dry_run=True)).plan
    assert {p["id"]: p["status"] for p in plan} == {
        "dense": "done", "one-shot-x1.5-s42": "resume", "hybrid-filled-x1.5-s42": "done",
        "layer-drop-x1.5-s42": "done", "struct-x1.5-s42": "done"}
    (work / "one-shot-x1.5-s42" / "run").unlink()  # the cause of the failure, gone
    again = sweep(SweepArgs(spec))
    assert {p: w.stat().st_mtime_ns for p, w in weights.items()} == stamps  # reused
    one_shot = next(p for p in again.points if p["id"] == "one-shot-x1.5-s42")
    assert one_shot["state"] == State.TIMED and one_shot["attempts"] == 3  # planted, failed, now
    # another budget: the point is trained again, not mixed in
    longer = replace(spec, budget=replace(spec.budget, steps=6),
                     routes=tuple(r for r in spec.routes if r.route == "layer-drop"))
    third = sweep(SweepArgs(longer))
    assert [p["id"] for p in third.points] == ["layer-drop-x1.5-s42"]
    assert read_record(work / "layer-drop-x1.5-s42")["key"]["recipe"]["steps"] == 6
    assert weights["layer-drop-x1.5-s42"].stat().st_mtime_ns != stamps["layer-drop-x1.5-s42"]


def test_time_phase_starts_nothing_and_report_phase_reads_what_is_there(local_sweep, inputs):
    spec, _, _ = local_sweep
    more = replace(spec, targets=(1.5, 2.5), routes=tuple(r for r in spec.routes if r.route == "struct"))
    result = sweep(SweepArgs(more, phase=Phase.TIME))
    states = {p["id"]: p["state"] for p in result.points}
    assert states == {"struct-x1.5-s42": State.TIMED, "struct-x2.5-s42": "not run"}
    assert not (spec.work / "struct-x2.5-s42").exists()


def test_a_point_timed_with_the_other_cache_is_timed_again(local_sweep):
    """A point timed cold (or before the cache was a setting, which was neither) is timed again
    warm, every thread count at once; a warm one is left alone."""
    spec, _, _ = local_sweep
    old, kept = spec.work / "struct-x1.5-s42", spec.work / "layer-drop-x1.5-s42"
    record = read_record(old)
    assert record["speed_cache"] == "warm" and record["speed_report"]["cache"] == "warm"
    stale = {k: v for k, v in record.items() if k != "speed_cache"}
    stale["speed"] = {"t1": {"b1": 99.0, "b32": 99.0}, "t4": {"b1": 99.0, "b32": 99.0}}
    write_record(old, stale)
    untouched = read_record(kept)
    sweep(SweepArgs(spec, phase=Phase.TIME))
    again = read_record(old)
    assert again["speed_cache"] == "warm" and set(again["speed"]) == {"t1"}
    assert again["speed"]["t1"]["b1"] != 99.0
    assert read_record(kept) == untouched
    # a timing from before the setting was neither warm nor cold: a cold sweep times it again too
    write_record(old, stale)
    cold = replace(spec, timing=replace(spec.timing, cache=CacheState.COLD))
    sweep(SweepArgs(cold, phase=Phase.TIME))
    assert read_record(old)["speed_cache"] == "cold" and read_record(old)["speed"]["t1"]["b1"] != 99.0
    assert read_record(old)["speed_report"]["cache"] == "cold"
    sweep(SweepArgs(spec, phase=Phase.TIME))  # warm again, as the other tests left it
    assert read_record(old)["speed_cache"] == "warm"


def _width_table(model_dir: Path, path: Path) -> Path:
    """The conftest table (1 ms a head, 0.1 ms an FFN dim, 2 ms fixed) measured at widths 8, 16
    and 32 of the tiny BERT's stream too, so one-shot points may narrow it."""
    from nnprune.measure.latency import LatencySetting, LatencyTable, table_key
    from nnprune.pruning_core.checkpoint import load_config
    from nnprune.pruning_core.latency_model import LatencyModel

    m = LatencyModel(2, 4, 64, (0, 1, 2, 3, 4), (0.0, 1.0, 2.0, 3.0, 4.0), (0, 32, 64),
                     (0.0, 3.2, 6.4), 2.0, hidden=32, widths=(8, 16, 32),
                     attention_scale=(0.25, 0.5, 1.0), ffn_scale=(0.25, 0.5, 1.0),
                     layer_ms=(0.1, 0.2, 0.4), base_ms=(0.5, 1.0, 1.2))
    key = table_key(load_config(str(model_dir)), LatencySetting(batch_size=1, seq_len=16, threads=1))
    path.write_text(json.dumps(LatencyTable(key=key, model=m).to_dict()))
    return path


def test_one_shot_routes_choose_what_the_search_may_prune(inputs, tmp_path):
    """``width_depth`` / ``hidden_size`` on a one-shot route reach the search: a heads-and-FFN
    point keeps the full stream, a ``hidden_size`` point keeps that many channels, and the
    timing phase prices each shape (width included) with the table."""
    table = _width_table(inputs["model"], tmp_path / "wide.json")
    routes = [{"route": "one-shot", "label": "heads+ffn", "width_depth": False},
              {"route": "one-shot", "label": "width 16", "hidden_size": 16}]
    spec = load_spec(_spec_file(inputs, tmp_path / "wd", routes=routes, targets=[2],
                                latency={"table": str(table), "seq_len": 16},
                                executor={"kind": "local", "workers": 1}))
    recipes = [spec.point(i).route.recipe(spec.budget) for i in ("heads-ffn-x2-s42", "width-16-x2-s42")]
    assert recipes[0]["width_depth"] is False and recipes[1]["hidden_size"] == 16
    # the default search adds nothing to a point's identity: points trained before it existed
    assert "width_depth" not in load_spec(_spec_file(inputs, tmp_path / "d")).point(
        "one-shot-x1.5-s42").route.recipe(spec.budget)
    result = sweep(SweepArgs(spec))
    by_id = {p["id"]: p for p in result.points}
    for pid in by_id:
        assert by_id[pid]["state"] == State.TIMED, (pid, by_id[pid].get("error"), by_id[pid].get("log_tail"))
    assert by_id["heads-ffn-x2-s42"]["shape"]["hidden"] is None
    narrow = by_id["width-16-x2-s42"]
    assert narrow["shape"]["hidden"] == 16
    from nnprune.api.shapes import ModelShape
    from nnprune.measure.latency import read_table

    shape = ModelShape(tuple(narrow["shape"]["heads_per_layer"]),
                       tuple(narrow["shape"]["ffn_dims_per_layer"]), 16)
    assert narrow["predicted"] == pytest.approx(shape.predicted_speedup(read_table(table)), abs=1e-3)
    assert narrow["predicted"] >= 2 * 0.99


def test_a_two_step_route_cuts_its_first_model_again(inputs, tmp_path):
    """``through``: the point's model is the dense one cut to ``through`` (heads and FFN only),
    filled, then cut again to the target against the dense model; the second cut keeps no more
    than the first; the first is part of the point's identity, recorded in its info, and a
    second sweep reuses the point."""
    from nnprune.pruning_core.checkpoint import load_config
    from nnprune.workflows.sweep_spec import RouteSpec

    routes = [{"route": "one-shot", "label": "two steps", "through": 1.3}]
    path = _spec_file(inputs, tmp_path / "steps", routes=routes, targets=[2],
                      executor={"kind": "local", "workers": 1})
    spec = load_spec(path)
    point = spec.point("two-steps-x2-s42")
    recipe = point.route.recipe(spec.budget)
    assert (recipe["through"], recipe["through_steps"]) == (1.3, TINY_BUDGET["steps"])
    assert "through" not in RouteSpec(route="one-shot").recipe(spec.budget)  # identities kept
    result = sweep(SweepArgs(spec))
    done = result.points[0]
    assert done["state"] == State.TIMED, (done.get("error"), done.get("log_tail"))
    first = done["info"]["through"]
    assert first["target"] == 1.3 and 0 <= first["metric"] <= 1
    folder = spec.work / point.id
    heads = [sum(load_config(str(d)).nnprune_layout["stacks"]["encoder"]["attention"]["self"]["heads"])
             for d in (folder / "through", folder / "run")]
    assert heads[1] <= heads[0] < 8
    record = json.loads((folder / "run" / "prune" / "nnprune_config.json").read_text())
    assert record["base_model"] == str(folder / "through")
    assert done["predicted"] >= 2 * 0.99  # against the dense model, by the sweep's table
    again = sweep(SweepArgs(load_spec(path), phase=Phase.TRAIN))
    assert again.points[0]["state"] == State.TIMED and read_record(folder)["attempts"] == 1


# ------------------------------------------------------------------------------ kill, resume
def test_a_point_killed_mid_run_resumes_from_its_checkpoint(inputs, tmp_path):
    work = tmp_path / "killed"
    path = _spec_file(inputs, work, routes=["struct"], budget={**TINY_BUDGET, "steps": 40},
                      executor={"kind": "local", "workers": 1}, save_steps=5, logging_steps=1)
    run = work / "struct-x1.5-s42" / "run"
    log = tmp_path / "sweep.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "nnprune", "sweep", str(path), "--phase", "train"],
                                stdout=fh, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
        deadline = time.monotonic() + 300
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                done = [c for c in run.glob("checkpoint-*") if (c / "nnprune_state.json").is_file()]
                if done:
                    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker, mid-run
                    break
                time.sleep(0.01)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    record = read_record(work / "struct-x1.5-s42")
    assert record["state"] == State.STARTED, log.read_text()[-2000:]
    killed_at = max(int(c.name.split("-")[1]) for c in run.glob("checkpoint-*")
                    if (c / "nnprune_state.json").is_file())
    assert 0 < killed_at < 40
    result = sweep(SweepArgs(load_spec(path), phase=Phase.TRAIN))
    record = read_record(work / "struct-x1.5-s42")
    assert record["state"] == State.TRAINED and record["resumed"] and record["attempts"] == 2
    text = (work / "struct-x1.5-s42" / "sweep.log").read_text()
    second = text[text.index("resuming (attempt 2)"):]
    first_step = int(second.split("step ")[1].split("/")[0])
    assert first_step == killed_at + 1  # went on from the checkpoint, not from step 1
    assert result.points[0]["state"] == State.TRAINED


def test_a_sweep_killed_with_sigterm_stops_its_points_and_starts_no_more(inputs, tmp_path):
    """``kill SWEEP_PID`` (a batch system's time limit, a user's ``kill``) reaches only the sweep
    process: it stops the point it runs and starts no other, so nothing keeps writing into the
    work folder once it has exited."""
    work = tmp_path / "terminated"
    path = _spec_file(inputs, work, routes=["struct"], targets=[1.5, 2],
                      budget={**TINY_BUDGET, "steps": 4000}, executor={"kind": "local", "workers": 1},
                      save_steps=5, logging_steps=1)
    first = work / "struct-x1.5-s42"
    log = tmp_path / "sweep.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "nnprune", "sweep", str(path), "--phase", "train"],
                                stdout=fh, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and proc.poll() is None:
                if any((c / "nnprune_state.json").is_file() for c in (first / "run").glob("checkpoint-*")):
                    break
                time.sleep(0.05)
            assert proc.poll() is None, log.read_text()[-2000:]
            os.kill(proc.pid, signal.SIGTERM)  # the sweep alone, not its process group
            rc = proc.wait(timeout=60)
            time.sleep(0.5)
            with pytest.raises(ProcessLookupError):  # no process of the sweep's is left
                os.killpg(proc.pid, 0)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert rc == 130 and "interrupted" in log.read_text()
    assert read_record(first)["state"] == State.STARTED  # resumable, not failed
    assert not (work / "struct-x2-s42" / "run").exists()  # the next point never started


# ------------------------------------------------------------------------------- submitit
def test_the_submitit_local_executor_runs_the_points_as_jobs(inputs, tmp_path):
    pytest.importorskip("submitit")
    work = tmp_path / "submitit"
    spec = load_spec(_spec_file(inputs, work, routes=["layer-drop"], targets=[1.5, 2],
                                executor={"kind": "submitit-local", "cpus_per_task": 1}))
    result = sweep(SweepArgs(spec))
    assert [p["state"] for p in [result.dense, *result.points]] == [State.TIMED] * 3
    logs = list((work / "submitit").glob("*/*_log.err"))
    assert len(logs) == 3  # a job per point
    assert "layer-drop-x2-s42" in (work / "layer-drop-x2-s42" / "sweep.log").read_text()


def test_the_slurm_job_it_would_submit(inputs, tmp_path, monkeypatch):
    """No SLURM here: a stand-in ``sbatch`` keeps the script submitit submits; the array, the
    options and the pickled task are checked, and the task run as SLURM would run it."""
    pytest.importorskip("submitit")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(f"#!/bin/sh\ncp \"$1\" {tmp_path}/submitted.sh\necho 'Submitted batch job 4242'\n")
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit looks for it, never calls it here
    (bin_dir / "srun").chmod(sbatch.stat().st_mode)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    work = tmp_path / "slurm"
    spec = load_spec(_spec_file(inputs, work, routes=["layer-drop"], targets=[1.5, 2], executor={
        "kind": "slurm", "partition": "gpu", "account": "lab", "gpus": 1, "time_min": 90,
        "cpus_per_task": 6, "mem_gb": 24, "array_parallelism": 2, "slurm": {"qos": "high"}}))
    result = sweep(SweepArgs(spec, phase=Phase.TRAIN, detach=True))
    assert [p["state"] for p in result.points] == ["not run"] * 2  # submitted, not run here
    script = (tmp_path / "submitted.sh").read_text()
    for line in ("#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --account=lab",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --time=90", "#SBATCH --cpus-per-task=6",
                 "#SBATCH --mem=24GB", "#SBATCH --qos=high", "#SBATCH --signal=USR2@",
                 f"#SBATCH --job-name=nnprune-sweep-{work.name}"):
        assert line in script, (line, script)
    jobs = json.loads((work / "sweep_jobs.json").read_text())["jobs"]
    assert jobs == {"dense": "4242_0", "layer-drop-x1.5-s42": "4242_1", "layer-drop-x2-s42": "4242_2"}
    pickles = sorted((work / "submitit").rglob("*_submitted.pkl"))
    assert len(pickles) == 3
    with pickles[1].open("rb") as fh:
        delayed = pickle.load(fh)
    assert isinstance(delayed.function, PointTask) and delayed.function.threads == 6
    assert delayed.args == ("layer-drop-x1.5-s42",) and Path(delayed.function.work) == work
    # what a SLURM task does with it, here: the point trains; pre-empted, it is requeued as is
    import torch

    monkeypatch.setattr(delayed.function, "threads", torch.get_num_threads())  # this process's
    out = delayed.function(*delayed.args)
    assert out["state"] == State.TRAINED
    requeued = delayed.function.checkpoint(*delayed.args)
    assert requeued.function is delayed.function and requeued.args == delayed.args
    assert requeued.function(*requeued.args)["state"] == State.TRAINED  # reused, not retrained
