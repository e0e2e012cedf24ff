"""Timing primitives: runners that bind a model to one input shape, interleaved timing, and the
report rows of ``nnprune speed`` (loading checkpoints and choosing runners is
:mod:`nnprune.workflows.speed`).

Both models run **in the same process, interleaved**: after warm-up, every iteration times the
baseline and the model once each, so that a slow spell of a shared machine hits both.

With a **warm cache** (:attr:`CacheState.WARM`, the default) each timed forward follows an
untimed one of the same model, so it finds its own weights in the CPU's caches, as a server
running only that model does; with a **cold** one (:attr:`CacheState.COLD`) it follows the other
model's forward, which evicted them. A small model's weights fit the caches, the dense model's
do not, so its cold speedup is lower: on this project's 2-core Xeon (4 MiB of L2 a core) an
8x-pruned MiniLM timed 8.5x cold and 9.3x warm at batch 1 (docs/commands/speed.md).

Latency is the median (and 90th percentile) of those per-forward times;
throughput is examples per second at the median; the speedup is the ratio of medians (the
report also gives the median of per-round ratios and the ratio of the fastest forwards, which
resist a busy machine better). The theoretical speedup is the ratio of
whole-forward FLOPs (:mod:`nnprune.measure.flops`) and efficiency is measured/theoretical.

CPU times use ``time.perf_counter`` around one forward (``torch.inference_mode``, the thread
count set with ``torch.set_num_threads``); CUDA times use CUDA events with a synchronize before
and after.

Encoder-decoder (seq2seq LM) models are timed on one teacher-forced forward (the target as long
as the source, as their FLOPs count it). :class:`GenerateRunner` times a full
``model.generate`` (greedy or beam search, ``do_sample=False``) at the same (batch, source
length) grid, interleaved the same way: both models get one generation config (the model's own,
with ``max_new_tokens = min_new_tokens = N``), so EOS is suppressed until N tokens and every
sequence of both models is exactly N new tokens long, which is checked on the outputs. Those rows
report latency, generated tokens per second (``batch * N / median``) and the speedup.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnprune.errors import NNPruneError
from nnprune.measure.flops import FlopProfile, make_inputs, takes_decoder_ids
from nnprune.pruning_core.config import parse_enum

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class CacheState(str, Enum):
    """What each timed forward finds in the caches (see the module doc).

    Example::

        report = nnprune.measure_speed(small, cache=nnprune.CacheState.COLD)
        state = nnprune.CacheState.parse("warm")   # from text: a one-line error if unknown
    """

    WARM = "warm"  # its own previous forward's weights: steady serving of one model
    COLD = "cold"  # the other model's: a model called rarely, or two sharing a process

    @classmethod
    def parse(cls, value: Any, name: str = "cache") -> "CacheState":
        """``value`` (a member, or its value in any case) as a member; anything else is a
        one-line :class:`~nnprune.NNPruneError` naming ``name`` and the known values."""
        return parse_enum(cls, value, name)


DEFAULT_CACHE = CacheState.WARM  # nnprune speed / measure_speed when none is asked for


def default_batch_sizes(device: str) -> tuple[int, ...]:
    return (1, 128) if device == "cuda" else (1, 32)


DEFAULT_SEQ_LENS = (128, 384)


# ------------------------------------------------------------------------------------ runners

class TorchRunner:
    """One PyTorch model on one device/dtype, with the inputs of one shape bound."""

    runtime = "pytorch"

    def __init__(self, model: nn.Module, device: torch.device, label: str) -> None:
        self.model, self.device, self.label = model, device, label

    def bind(self, inputs: dict[str, Any]) -> Callable[[], Any]:
        feed = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        model = self.model

        def run() -> Any:
            return model(**feed)
        return run


class GenerateRunner:
    """``model.generate`` of one PyTorch seq2seq LM, with the source batch of one shape bound.

    Every call generates exactly ``generation_config.max_new_tokens`` tokens per sequence (the
    config's ``min_new_tokens`` suppresses EOS until then); :meth:`new_tokens` checks the last
    output and returns that number.
    """

    runtime = "pytorch"

    def __init__(self, model: nn.Module, device: torch.device, label: str,
                 generation_config: Any) -> None:
        self.model, self.device, self.label = model, device, label
        self.generation_config = generation_config
        self.last: torch.Tensor | None = None

    def bind(self, inputs: dict[str, Any]) -> Callable[[], Any]:
        ids = inputs["input_ids"].to(self.device)
        mask = inputs["attention_mask"].to(self.device)
        cfg = self.generation_config
        # One explicit start token: every output is that token followed by the new tokens.
        dec = torch.full((ids.shape[0], 1), int(cfg.decoder_start_token_id), dtype=ids.dtype,
                         device=self.device)
        model = self.model

        def run() -> Any:
            self.last = model.generate(input_ids=ids, attention_mask=mask, decoder_input_ids=dec,
                                       generation_config=cfg)
            return self.last
        return run

    def new_tokens(self) -> int:
        """New tokens per sequence of the last ``generate``; NNPruneError unless it is exactly
        ``max_new_tokens`` for every sequence (no EOS before the last position)."""
        out, want = self.last, int(self.generation_config.max_new_tokens)
        if out is None:
            raise NNPruneError(f"{self.label}: generate has not run")
        seqs = out.sequences if hasattr(out, "sequences") else out
        new = seqs[:, 1:]
        eos = self.generation_config.eos_token_id
        eos_ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        early = bool(eos_ids) and bool(torch.isin(new[:, :-1], torch.tensor(eos_ids, device=new.device)).any())
        if new.shape[1] != want or early:
            raise NNPruneError(f"{self.label}: generate produced {new.shape[1]} new tokens"
                               f"{' (a sequence ended early)' if early else ''}, not the {want} "
                               f"forced with min_new_tokens; its timing would not be comparable")
        return int(new.shape[1])


def generation_config_for(model: nn.Module, max_new_tokens: int, num_beams: int) -> Any:
    """The model's generation config set to produce exactly ``max_new_tokens`` tokens per sequence
    with ``num_beams`` beams and no sampling (used for both the model and its baseline)."""
    from transformers import GenerationConfig

    base = getattr(model, "generation_config", None)
    cfg = copy.deepcopy(base) if base is not None else GenerationConfig.from_model_config(model.config)
    cfg.update(max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, num_beams=num_beams,
               do_sample=False, num_return_sequences=1, return_dict_in_generate=False,
               use_cache=True)
    if cfg.decoder_start_token_id is None:
        cfg.decoder_start_token_id = cfg.bos_token_id if cfg.bos_token_id is not None else getattr(
            model.config, "decoder_start_token_id", None)
    if cfg.decoder_start_token_id is None:
        raise NNPruneError("--generate: the model's config has no decoder_start_token_id (nor bos_token_id)")
    return cfg


def check_can_generate(model: nn.Module, label: str) -> None:
    """NNPruneError unless ``model`` is an encoder-decoder LM with ``generate``."""
    can = getattr(model, "can_generate", None)
    if not (takes_decoder_ids(model) and callable(getattr(model, "generate", None))
            and (can is None or can())):
        raise NNPruneError(f"--generate times generate() of encoder-decoder (seq2seq LM) models; "
                           f"{label} is a {type(model).__name__}")


# ------------------------------------------------------------------------------------ timing

def _timer(device: torch.device) -> Callable[[Callable[[], Any]], float]:
    if device.type == "cuda":
        def cuda_time(fn: Callable[[], Any]) -> float:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))  # ms
        return cuda_time

    def cpu_time(fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1000.0
    return cpu_time


def time_interleaved(fns: dict[str, Callable[[], Any]], warmup: int, iters: int,
                     device: torch.device | None = None, *,
                     cache: CacheState) -> dict[str, list[float]]:
    """Per-forward times (ms) of each function: ``warmup`` untimed rounds, then ``iters`` rounds
    each timing every function once. ``CacheState.WARM``: each timed call right after an untimed
    one of the same function (twice the calls), the order alternating every round;
    ``CacheState.COLD``: the same order every round, so each call follows another function's.
    (Alternating the order with one call each, as nnprune timed before the cache was a setting,
    puts half of a function's calls after its own: a median between the two.)"""
    timer = _timer(device or torch.device("cpu"))
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    warm = cache is CacheState.WARM
    for i in range(iters):
        for n in (names[::-1] if warm and i % 2 else names):
            if warm:
                fns[n]()
            times[n].append(timer(fns[n]))
    return times


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated ``q``-th percentile (0..100)."""
    s = sorted(values)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# ------------------------------------------------------------------------------------ report

@dataclass
class SpeedRow:
    batch_size: int
    seq_len: int
    baseline_ms: float  # median latency of one forward
    baseline_p90_ms: float
    model_ms: float
    model_p90_ms: float
    baseline_throughput: float  # examples / s at the median
    model_throughput: float
    speedup: float  # baseline_ms / model_ms
    baseline_gflops: float
    model_gflops: float
    theoretical_speedup: float  # baseline FLOPs / model FLOPs
    efficiency: float  # speedup / theoretical_speedup
    # Robust to a shared machine: the median of per-round ratios (each round times both models
    # back to back, under the same load) and the ratio of the fastest forwards.
    speedup_paired: float = float("nan")
    speedup_min: float = float("nan")
    baseline_times_ms: list[float] = field(default_factory=list, repr=False)
    model_times_ms: list[float] = field(default_factory=list, repr=False)


@dataclass
class GenerateRow:
    """Full ``generate`` of ``new_tokens`` tokens per sequence from ``seq_len`` source tokens."""

    batch_size: int
    seq_len: int  # source tokens
    new_tokens: int  # generated per sequence, checked to be the same on both models
    num_beams: int
    baseline_ms: float  # median latency of one generate call
    baseline_p90_ms: float
    model_ms: float
    model_p90_ms: float
    baseline_tokens_per_s: float  # batch * new_tokens / median latency
    model_tokens_per_s: float
    speedup: float  # baseline_ms / model_ms
    speedup_paired: float = float("nan")
    speedup_min: float = float("nan")
    baseline_times_ms: list[float] = field(default_factory=list, repr=False)
    model_times_ms: list[float] = field(default_factory=list, repr=False)


@dataclass
class SpeedReport:
    """Interleaved timing of a model against its baseline, one row per (batch size, sequence
    length) (:func:`nnprune.measure_speed`, ``nnprune speed``).

    Example::

        report = nnprune.measure_speed(small, batch_sizes=[1, 32], seq_lens=[128])
        for row in report.rows:
            print(row.batch_size, row.model_ms, row.speedup)
    """

    model: str
    model_kind: str
    baseline: str
    runtime: str  # "pytorch" / "onnxruntime"
    device: str
    dtype: str
    quantize: str | None
    threads: int
    warmup: int
    iters: int
    cpu: str
    torch_version: str
    rows: list[SpeedRow]
    notes: list[str] = field(default_factory=list)
    generate_rows: list[GenerateRow] = field(default_factory=list)
    max_new_tokens: int | None = None  # generate settings (None: generate not timed)
    num_beams: int | None = None
    cache: str = DEFAULT_CACHE.value  # what each timed forward found in the caches

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def compare(model_runner: Any, baseline_runner: Any, model_flops: FlopProfile,
            baseline_flops: FlopProfile, input_model: nn.Module, *,
            batch_sizes: Sequence[int], seq_lens: Sequence[int], warmup: int, iters: int,
            device: torch.device, cache: CacheState, keep_times: bool = False) -> list[SpeedRow]:
    """Time both runners interleaved at every (batch, seq); ``input_model`` builds the inputs."""
    if warmup < 0 or iters < 1:
        raise NNPruneError(f"need warmup >= 0 and iters >= 1 (got {warmup}, {iters})")
    rows: list[SpeedRow] = []
    torch_side = "pytorch" in (model_runner.runtime, baseline_runner.runtime)
    for b in batch_sizes:
        for s in seq_lens:
            inputs = make_inputs(input_model, b, s, seed=b * 100003 + s)
            with torch.inference_mode() if torch_side else nullcontext():
                fns = {"baseline": baseline_runner.bind(inputs), "model": model_runner.bind(inputs)}
                times = time_interleaved(fns, warmup, iters, device, cache=cache)
            lat = latency_summary(times["baseline"], times["model"], keep_times)
            bf = baseline_flops.count(b, s).total
            mf = model_flops.count(b, s).total
            theo = bf / mf if mf else float("inf")
            rows.append(SpeedRow(
                batch_size=b, seq_len=s, **lat,
                baseline_throughput=_per_second(b, lat["baseline_ms"]),
                model_throughput=_per_second(b, lat["model_ms"]),
                baseline_gflops=bf / 1e9, model_gflops=mf / 1e9, theoretical_speedup=theo,
                efficiency=lat["speedup"] / theo if theo else float("nan")))
    return rows


def latency_summary(bt: Sequence[float], mt: Sequence[float], keep_times: bool) -> dict[str, Any]:
    """Baseline and model latency (median, p90) and speedups of interleaved timings (ms):
    the ratio of medians, the median of per-round ratios, and the ratio of the fastest runs."""
    b_ms, m_ms = statistics.median(bt), statistics.median(mt)
    return {
        "baseline_ms": b_ms, "baseline_p90_ms": percentile(bt, 90),
        "model_ms": m_ms, "model_p90_ms": percentile(mt, 90),
        "speedup": b_ms / m_ms if m_ms else float("inf"),
        "speedup_paired": (statistics.median(x / y for x, y in zip(bt, mt))
                           if min(mt) > 0 else float("inf")),
        "speedup_min": min(bt) / min(mt) if min(mt) > 0 else float("inf"),
        "baseline_times_ms": list(bt) if keep_times else [],
        "model_times_ms": list(mt) if keep_times else [],
    }


def _per_second(count: float, ms: float) -> float:
    return 1000.0 * count / ms if ms else float("inf")


def compare_generate(model_runner: GenerateRunner, baseline_runner: GenerateRunner,
                     input_model: nn.Module, *, batch_sizes: Sequence[int], seq_lens: Sequence[int],
                     warmup: int, iters: int, device: torch.device, cache: CacheState,
                     keep_times: bool = False) -> list[GenerateRow]:
    """Time both models' ``generate`` interleaved at every (batch, source length), with the same
    source ids as :func:`compare`; checks both produced exactly ``max_new_tokens`` tokens."""
    if warmup < 0 or iters < 1:
        raise NNPruneError(f"need warmup >= 0 and iters >= 1 (got {warmup}, {iters})")
    n_beams = int(model_runner.generation_config.num_beams)
    rows: list[GenerateRow] = []
    for b in batch_sizes:
        for s in seq_lens:
            inputs = make_inputs(input_model, b, s, seed=b * 100003 + s)
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fns = {"baseline": baseline_runner.bind(inputs), "model": model_runner.bind(inputs)}
                times = time_interleaved(fns, warmup, iters, device, cache=cache)
            n = model_runner.new_tokens()
            if baseline_runner.new_tokens() != n:  # pragma: no cover - both are checked against N
                raise NNPruneError("the model and its baseline generated different numbers of tokens")
            lat = latency_summary(times["baseline"], times["model"], keep_times)
            rows.append(GenerateRow(
                batch_size=b, seq_len=s, new_tokens=n, num_beams=n_beams, **lat,
                baseline_tokens_per_s=_per_second(b * n, lat["baseline_ms"]),
                model_tokens_per_s=_per_second(b * n, lat["model_ms"])))
    return rows


