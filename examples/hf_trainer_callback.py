"""Fine-prune inside your own Hugging Face ``Trainer`` (stock or a subclass of yours) through a
callback: no nnprune Trainer. The callback moves the schedule, steps the mask scores with their
own optimizer, adds the regularization, logs the pruning scalars and saves / resumes its state
with the Trainer's checkpoints.

    python examples/hf_trainer_callback.py --smoke
    python examples/hf_trainer_callback.py --target-density 0.5 --steps 300   # MiniLM on SST-2
"""

from __future__ import annotations

import argparse
import json

import torch
from datasets import Dataset
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

import nnprune
from common import SST2, accuracy, batches, load_model, sentences


class MyTrainer(Trainer):
    """Stands for whatever your own subclass does (here: nothing but be yours)."""


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny random model, a few steps")
    ap.add_argument("--method", default="hybrid-nt")
    ap.add_argument("--target-density", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--data-dir", default=str(SST2))
    ap.add_argument("--output", default="runs/example-trainer")
    ap.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    args = ap.parse_args(argv)
    if args.smoke:
        args.steps, args.batch_size = 12, 8
    torch.manual_seed(0)

    model, tokenizer = load_model(args.smoke)
    pairs = sentences(args.smoke, "train", data_dir=args.data_dir)
    train = Dataset.from_dict({"sentence": [s for s, _ in pairs], "label": [y for _, y in pairs]})
    train = train.map(lambda b: tokenizer(b["sentence"], truncation=True, max_length=args.max_length),
                      batched=True, remove_columns=["sentence"])

    # Masks attached before the Trainer is built; the callback takes the run's length from it.
    pruning = nnprune.attach_masks(model, args.method, target_density=args.target_density)
    trainer = MyTrainer(
        model=model, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer),
        args=TrainingArguments(output_dir=args.output, max_steps=args.steps,
                               per_device_train_batch_size=args.batch_size, learning_rate=5e-5,
                               warmup_steps=0.1, save_steps=max(1, args.steps // 2),
                               logging_steps=max(1, args.steps // 6), report_to=[],
                               use_cpu=True, seed=42),
        callbacks=[pruning.trainer_callback()])
    trainer.train(resume_from_checkpoint=True if args.resume else None)

    dev = batches(tokenizer, sentences(args.smoke, "dev", data_dir=args.data_dir), 64, args.max_length)
    result = {"density": pruning.density(), "masked_accuracy": accuracy(model, dev)}
    small = nnprune.compact(model, tokenizer=tokenizer)
    nnprune.save_pretrained(small.model, f"{args.output}/final", tokenizer=tokenizer)
    result.update(accuracy=accuracy(small.model, dev), heads_removed=small.report.heads_removed,
                  ffn_dims_removed=small.report.ffn_dims_removed, exactness=small.max_abs_diff)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
