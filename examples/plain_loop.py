"""Fine-prune a classifier to a speed target in a plain PyTorch loop: your data loader, your
optimizer, your schedule; nnprune adds the masks, their optimizer group, a regularization term
and a schedule step. Then compact the model for real, save it, and check the speed.

    python examples/plain_loop.py --smoke                      # tiny random BERT, seconds
    python examples/plain_loop.py --target-speedup 2 --steps 600 --latency-table table.json \\
        --output runs/example-plain                            # MiniLM on SST-2 (../shared/data)
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time

import torch
from torch.optim.lr_scheduler import LambdaLR

import nnprune
from common import accuracy, batches, load_model, sentences, SST2


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny random model, a few steps")
    ap.add_argument("--method", default="hybrid-nt")
    ap.add_argument("--target-speedup", type=float, default=2.0)
    ap.add_argument("--latency-table", help="a saved table (nnprune latency-table --json-file)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--data-dir", default=str(SST2))
    ap.add_argument("--output", default="runs/example-plain-loop")
    args = ap.parse_args(argv)
    if args.smoke:
        # a tiny model is mostly embeddings: removing every unit would give ~1.5x
        args.steps, args.batch_size, args.target_speedup = 8, 8, 1.3
    torch.manual_seed(args.seed)

    model, tokenizer = load_model(args.smoke)
    train = batches(tokenizer, sentences(args.smoke, "train", data_dir=args.data_dir),
                    args.batch_size, args.max_length, shuffle_seed=args.seed)
    dev = batches(tokenizer, sentences(args.smoke, "dev", data_dir=args.data_dir), 64,
                  args.max_length)

    # 1. masks, priced in milliseconds by this machine's latency table (or the one given)
    table = args.latency_table
    if args.smoke and table is None:
        table = nnprune.latency_table(model, seq_len=16, threads=1, cache_dir=tempfile.mkdtemp())
    pruning = nnprune.attach_masks(model, args.method, target_speedup=args.target_speedup,
                                   latency_table=table, total_steps=args.steps)
    # 2. your optimizer and schedule: the scores come as their own group, at a constant rate
    optimizer = torch.optim.AdamW(pruning.parameter_groups(lr=args.lr))
    warmup = max(1, args.steps // 10)
    scheduler = LambdaLR(optimizer, pruning.lr_lambdas(
        lambda s: min((s + 1) / warmup, max(0.0, (args.steps - s) / (args.steps - warmup)))))
    weights = [p for g in pruning.parameter_groups() for p in g["params"]
               if not any(p is s for s in pruning.score_parameters())]

    start = time.perf_counter()
    model.train()
    for step in range(args.steps):
        batch = train[step % len(train)]
        pruning.step(step)                                       # the schedule
        loss = model(**batch).loss + pruning.regularization_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(weights, 1.0)             # the weights only
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if (step + 1) % max(1, args.steps // 10) == 0:
            s = pruning.stats()
            print(f"step {step + 1}/{args.steps} | loss {loss.item():.3f} | density "
                  f"{s['pruning/density']:.3f} | predicted speedup "
                  f"{s.get('pruning/predicted_speedup', math.nan):.2f}x", flush=True)
    train_s = time.perf_counter() - start

    # 3. shrink for real: bake the masks, remove the emptied heads / FFN dims (checked exact)
    masked_acc = accuracy(pruning.finalize(), dev)
    predicted = pruning.predicted_speedup()
    small = nnprune.compact(model, tokenizer=tokenizer).model
    nnprune.save_pretrained(small, args.output, tokenizer=tokenizer)
    acc = accuracy(small, dev)
    speed = nnprune.measure_speed(small, batch_sizes=[1, 32], seq_lens=[128], threads=1,
                                  iters=5 if args.smoke else 20)
    result = {"accuracy": acc, "masked_accuracy": masked_acc, "predicted_speedup": predicted,
              "measured_speedup_b1": speed.rows[0].speedup, "measured_speedup_b32": speed.rows[1].speedup,
              "density": nnprune.count_parameters(small).density, "train_seconds": round(train_s, 1),
              "steps": args.steps, "output": args.output}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
