"""Measuring a model: parameters, FLOPs, a latency table of this machine, speed against a
baseline. Each returns the typed result the CLI prints and writes as JSON (``to_dict()``)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from nnprune.api.architectures import check_positions
from nnprune.errors import NNPruneError
from nnprune.launch import from_main_process
from nnprune.measure.counting import ParamCount
from nnprune.measure.counting import count_parameters as _count_parameters
from nnprune.measure.flops import FlopCount
from nnprune.measure.flops import count_flops as _count_flops
from nnprune.measure.latency import LatencySetting, LatencyTable, check_table_fits, read_table
from nnprune.measure.latency import latency_table as _latency_table
from nnprune.measure.timing import CacheState, SpeedReport


logger = logging.getLogger(__name__)

def count_parameters(model: nn.Module, seq_len: int = 128) -> ParamCount:
    """Non-zero weights of the transformer layers' linear matrices against the dense ancestor's
    (the papers' convention: Q, K, V, attention output, FFN in / out; biases, embeddings and
    heads excluded), per layer, with heads and FFN dimensions kept and the FLOP speedup
    estimate at ``seq_len``. Works on masked, baked and compacted models.

    Example::

        c = nnprune.count_parameters(model)
        print(f"{c.density:.1%} of the encoder weights, {c.estimated_speedup:.2f}x")
    """
    return _count_parameters(model, seq_len=seq_len)


def count_flops(model: nn.Module, batch_size: int = 1, seq_len: int = 128,
                tgt_len: Optional[int] = None) -> FlopCount:
    """FLOPs of one whole forward at the model's current shapes (a compacted model counts its
    smaller layers), per layer; ``tgt_len`` for encoder-decoders (default ``seq_len``).

    Example::

        print(nnprune.count_flops(model, seq_len=128).total / 1e9, "GFLOPs")
    """
    return _count_flops(model, batch_size=batch_size, seq_len=seq_len, tgt_len=tgt_len)


def latency_table(model: "nn.Module | Any", *, batch_size: int = 1, seq_len: int = 128,
                  threads: Optional[int] = None, device: str = "cpu", dtype: str = "fp32",
                  setting: Optional[LatencySetting] = None, path: "str | Path | None" = None,
                  rebuild: bool = False, cache_dir: "str | Path | None" = None,
                  budget_s: float = 30.0,
                  progress: Optional[Callable[[int, int], None]] = None) -> LatencyTable:
    """How long one attention block takes by heads kept and one FFN by dimensions kept, measured
    on this machine for this setting (from the model's dense architecture: random weights, time
    depends on shapes only), cached; what ``target_speedup`` prices masks with. Under a
    distributed launch the main process measures it and every process gets its table.

    Args:
        model: a model or its config.
        setting: the whole inference setting at once (instead of batch_size ... dtype).
        path: a saved table (``to_dict()`` JSON, ``nnprune latency-table --json-file``) to read
            instead, checked against the model's shapes.
        rebuild: measure again even if a cached table exists.
        budget_s: about how long the measurement may take.
        progress: ``progress(done, total)`` over the variants timed.

    Example::

        table = nnprune.latency_table(model, batch_size=1, seq_len=128, threads=1)
        print(table.model.max_speedup)   # the most removing heads and FFN dims can give
        json.dump(table.to_dict(), open("table.json", "w"))   # reuse: attach_masks(latency_table=...)
    """
    config = config_of(model)
    if path is not None:
        table = read_table(path)
        check_table_fits(table, config)
        return table
    setting = setting or LatencySetting(device=device, dtype=dtype, batch_size=batch_size,
                                        seq_len=seq_len, threads=threads)
    # before anything is built or timed: what this machine or model cannot run
    if setting.device == "cuda" and not torch.cuda.is_available():
        raise NNPruneError("a latency table on cuda: no CUDA device is available to this torch")
    check_positions(config, [setting.seq_len], option="sequence length",
                    where=f"{getattr(config, 'model_type', 'the')} model")
    table = from_main_process(lambda: _latency_table(config, setting, cache_dir=cache_dir,
                                                     rebuild=rebuild, budget_s=budget_s,
                                                     progress=progress))
    logger.info("latency table %s (%s)", table.path,
                "cached" if table.cached else f"measured in {table.seconds:.0f} s")
    return table


def config_of(model: "nn.Module | Any") -> Any:
    """A model's config naming its class (a model built with ``from_config`` has an empty
    ``architectures``, and the latency table rebuilds the dense architecture from it)."""
    config = getattr(model, "config", model)
    if isinstance(model, nn.Module) and not getattr(config, "architectures", None):
        config = copy.deepcopy(config)
        config.architectures = [type(model).__name__]
    return config


def table_for(model: nn.Module, table: "LatencyTable | str | Path | None",
              setting: LatencySetting) -> LatencyTable:
    """The table a speed target uses: ``table`` itself (checked against the model's shapes), a
    table file, or the cached / measured one at ``setting``; one for every process of a
    distributed launch (measured side by side they would differ, and so would the masks)."""
    if isinstance(table, LatencyTable):
        check_table_fits(table, model.config)
        return table
    return latency_table(model, setting=setting, path=table)


def measure_speed(model: "nn.Module | str | Path", baseline: "nn.Module | str | Path | None" = None,
                  *, batch_sizes: Optional[Sequence[int]] = (1, 32),
                  seq_lens: Optional[Sequence[int]] = (128,), threads: Optional[int] = None,
                  device: str = "cpu", dtype: str = "fp32", quantize: Optional[str] = None,
                  onnx: bool = False, warmup: int = 5, iters: int = 20, keep_times: bool = False,
                  generate: bool = False, max_new_tokens: int = 64,
                  num_beams: int = 1, baseline_pytorch: bool = False,
                  cache: "CacheState | str | None" = None) -> SpeedReport:
    """Time ``model`` against ``baseline`` interleaved in one process (a busy spell hits both):
    latency, throughput, measured and FLOP speedups per (batch size, sequence length).

    Args:
        model: a module or a checkpoint folder (masked, baked, compacted or an ONNX export).
        baseline: the same; default the model's dense architecture rebuilt from its config.
        batch_sizes: the grid's batch sizes; ``None``: the device's default grid.
        seq_lens: the grid's sequence lengths; ``None``: the device's default grid.
        quantize: ``"int8"``: the model runs dynamically quantized (CPU).
        onnx: run both on onnxruntime (CPU, fp32).
        baseline_pytorch: with ``onnx``, the baseline runs in PyTorch fp32 instead (the
            speedup of shipping the ONNX model over serving the dense one in PyTorch).
        keep_times: keep every per-forward time in the rows.
        cache: ``"warm"`` (the default): each timed forward follows an untimed one of the same
            model, as when a server runs only that model; ``"cold"``: it follows the other
            model's, which evicted its weights from the CPU's caches (a small model times slower).
        generate: encoder-decoders: also time ``generate()`` of exactly ``max_new_tokens``
            tokens with ``num_beams`` beams.

    Example::

        report = nnprune.measure_speed(small, batch_sizes=[1], seq_lens=[128], threads=1)
        print(report.rows[0].speedup)
    """
    from nnprune.api.speed import run_speed

    is_module = isinstance(model, nn.Module)
    return run_speed("model" if is_module else model,
                     None if isinstance(baseline, nn.Module) else baseline,
                     model=model if is_module else None,
                     baseline=baseline if isinstance(baseline, nn.Module) else None,
                     device=device, batch_sizes=batch_sizes, seq_lens=seq_lens, threads=threads,
                     dtype=dtype, quantize=quantize, onnx=onnx, warmup=warmup, iters=iters,
                     keep_times=keep_times, generate=generate, max_new_tokens=max_new_tokens,
                     num_beams=num_beams, baseline_pytorch=baseline_pytorch, cache=cache)


__all__ = ["count_flops", "count_parameters", "latency_table", "measure_speed", "table_for"]
