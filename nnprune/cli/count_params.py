"""``nnprune count-params CKPT``: remaining weights, heads and FFN dimensions per layer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nnprune.cli.common import console, make_table, quiet_libraries, write_json


def count_params(
    checkpoint: Annotated[Path, typer.Argument(help="Masked, bertarized, compacted or plain HF checkpoint folder.")],
    seq_len: Annotated[int, typer.Option(help="Sequence length of the FLOP estimate.")] = 128,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the counts as JSON here ('-' for stdout).")] = None,
) -> None:
    """Count the remaining linear weights (paper convention: encoder/decoder linear weights,
    biases excluded), whole heads and FFN dimensions kept, compression and estimated speedup."""
    quiet_libraries()
    from nnprune.pruning_core.checkpoint import load_model
    from nnprune.pruning_core.counting import count_parameters

    loaded = load_model(checkpoint)
    pc = count_parameters(loaded.model, seq_len=seq_len)
    compacted = bool(getattr(loaded.model.config, "nnprune_layout", None))
    kind = "masked" if loaded.is_masked else "compacted" if compacted else "plain"
    if str(json_out) != "-":
        console.print(render_count_table(pc, f"{checkpoint} ({kind})"))
        print_count_summary(pc)
    write_json(json_out, {"checkpoint": str(checkpoint), "masked": loaded.is_masked,
                          "compacted": compacted, **pc.to_dict()})


def render_count_table(pc, title: str):
    names: list[str] = []
    for lc in pc.layers:
        names += [n for n in lc.matrices if n not in names]
    atts = sorted({a for lc in pc.layers for a in lc.heads})
    rows = []
    for lc in pc.layers:
        row = [f"{lc.stack[:3]}.{lc.layer}"]
        row += [f"{100 * lc.matrices[n][0] / lc.matrices[n][1]:.1f}%" if n in lc.matrices else "-" for n in names]
        row += [f"{lc.heads[a][0]}/{lc.heads[a][1]}" if a in lc.heads else "-" for a in atts]
        row.append(f"{lc.ffn_dims[0]}/{lc.ffn_dims[1]}")
        rows.append(row)
    cols = ["layer"] + [f"{n} kept" for n in names] + [f"{a} heads" for a in atts] + ["ffn dims"]
    return make_table(title, cols, rows)


def print_count_summary(pc) -> None:
    for stack, (rem, tot) in pc.by_stack.items():
        console.print(f"{stack} linear weights: {rem:,} / {tot:,} ({100 * rem / tot:.2f}%)")
    console.print(f"total linear weights: [bold]{pc.remaining:,}[/] / {pc.original:,}  "
                  f"density [bold]{pc.density:.4f}[/]  compression [bold]{pc.compression:.2f}x[/]  "
                  f"estimated speedup (heads + FFN dims removable, seq {pc.seq_len}) "
                  f"[bold]{pc.estimated_speedup:.2f}x[/]")


def register(app: typer.Typer) -> None:
    app.command("count-params")(count_params)
