"""Split one labelled table (TSV/CSV) into a train and an evaluation file by a fixed seed.

For data that ships only one labelled file offline (e.g. MNLI's dev_matched.tsv in
``../shared/data``): the rows are shuffled with ``--seed`` and the first ``--eval-fraction``
become the evaluation file; every other column and the header are kept as they are.

    python benchmarks/split_table.py ../shared/data/glue/MNLI/dev_matched.tsv \
        --eval-fraction 0.2 --seed 42 --out runs/mnli-split

writes ``train.tsv`` and ``dev.tsv`` (same extension as the input) and ``split.json`` (the seed,
the counts, and the label counts of each side if ``--label-column`` names a column).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from collections import Counter
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("file", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--eval-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--label-column", default=None, help="report the label counts of each side")
    a = p.parse_args(argv)
    if not a.file.is_file():
        print(f"error: {a.file} does not exist", file=sys.stderr)
        return 2
    if not 0 < a.eval_fraction < 1:
        print(f"error: --eval-fraction must be in (0, 1), got {a.eval_fraction}", file=sys.stderr)
        return 2
    delimiter = "\t" if a.file.suffix.lower() in (".tsv", ".txt") else ","
    with a.file.open(newline="", encoding="utf-8") as f:
        # QUOTE_NONE for TSV: GLUE's files contain bare quotes inside sentences
        reader = csv.reader(f, delimiter=delimiter,
                            quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
        header, *rows = list(reader)
    if a.label_column is not None and a.label_column not in header:
        print(f"error: no column {a.label_column!r}; columns: {', '.join(header)}", file=sys.stderr)
        return 2
    random.Random(a.seed).shuffle(rows)
    n_eval = round(len(rows) * a.eval_fraction)
    sides = {"dev": rows[:n_eval], "train": rows[n_eval:]}
    a.out.mkdir(parents=True, exist_ok=True)
    summary = {"source": str(a.file), "seed": a.seed, "eval_fraction": a.eval_fraction}
    for name, part in sides.items():
        path = a.out / f"{name}{a.file.suffix}"
        tmp = path.with_suffix(path.suffix + ".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as f:
            if delimiter == "\t":  # fields read with QUOTE_NONE hold no tab: written back as read
                f.writelines("\t".join(r) + "\n" for r in [header, *part])
            else:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(header)
                writer.writerows(part)
        tmp.replace(path)
        entry: dict = {"file": str(path), "rows": len(part)}
        if a.label_column is not None:
            i = header.index(a.label_column)
            entry["labels"] = dict(sorted(Counter(r[i] for r in part).items()))
        summary[name] = entry
        print(f"{name:5s} {len(part):6d} rows -> {path}" + (
            f"  labels {entry['labels']}" if "labels" in entry else ""))
    (a.out / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
