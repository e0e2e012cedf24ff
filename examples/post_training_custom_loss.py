"""Post-training pruning with your own loss: no task, no labels column convention, no Trainer.
The batches are yours (any keys), the loss is a function of the model and a batch; nnprune scores
every head and FFN dimension with it, keeps the best under a FLOP (or speed) budget, compacts the
model exactly and saves a folder stock transformers reloads.

    python examples/post_training_custom_loss.py --smoke
    python examples/post_training_custom_loss.py --model runs/sst2-dense --target-speedup 2   # fine-tuned
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

import nnprune
from common import SST2, accuracy, batches, load_model, sentences


def my_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Label-smoothed cross-entropy on the user's own ``targets`` key: the mean over the batch's
    examples (what post-training pruning needs: per-example losses averaged)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return F.cross_entropy(logits, batch["targets"], label_smoothing=0.1)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny random model")
    ap.add_argument("--model", help="a fine-tuned sequence classifier folder (not with --smoke)")
    ap.add_argument("--target-flops", type=float, default=None, help="fraction of FLOPs to keep")
    ap.add_argument("--target-speedup", type=float, default=None)
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--data-dir", default=str(SST2))
    ap.add_argument("--output", default="runs/example-post-training")
    args = ap.parse_args(argv)
    if args.target_flops is None and args.target_speedup is None:
        args.target_flops = 0.5
    if args.smoke:
        model, tokenizer = load_model(True)
        args.samples = 64
    elif args.model:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(args.model)
        tokenizer = AutoTokenizer.from_pretrained(args.model)
    else:
        ap.error("pass --model (a fine-tuned classifier) or --smoke")

    calibration = batches(tokenizer, sentences(args.smoke, "train", limit=args.samples,
                                               data_dir=args.data_dir), 32, args.max_length,
                          shuffle_seed=0)
    for b in calibration:  # the user's own key for the labels
        b["targets"] = b.pop("labels")
    dev = batches(tokenizer, sentences(args.smoke, "dev", data_dir=args.data_dir), 64, args.max_length)
    before = accuracy(model, dev)

    result = nnprune.prune(model, calibration, loss_fn=my_loss, target_flops=args.target_flops,
                           target_speedup=args.target_speedup, tokenizer=tokenizer)
    nnprune.save_pretrained(result.model, args.output, tokenizer=tokenizer)

    # what users ship: the folder, reloaded by stock transformers (no nnprune)
    from transformers import AutoModelForSequenceClassification

    reloaded = AutoModelForSequenceClassification.from_pretrained(args.output, trust_remote_code=True)
    probe = {k: v for k, v in dev[0].items() if k != "labels"}
    with torch.no_grad():
        diff = float((reloaded(**probe).logits - result.model(**probe).logits).abs().max())
    out = {"accuracy_before": before, "accuracy_after": accuracy(result.model, dev),
           "heads_kept": f"{result.heads_kept}/{result.heads_total}",
           "ffn_dims_kept": f"{result.ffn_dims_kept}/{result.ffn_dims_total}",
           "predicted_speedup": result.predicted_speedup, "predicted_by": result.predicted_by,
           "stock_reload_max_abs_diff": diff, "seconds": result.seconds}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
