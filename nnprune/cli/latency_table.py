"""``nnprune latency-table MODEL``: the measured latency of attention blocks by heads kept and of
FFNs by dimensions kept on this machine, the table ``--target-speedup`` cuts masks with."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from nnprune.cli.common import (JsonFileOpt, JsonOutOpt, add_command, console, dataclass_options,
                                make_table, quiet_libraries, stdout_for_json, write_json)

if TYPE_CHECKING:
    from nnprune import LatencySetting, LatencyTable


DEFAULT_SEQ_LEN = 128


def _setting_options(func):
    """The :class:`~nnprune.LatencySetting` fields as plain ``--device``, ``--seq-len``, ...
    (this command's whole subject; the training commands spell them ``--latency-*``)."""
    from nnprune import LatencySetting
    from nnprune.settings import LATENCY_OPTION_PREFIX

    return dataclass_options(LatencySetting, "setting", base=LatencySetting(seq_len=DEFAULT_SEQ_LEN),
                             help={"seq_len": "Inference sequence length (tokens)."},
                             errors_say=LATENCY_OPTION_PREFIX)(func)


@_setting_options
def latency_table(
    model: Annotated[str, typer.Argument(help="Model folder or hub name: the dense architecture of its config.json is measured (random weights; time depends only on shapes).")],
    setting: "LatencySetting",
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Measure again even if a cached table exists.")] = False,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Where tables are cached (default ~/.cache/nnprune/latency).")] = None,
    budget_seconds: Annotated[float, typer.Option(help="About how long the measurement may take (3-30 interleaved rounds per variant).")] = 30.0,
    json_out: JsonOutOpt = False,
    json_file: JsonFileOpt = None,
) -> None:
    """Show the latency table of MODEL's architecture on this machine (measured if not cached).

    Rows: what one attention block adds to a forward by heads kept, what one FFN adds by
    dimensions kept, and what no unit removes. Cached by hardware, torch/transformers versions,
    shapes and setting; fine-prune --target-speedup reads the same cache."""
    quiet_libraries()
    import nnprune
    from nnprune.errors import NNPruneError

    from nnprune.workflows.preflight import check_device, check_output_file, check_seq_lens

    if budget_seconds <= 0:
        raise NNPruneError(f"--budget-seconds must be > 0, got {budget_seconds}")
    check_output_file(json_file, "--json-file")
    check_device(setting.device, "--device")
    config = nnprune.load_config(model)
    setting = setting.at(DEFAULT_SEQ_LEN)
    check_seq_lens(config, [setting.seq_len], "--seq-len", model)
    with stdout_for_json(json_out):
        table = nnprune.latency_table(config, setting=setting, cache_dir=cache_dir,
                                      rebuild=rebuild, budget_s=budget_seconds)
    if not json_out:
        for t in render(table):
            console.print(t)
    write_json(json_out, {**table.to_dict(), "path": table.path, "cached": table.cached},
               json_file)


def render(table: "LatencyTable") -> list:
    k, m = table.key, table.model
    s = k["setting"]
    title = (f"{k['model_type']} ({k['layers']} layers, hidden {k['hidden']}, {k['heads']} heads, "
             f"FFN {k['ffn']}) · batch {s['batch_size']} x {s['seq_len']} tokens · {s['device']} "
             f"{s['dtype']} · {s['threads']} threads\n{k['hardware']} · torch {k['torch']} · "
             f"transformers {k['transformers']}")
    dense = m.dense_ms
    heads = make_table("one attention block, by heads kept", ["heads", "ms", "% of dense forward"],
                       [(h, f"{ms:.3f}", f"{100 * ms / dense:.1f}")
                        for h, ms in zip(m.heads, m.attention_ms)])
    ffn = make_table("one FFN, by dimensions kept", ["dims", "ms", "% of dense forward"],
                     [(d, f"{ms:.3f}", f"{100 * ms / dense:.1f}")
                      for d, ms in zip(m.ffn_dims, m.ffn_ms)])
    predicted, measured = table.check
    source = (f"cached: {table.path}" if table.cached
              else f"measured in {table.seconds:.1f} s ({table.rounds} rounds per variant), "
                   f"cached: {table.path}")
    reach = [("largest speedup pruning heads and FFN reaches", f"{m.max_speedup:.2f}x")]
    if m.has_width_depth:
        reach.append(("largest speedup with width and depth too (one layer, narrowest width)",
                      f"{m.max_speedup_width_depth:.2f}x"))
    summary = make_table(title, ["", "value"], [
        ("dense forward (ms)", f"{dense:.3f}"),
        ("no head, no FFN dimension (ms): predicted", f"{predicted:.3f}"),
        ("no head, no FFN dimension (ms): measured", f"{measured:.3f}"),
        *reach, ("table", source)])
    return [summary, heads, ffn, *([width_table(table)] if m.has_width_depth else [])]


def width_table(table: "LatencyTable"):
    """The width terms: per hidden width, how much an attention block and an FFN cost relative to
    the full width, what one layer costs beyond its units, what no layer has, and what the whole
    model narrowed to that width (every layer and unit kept) is predicted to take."""
    m = table.model
    full_heads, full_ffn = [m.dense_heads] * m.num_layers, [m.dense_ffn] * m.num_layers
    rows = []
    for w in m.widths:
        a, f, layer, base = m.width_terms(w)
        rows.append((w, f"{a:.3f}", f"{f:.3f}", f"{layer:.3f}", f"{base:.3f}",
                     f"{m.speedup(full_heads, full_ffn, width=w):.2f}x"))
    return make_table("by hidden width (the stream narrowed; format 3: affine fits of the measured widths)",
                      ["width", "attention scale", "FFN scale", "ms a layer (beyond units)",
                       "ms outside layers", "speedup, every unit kept"], rows)


def register(app: typer.Typer) -> None:
    add_command(app, "latency-table", latency_table,
                "nnprune latency-table runs/sst2-dense --batch-size 1 --seq-len 128 --threads 1")
