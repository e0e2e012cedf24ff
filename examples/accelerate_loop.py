"""Fine-prune in an ``accelerate`` loop on several processes: the masks are attached before
``accelerator.prepare`` and are the same on every process (a latency table is measured once, by
the main process, and the scores are ordinary parameters that DDP keeps equal).

    torchrun --nproc_per_node 2 examples/accelerate_loop.py --smoke
    accelerate launch --num_processes 2 --cpu examples/accelerate_loop.py --smoke
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile

import torch
from accelerate import Accelerator

import nnprune
from common import SST2, batches, load_model, sentences


def mask_digest(model: torch.nn.Module) -> str:
    """A fingerprint of the eval masks (the weights they zero): equal on every process or not."""
    small = nnprune.count_parameters(model)
    return hashlib.sha256(json.dumps(small.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny random model, a few steps")
    ap.add_argument("--method", default="hybrid-nt")
    ap.add_argument("--target-speedup", type=float, default=2.0)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16, help="per process")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--data-dir", default=str(SST2))
    ap.add_argument("--output", default="runs/example-accelerate")
    args = ap.parse_args(argv)
    if args.smoke:
        args.steps, args.batch_size, args.target_speedup = 10, 4, 1.3
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)  # the same initial weights on every process

    model, tokenizer = load_model(args.smoke)
    table = nnprune.latency_table(model, seq_len=16 if args.smoke else 128, threads=1,
                                  cache_dir=tempfile.mkdtemp() if args.smoke else None)
    pruning = nnprune.attach_masks(model, args.method, target_speedup=args.target_speedup,
                                   latency_table=table, total_steps=args.steps)
    optimizer = torch.optim.AdamW(pruning.parameter_groups(lr=5e-5))
    # each process its own share of the data
    train = batches(tokenizer, sentences(args.smoke, "train", data_dir=args.data_dir),
                    args.batch_size, args.max_length, shuffle_seed=42)
    train = train[accelerator.process_index::accelerator.num_processes]
    model, optimizer = accelerator.prepare(model, optimizer)

    model.train()
    for step in range(args.steps):
        batch = {k: v.to(accelerator.device) for k, v in train[step % len(train)].items()}
        pruning.step(step)
        loss = model(**batch).loss + pruning.regularization_loss()
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()

    pruning.finalize()
    from accelerate.utils import gather_object

    digests = gather_object([mask_digest(accelerator.unwrap_model(model))])
    result = {"processes": accelerator.num_processes, "same_masks_everywhere": len(set(digests)) == 1,
              "density": pruning.density(), "predicted_speedup": pruning.predicted_speedup()}
    if accelerator.is_main_process:
        small = nnprune.compact(accelerator.unwrap_model(model), tokenizer=tokenizer)
        nnprune.save_pretrained(small.model, args.output, tokenizer=tokenizer)
        print(json.dumps(result, indent=2))
    accelerator.end_training()
    return result


if __name__ == "__main__":
    main()
