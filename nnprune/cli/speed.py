"""``nnprune speed MODEL``: measured latency/throughput against the dense baseline, vs FLOPs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nnprune.cli.common import (PANEL_EVALUATION, PANEL_GENERATE, JsonFileOpt, JsonOutOpt,
                                add_command, console, make_table, quiet_libraries, setting_text,
                                stdout_for_json, write_json)
from nnprune.errors import NNPruneError


def parse_int_list(text: str | None, option: str) -> list[int] | None:
    """``"1,32"`` -> ``[1, 32]``; ``None`` stays ``None`` (the default applies)."""
    if text is None:
        return None
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise NNPruneError(f"{option} takes comma-separated integers, e.g. 1,32 (got {text!r})") from None
    if not values or min(values) < 1:
        raise NNPruneError(f"{option} takes positive integers (got {text!r})")
    return values


def speed(
    model: Annotated[Path, typer.Argument(help="Masked, bertarized, compacted or plain checkpoint folder, or an export-onnx folder (with --onnx).")],
    baseline: Annotated[Path | None, typer.Option(help="Dense checkpoint to compare with; default: the original architecture rebuilt at full size from the config (random weights).")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch_sizes: Annotated[str | None, typer.Option(help="Comma-separated batch sizes (default 1,32 on CPU, 1,128 on GPU; a model pruned with --target-speedup: its batch size first).")] = None,
    seq_lens: Annotated[str | None, typer.Option(help="Comma-separated sequence lengths (default 128,384; a model pruned with --target-speedup: its length first).")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (torch.set_num_threads / onnxruntime intra-op); default: those the model was pruned for with --target-speedup, else torch's.")] = None,
    dtype: Annotated[str, typer.Option(help="fp32, fp16 or bf16 (both models).")] = "fp32",
    quantize: Annotated[str | None, typer.Option(help="int8: dynamic int8 quantization of the model (CPU); the baseline stays fp32.")] = None,
    onnx: Annotated[bool, typer.Option("--onnx", help="Run both models with onnxruntime (CPU); MODEL may be an export-onnx folder.")] = False,
    baseline_pytorch: Annotated[bool, typer.Option("--baseline-pytorch", help="With --onnx: run the baseline in PyTorch fp32 instead of onnxruntime (the speedup of shipping MODEL's export over serving the dense model in PyTorch).")] = False,
    warmup: Annotated[int, typer.Option(help="Untimed forwards of each model per shape.")] = 5,
    iters: Annotated[int, typer.Option(help="Timed forwards of each model per shape (interleaved).")] = 20,
    cache: Annotated[str | None, typer.Option(help="warm (the default): each timed forward follows an untimed one of the same model (a server running only it); cold: it follows the other model's, which evicted its weights from the CPU's caches.")] = None,
    generate: Annotated[bool, typer.Option("--generate", rich_help_panel=PANEL_GENERATE, help="Seq2seq LMs: also time a full generate() of exactly --max-new-tokens tokens (EOS suppressed until then) for both models, interleaved, at the same batch/source-length grid.")] = False,
    max_new_tokens: Annotated[int, typer.Option(rich_help_panel=PANEL_GENERATE, help="With --generate: new tokens per sequence (forced on both models).")] = 64,
    num_beams: Annotated[int, typer.Option(rich_help_panel=PANEL_GENERATE, help="With --generate: beams (1: greedy); never sampling.")] = 1,
    task: Annotated[str | None, typer.Option(rich_help_panel=PANEL_EVALUATION, help="Also evaluate MODEL on this task (fp32, and int8 with --quantize int8) and report the metric change; with --onnx through onnxruntime, so the metrics are those of the ONNX model(s) timed.")] = None,
    data_dir: Annotated[Path | None, typer.Option(rich_help_panel=PANEL_EVALUATION, help="With --task: local task data folder.")] = None,
    validation_file: Annotated[Path | None, typer.Option(rich_help_panel=PANEL_EVALUATION, help="With --task: evaluation file.")] = None,
    max_eval_samples: Annotated[int | None, typer.Option(rich_help_panel=PANEL_EVALUATION, help="With --task: evaluate on at most this many examples.")] = None,
    json_out: JsonOutOpt = False,
    json_file: JsonFileOpt = None,
) -> None:
    """Time MODEL against its dense baseline in one process, interleaved, after warm-up.

    Reported: median and p90 latency, throughput, measured speedup, FLOP speedup (whole forward)
    and efficiency (measured / FLOP speedup). Encoder-decoder models are timed on one
    teacher-forced forward (target as long as the source); with --generate also on a full
    generate() (latency, generated tokens/s, speedup)."""
    quiet_libraries()
    from nnprune import measure_speed
    from nnprune.workflows.preflight import check_device, check_output_file
    from nnprune.workflows.speed import pruned_for

    check_output_file(json_file, "--json-file")
    check_device(device, "--device")
    sizes, lengths = parse_int_list(batch_sizes, "--batch-sizes"), parse_int_list(seq_lens, "--seq-lens")
    target = pruned_for(model)
    sizes, lengths, threads, note = first_the_pruned_setting(target, device, sizes, lengths, threads)
    with stdout_for_json(json_out):
        report = measure_speed(model, baseline, device=device, batch_sizes=sizes, seq_lens=lengths,
                               threads=threads, dtype=dtype, quantize=quantize, onnx=onnx,
                               warmup=warmup, iters=iters, keep_times=True, generate=generate,
                               max_new_tokens=max_new_tokens, num_beams=num_beams,
                               baseline_pytorch=baseline_pytorch, cache=cache)
        if note:
            report.notes.insert(0, note)
        payload = report.to_dict()
        payload["pruned_for"] = target
        if task is not None:
            payload["task_metrics"] = task_metrics(model, task, quantize, data_dir,
                                                   validation_file, max_eval_samples, onnx=onnx)
    if not json_out:
        console.print(render_speed_table(report))
        if report.generate_rows:
            console.print(render_generate_table(report))
        for note in report.notes:
            console.print(f"[yellow]note:[/] {note}", highlight=False)
        if task is not None:
            console.print(render_metrics_table(task, payload["task_metrics"]))
    write_json(json_out, payload, json_file)


#: The grid when none is given (as ``nnprune.measure_speed`` has it): batch sizes by device, and
#: sequence lengths.
DEFAULT_BATCH_SIZES = {"cpu": [1, 32], "cuda": [1, 128]}
DEFAULT_SEQ_LENS = [128, 384]


def first_the_pruned_setting(target: dict | None, device: str, sizes: list[int] | None,
                             lengths: list[int] | None, threads: int | None
                             ) -> tuple[list[int], list[int], int | None, str | None]:
    """The grid to time, with the setting the model was pruned for (``target``,
    :func:`~nnprune.workflows.speed.pruned_for`) first: its batch size and length lead the lists
    not given, and its CPU threads apply unless ``--threads`` is given; and a note saying so
    (``None``: nothing was recorded, or the grid is the user's own)."""
    sizes_given, lengths_given = sizes is not None, lengths is not None
    sizes = sizes or list(DEFAULT_BATCH_SIZES.get(device, DEFAULT_BATCH_SIZES["cpu"]))
    lengths = lengths or list(DEFAULT_SEQ_LENS)
    if target is None or (sizes_given and lengths_given and threads is not None):
        return sizes, lengths, threads, None
    b, s = int(target["batch_size"]), int(target["seq_len"])
    if not sizes_given:
        sizes = [b] + [x for x in sizes if x != b]
    if not lengths_given:
        lengths = [s] + [x for x in lengths if x != s]
    if threads is None and target.get("device") == device == "cpu" and target.get("threads"):
        threads = int(target["threads"])
    what = setting_text(target) + (f", {target['dtype']}" if target.get("dtype") else "")
    speedup = target.get("target_speedup")
    note = (f"pruned for {what}" + (f" (--target-speedup {speedup:g})" if speedup else "")
            + (f": timed first (batch {sizes[0]} x {lengths[0]}"
               + (f", {threads} threads" if threads is not None else "") + ")"))
    if target.get("device") != device:
        note += f"; it was pruned for {target.get('device')}, this is {device}"
    return sizes, lengths, threads, note


def task_metrics(model: Path, task: str, quantize: str | None, data_dir: Path | None,
                 validation_file: Path | None, max_eval_samples: int | None, *,
                 onnx: bool = False) -> dict:
    """``{"fp32": metrics, "int8": metrics}`` (int8 only with ``--quantize int8``); with ``onnx``
    both are onnxruntime's (fp32 ``model.onnx``, int8 ``model.int8.onnx``), as timed."""
    from nnprune.workflows.evaluate import evaluate_checkpoint

    out = {}
    for variant in ("fp32",) + ((quantize,) if quantize else ()):
        result = evaluate_checkpoint(task, model, data_dir=data_dir, validation_file=validation_file,
                                     max_eval_samples=max_eval_samples,
                                     quantize=None if variant == "fp32" else variant, onnx=onnx)
        out[variant] = result.metrics
    return out


def render_metrics_table(task: str, metrics: dict):
    variants = list(metrics)
    names = [k for k in metrics["fp32"] if not k.endswith("loss")]
    rows = []
    for name in names:
        row = [name] + [metrics[v].get(name) for v in variants]
        if len(variants) == 2:
            row.append(metrics[variants[1]][name] - metrics["fp32"][name])
        rows.append(row)
    cols = ["metric"] + variants + (["change"] if len(variants) == 2 else [])
    return make_table(f"{task}: metric of the model as timed", cols, rows)


def render_speed_table(report):
    what = f"{report.runtime} {report.device} {report.dtype}" + (f" {report.quantize}" if report.quantize else "")
    title = (f"{report.model} ({report.model_kind}) vs {report.baseline}\n"
             f"{what}, {report.threads} threads, {report.warmup} warm-up + {report.iters} interleaved iters, "
             f"{report.cache} cache"
             + (f", {report.cpu}" if report.device == "cpu" else ""))
    rows = [(r.batch_size, r.seq_len, f"{r.baseline_ms:.2f}", f"{r.baseline_p90_ms:.2f}",
             f"{r.model_ms:.2f}", f"{r.model_p90_ms:.2f}", f"{r.baseline_throughput:.1f}",
             f"{r.model_throughput:.1f}", f"{r.speedup:.2f}x", f"{r.theoretical_speedup:.2f}x",
             f"{r.efficiency:.2f}") for r in report.rows]
    cols = ["batch", "seq", "base ms", "p90", "model ms", "p90", "base ex/s", "model ex/s",
            "speedup", "FLOPs", "eff."]
    return make_table(title, cols, rows)


def render_generate_table(report):
    beams = "greedy" if report.num_beams == 1 else f"beam search ({report.num_beams} beams)"
    title = (f"generate(): {report.max_new_tokens} new tokens per sequence (forced on both), {beams}, "
             f"{report.warmup} warm-up + {report.iters} interleaved iters")
    rows = [(r.batch_size, r.seq_len, r.new_tokens, f"{r.baseline_ms:.1f}", f"{r.baseline_p90_ms:.1f}",
             f"{r.model_ms:.1f}", f"{r.model_p90_ms:.1f}", f"{r.baseline_tokens_per_s:.1f}",
             f"{r.model_tokens_per_s:.1f}", f"{r.speedup:.2f}x") for r in report.generate_rows]
    cols = ["batch", "src", "new tok", "base ms", "p90", "model ms", "p90", "base tok/s",
            "model tok/s", "speedup"]
    return make_table(title, cols, rows)


def register(app: typer.Typer) -> None:
    add_command(app, "speed", speed,
                "nnprune speed runs/sst2-compact --baseline runs/sst2-dense --batch-sizes 1,32")
