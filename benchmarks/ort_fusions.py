"""What onnxruntime's SkipLayerNormFusion costs on the CPU, and so why nnprune's sessions leave it off.

With all graph optimizations on, onnxruntime folds each sublayer's residual add and LayerNorm into
one ``SkipLayerNormalization`` node. Its CPU kernel is several times slower than the Add +
LayerNormalization it replaces, and the fusion happens in the int8 graphs (in fp32 the add goes
into the MatMul first). Each model is exported (fp32 and int8) and timed in one process with
onnxruntime's defaults and with nnprune's session (``nnprune.export.onnx.ORT_DISABLED_OPTIMIZERS``
off), warm, interleaved; the outputs of the two are compared. A second table times the two
kernels alone on ``(1, seq, hidden)`` inputs.

    python benchmarks/ort_fusions.py runs/sst2-dense runs/sweeps/sst2-wd-cpu/<point>/run \\
        --labels dense,5x --threads 1 --batch-sizes 1,32 --seq-len 128 \\
        --json benchmarks/results/ort_fusions.json --plot docs/results/ort_fusions.png

Prints two tables and writes JSON (default benchmarks/results/ort_fusions.json, gitignored).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import numpy as np

import nnprune
from nnprune.export.onnx import ORT_DISABLED_OPTIMIZERS, cpu_session
from nnprune.measure.timing import CacheState, time_interleaved

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "ort_fusions.json"
SESSIONS = ("default", "nnprune")


def feed(sess: Any, batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random token ids, a full attention mask, one segment: ``(batch, seq)`` int64 each."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in sess.get_inputs():
        if i.name == "input_ids":
            out[i.name] = rng.integers(1000, 2000, (batch, seq), dtype=np.int64)
        elif i.name == "attention_mask":
            out[i.name] = np.ones((batch, seq), dtype=np.int64)
        else:
            out[i.name] = np.zeros((batch, seq), dtype=np.int64)
    return out


def time_pair(path: Path, threads: int, batch_sizes: list[int], seq_len: int, iters: int,
              warmup: int) -> dict[str, Any]:
    """Median ms of ``path`` under onnxruntime's defaults and nnprune's session, per batch size,
    and the largest difference between their outputs."""
    sessions = {"default": cpu_session(path, threads, disabled_optimizers=()),
                "nnprune": cpu_session(path, threads)}
    out: dict[str, Any] = {}
    for b in batch_sizes:
        f = feed(sessions["default"], b, seq_len)
        ref, got = (s.run(None, f)[0] for s in sessions.values())
        times = time_interleaved({n: (lambda s=s: s.run(None, f)) for n, s in sessions.items()},
                                 warmup, iters, cache=CacheState.WARM)
        ms = {n: statistics.median(t) for n, t in times.items()}
        out[f"b{b}"] = {**{f"{n}_ms": ms[n] for n in SESSIONS},
                        "gain": ms["default"] / ms["nnprune"],
                        "max_abs_diff": float(np.abs(ref - got).max())}
    return out


def measure(models: list[str], labels: list[str], threads: int, batch_sizes: list[int],
            seq_len: int, iters: int, warmup: int) -> list[dict[str, Any]]:
    rows = []
    for path, label in zip(models, labels):
        with tempfile.TemporaryDirectory() as tmp:
            exp = nnprune.export_onnx(path, Path(tmp) / "onnx", quantize="int8")
            row: dict[str, Any] = {"model": path, "label": label}
            for precision, onnx_path in (("fp32", exp.model_path), ("int8", exp.int8_path)):
                row[precision] = time_pair(onnx_path, threads, batch_sizes, seq_len, iters, warmup)
        rows.append(row)
        print(f"timed {path}", file=sys.stderr, flush=True)
    return rows


def kernels(hidden_sizes: list[int], seq_len: int, threads: int, iters: int) -> list[dict[str, Any]]:
    """The fused kernel alone against the two ops it replaces, on ``(1, seq_len, hidden)``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rows = []
    for h in hidden_sizes:
        io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, seq_len, h]) for n in "xs"]
        out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq_len, h])]
        inits = [numpy_helper.from_array(np.full(h, v, np.float32), n)
                 for n, v in (("gamma", 1.0), ("beta", 0.0), ("bias", 0.1))]
        fused = helper.make_graph([helper.make_node(
            "SkipLayerNormalization", ["x", "s", "gamma", "beta", "bias"], ["y"],
            domain="com.microsoft", epsilon=1e-12)], "fused", io, out, inits)
        plain = helper.make_graph([
            helper.make_node("Add", ["x", "bias"], ["xb"]), helper.make_node("Add", ["xb", "s"], ["r"]),
            helper.make_node("LayerNormalization", ["r", "gamma", "beta"], ["y"], epsilon=1e-12)],
            "plain", io, out, inits)
        ms = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, graph in (("SkipLayerNormalization", fused), ("Add + LayerNormalization", plain)):
                model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                                helper.make_opsetid("com.microsoft", 1)])
                onnx.save(model, f"{tmp}/{h}.onnx")
                sess = cpu_session(f"{tmp}/{h}.onnx", threads)
                rng = np.random.default_rng(0)
                f = {n: rng.standard_normal((1, seq_len, h), dtype=np.float32) for n in "xs"}
                t = time_interleaved({name: lambda: sess.run(None, f)}, 20, iters * 20,
                                     cache=CacheState.WARM)[name]
                ms[name] = statistics.median(t) * 1000.0  # us
        rows.append({"hidden": h, "seq_len": seq_len, "fused_us": ms["SkipLayerNormalization"],
                     "plain_us": ms["Add + LayerNormalization"]})
    return rows


def tables(rows: list[dict[str, Any]], kern: list[dict[str, Any]], batch_sizes: list[int]) -> str:
    head = f"{'model':<12} {'precision':<9}"
    for b in batch_sizes:
        head += f" | b{b}: {'default ms':>10} {'nnprune ms':>10} {'gain':>6} {'max diff':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        for p in ("fp32", "int8"):
            line = f"{r['label']:<12} {p:<9}"
            for b in batch_sizes:
                c = r[p][f"b{b}"]
                line += (f" | b{b}: {c['default_ms']:>10.2f} {c['nnprune_ms']:>10.2f} {c['gain']:>5.2f}x"
                         f" {c['max_abs_diff']:>9.1e}")
            lines.append(line)
    lines += ["", f"{'kernel on (1, seq, hidden)':<28} {'fused us':>9} {'add+LN us':>10} {'ratio':>6}"]
    for k in kern:
        lines.append(f"{'seq ' + str(k['seq_len']) + ', hidden ' + str(k['hidden']):<28} "
                     f"{k['fused_us']:>9.1f} {k['plain_us']:>10.1f} {k['fused_us'] / k['plain_us']:>5.2f}x")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], batch_sizes: list[int], path: Path) -> None:
    """Per batch size, how much faster each model runs in nnprune's session (bars: default ms /
    nnprune ms), its two latencies over each bar: the dense model's tens of ms would flatten
    the small models' milliseconds on a common ms axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(batch_sizes), figsize=(6.5 * len(batch_sizes), 4.4), squeeze=False)
    groups = [(r, p) for r in rows for p in ("fp32", "int8")]
    colours = {"fp32": "tab:gray", "int8": "tab:blue"}
    for ax, b in zip(axes[0], batch_sizes):
        cells = [r[p][f"b{b}"] for r, p in groups]
        bars = ax.bar(range(len(groups)), [c["gain"] for c in cells],
                      color=[colours[p] for _, p in groups])
        ax.bar_label(bars, labels=[f"{c['gain']:.2f}x\n{c['default_ms']:.3g}→{c['nnprune_ms']:.3g} ms"
                                   for c in cells], fontsize=7)
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xticks(range(len(groups)), [f"{r['label']}\n{p}" for r, p in groups], fontsize=8)
        ax.set_ylim(0, max(1.1, max(c["gain"] for c in cells) * 1.22))
        ax.set_ylabel("faster without SkipLayerNormFusion")
        ax.set_title(f"batch {b}")
        ax.grid(axis="y", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    fig.legend(handles, ["fp32 ONNX", "int8 ONNX (dynamic, per channel)"], loc="lower center",
               ncol=2, fontsize=8)
    fig.suptitle("onnxruntime's defaults against nnprune's session (SkipLayerNormFusion off), "
                 "the same ONNX files; over each bar: median ms, defaults → nnprune", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model folders (dense or pruned checkpoints)")
    ap.add_argument("--labels", help="comma-separated short names for the table and picture")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--hidden-sizes", default="288,384", help="widths the kernels are timed at")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args(argv)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    labels = args.labels.split(",") if args.labels else [Path(m).name[-12:] for m in args.models]
    if len(labels) != len(args.models):
        ap.error(f"--labels names {len(labels)} models, {len(args.models)} were given")
    missing = [m for m in args.models if not Path(m).is_dir()]
    if missing:
        ap.error(f"not a model folder: {missing[0]}")
    rows = measure(args.models, labels, args.threads, sizes, args.seq_len, args.iters, args.warmup)
    kern = kernels([int(h) for h in args.hidden_sizes.split(",")], args.seq_len, args.threads,
                   args.iters)
    print(tables(rows, kern, sizes))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"threads": args.threads, "seq_len": args.seq_len,
                                     "iters": args.iters, "disabled": list(ORT_DISABLED_OPTIMIZERS),
                                     "models": rows, "kernels": kern}, indent=2))
    if args.plot:
        plot(rows, sizes, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
