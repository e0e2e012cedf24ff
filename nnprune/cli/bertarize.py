"""``nnprune bertarize CKPT --output DIR``: bake the masks into a standard checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nnprune.errors import NNPruneError
from nnprune.cli.common import (JsonFileOpt, JsonOutOpt, OverwriteOpt, add_command, console,
                                make_table, quiet_libraries, stdout_for_json, write_json)


def bertarize(
    checkpoint: Annotated[Path, typer.Argument(help="Masked (or plain) checkpoint folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write (atomically): new or empty, or an earlier nnprune output with --overwrite.")],
    compact: Annotated[bool, typer.Option("--compact", help="Also remove the emptied heads and FFN dimensions (writes nnprune_modeling.py for trust_remote_code loading).")] = False,
    allow_inexact: Annotated[bool, typer.Option("--allow-inexact", help="Also remove heads with only an empty query or key, and accept outputs that differ by more than the tolerance.")] = False,
    tolerance: Annotated[float, typer.Option(help="Largest accepted |logit difference| to the masked model (fp32).")] = 1e-4,
    ffn_multiple: Annotated[int, typer.Option(help="With --compact: keep a few all-zero FFN dimensions so each FFN size is a multiple of this (CPU kernels are faster on multiples of 8; 1 = no padding).")] = 8,
    overwrite: OverwriteOpt = False,
    json_out: JsonOutOpt = False,
    json_file: JsonFileOpt = None,
    no_card: Annotated[bool, typer.Option("--no-card", help="With --compact: do not write the model card (README.md) and its pictures into the output.")] = False,
) -> None:
    """Apply the final masks and drop the scores: a checkpoint stock transformers loads.

    The result is reloaded and compared with the masked model on a fixed batch; the command
    fails, writing nothing, when the outputs differ by more than the tolerance."""
    quiet_libraries()
    from nnprune import bertarize_checkpoint as run

    if ffn_multiple < 1:
        raise NNPruneError(f"--ffn-multiple must be >= 1, got {ffn_multiple}")
    with stdout_for_json(json_out):
        result = run(checkpoint, output, compact=compact, allow_inexact=allow_inexact,
                     tolerance=tolerance, ffn_multiple=ffn_multiple, overwrite=overwrite)
    if not json_out:
        print_result(result)
    write_json(json_out, result.to_dict(), json_file)
    if compact and not no_card:
        from nnprune.cli.report import card_after_save

        card_after_save(output, json_out, bertarize={"compact": compact, "allow_inexact": allow_inexact,
                                                     "ffn_multiple": ffn_multiple})


def print_result(result) -> None:
    report = result.report
    if report is not None:
        columns, rows = report.rows()
        console.print(make_table(f"{result.output}: kept / original", columns, rows))
        console.print(
            f"removed {report.heads_removed} heads and {report.ffn_dims_removed} FFN dimensions; "
            f"parameters {report.params_before:,} -> {report.params_after:,}")
        if report.qk_empty:
            what = (f"removed ({report.qk_empty_removed})" if report.qk_empty_removed
                    else "kept (removing them is inexact: --allow-inexact)")
            console.print(f"{report.qk_empty} heads have only an empty query or key: {what}")
    else:
        console.print(f"{result.removable_heads} heads and {result.removable_ffn_dims} FFN dimensions "
                      "are empty; --compact would remove them")
    status = "[green]exact[/]" if result.exact else "[yellow]inexact (accepted)[/]"
    console.print(f"max |{'/'.join(result.compared)} difference| vs the "
                  f"{'masked' if result.masked else 'input'} model: "
                  f"[bold]{result.max_abs_diff:.3g}[/] (tolerance {result.tolerance:g}) {status}")
    how = ("nnprune.load_pretrained(path), or AutoModelFor...from_pretrained(path, "
           "trust_remote_code=True)" if result.compacted else "AutoModelFor...from_pretrained(path)")
    console.print(f"wrote {result.output}; load it with {how}")


def register(app: typer.Typer) -> None:
    add_command(app, "bertarize", bertarize,
                "nnprune bertarize runs/sst2-hybrid --output runs/sst2-compact --compact")
