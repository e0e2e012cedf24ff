"""``nnprune sweep [SPEC]``: which route and target give the best model at the speed you need,
on your model and data: a sweep of routes x targets x seeds from one spec, trained on a job
engine, timed here, reported as a table, JSON, CSV and a picture with the Pareto front."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from nnprune.cli.common import (JsonFileOpt, JsonOutOpt, add_command, console, err_console,
                                make_table, quiet_libraries, stdout_for_json, write_json)

PANEL_SPEC = "Sweep (overrides SPEC's keys)"
PANEL_BUDGET = "Budget (every point)"
PANEL_SPEED = "Latency table and timing"
PANEL_EXECUTOR = "Executor"
PANEL_RUN = "What to run"

# flag parameter -> the spec's dotted key it sets
SPEC_KEYS = {
    "name": "name", "task": "task", "model": "model", "data_dir": "data_dir", "routes": "routes",
    "targets": "targets", "seeds": "seeds", "work": "work", "report_to": "report_to",
    "steps": "budget.steps", "batch_size": "budget.batch_size",
    "max_seq_length": "budget.max_seq_length", "learning_rate": "budget.learning_rate",
    "max_train_samples": "budget.max_train_samples", "max_eval_samples": "budget.max_eval_samples",
    "calibration_samples": "budget.calibration_samples", "fill_share": "budget.fill_share",
    "latency_table": "latency.table", "latency_seq_len": "latency.seq_len",
    "latency_threads": "latency.threads", "threads": "timing.threads", "iters": "timing.iters",
    "warmup": "timing.warmup", "cache": "timing.cache", "executor": "executor.kind", "workers": "executor.workers",
    "workers_per_gpu": "executor.workers_per_gpu", "worker_threads": "executor.threads",
    "gpus": "executor.gpus", "partition": "executor.partition", "account": "executor.account",
    "time_min": "executor.time_min", "cpus_per_task": "executor.cpus_per_task",
    "mem_gb": "executor.mem_gb", "save_steps": "save_steps",
}


def _opt(help: str, panel: str, flag: Optional[str] = None) -> Any:  # noqa: A002 - typer's word
    return typer.Option(*([flag] if flag else []), help=help, rich_help_panel=panel)


def sweep(
    spec_file: Annotated[Optional[Path], typer.Argument(metavar="SPEC", help="Sweep spec, YAML or JSON (docs/sweeps.md); the flags below override its keys, or make a sweep without one.")] = None,
    name: Annotated[Optional[str], _opt("Sweep name: its runs' group in the trackers (default: SPEC's file name, else the task).", PANEL_SPEC)] = None,
    task: Annotated[Optional[str], _opt("Task (sst2, squad, text-classification, ...).", PANEL_SPEC)] = None,
    model: Annotated[Optional[Path], _opt("The fine-tuned dense model: every route's start and teacher.", PANEL_SPEC)] = None,
    data_dir: Annotated[Optional[Path], _opt("Task data folder.", PANEL_SPEC)] = None,
    task_option: Annotated[Optional[list[str]], typer.Option("--task-option", metavar="KEY=VALUE", help="A task setting (repeatable).", rich_help_panel=PANEL_SPEC)] = None,
    routes: Annotated[Optional[str], _opt("Comma-separated routes: dense, one-shot, layer-drop, or a fine-prune method (hybrid-filled, struct, hybrid-nt, ...).", PANEL_SPEC)] = None,
    targets: Annotated[Optional[str], _opt("Comma-separated speed targets, e.g. 1.5,2,3.", PANEL_SPEC)] = None,
    seeds: Annotated[Optional[str], _opt("Comma-separated seeds (each point with the first; every seed is a point).", PANEL_SPEC)] = None,
    work: Annotated[Optional[Path], _opt("Work folder: a folder per point, the report (default runs/sweeps/NAME).", PANEL_SPEC)] = None,
    report_to: Annotated[Optional[str], _opt("Trackers of every point's training: none, tensorboard, wandb, mlflow.", PANEL_SPEC)] = None,
    steps: Annotated[Optional[int], _opt("Training steps of every point (hybrid-filled: both stages).", PANEL_BUDGET)] = None,
    batch_size: Annotated[Optional[int], _opt("Training batch size.", PANEL_BUDGET)] = None,
    max_seq_length: Annotated[Optional[int], _opt("Tokens per example.", PANEL_BUDGET)] = None,
    learning_rate: Annotated[Optional[float], _opt("Learning rate.", PANEL_BUDGET)] = None,
    max_train_samples: Annotated[Optional[int], _opt("Use at most this many training examples.", PANEL_BUDGET)] = None,
    max_eval_samples: Annotated[Optional[int], _opt("Evaluate on at most this many examples.", PANEL_BUDGET)] = None,
    calibration_samples: Annotated[Optional[int], _opt("one-shot: examples scored.", PANEL_BUDGET)] = None,
    fill_share: Annotated[Optional[float], _opt("hybrid-filled: share of the steps for the fill stage.", PANEL_BUDGET)] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE", help="Pruning-config override of every fine-pruning route (repeatable; added to SPEC's budget.set).", rich_help_panel=PANEL_BUDGET)] = None,
    save_steps: Annotated[Optional[int], _opt("A checkpoint every N steps: a killed or requeued point resumes there.", PANEL_BUDGET)] = None,
    latency_table: Annotated[Optional[Path], _opt("Latency table JSON the targets are cut with (default: measured here, saved in the work folder).", PANEL_SPEED)] = None,
    latency_seq_len: Annotated[Optional[int], _opt("Sequence length of a latency table measured here.", PANEL_SPEED)] = None,
    latency_threads: Annotated[Optional[int], _opt("Threads of a latency table measured here.", PANEL_SPEED)] = None,
    threads: Annotated[Optional[str], _opt("Comma-separated thread counts to time at (the first: the picture's and --pick's).", PANEL_SPEED)] = None,
    iters: Annotated[Optional[int], _opt("Timed rounds per model.", PANEL_SPEED)] = None,
    warmup: Annotated[Optional[int], _opt("Untimed rounds first.", PANEL_SPEED)] = None,
    cache: Annotated[Optional[str], _opt("warm (each timed forward after one of its own, as a server runs one model) or cold (after the dense model's); a point timed otherwise is timed again.", PANEL_SPEED)] = None,
    executor: Annotated[Optional[str], _opt("local, slurm (submitit array job), submitit-local, debug.", PANEL_EXECUTOR)] = None,
    workers: Annotated[Optional[int], _opt("local: points at once (default: one per GPU, else 1).", PANEL_EXECUTOR)] = None,
    workers_per_gpu: Annotated[Optional[int], _opt("local: points sharing a GPU.", PANEL_EXECUTOR)] = None,
    worker_threads: Annotated[Optional[int], _opt("local: CPU threads a point (default: cores / workers).", PANEL_EXECUTOR)] = None,
    gpus: Annotated[Optional[int], _opt("GPUs a point (0: CPU; default 1 where there are GPUs, slurm 1).", PANEL_EXECUTOR)] = None,
    partition: Annotated[Optional[str], _opt("slurm: partition.", PANEL_EXECUTOR)] = None,
    account: Annotated[Optional[str], _opt("slurm: account.", PANEL_EXECUTOR)] = None,
    time_min: Annotated[Optional[int], _opt("slurm: minutes a task (a task out of time is requeued and resumes).", PANEL_EXECUTOR)] = None,
    cpus_per_task: Annotated[Optional[int], _opt("slurm: CPUs a task (its threads).", PANEL_EXECUTOR)] = None,
    mem_gb: Annotated[Optional[int], _opt("slurm: memory a task, GB.", PANEL_EXECUTOR)] = None,
    phase: Annotated[str, _opt("all (train, time, report), train (train only: on a GPU or a cluster), time (time what is trained, start nothing), report (start nothing).", PANEL_RUN)] = "all",
    dry_run: Annotated[bool, _opt("List the points and what a run would do with each; start and write nothing.", PANEL_RUN, "--dry-run")] = False,
    retime: Annotated[bool, _opt("Time every trained point again (a busy machine spoilt the timings).", PANEL_RUN, "--retime")] = False,
    detach: Annotated[bool, _opt("slurm: submit and return; collect later with --phase time.", PANEL_RUN, "--detach")] = False,
    pick: Annotated[Optional[float], _opt("Hand over the best point at least this many times faster (batch 1, first thread count) as a folder with its model card.", PANEL_RUN)] = None,
    pick_out: Annotated[Optional[Path], _opt("Where --pick copies the model (default WORK/picked-<S>x).", PANEL_RUN)] = None,
    pick_tolerance: Annotated[float, _opt("--pick: a point this share under the speed still counts as that fast (timing noise; the table predicts the smallest models a few percent fast).", PANEL_RUN)] = 0.03,
    plot_file: Annotated[Optional[Path], _opt("Also draw the picture here (PNG), e.g. for a page or a talk.", PANEL_RUN)] = None,
    plot_route: Annotated[Optional[list[str]], typer.Option("--plot-route", metavar="LABEL", help="Only this route in --plot-file's picture, by its label (repeatable; the dense model is always drawn).", rich_help_panel=PANEL_RUN)] = None,
    json_out: JsonOutOpt = False,
    json_file: JsonFileOpt = None,
) -> None:
    """Run a trade-off sweep: every route at every speed target from one fine-tuned dense model,
    with the same teacher, data and budget; then time each model here and report.

    Points train on the executor (local worker processes, a SLURM array job through submitit)
    in their own folders of WORK; a finished point is reused and a half-finished one resumed,
    so the sweep can be killed and started again, and a failing point is recorded with its
    log's last lines while the others go on. Timing is a phase of its own, here, one model at a
    time. The report: a table, WORK/sweep.json, sweep.csv and sweep.png (metric against
    measured speedup, the Pareto front in grey, * in the table); --pick S copies the best point
    at least S times faster into a folder with its model card."""
    quiet_libraries()
    from nnprune.settings import parse_assignments
    from nnprune.workflows.sweep import SweepArgs, sweep as run
    from nnprune.workflows.sweep_spec import load_spec

    given = dict(locals())
    overrides: dict[str, Any] = {key: given[param] for param, key in SPEC_KEYS.items()
                                 if given[param] is not None}
    if task_option:
        overrides["task_options"] = parse_assignments(task_option, option="--task-option")
    spec = load_spec(spec_file, overrides)
    if set_:
        import dataclasses

        parse_assignments(set_, option="--set")
        spec = dataclasses.replace(spec, budget=dataclasses.replace(
            spec.budget, set=(*spec.budget.set, *set_)))
    with stdout_for_json(json_out):
        result = run(SweepArgs(spec=spec, phase=phase, dry_run=dry_run, retime=retime,
                               detach=detach, pick=pick, pick_out=pick_out,
                               pick_tolerance=pick_tolerance, plot_file=plot_file,
                               plot_routes=tuple(plot_route or ())))
    if not json_out:
        show(result, dry_run)
    write_json(json_out, result.to_dict(), json_file)


def show(result: Any, dry_run: bool) -> None:
    from nnprune.workflows.sweep import table_columns, table_rows

    if dry_run:
        rows = [[p["id"], p["route"], "-" if p["target"] is None else f"{p['target']:g}x",
                 "-" if p["seed"] is None else p["seed"], "-" if p["steps"] is None else p["steps"],
                 p["status"]]
                for p in result.plan]
        console.print(make_table(f"sweep {result.name} (dry run): {len(rows)} points in {result.work}",
                                 ["point", "route", "target", "seed", "steps", "would"], rows))
        for line in result.executor:
            console.print(line, highlight=False)
        return
    console.print(make_table(f"sweep {result.name}: {result.task}, {result.work}",
                             table_columns(result), table_rows(result)))
    for label, n in result.noise.items():
        seeds = ", ".join(f"seed {s}: {v:.2f}" for s, v in n["by_seed"].items())
        console.print(f"noise {label}: {seeds}; spread {n['spread']:.2f}", highlight=False)
    for p in result.failed:
        err_console.print(f"[bold red]failed:[/] {p['id']}: {p.get('error')}", highlight=False)
        for line in p.get("log_tail") or []:
            err_console.print(f"    {line}", highlight=False, markup=False)
    if result.picked:
        pk = result.picked
        console.print(f"picked {pk['point']} ({pk['main_metric']} {pk['metric']:.4f}): "
                      f"{pk['folder']} (model card {pk['card']})", highlight=False)
    if result.files:
        console.print("wrote " + ", ".join(result.files.values()), highlight=False)


def sweep_point(
    work: Annotated[Path, typer.Argument(help="The sweep's work folder.")],
    point: Annotated[str, typer.Argument(help="The point's id (its folder name).")],
    threads: Annotated[Optional[int], typer.Option(help="CPU threads of this process.")] = None,
) -> None:
    """Train and evaluate one point of a sweep (what the local executor's workers run)."""
    quiet_libraries()
    from nnprune.workflows.sweep_executors import load_context, set_threads
    from nnprune.workflows.sweep_points import run_point

    set_threads(threads)
    ctx = load_context(work)
    run_point(ctx, ctx.spec.point(point))


def register(app: typer.Typer) -> None:
    add_command(app, "sweep", sweep, "nnprune sweep sweeps/sst2-cpu.yaml --workers 2")
    app.command("sweep-point", hidden=True)(sweep_point)
