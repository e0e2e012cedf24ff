"""The trade-off benchmark's command line, kept as a preset of ``nnprune sweep`` (docs/sweeps.md):
its flags become a sweep spec (the four routes and the dense model, targets 1.5 / 2 / 3, the
README's budgets, seed noise at 2x for hybrid-filled and one-shot), which ``nnprune sweep`` runs,
resumes, times and reports. The README's sweeps are spec files now (``sweeps/sst2.yaml``,
``sweeps/squad.yaml``): prefer them; this keeps the commands of earlier results working.

    python benchmarks/tradeoff.py --dense runs/sst2-dense --task sst2 \\
        --data-dir ../shared/data/glue/SST-2 --targets 1.5,2,3 --steps 600 --threads 1,2
    python benchmarks/tradeoff.py --dense runs/squad-dense --task squad --data-dir runs/squad-v1.1 \\
        --targets 1.5,2,3 --steps 300
    python benchmarks/tradeoff.py --smoke --dense runs/sst2-dense \\
        --data-dir ../shared/data/glue/SST-2 --work /tmp/tradeoff-smoke     # minutes, end to end

``--train-only`` is ``nnprune sweep --phase train``, ``--time-only`` ``--phase time``; the report
(table, ``sweep.json``, ``sweep.csv``, ``sweep.png``) goes in ``--work``. ``--compare`` is gone:
recipe variants are routes of one spec, with a label of their own (``sweeps/sst2.yaml``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

ROOT = Path(__file__).resolve().parent
ROUTES = ("hybrid-filled", "struct", "layer-drop", "one-shot")
NOISE_ROUTES = ("hybrid-filled", "one-shot")
# The README's budgets: SST-2 600 steps x 32 x 64 tokens; SQuAD v1.1 16 x 256 tokens.
TASK_DEFAULTS = {"squad": dict(batch_size=16, max_seq_length=256)}
DEFAULTS = dict(batch_size=32, max_seq_length=64)
SMOKE = dict(steps=4, max_train_samples=64, max_eval_samples=64, targets="1.5", threads="1",
             calibration_samples=64, iters=2, warmup=1, seeds="42", save_steps=10 ** 6)
NORMAL = dict(steps=600, max_train_samples=None, max_eval_samples=None, targets="1.5,2,3",
              threads=f"1,{os.cpu_count() or 1}", calibration_samples=2048, iters=10, warmup=3,
              seeds="42,43", save_steps=100)


def parse(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dense", type=Path, required=True,
                   help="fine-tuned dense checkpoint: the start of every route and the teacher")
    p.add_argument("--task", default="sst2")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--targets", default=None, help="comma-separated speedups (default 1.5,2,3)")
    p.add_argument("--steps", type=int, default=None, help="training steps of every route (600)")
    p.add_argument("--batch-size", type=int, default=None, help="32 (SQuAD 16)")
    p.add_argument("--max-seq-length", type=int, default=None, help="64 (SQuAD 256)")
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--fill-share", type=float, default=0.5)
    p.add_argument("--score-init", default="importance")
    p.add_argument("--fill-init", default="noise")
    p.add_argument("--calibration-samples", type=int, default=None)
    p.add_argument("--max-train-samples", type=int, default=None)
    p.add_argument("--max-eval-samples", type=int, default=None)
    p.add_argument("--seeds", default=None, help="comma-separated; the first for every point, "
                   "all of them at --noise-target for hybrid-filled and one-shot (42,43)")
    p.add_argument("--noise-target", type=float, default=None, help="(2, else the only target)")
    p.add_argument("--threads", default=None, help="thread counts to time at (1,<all cores>)")
    p.add_argument("--speed-seq", type=int, default=128,
                   help="sequence length of the timing and of the latency table")
    p.add_argument("--latency-threads", type=int, default=1)
    p.add_argument("--latency-table", type=Path, default=None)
    p.add_argument("--iters", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--save-steps", type=int, default=None)
    p.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(ROUTES)}")
    p.add_argument("--work", type=Path, default=None,
                   help="run folders and the report (benchmarks/results/tradeoff_runs/<task>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--compare", action="append", default=[], metavar="LABEL=WORK")
    p.add_argument("--retime", action="store_true")
    p.add_argument("--train-only", action="store_true")
    p.add_argument("--time-only", action="store_true")
    p.add_argument("--executor", default="local", help="nnprune sweep's executor (local, slurm, ...)")
    p.add_argument("--workers", type=int, default=None, help="local: points at once")
    p.add_argument("--smoke", action="store_true",
                   help="tiny budget, end to end in minutes: 4 steps, 64 train / 64 eval "
                        "examples, target 1.5, one thread")
    p.add_argument("--quiet", action="store_true", help="no library log lines")
    a = p.parse_args(argv)
    for k, v in (SMOKE if a.smoke else NORMAL).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    for k, v in {**DEFAULTS, **TASK_DEFAULTS.get(a.task, {})}.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    return a


def spec_data(a: argparse.Namespace) -> dict[str, Any]:
    """The sweep spec (a mapping, as a spec file holds it) of the benchmark's flags."""
    from nnprune.errors import NNPruneError

    if a.compare:
        raise NNPruneError("--compare is gone: give recipe variants routes of their own, with a "
                           "label, in one spec (sweeps/sst2.yaml), and run nnprune sweep on it")
    if a.time_only and a.train_only:
        raise NNPruneError("--time-only and --train-only exclude each other")
    routes = [r.strip() for r in a.only.split(",")] if a.only else list(ROUTES)
    bad = [r for r in routes if r not in ROUTES]
    if bad:
        raise NNPruneError(f"unknown route(s) {', '.join(bad)}; choose from {', '.join(ROUTES)}")
    targets = [float(t) for t in a.targets.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]
    noise_target = a.noise_target
    if noise_target is None:
        noise_target = 2.0 if 2.0 in targets or len(targets) > 1 else targets[0]
    data: dict[str, Any] = {
        "name": f"tradeoff-{a.task}{'-smoke' if a.smoke else ''}", "task": a.task,
        "model": str(a.dense), "data_dir": None if a.data_dir is None else str(a.data_dir),
        "routes": ["dense", *routes], "targets": targets, "seeds": seeds[:1],
        "work": str(a.work or ROOT / "results" / "tradeoff_runs" / f"{a.task}{'_smoke' if a.smoke else ''}"),
        "budget": {"steps": a.steps, "batch_size": a.batch_size, "max_seq_length": a.max_seq_length,
                   "learning_rate": a.learning_rate, "fill_share": a.fill_share,
                   "score_init": a.score_init, "fill_init": a.fill_init,
                   "calibration_samples": a.calibration_samples,
                   "max_train_samples": a.max_train_samples, "max_eval_samples": a.max_eval_samples,
                   "set": list(a.set)},
        "latency": {"table": None if a.latency_table is None else str(a.latency_table),
                    "seq_len": a.speed_seq, "threads": a.latency_threads},
        "timing": {"threads": [int(t) for t in dict.fromkeys(a.threads.split(","))],
                   "seq_len": a.speed_seq, "iters": a.iters, "warmup": a.warmup},
        "executor": {"kind": a.executor, "workers": a.workers}, "save_steps": a.save_steps}
    noisy = [r for r in NOISE_ROUTES if r in routes]
    if len(seeds) > 1 and noisy:
        data["noise"] = {"target": noise_target, "seeds": seeds[1:], "routes": noisy}
    return data


def main(argv: Optional[list[str]] = None) -> int:
    a = parse(argv)
    from nnprune.cli.common import quiet_libraries, setup_logging
    from nnprune.cli.sweep import show
    from nnprune.errors import NNPruneError
    from nnprune.workflows.sweep import SweepArgs, sweep
    from nnprune.workflows.sweep_spec import Phase, load_spec

    quiet_libraries()
    if not a.quiet:
        setup_logging()
    phase = Phase.TRAIN if a.train_only else Phase.TIME if a.time_only else Phase.ALL
    try:
        spec = load_spec(None, spec_data(a))
        result = sweep(SweepArgs(spec, phase=phase, retime=a.retime))
    except NNPruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    show(result, dry_run=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
