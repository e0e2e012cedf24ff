"""Measured speed of a (pruned, compacted, quantized, exported) model against its dense baseline.

Both models run **in the same process, interleaved**: after warm-up, every iteration times the
baseline and the model once each, alternating which goes first, so that a slow spell of a shared
machine hits both. Latency is the median (and 90th percentile) of those per-forward times;
throughput is examples per second at the median; the speedup is the ratio of medians (the
report also gives the median of per-round ratios and the ratio of the fastest forwards, which
resist a busy machine better). The theoretical speedup is the ratio of
whole-forward FLOPs (:mod:`nnprune.pruning_core.flops`) and efficiency is measured/theoretical.

CPU times use ``time.perf_counter`` around one forward (``torch.inference_mode``, the thread
count set with ``torch.set_num_threads``); CUDA times use CUDA events with a synchronize before
and after. ONNX models run on onnxruntime's CPU provider; with ``onnx=True`` the baseline is
exported and run by onnxruntime too, so the ratio measures pruning, not the runtime.

Encoder-decoder (seq2seq LM) models are timed on one teacher-forced forward (the target as long
as the source, as their FLOPs count it). With ``generate=True`` they are also timed on a full
``model.generate`` (greedy or beam search, ``do_sample=False``) at the same (batch, source
length) grid, interleaved the same way: both models get one generation config (the model's own,
with ``max_new_tokens = min_new_tokens = N``), so EOS is suppressed until N tokens and every
sequence of both models is exactly N new tokens long, which is checked on the outputs. Those rows
report latency, generated tokens per second (``batch * N / median``) and the speedup.

The dense baseline is, unless given, the original architecture rebuilt at full size from the
config (``nnprune_original`` undoes a compaction's sizes) with random weights: time depends only
on shapes.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnprune.errors import NNPruneError
from nnprune.pruning_core.flops import FlopProfile, flop_profile, make_inputs, takes_decoder_ids

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ONNX_META = "nnprune_onnx.json"
ONNX_MODEL = "model.onnx"
ONNX_INT8 = "model.int8.onnx"


def default_batch_sizes(device: str) -> tuple[int, ...]:
    return (1, 128) if device == "cuda" else (1, 32)


DEFAULT_SEQ_LENS = (128, 384)


# ------------------------------------------------------------------------------------ loading

@dataclass
class CheckpointModel:
    """A checkpoint loaded for timing or export, with what kind it is."""

    model: nn.Module
    kind: str  # "masked", "compacted", "plain"
    notes: list[str] = field(default_factory=list)


def load_checkpoint_model(path: str | Path) -> CheckpointModel:
    """Load a masked, bertarized, compacted or plain checkpoint folder for timing/export.

    Uses :func:`~nnprune.pruning_core.checkpoint.load_model` (what ``nnprune.load_pretrained``
    wraps), which rebuilds compacted layouts (``config.nnprune_layout``) and says whether the
    checkpoint is masked.
    """
    from nnprune.pruning_core.checkpoint import load_model

    loaded = load_model(path)
    config = loaded.model.config
    if getattr(config, "nnprune_layout", None) and not loaded.is_masked:
        return CheckpointModel(loaded.model.eval(), "compacted")
    if loaded.is_masked:
        return CheckpointModel(loaded.model, "masked", [(
            "masked checkpoint: not compacted, its layers keep their full size (and compute their "
            "masks every forward), so it will not be faster; timed as is. Compact it first.")])
    notes = []
    try:
        from nnprune.pruning_core.structure import analyze_structure

        st = analyze_structure(loaded.model)
        heads = sum(len(u.removable) for u in st.attention)
        dims = sum(len(u.removable) for u in st.ffn)
        if heads or dims:
            notes.append(f"plain full-size checkpoint with {heads} all-zero heads and {dims} all-zero "
                         f"FFN dims that are still computed; compact it to make it faster")
    except NNPruneError:
        pass
    kind = "compacted" if getattr(config, "nnprune_original", None) else "plain"
    return CheckpointModel(loaded.model, kind, notes)


def dense_config(config: Any) -> Any:
    """A copy of ``config`` at the dense ancestor's sizes, without nnprune layout entries."""
    cfg = copy.deepcopy(config)
    for k, v in (getattr(cfg, "nnprune_original", None) or {}).items():
        setattr(cfg, k, v)
    for k in ("nnprune_layout", "nnprune_original", "auto_map"):
        if k in cfg.__dict__:
            del cfg.__dict__[k]
    return cfg


def dense_baseline(model: nn.Module, seed: int = 0) -> nn.Module:
    """The original architecture of ``model`` at full size, randomly initialized (eval mode)."""
    from nnprune.pruning_core.checkpoint import model_class_for

    cfg = dense_config(model.config)
    cls = type(model)
    if cls.__name__.startswith("NNPrune") or not hasattr(cls, "config_class"):
        cls = model_class_for(cfg)  # the stock class of a remote-code compacted model
    torch.manual_seed(seed)
    return cls(cfg).eval()


def quantize_int8(model: nn.Module) -> nn.Module:
    """PyTorch dynamic int8 quantization of every ``nn.Linear`` (CPU; weights int8 per tensor,
    activations quantized on the fly). Returns a new model; ``model`` is left as it was.

    Uses ``torch.ao.quantization.quantize_dynamic`` (deprecated in favour of torchao, still shipped
    with torch 2.13 and the fastest CPU path without ``torch.compile``). A quantized model cannot
    be saved for stock Hugging Face loading: quantize after loading, or ship the ONNX int8 export.
    """
    from nnprune.pruning_core.masked import MaskedLinear
    from nnprune.pruning_core.structure import effective_weight

    q = copy.deepcopy(model).float().eval()
    # Masked layers are folded into plain ones first (their masks applied).
    for name, mod in list(q.named_modules()):
        if isinstance(mod, MaskedLinear):
            w, b = effective_weight(mod)
            lin = nn.Linear(mod.in_features, mod.out_features, b is not None)
            with torch.no_grad():
                lin.weight.copy_(w)
                if b is not None:
                    lin.bias.copy_(b)
            parent_name, _, child = name.rpartition(".")
            setattr(q.get_submodule(parent_name) if parent_name else q, child, lin)
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError:  # pragma: no cover - removed in some future torch
        raise NNPruneError("this torch has no torch.ao.quantization.quantize_dynamic; use "
                           "`nnprune export-onnx --quantize int8` and `speed --onnx` instead") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(q, {nn.Linear}, dtype=torch.qint8)


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


class OrtRunner:
    """An ONNX model on onnxruntime's CPU provider."""

    runtime = "onnxruntime"

    def __init__(self, onnx_path: str | Path, threads: int, label: str) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.label = label

    def bind(self, inputs: dict[str, Any]) -> Callable[[], Any]:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise NNPruneError(f"ONNX model {self.label} needs inputs {missing} that are not built")
        feed = {n: inputs[n].cpu().numpy() for n in self.input_names}
        session = self.session

        def run() -> Any:
            return session.run(None, feed)
        return run


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
                     device: torch.device | None = None) -> dict[str, list[float]]:
    """Per-forward times (ms) of each function: ``warmup`` untimed rounds, then ``iters`` rounds
    each timing every function once, alternating the order every round."""
    timer = _timer(device or torch.device("cpu"))
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(iters):
        for n in (names if i % 2 == 0 else names[::-1]):
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
            device: torch.device, keep_times: bool = False) -> list[SpeedRow]:
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
                times = time_interleaved(fns, warmup, iters, device)
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
                     warmup: int, iters: int, device: torch.device,
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
                times = time_interleaved(fns, warmup, iters, device)
            n = model_runner.new_tokens()
            if baseline_runner.new_tokens() != n:  # pragma: no cover - both are checked against N
                raise NNPruneError("the model and its baseline generated different numbers of tokens")
            lat = latency_summary(times["baseline"], times["model"], keep_times)
            rows.append(GenerateRow(
                batch_size=b, seq_len=s, new_tokens=n, num_beams=n_beams, **lat,
                baseline_tokens_per_s=_per_second(b * n, lat["baseline_ms"]),
                model_tokens_per_s=_per_second(b * n, lat["model_ms"])))
    return rows


def _is_onnx_dir(path: Path) -> bool:
    return path.is_dir() and (path / ONNX_MODEL).is_file() and (path / ONNX_META).is_file()


def _read_onnx_meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / ONNX_META).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise NNPruneError(f"{path / ONNX_META} is unreadable: {exc}") from None


def _config_model(path: Path) -> nn.Module:
    """A randomly initialized model of the (dense) architecture described by ``path/config.json``."""
    from transformers import AutoConfig

    from nnprune.pruning_core.checkpoint import model_class_for

    cfg = dense_config(AutoConfig.from_pretrained(str(path)))
    torch.manual_seed(0)
    return model_class_for(cfg)(cfg).eval()


def run_speed(model_path: str | Path, baseline_path: str | Path | None = None, *,
              device: str = "cpu", batch_sizes: Sequence[int] | None = None,
              seq_lens: Sequence[int] | None = None, threads: int | None = None,
              dtype: str = "fp32", quantize: str | None = None, onnx: bool = False,
              warmup: int = 5, iters: int = 20, keep_times: bool = False,
              model: nn.Module | None = None, baseline: nn.Module | None = None,
              generate: bool = False, max_new_tokens: int = 64, num_beams: int = 1) -> SpeedReport:
    """Load (or take) a model and its baseline and time them; see module doc.

    ``model``/``baseline`` may be given as modules instead of paths (``model_path`` then only
    names it in the report). ``generate`` (seq2seq LMs, PyTorch only) also times ``generate`` of
    exactly ``max_new_tokens`` tokens with ``num_beams`` beams (``report.generate_rows``).
    """
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
    if generate and onnx:
        raise NNPruneError("--generate times PyTorch generate(); it cannot be combined with --onnx")
    if generate and (max_new_tokens < 1 or num_beams < 1):
        raise NNPruneError(f"--max-new-tokens and --num-beams must be >= 1 "
                           f"(got {max_new_tokens}, {num_beams})")
    batch_sizes = tuple(batch_sizes or default_batch_sizes(device))
    seq_lens = tuple(seq_lens or DEFAULT_SEQ_LENS)
    if min(batch_sizes) < 1 or min(seq_lens) < 1:
        raise NNPruneError("batch sizes and sequence lengths must be >= 1")
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
            if model is None and onnx and _is_onnx_dir(mpath):
                meta = _read_onnx_meta(mpath)
                kind = meta.get("kind", "onnx")
                m_profile = FlopProfile.from_dict(meta["flop_profile"])
                input_model = _config_model(mpath)
                onnx_file = mpath / ONNX_MODEL
                if quantize:
                    onnx_file = mpath / ONNX_INT8
                    if not onnx_file.is_file():
                        from nnprune.pruning_core.onnx_export import quantize_onnx_int8

                        onnx_file = quantize_onnx_int8(mpath / ONNX_MODEL, tmp / ONNX_INT8)
                torch_model = None
            else:
                if model is None and _is_onnx_dir(mpath) and not (mpath / "model.safetensors").exists():
                    raise NNPruneError(f"{mpath} is an ONNX export: time it with --onnx")
                if model is None:
                    cm = load_checkpoint_model(mpath)
                    torch_model, kind = cm.model, cm.kind
                    notes += cm.notes
                else:
                    torch_model = model.eval()
                if generate:
                    check_can_generate(torch_model, str(mpath))
                m_profile = flop_profile(torch_model)
                input_model = torch_model
                if onnx:
                    from nnprune.pruning_core.onnx_export import export_onnx

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
                if _is_onnx_dir(bpath):
                    if not onnx:
                        raise NNPruneError(f"baseline {bpath} is an ONNX export; add --onnx")
                    b_meta = _read_onnx_meta(bpath)
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
                if onnx:
                    from nnprune.pruning_core.onnx_export import export_onnx

                    b_onnx = export_onnx(base_model, tmp / "baseline", kind="baseline").model_path
            # ---- runners
            if onnx:
                if quantize:
                    notes.append("model: onnxruntime dynamic int8; baseline stays fp32; FLOPs (and so "
                                 "efficiency) ignore int8")
                m_runner: Any = OrtRunner(onnx_file, n_threads, str(mpath))
                b_runner: Any = OrtRunner(b_onnx, n_threads, base_label)
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
                           device=dev, keep_times=keep_times)
            generate_rows: list[GenerateRow] = []
            if generate:
                # One generation config (the model's, forced to N tokens) for both models.
                gen_cfg = generation_config_for(torch_model, max_new_tokens, num_beams)
                generate_rows = compare_generate(
                    GenerateRunner(tm, dev, str(mpath), gen_cfg),
                    GenerateRunner(tb, dev, base_label, gen_cfg), input_model,
                    batch_sizes=batch_sizes, seq_lens=seq_lens, warmup=warmup, iters=iters,
                    device=dev, keep_times=keep_times)
            if kind == "masked" and torch_model is not None:
                from nnprune.pruning_core.flops import compacted_profile

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
        max_new_tokens=max_new_tokens if generate else None, num_beams=num_beams if generate else None)
