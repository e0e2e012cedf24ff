"""``nnprune count-params CKPT``: remaining weights, heads and FFN dimensions per layer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nnprune.cli.common import (JsonFileOpt, JsonOutOpt, add_command, check_json_file, console,
                                make_table, quiet_libraries, stdout_for_json, write_json)


def count_params(
    checkpoint: Annotated[Path, typer.Argument(help="Masked, bertarized, compacted or plain HF checkpoint folder.")],
    seq_len: Annotated[int, typer.Option(help="Sequence length of the FLOP estimate.")] = 128,
    json_out: JsonOutOpt = False,
    json_file: JsonFileOpt = None,
) -> None:
    """Count the parameters, and the linear weights, heads and FFN dimensions each layer keeps.

    The density follows the papers' convention: the encoder's (and decoder's) linear weights,
    biases excluded; with them the compression and the speedup estimated from the heads and FFN
    dimensions that compaction can remove. The parameters in all (embeddings, biases and the
    task head too, against the dense model's) are what the checkpoint stores. --json labels every
    count: {"kept": ..., "original": ...}."""
    quiet_libraries()
    check_json_file(json_file)
    import nnprune

    with stdout_for_json(json_out):
        model = nnprune.load_pretrained(checkpoint)
        kind = nnprune.inspect_checkpoint(checkpoint).kind
        pc = nnprune.count_parameters(model, seq_len=seq_len)
    if not json_out:
        console.print(render_count_table(pc, f"{checkpoint} ({kind.value})"))
        print_count_summary(pc)
    write_json(json_out, {"checkpoint": str(checkpoint), "kind": kind.value,
                          "masked": kind == "masked", "compacted": kind == "compacted",
                          **pc.to_dict()}, json_file)


def render_count_table(pc, title: str):
    """One row per layer. With one attention per layer (BERT-like) a column per matrix; with
    several (BART's decoder: self + cross) one column per block instead, so the table stays
    readable in 80 columns (the per-matrix counts are in ``--json``); no table is ever cut
    (:func:`~nnprune.cli.common.make_table`)."""
    atts = sorted({a for lc in pc.layers for a in lc.heads}, key=lambda a: (a != "self", a))
    if len(atts) > 1:
        return _render_grouped(pc, title, atts)
    names: list[str] = []
    for lc in pc.layers:
        names += [n for n in lc.matrices if n not in names]
    rows = []
    for lc in pc.layers:
        row = [f"{lc.stack[:3]}.{lc.layer}"]
        row += [f"{100 * lc.matrices[n][0] / lc.matrices[n][1]:.1f}%" if n in lc.matrices else "-" for n in names]
        row += [f"{lc.heads[a][0]}/{lc.heads[a][1]}" if a in lc.heads else "-" for a in atts]
        row.append(f"{lc.ffn_dims[0]}/{lc.ffn_dims[1]}")
        rows.append(row)
    cols = ["layer"] + [f"{n} kept" for n in names] + [f"{a} heads" for a in atts] + ["ffn dims"]
    return make_table(title, cols, rows)


def _block_kept(lc, prefix: str, roles: tuple[str, ...]) -> str:
    """Percentage of the weights kept over the matrices ``prefix + role`` of one layer."""
    found = [lc.matrices[prefix + r] for r in roles if prefix + r in lc.matrices]
    total = sum(t for _, t in found)
    return f"{100 * sum(k for k, _ in found) / total:.1f}%" if total else "-"


def _render_grouped(pc, title: str, atts: list[str]):
    rows = []
    for lc in pc.layers:
        row = [f"{lc.stack[:3]}.{lc.layer}"]
        for a in atts:
            prefix = "" if a == "self" else f"{a}_"
            row.append(_block_kept(lc, prefix, ("q", "k", "v", "o")) if a in lc.heads else "-")
            row.append(f"{lc.heads[a][0]}/{lc.heads[a][1]}" if a in lc.heads else "-")
        row.append(_block_kept(lc, "", ("ffn_in", "ffn_in_1", "ffn_out")))
        row.append(f"{lc.ffn_dims[0]}/{lc.ffn_dims[1]}")
        rows.append(row)
    cols = ["layer"]
    for a in atts:
        cols += [f"{a}\nkept", f"{a}\nheads"]
    cols += ["ffn\nkept", "ffn\ndims"]
    return make_table(f"{title}\nkept: % of the q/k/v/o (attention) or in/out (ffn) weights",
                      cols, rows)


def millions(n: int) -> str:
    """``22713216`` -> ``22.7M``."""
    return f"{n / 1e6:.1f}M" if n >= 100_000 else f"{n / 1e3:.1f}k"


def print_count_summary(pc) -> None:
    total, dense, emb = pc.total_parameters, pc.original_total_parameters, pc.embedding_parameters
    line = f"parameters: [bold]{millions(total)}[/] ({total:,})"
    if dense is not None and dense != total:
        line += f" of the dense model's {millions(dense)} ({dense:,})"
    console.print(line + f", of which embeddings {millions(emb)} ({emb:,})")
    for stack, (rem, tot) in pc.by_stack.items():
        console.print(f"{stack} linear weights: {rem:,} / {tot:,} ({100 * rem / tot:.2f}%)")
    console.print(f"total linear weights: [bold]{pc.remaining:,}[/] / {pc.original:,}  "
                  f"density [bold]{pc.density:.4f}[/]  compression [bold]{pc.compression:.2f}x[/]  "
                  f"estimated speedup (heads + FFN dims removable, seq {pc.seq_len}) "
                  f"[bold]{pc.estimated_speedup:.2f}x[/]")


def register(app: typer.Typer) -> None:
    add_command(app, "count-params", count_params, "nnprune count-params runs/sst2-hybrid --json")
