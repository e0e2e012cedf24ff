"""Timing a model against its dense baseline (checkpoints, ONNX exports or modules): pick the
runners (PyTorch on CPU/CUDA, dynamic int8, onnxruntime) and time them interleaved
(:mod:`nnprune.measure.timing`); and :func:`check_speedup`, a latency table's prediction checked
by a measurement.

ONNX models run on onnxruntime's CPU provider; with ``onnx=True`` the baseline is exported and run
by onnxruntime too, so the ratio measures pruning, not the runtime. The dense baseline is, unless
given, the original architecture rebuilt at full size from the config (``nnprune_original`` undoes
a compaction's sizes) with random weights: time depends only on shapes.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from nnprune.api.architectures import check_positions
from nnprune.errors import NNPruneError
from nnprune.export.onnx import (ONNX_INT8, ONNX_MODEL, ORT_DISABLED_OPTIMIZERS, OrtRunner,
                                 export_onnx, is_onnx_dir, quantize_onnx_int8, read_onnx_meta)
from nnprune.measure.flops import FlopProfile, compacted_profile, flop_profile
from nnprune.measure.latency import LatencySetting, LatencyTable
from nnprune.measure.quantize import quantize_int8
from nnprune.measure.timing import (DEFAULT_CACHE, DEFAULT_SEQ_LENS, DTYPES, CacheState, GenerateRow,
                                    GenerateRunner, SpeedReport, TorchRunner, check_can_generate, compare,
                                    compare_generate, cpu_model_name, default_batch_sizes,
                                    generation_config_for)
from nnprune.pruning_core.checkpoint import (load_checkpoint_model, load_config, load_pretrained,
                                             model_class_for)
from nnprune.pruning_core.compact import (compact_exactly, dense_baseline, dense_config,
                                          is_compacted, model_layout)

logger = logging.getLogger(__name__)


def _config_model(path: Path) -> nn.Module:
    """A randomly initialized model of the (dense) architecture described by ``path/config.json``."""
    cfg = dense_config(load_config(path))  # never runs the folder's own code
    torch.manual_seed(0)
    return model_class_for(cfg)(cfg).eval()


def _read_config(path: Path) -> Optional[dict[str, Any]]:
    """The ``config.json`` of a checkpoint or export-onnx folder as a dict, or None (the loader
    says what is wrong with the folder)."""
    try:
        data = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_speed(model_path: str | Path, baseline_path: str | Path | None = None, *,
              device: str = "cpu", batch_sizes: Sequence[int] | None = None,
              seq_lens: Sequence[int] | None = None, threads: int | None = None,
              dtype: str = "fp32", quantize: str | None = None, onnx: bool = False,
              warmup: int = 5, iters: int = 20, keep_times: bool = False,
              model: nn.Module | None = None, baseline: nn.Module | None = None,
              generate: bool = False, max_new_tokens: int = 64, num_beams: int = 1,
              baseline_pytorch: bool = False, cache: "CacheState | str | None" = None) -> SpeedReport:
    """Load (or take) a model and its baseline and time them; see module doc.

    ``model``/``baseline`` may be given as modules instead of paths (``model_path`` then only
    names it in the report). ``baseline_pytorch`` (with ``onnx``): the baseline runs in PyTorch
    fp32, what serving the dense model without an export is. ``generate`` (seq2seq LMs, PyTorch
    only) also times ``generate`` of exactly ``max_new_tokens`` tokens with ``num_beams`` beams
    (``report.generate_rows``). ``cache``: what each timed forward finds in the caches
    (:class:`~nnprune.measure.timing.CacheState`; default ``DEFAULT_CACHE``, warm).
    """
    cache = DEFAULT_CACHE if cache is None else CacheState.parse(cache, "--cache")
    if device not in ("cpu", "cuda"):
        raise NNPruneError(f"--device must be cpu or cuda, not {device!r}")
    if dtype not in DTYPES:
        raise NNPruneError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if quantize not in (None, "int8"):
        raise NNPruneError(f"--quantize supports int8 only, not {quantize!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise NNPruneError("--device cuda: no CUDA device is available to this torch")
    if quantize and device != "cpu":
        raise NNPruneError("--quantize int8 is dynamic CPU quantization; use --device cpu")
    if quantize and dtype != "fp32":
        raise NNPruneError("--quantize int8 quantizes an fp32 model; leave --dtype at fp32")
    if onnx and (device != "cpu" or dtype != "fp32"):
        raise NNPruneError("--onnx runs onnxruntime on the CPU in fp32; use --device cpu --dtype fp32")
    if baseline_pytorch and not onnx:
        raise NNPruneError("--baseline-pytorch is for --onnx (without it both models run in PyTorch)")
    if generate and onnx:
        raise NNPruneError("--generate times PyTorch generate(); it cannot be combined with --onnx")
    if generate and (max_new_tokens < 1 or num_beams < 1):
        raise NNPruneError(f"--max-new-tokens and --num-beams must be >= 1 "
                           f"(got {max_new_tokens}, {num_beams})")
    batch_sizes = tuple(batch_sizes or default_batch_sizes(device))
    seq_lens = tuple(seq_lens or DEFAULT_SEQ_LENS)
    if min(batch_sizes) < 1 or min(seq_lens) < 1:
        raise NNPruneError("batch sizes and sequence lengths must be >= 1")
    # before any model is loaded: a length past the positions fails deep in the embeddings
    config = model.config if model is not None else _read_config(Path(model_path))
    if config is not None:
        check_positions(config, seq_lens, option="--seq-lens", where=str(model_path))
    dev = torch.device(device)
    notes: list[str] = []
    previous_threads = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise NNPruneError(f"--threads must be >= 1 (got {threads})")
        torch.set_num_threads(threads)
    n_threads = torch.get_num_threads()
    mpath = Path(model_path)
    try:
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nnprune-speed-")))
            # ---- the model
            kind = "module"
            if model is None and onnx and is_onnx_dir(mpath):
                meta = read_onnx_meta(mpath)
                kind = meta.get("kind", "onnx")
                m_profile = FlopProfile.from_dict(meta["flop_profile"])
                input_model = _config_model(mpath)
                onnx_file = mpath / ONNX_MODEL
                if quantize:
                    onnx_file = mpath / ONNX_INT8
                    if not onnx_file.is_file():
                        onnx_file = quantize_onnx_int8(mpath / ONNX_MODEL, tmp / ONNX_INT8)
                torch_model = None
            else:
                if model is None and is_onnx_dir(mpath) and not (mpath / "model.safetensors").exists():
                    raise NNPruneError(f"{mpath} is an ONNX export: time it with --onnx")
                if model is None:
                    cm = load_checkpoint_model(mpath)
                    torch_model, kind = cm.model, cm.kind.value
                    notes += cm.notes
                else:
                    torch_model = model.eval()
                if generate:
                    check_can_generate(torch_model, str(mpath))
                m_profile = flop_profile(torch_model)
                input_model = torch_model
                if onnx:
                    exp = export_onnx(torch_model, tmp / "model", quantize=quantize, kind=kind)
                    onnx_file = exp.int8_path if quantize else exp.model_path
                    notes.append(f"exported to ONNX for timing (max |onnx - torch| = "
                                 f"{exp.max_abs_diff:.2e})")
            # ---- the baseline
            if baseline is not None:
                base_model, base_label = baseline.eval(), "given module"
            elif baseline_path is not None:
                bpath = Path(baseline_path)
                base_label = str(bpath)
                base_model = None
                if is_onnx_dir(bpath):
                    if baseline_pytorch:
                        raise NNPruneError(f"baseline {bpath} is an ONNX export; --baseline-pytorch "
                                           "needs a checkpoint folder")
                    if not onnx:
                        raise NNPruneError(f"baseline {bpath} is an ONNX export; add --onnx")
                    b_meta = read_onnx_meta(bpath)
                    b_profile = FlopProfile.from_dict(b_meta["flop_profile"])
                    b_onnx = bpath / ONNX_MODEL
                else:
                    base_model = load_checkpoint_model(bpath).model
            else:
                # An ONNX export's input model is already the dense architecture from its config.
                base_model = input_model if torch_model is None else dense_baseline(torch_model)
                base_label = "dense architecture from config (random weights)"
            if base_model is not None:
                if generate:
                    check_can_generate(base_model, f"baseline {base_label}")
                b_profile = flop_profile(base_model)
                if onnx and not baseline_pytorch:
                    b_onnx = export_onnx(base_model, tmp / "baseline", kind="baseline").model_path
            # ---- runners
            if onnx:
                if quantize:
                    notes.append("model: onnxruntime dynamic int8; baseline stays fp32; FLOPs (and so "
                                 "efficiency) ignore int8")
                notes.append("onnxruntime sessions without " + ", ".join(ORT_DISABLED_OPTIMIZERS)
                             + " (a slower kernel; docs/commands/export-onnx.md)")
                m_runner: Any = OrtRunner(onnx_file, n_threads, str(mpath))
                if baseline_pytorch:
                    b_runner: Any = TorchRunner(base_model.to(dev, torch.float32).eval(), dev, base_label)
                    base_label += " (PyTorch fp32)"
                    runtime = "onnxruntime, baseline PyTorch"
                else:
                    b_runner = OrtRunner(b_onnx, n_threads, base_label)
                    base_label += " (onnxruntime fp32)"
                    runtime = "onnxruntime"
            else:
                tdtype = DTYPES[dtype]
                tm = torch_model.to(dev, tdtype).eval()
                if quantize:
                    tm = quantize_int8(tm)
                    notes.append("model: PyTorch dynamic int8 (torch.ao quantize_dynamic on nn.Linear); "
                                 "baseline stays fp32; FLOPs (and so efficiency) ignore int8")
                tb = base_model.to(dev, tdtype).eval()
                m_runner = TorchRunner(tm, dev, str(mpath))
                b_runner = TorchRunner(tb, dev, base_label)
                runtime = "pytorch"
            rows = compare(m_runner, b_runner, m_profile, b_profile, input_model,
                           batch_sizes=batch_sizes, seq_lens=seq_lens, warmup=warmup, iters=iters,
                           device=dev, cache=cache, keep_times=keep_times)
            generate_rows: list[GenerateRow] = []
            if generate:
                # One generation config (the model's, forced to N tokens) for both models.
                gen_cfg = generation_config_for(torch_model, max_new_tokens, num_beams)
                generate_rows = compare_generate(
                    GenerateRunner(tm, dev, str(mpath), gen_cfg),
                    GenerateRunner(tb, dev, base_label, gen_cfg), input_model,
                    batch_sizes=batch_sizes, seq_lens=seq_lens, warmup=warmup, iters=iters,
                    device=dev, cache=cache, keep_times=keep_times)
            if kind == "masked" and torch_model is not None:
                b0, s0 = batch_sizes[0], seq_lens[0]
                after = compacted_profile(torch_model).count(b0, s0).total
                notes.append(f"once compacted, its FLOP speedup would be "
                             f"{b_profile.count(b0, s0).total / after:.2f}x (batch {b0}, seq {s0})")
    finally:
        if threads is not None:
            torch.set_num_threads(previous_threads)
    return SpeedReport(
        model=str(model_path), model_kind=kind, baseline=base_label, runtime=runtime,
        device=(torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"), dtype=dtype,
        quantize=quantize, threads=n_threads, warmup=warmup, iters=iters, cpu=cpu_model_name(),
        torch_version=torch.__version__, rows=rows, notes=notes, generate_rows=generate_rows,
        max_new_tokens=max_new_tokens if generate else None, num_beams=num_beams if generate else None,
        cache=cache.value)


@dataclass
class SpeedCheck:
    """A model's speedup as a latency table predicts it and as measured against the dense
    architecture, at one setting (``--target-speedup``'s promise, checked).

    Example::

        check = nnprune.check_speedup("runs/x", table)
        json.dumps(check.to_dict())
    """

    predicted: float
    # median of the per-round ratios (each round times both models back to back, so a busy
    # spell of a shared machine hits both); ratio of the medians beside it
    measured: float
    measured_medians: float
    measured_min: float  # ratio of the fastest forwards
    setting: dict[str, Any]
    heads_per_layer: list[int]
    ffn_dims_per_layer: list[int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_speedup(checkpoint: str | Path, table: LatencyTable, *, warmup: int = 5,
                  iters: int = 30) -> SpeedCheck:
    """The speedup ``table`` predicts for the checkpoint folder ``checkpoint`` (from the heads
    and FFN dimensions each layer keeps) and the one measured against the dense architecture
    (random weights), both at the table's own setting (device, dtype, batch, length, threads). A
    masked checkpoint is baked and compacted first, as it would ship.

    Returns:
        ``predicted``, ``measured`` (median of per-round ratios, both models timed back to back),
        ``measured_medians``, ``measured_min``, the ``setting`` and the kept
        ``heads_per_layer`` / ``ffn_dims_per_layer``; ``to_dict()`` is what fine-prune records.

    Example::

        table = nnprune.latency_table(model, batch_size=1, seq_len=128, threads=1)
        ...  # fine-prune to target_speedup=2.0 with this table, save to "runs/x"
        check = nnprune.check_speedup("runs/x", table)
        print(f"predicted {check.predicted:.2f}x, measured {check.measured:.2f}x")
    """
    setting = LatencySetting(**table.key["setting"])
    model = load_pretrained(checkpoint, bake_masks=True)
    if not is_compacted(model.config):
        compact_exactly(model)  # as fill does
    layout = model_layout(model)
    encoder = layout["stacks"]["encoder"]
    heads = [int(h) for h in encoder["attention"]["self"]["heads"]]  # per layer left
    dims = [int(d) for d in encoder["ffn"]["dims"]]
    width = (layout.get("hidden") or {}).get("size")  # a narrowed stream (issue 25)
    report = run_speed(checkpoint, model=model, device=setting.device, dtype=setting.dtype,
                       batch_sizes=[setting.batch_size], seq_lens=[setting.seq_len],
                       threads=setting.threads, warmup=warmup, iters=iters)
    row = report.rows[0]
    return SpeedCheck(predicted=table.model.speedup(heads, dims, width), measured=row.speedup_paired,
                      measured_medians=row.speedup, measured_min=row.speedup_min,
                      setting=setting.resolved().to_dict(),
                      heads_per_layer=heads, ffn_dims_per_layer=dims)


__all__ = ["SpeedCheck", "check_speedup", "run_speed"]
