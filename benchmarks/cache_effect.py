"""How much of a pruned model's measured speedup depends on what is in the CPU's caches.

Each model is timed against the dense baseline twice in one process (``nnprune.measure_speed``):
with a **warm** cache, each timed forward right after an untimed one of the same model (a server
running only that model), and with a **cold** one, each right after the other model's forward,
which evicts the pruned model's weights (a model called rarely, or two sharing a process). The
dense model's weights do not fit the caches either way; a pruned model's increasingly do, so the
gap grows as the model shrinks. The table gives both latencies and speedups per batch size and
each model's weight bytes; the picture, the speedups side by side.

    python benchmarks/cache_effect.py runs/sweeps/sst2-wd-cpu/<point>/run ... \\
        --baseline runs/sst2-dense --threads 1 --batch-sizes 1,32 --seq-len 128 \\
        --json benchmarks/results/cache_effect.json --plot docs/results/cache_effect.png

Prints a table and writes JSON (default benchmarks/results/cache_effect.json, gitignored).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import nnprune

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "cache_effect.json"
CACHES = ("warm", "cold")


def weight_mb(model: Any) -> float:
    """Bytes of every parameter but the input embeddings (a forward reads one row per token of
    those; it streams every other weight), in MiB."""
    table = model.get_input_embeddings().weight
    return sum(p.numel() * p.element_size() for p in model.parameters() if p is not table) / 2**20


def measure(paths: list[str], baseline: str, threads: int, batch_sizes: list[int], seq_len: int,
            iters: int, warmup: int) -> list[dict[str, Any]]:
    rows = []
    dense = nnprune.load_pretrained(baseline)
    for path in paths:
        model = nnprune.load_pretrained(path, bake_masks=True)
        row: dict[str, Any] = {"model": path, "weights_mib": round(weight_mb(model), 2),
                               "dense_weights_mib": round(weight_mb(dense), 2)}
        for cache in CACHES:
            rep = nnprune.measure_speed(model, dense, batch_sizes=batch_sizes, seq_lens=[seq_len],
                                        threads=threads, warmup=warmup, iters=iters, cache=cache)
            for r in rep.rows:
                row[f"b{r.batch_size}_{cache}"] = {"model_ms": r.model_ms, "dense_ms": r.baseline_ms,
                                                   "speedup": r.speedup}
        rows.append(row)
        print(f"timed {path}", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, Any]], batch_sizes: list[int]) -> str:
    head = f"{'model':<58} {'MiB':>6}"
    for b in batch_sizes:
        head += f" | b{b}: {'warm ms':>8} {'cold ms':>8} {'warm':>6} {'cold':>6} {'gap':>5}"
    lines = [head, "-" * len(head)]
    for r in rows:
        name = r["model"] if len(r["model"]) <= 58 else "..." + r["model"][-55:]
        line = f"{name:<58} {r['weights_mib']:>6.1f}"
        for b in batch_sizes:
            w, c = r[f"b{b}_warm"], r[f"b{b}_cold"]
            gap = 100 * (w["speedup"] / c["speedup"] - 1)
            line += (f" | b{b}: {w['model_ms']:>8.2f} {c['model_ms']:>8.2f} {w['speedup']:>5.2f}x"
                     f" {c['speedup']:>5.2f}x {gap:>+4.0f}%")
        lines.append(line)
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], batch_sizes: list[int], labels: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(batch_sizes), figsize=(5.5 * len(batch_sizes), 4.2),
                             squeeze=False)
    x = range(len(rows))
    for ax, b in zip(axes[0], batch_sizes):
        for k, (cache, colour) in enumerate(zip(CACHES, ("tab:orange", "tab:blue"))):
            vals = [r[f"b{b}_{cache}"]["speedup"] for r in rows]
            bars = ax.bar([i + (k - 0.5) * 0.38 for i in x], vals, 0.38, color=colour,
                          label=f"{cache} cache")
            ax.bar_label(bars, fmt="%.1fx", fontsize=8)
        ax.set_xticks(list(x), [f"{name}\n{r['weights_mib']:.1f} MiB" for name, r in zip(labels, rows)],
                      fontsize=8)
        ax.set_ylabel("measured speedup vs dense")
        ax.set_title(f"batch {b}")
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("The same pruned models timed with a warm and a cold cache "
                 "(under each: its weights, word embeddings aside)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="pruned (compacted) model folders")
    ap.add_argument("--baseline", required=True, help="the dense model folder")
    ap.add_argument("--labels", help="comma-separated short names for the picture")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args(argv)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    labels = args.labels.split(",") if args.labels else [Path(m).parent.name[-24:] for m in args.models]
    if len(labels) != len(args.models):
        ap.error(f"--labels names {len(labels)} models, {len(args.models)} were given")
    missing = [m for m in args.models + [args.baseline] if not Path(m).is_dir()]
    if missing:
        ap.error(f"not a model folder: {missing[0]}")
    rows = measure(args.models, args.baseline, args.threads, sizes, args.seq_len, args.iters,
                   args.warmup)
    print(table(rows, sizes))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"threads": args.threads, "seq_len": args.seq_len,
                                     "iters": args.iters, "rows": rows}, indent=2))
    if args.plot:
        plot(rows, sizes, labels, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
