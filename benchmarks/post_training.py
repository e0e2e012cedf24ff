"""``nnprune prune`` (post-training pruning, no retraining) on a real fine-tuned model: accuracy,
wall time and *measured* speed at several speed targets (priced by this machine's latency table,
or with ``--budget flops`` by FLOPs, as the README's SST-2 rows were), against the dense model.

For each target the script runs the whole command's workflow (:func:`nnprune.workflows.prune.prune`:
score, search, rearrange, least-squares tuning, exact compaction, evaluation on the full dev set),
then times the result against the dense model in one process, interleaved
(:func:`nnprune.workflows.speed.run_speed`), at batch 1 and batch 32, sequence 128. ``--fill-steps``
adds, for the last target, the ``--then-fill`` route (a short distilled fine-tune of the compacted
model). ``--ablate`` adds, per target, the least-squares tuning on top, the tuning alone and the search
alone, so the table shows what each phase buys.

    python benchmarks/post_training.py --dense runs/sst2-dense --task sst2 \
        --data-dir ../shared/data/glue/SST-2 --targets 1.5,2 --fill-steps 300

Prints a table and writes JSON to benchmarks/results/post_training_<task>.json (gitignored).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no tqdm bars in the log

from nnprune.measure.timing import cpu_model_name  # noqa: E402
from nnprune.workflows.prune import PRUNE_TRAINING, PruneArgs, prune  # noqa: E402
from nnprune.api.speed import run_speed  # noqa: E402

ROOT = Path(__file__).resolve().parent


def measured(model_dir: Path, dense: Path, seq: int, threads: int | None, iters: int) -> dict[str, float]:
    rep = run_speed(model_dir, dense, batch_sizes=[1, 32], seq_lens=[seq], threads=threads,
                    warmup=3, iters=iters)
    return {f"b{r.batch_size}": round(r.speedup, 3) for r in rep.rows} | {
        "flops": round(rep.rows[0].theoretical_speedup, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dense", type=Path, required=True, help="fine-tuned dense checkpoint")
    p.add_argument("--task", default="sst2")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--targets", default="1.5,2", help="comma-separated speedups")
    p.add_argument("--budget", choices=("latency", "flops"), default="latency",
                   help="price the masks by the latency table (--target-speedup) or by FLOPs "
                        "(--target-flops 1/S)")
    p.add_argument("--calibration-samples", type=int, default=2048)
    p.add_argument("--seq", type=int, default=128, help="sequence length of scoring and timing")
    p.add_argument("--fill-steps", type=int, default=0, help="also --then-fill this many steps "
                                                            "(last target)")
    p.add_argument("--ablate", action="store_true", help="also run without rearrangement/tuning")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--work", type=Path, default=ROOT / "results" / "post_training_runs")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    targets = [float(t) for t in a.targets.split(",")]
    out_json = a.out or ROOT / "results" / f"post_training_{a.task}.json"
    rows: list[dict[str, Any]] = []
    variants = [("default (rearrange, the task's tuning choice)", dict(rearrange=True, tune=None))]
    if a.ablate:  # what each phase buys
        variants += [("rearrange + lstsq tuning", dict(rearrange=True, tune=True)),
                     ("lstsq tuning only", dict(rearrange=False, tune=True)),
                     ("search only", dict(rearrange=False, tune=False))]
    for target in targets:
        for name, kw in variants:
            fill = a.fill_steps if (target == targets[-1] and name == variants[0][0] and a.fill_steps) else None
            out = a.work / f"{a.task}-x{target}-{name.split()[0]}{'-fill' if fill else ''}"
            start = time.perf_counter()
            res = prune(PruneArgs(
                checkpoint=str(a.dense), task=a.task, output_dir=out,
                **({"target_speedup": target} if a.budget == "latency" else {"target_flops": 1 / target}),
                calibration_samples=a.calibration_samples, speed_probe=False, then_fill=fill,
                training=replace(PRUNE_TRAINING, max_seq_length=a.seq, data_dir=a.data_dir,
                                 overwrite=True), **kw))
            wall = time.perf_counter() - start
            m = res.main_metric
            pruned_dir = out / "prune" if fill else out
            row = {"target": target, "variant": name, "dense": res.metrics_before[m],
                   "pruned": res.metrics_after[m], "filled": (res.metrics_filled or {}).get(m),
                   "heads": f"{res.heads_kept}/{res.heads_total}",
                   "ffn": f"{res.ffn_dims_kept}/{res.ffn_dims_total}",
                   "predicted": round(res.predicted_speedup, 3),
                   "prune_seconds": round(sum(v for k, v in res.seconds.items() if k != "fill"), 1),
                   "wall_seconds": round(wall, 1), "phases": res.seconds,
                   "speed": measured(pruned_dir, a.dense, a.seq, a.threads, a.iters)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    header = (f"{'target':>6} {'variant':<24} {'dense':>6} {'pruned':>7} {'filled':>7} {'heads':>6} "
              f"{'ffn':>10} {'FLOPs':>6} {'b1':>6} {'b32':>6} {'prune s':>8}")
    print(f"\n{a.task}, {a.calibration_samples} calibration examples, seq {a.seq}, {cpu_model_name()}")
    print(header)
    for r in rows:
        k = 100 if r["dense"] <= 1 else 1  # accuracies are fractions, F1 is in points
        fill = f"{k * r['filled']:.2f}" if r["filled"] is not None else "-"
        print(f"{r['target']:>6} {r['variant']:<24} {k * r['dense']:>6.2f} {k * r['pruned']:>7.2f} "
              f"{fill:>7} {r['heads']:>6} {r['ffn']:>10} {r['speed']['flops']:>5.2f}x "
              f"{r['speed']['b1']:>5.2f}x {r['speed']['b32']:>5.2f}x {r['prune_seconds']:>8.1f}")
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps({"task": a.task, "dense": str(a.dense), "cpu": cpu_model_name(),
                                    "rows": rows}, indent=2) + "\n")
    print(f"wrote {out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
