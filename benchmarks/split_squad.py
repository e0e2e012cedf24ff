"""Split a SQuAD file into train and evaluation parts **by article**, deterministically.

No SQuAD train set is available offline, so benchmarks fine-prune on part of a dev file and
evaluate on the rest. Questions on the same paragraph (and article) share their context, so the
split is by article, never by question.

Rule: articles sorted by title (then by their position in the file, for equal titles); every
``--every``-th of them (the 4th, 8th, ... by default, 25%) goes to evaluation, the rest to train.
The same input always gives the same split. Output, in ``--out`` (default
``benchmarks/data/squad-v<version>``, which is git-ignored)::

    train-v<version>.json   official SQuAD layout, the train articles
    dev-v<version>.json     official SQuAD layout, the evaluation articles
    split.json              source file, rule, titles and counts of each part

so ``nnprune fine-prune squad --data-dir benchmarks/data/squad-v1.1`` finds both files.

``--eval-like OTHER/split.json`` replaces the rule: exactly the articles that the other split
evaluated on go to evaluation. The v2.0 dev file reuses 35 of the v1.1 dev file's 48 articles, so a
v2 split made ``--eval-like`` the v1.1 split lets a model fine-tuned on the v1.1 train part go on to
v2 without ever having seen an evaluation article.

    python benchmarks/split_squad.py ../shared/data/squad/v1.1/dev-v1.1.json
    python benchmarks/split_squad.py ../shared/data/squad/v2.0/dev-v2.0.json \
        --eval-like benchmarks/data/squad-v1.1/split.json --out benchmarks/data/squad-v2.0-after-v1.1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_ROOT = Path(__file__).resolve().parent / "data"


def _version(obj: dict[str, Any], src: Path) -> str:
    version = str(obj.get("version", "")).lstrip("vV")
    if version:
        return version
    return "2.0" if "v2" in src.name else "1.1"


def _questions(article: dict[str, Any]) -> int:
    return sum(len(p.get("qas", [])) for p in article.get("paragraphs", []))


def split_squad(src: str | Path, out: str | Path | None = None, *, every: int = 4,
                eval_like: str | Path | None = None) -> dict[str, Any]:
    """Write the two parts of ``src`` into ``out``; return the ``split.json`` summary."""
    src = Path(src)
    if every < 2:
        raise ValueError(f"--every must be >= 2, got {every}")
    like_titles: set[str] | None = None
    if eval_like is not None:
        like = json.loads(Path(eval_like).read_text(encoding="utf-8"))
        if not isinstance(like, dict) or not isinstance(like.get("eval", {}).get("titles"), list):
            raise TypeError(f"{eval_like}: not a split.json written by this script")
        like_titles = {str(t) for t in like["eval"]["titles"]}
    raw = src.read_bytes()
    obj = json.loads(raw.decode("utf-8-sig"))
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise TypeError(f"{src}: not an official SQuAD file (no 'data' list of articles)")
    articles = obj["data"]
    if len(articles) < 2:
        raise ValueError(f"{src}: {len(articles)} article(s); need at least 2 to split")
    version = _version(obj, src)
    out = Path(out) if out is not None else DEFAULT_ROOT / f"squad-v{version}"
    order = sorted(range(len(articles)), key=lambda i: (str(articles[i].get("title", "")), i))
    if like_titles is None:
        eval_idx = {i for rank, i in enumerate(order) if rank % every == every - 1}
        rule = f"articles sorted by title; every {every}th (rank % {every} == {every - 1}) to eval"
    else:
        eval_idx = {i for i in order if str(articles[i].get("title", "")) in like_titles}
        rule = f"the articles that {eval_like} evaluated on go to eval"
        if not eval_idx or len(eval_idx) == len(articles):
            raise ValueError(f"{src}: {len(eval_idx)} of its {len(articles)} articles are "
                             f"evaluation articles of {eval_like}; nothing to split")
    parts = {"train": [articles[i] for i in order if i not in eval_idx],
             "eval": [articles[i] for i in order if i in eval_idx]}
    names = {"train": f"train-v{version}.json", "eval": f"dev-v{version}.json"}
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "source": str(src), "source_md5": hashlib.md5(raw).hexdigest(), "version": version,
        "rule": rule,
    }
    for part, arts in parts.items():
        path = out / names[part]
        payload = {"version": obj.get("version", version), "data": arts}
        path.write_text(json.dumps(payload, ensure_ascii=False) + "\n", encoding="utf-8")
        summary[part] = {"file": path.name, "articles": len(arts),
                         "questions": sum(_questions(a) for a in arts),
                         "titles": [str(a.get("title", "")) for a in arts]}
    (out / "split.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    summary["out"] = str(out)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="official SQuAD JSON file (e.g. dev-v1.1.json)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder [default: benchmarks/data/squad-v<version>]")
    parser.add_argument("--every", type=int, default=4,
                        help="every N-th article (by title) goes to eval [default: 4, i.e. 25%%]")
    parser.add_argument("--eval-like", type=Path, default=None,
                        help="another split's split.json: its evaluation articles (and only "
                             "those) go to eval, instead of --every")
    args = parser.parse_args(argv)
    try:
        s = split_squad(args.source, args.out, every=args.every, eval_like=args.eval_like)
    except (OSError, ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total_a = s["train"]["articles"] + s["eval"]["articles"]
    total_q = s["train"]["questions"] + s["eval"]["questions"]
    print(f"{s['source']} (SQuAD v{s['version']}): {total_a} articles, {total_q} questions")
    for part in ("train", "eval"):
        p = s[part]
        print(f"  {part:5s} {p['articles']:4d} articles ({100 * p['articles'] / total_a:5.1f}%) "
              f"{p['questions']:6d} questions ({100 * p['questions'] / total_q:5.1f}%) "
              f"-> {Path(s['out']) / p['file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
