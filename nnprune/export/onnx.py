"""ONNX export of (compacted) models, checked against PyTorch, with optional int8 quantization.

The export folder holds:

- ``model.onnx``: fp32, dynamic batch and sequence (and target) axes; compacted layers keep their
  own head count / FFN size (attention reshapes with ``-1`` heads, so nothing is baked in). Inputs:
  ``input_ids``, ``attention_mask``, ``token_type_ids`` for models with segment embeddings (BERT,
  ELECTRA: pair tasks such as MNLI and SQuAD need them) and ``decoder_input_ids`` for seq2seq LMs;
- ``model.int8.onnx`` with ``quantize="int8"``: onnxruntime dynamic quantization (int8 weights,
  activations quantized at run time). This is the shippable int8 artefact: a PyTorch dynamic-int8
  model has no stock Hugging Face save/load format (its state dict holds packed params), so
  PyTorch int8 is applied after loading instead (:func:`nnprune.measure.quantize.quantize_int8`);
- ``config.json`` (and the tokenizer, when the source folder has one) for pre/post-processing;
- ``nnprune_onnx.json``: inputs, outputs, opset, the checked differences, and the model's
  :class:`~nnprune.measure.flops.FlopProfile` so ``nnprune speed --onnx`` can compute
  theoretical speedups without the PyTorch weights.

Export uses the TorchScript-based exporter (``dynamo=False``): the dynamo exporter needs the
``onnxscript`` package, which is not a dependency.

Running: :class:`OrtRunner` times an ONNX model (``nnprune speed --onnx``); :class:`OrtModel` puts
one behind a PyTorch ``forward`` so the ``Trainer`` evaluation loop scores it
(``nnprune evaluate --onnx``).
"""

from __future__ import annotations

import copy
import inspect
import json
import warnings
from dataclasses import asdict, dataclass, field
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from nnprune.errors import NNPruneError
from nnprune.measure.flops import flop_profile, make_inputs, takes_decoder_ids
from nnprune.pruning_core.checkpoint import load_checkpoint_model

ONNX_META = "nnprune_onnx.json"
ONNX_MODEL = "model.onnx"
ONNX_INT8 = "model.int8.onnx"

DEFAULT_OPSET = 17
#: onnxruntime graph optimizers that nnprune's sessions leave off (``disabled_optimizers``; also
#: written to ``nnprune_onnx.json`` as ``ort_disabled_optimizers`` for a server's own session).
#: SkipLayerNormFusion folds each sublayer's residual add and LayerNorm into one
#: SkipLayerNormalization node, whose CPU kernel (onnxruntime 1.32) is about six times slower than
#: the Add + LayerNormalization it replaces (187 against 32 us at 128 x 288, one thread). It fuses
#: in the int8 graphs (the fp32 ones fold the add into the MatMul first), where leaving it off made
#: a 5x MiniLM 1.47x faster at batch 1 x 128 and the dense one 1.17x
#: (``benchmarks/ort_fusions.py``, docs/commands/export-onnx.md).
ORT_DISABLED_OPTIMIZERS: tuple[str, ...] = ("SkipLayerNormFusion",)
FP32_TOLERANCE = 1e-3
_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "decoder_input_ids")
_SKIP_OUTPUTS = {"loss", "past_key_values", "hidden_states", "attentions", "cross_attentions",
                 "encoder_hidden_states", "encoder_attentions", "decoder_hidden_states",
                 "decoder_attentions", "encoder_last_hidden_state"}


@dataclass
class OnnxExport:
    """Where an ONNX export went and how close it is to PyTorch (:func:`nnprune.export_onnx`).

    Example::

        exp = nnprune.export_onnx(small, "model-onnx", quantize="int8")
        print(exp.model_path, exp.int8_path, exp.max_abs_diff)
    """

    directory: Path
    model_path: Path
    int8_path: Path | None
    opset: int
    input_names: list[str]
    output_names: list[str]
    max_abs_diff: float  # fp32 ONNX vs PyTorch on the check batch
    int8_max_abs_diff: float | None  # int8 ONNX vs PyTorch fp32 (informative)
    check_batch: list[int]  # [batch, seq] of the check
    notes: list[str]
    # onnxruntime graph optimizers to leave off when serving it (ORT_DISABLED_OPTIMIZERS)
    ort_disabled_optimizers: list[str] = field(default_factory=lambda: list(ORT_DISABLED_OPTIMIZERS))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("directory", "model_path", "int8_path"):
            out[k] = None if out[k] is None else str(out[k])
        return out


class _Export(nn.Module):
    """Positional inputs -> tuple of named output tensors, for the tracer."""

    def __init__(self, model: nn.Module, input_names: list[str], output_names: list[str],
                 no_cache: bool) -> None:
        super().__init__()
        self.model, self.input_names, self.output_names = model, input_names, output_names
        self.no_cache = no_cache

    def forward(self, *args: torch.Tensor):
        kwargs: dict[str, Any] = dict(zip(self.input_names, args))
        if self.no_cache:
            kwargs["use_cache"] = False
        out = self.model(**kwargs, return_dict=True)
        return tuple(out[n] for n in self.output_names)


def _prepare(model: nn.Module, notes: list[str]) -> nn.Module:
    """An fp32 eval copy; a masked model gets its masks applied and is compacted."""
    from nnprune.pruning_core.masked import MaskedLinear

    m = copy.deepcopy(model).float().eval()
    if any(isinstance(x, MaskedLinear) for x in m.modules()):
        from nnprune.pruning_core.compact import compact_model
        from nnprune.pruning_core.pruner import unpatch_model

        unpatch_model(m, apply_masks=True)
        report = compact_model(m)
        notes.append(f"masked model: masks applied and compacted before export "
                     f"({report.heads_removed} heads, {report.ffn_dims_removed} FFN dims removed)")
    return m


def _takes_token_types(model: nn.Module) -> bool:
    """Whether the export takes ``token_type_ids``: the forward accepts them, the config has two
    or more segment types and the model family's tokenizer gives them (BERT, ELECTRA). RoBERTa-
    family tokenizers give none (their models only ever see zeros, which the graph then builds
    itself, even where a config declares two types), nor does DeBERTa-v3 have the embedding."""
    try:
        names = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - HF models always have a signature
        return False
    config = model.config
    if "token_type_ids" not in names or int(getattr(config, "type_vocab_size", 0) or 0) < 2:
        return False
    return _tokenizer_gives_token_types(config) is not False


def _tokenizer_gives_token_types(config: Any) -> bool | None:
    """Whether the tokenizer class of ``config`` (its ``tokenizer_class``, else its model type's)
    lists ``token_type_ids`` among its outputs; ``None`` when unknown (remote code, ...)."""
    try:
        from transformers.models.auto.tokenization_auto import (TOKENIZER_MAPPING_NAMES,
                                                                tokenizer_class_from_name)

        name = getattr(config, "tokenizer_class", None) or TOKENIZER_MAPPING_NAMES.get(
            getattr(config, "model_type", None))
        if isinstance(name, (tuple, list)):  # (slow, fast) in older transformers
            name = next((n for n in name if n), None)
        cls = tokenizer_class_from_name(name) if name else None
    except Exception:  # noqa: BLE001 - a private transformers table: any change means unknown
        return None
    inputs = getattr(cls, "model_input_names", None)
    return None if inputs is None else "token_type_ids" in inputs


def _pair_token_types(input_ids: torch.Tensor) -> torch.Tensor:
    """``(batch, seq)`` segment ids of a sentence pair: 0 on the first half, 1 on the second, so
    the export traces (and the check exercises) the second segment's embedding."""
    types = torch.zeros_like(input_ids)
    types[:, input_ids.shape[1] // 2:] = 1
    return types


def _outputs(model: nn.Module, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        out = model(**inputs, return_dict=True)
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor) and k not in _SKIP_OUTPUTS}


def _ort_outputs(path: Path, feed: dict[str, Any]) -> list[Any]:
    sess = cpu_session(path, threads=0)
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, {n: feed[n] for n in names})


def _max_diff(ref: dict[str, torch.Tensor], got: list[Any]) -> float:
    import numpy as np

    diff = 0.0
    for r, g in zip(ref.values(), got):
        r = r.detach().float().cpu().numpy()
        if r.shape != g.shape:
            raise NNPruneError(f"ONNX output shape {g.shape} differs from PyTorch {r.shape}")
        diff = max(diff, float(np.abs(r - g).max()) if r.size else 0.0)
    return diff


def quantize_onnx_int8(src: str | Path, dst: str | Path) -> Path:
    """onnxruntime dynamic int8 quantization of ``src`` into ``dst`` (MatMul/Gemm weights, one
    scale per output channel). Per channel, because a pruned model's kept rows differ in range:
    on MiniLM SST-2 pruned to 3.5x it kept 85.89% accuracy against 84.98% with one scale per
    tensor (fp32 86.70%), at the same speed (README, int8)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)
    return Path(dst)


def export_onnx(model: nn.Module, out_dir: str | Path, *, opset: int = DEFAULT_OPSET,
                quantize: str | None = None, kind: str = "plain",
                tolerance: float = FP32_TOLERANCE, source: str | Path | None = None,
                overwrite: bool = True) -> OnnxExport:
    """Export ``model`` to ``out_dir`` (replaced atomically), check it against PyTorch, and
    optionally add the int8 model. Raises :class:`NNPruneError` when the fp32 export differs from
    PyTorch by more than ``tolerance``. ``out_dir`` may be missing, empty, or a folder nnprune
    wrote with ``overwrite``; a file or a folder holding other files is refused, before any work
    (:func:`nnprune.io_utils.check_output_dir`)."""
    from nnprune.io_utils import atomic_directory, check_output_dir

    check_output_dir(out_dir, overwrite=overwrite)
    if quantize not in (None, "int8"):
        raise NNPruneError(f"--quantize supports int8 only, not {quantize!r}")
    if not 7 <= opset <= 20:
        raise NNPruneError(f"--opset {opset}: the TorchScript exporter supports opsets 7 to 20")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise NNPruneError(f"ONNX export needs onnx and onnxruntime (pip install 'nnprune[onnx]'): "
                           f"{exc}") from None
    notes: list[str] = []
    m = _prepare(model, notes)
    if notes and kind == "masked":
        kind = "compacted"
    enc_dec = bool(getattr(m.config, "is_encoder_decoder", False))
    dec_ids = takes_decoder_ids(m)
    sample = make_inputs(m, 2, 17, 13, seed=0)
    token_types = _takes_token_types(m)
    if token_types:
        sample["token_type_ids"] = _pair_token_types(sample["input_ids"])
    input_names = [n for n in _INPUTS if n in sample]
    ref = _outputs(m, sample)
    output_names = list(ref)
    if not output_names:
        raise NNPruneError(f"{type(m).__name__} returns no tensor output to export")
    seq, tgt = sample["input_ids"].shape[1], (sample["decoder_input_ids"].shape[1] if dec_ids else None)
    axes: dict[str, dict[int, str]] = {"input_ids": {0: "batch", 1: "sequence"},
                                       "attention_mask": {0: "batch", 1: "sequence"}}
    if token_types:
        axes["token_type_ids"] = {0: "batch", 1: "sequence"}
    if dec_ids:
        axes["decoder_input_ids"] = {0: "batch", 1: "target"}
    for name, t in ref.items():
        ax = {0: "batch"}
        for d in range(1, t.dim()):
            if dec_ids and t.shape[d] == tgt:
                ax[d] = "target"
            elif t.shape[d] == seq:
                ax[d] = "sequence"
        axes[name] = ax
    out = Path(out_dir)
    wrapper = _Export(m, input_names, output_names, enc_dec).eval()
    with atomic_directory(out, overwrite=overwrite) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(wrapper, tuple(sample[n] for n in input_names), str(tmp / ONNX_MODEL),
                                  input_names=input_names, output_names=output_names,
                                  dynamic_axes=axes, opset_version=opset, dynamo=False,
                                  do_constant_folding=True)
            except Exception as exc:
                raise NNPruneError(f"ONNX export of {type(m).__name__} failed: {type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
        # Check on another shape (dynamic axes) with a padded example (masks exported).
        check = make_inputs(m, 3, 23, 9, seed=1)
        if token_types:
            check["token_type_ids"] = _pair_token_types(check["input_ids"])
        if not enc_dec:
            check["attention_mask"][0, -6:] = 0
        feed = {n: check[n].numpy() for n in input_names}
        ref = _outputs(m, check)
        diff = _max_diff(ref, _ort_outputs(tmp / ONNX_MODEL, feed))
        if diff > tolerance:
            raise NNPruneError(f"ONNX model differs from PyTorch by {diff:.3e} (> {tolerance:g}) on a "
                               f"{list(check['input_ids'].shape)} batch")
        int8_diff = None
        if quantize == "int8":
            quantize_onnx_int8(tmp / ONNX_MODEL, tmp / ONNX_INT8)
            int8_diff = _max_diff(ref, _ort_outputs(tmp / ONNX_INT8, feed))
        cfg = copy.deepcopy(m.config)
        cfg.__dict__.pop("auto_map", None)  # the remote-code file is not part of an ONNX export
        cfg.save_pretrained(str(tmp))
        if source is not None:
            _copy_tokenizer(Path(source), tmp)
        meta = {
            "format": 1, "kind": kind, "source": None if source is None else str(source),
            "model_class": type(m).__name__, "opset": opset, "inputs": input_names,
            "outputs": output_names, "dynamic_axes": {k: {str(d): n for d, n in v.items()}
                                                      for k, v in axes.items()},
            "max_abs_diff": diff, "int8_max_abs_diff": int8_diff,
            "int8_model": ONNX_INT8 if quantize else None, "torch_version": torch.__version__,
            "flop_profile": flop_profile(m).to_dict(), "notes": notes,
            "ort_disabled_optimizers": list(ORT_DISABLED_OPTIMIZERS),
        }
        (tmp / ONNX_META).write_text(json.dumps(meta, indent=2) + "\n")  # the folder is renamed in whole
    return OnnxExport(out, out / ONNX_MODEL, out / ONNX_INT8 if quantize else None, opset,
                      input_names, output_names, diff, int8_diff,
                      list(check["input_ids"].shape), notes)


def _copy_tokenizer(src: Path, dst: Path) -> None:
    import shutil

    names = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
             "vocab.json", "merges.txt", "sentencepiece.bpe.model", "spiece.model",
             "spm.model")  # spm.model: DeBERTa-v2/v3's SentencePiece file
    for n in names:
        if (src / n).is_file():
            shutil.copy2(src / n, dst / n)


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, *, opset: int = DEFAULT_OPSET,
                      quantize: str | None = None, overwrite: bool = True) -> OnnxExport:
    """Load any checkpoint folder (masked, bertarized, compacted, plain) and export it (the
    output folder checked first: :func:`export_onnx`)."""
    from nnprune.io_utils import check_not_an_input, check_output_dir

    check_not_an_input(out_dir, [checkpoint], overwrite=overwrite)
    check_output_dir(out_dir, overwrite=overwrite)  # before loading the model
    cm = load_checkpoint_model(checkpoint)
    exp = export_onnx(cm.model, out_dir, opset=opset, quantize=quantize, kind=cm.kind.value,
                      source=checkpoint, overwrite=overwrite)
    exp.notes[:0] = [n for n in cm.notes if not n.startswith("masked checkpoint")]
    return exp


# ------------------------------------------------------------------------------------ running

def is_onnx_dir(path: Path) -> bool:
    return path.is_dir() and (path / ONNX_MODEL).is_file() and (path / ONNX_META).is_file()


def read_onnx_meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / ONNX_META).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise NNPruneError(f"{path / ONNX_META} is unreadable: {exc}") from None


def cpu_session(onnx_path: str | Path, threads: int, *,
                disabled_optimizers: tuple[str, ...] = ORT_DISABLED_OPTIMIZERS,
                optimized_model_path: str | Path | None = None) -> Any:
    """An onnxruntime CPU session with ``threads`` intra-op threads (0: onnxruntime's default),
    one inter-op thread and all graph optimizations but ``disabled_optimizers`` (by default
    :data:`ORT_DISABLED_OPTIMIZERS`: the session ``speed --onnx`` times; ``()``: onnxruntime's
    defaults). ``optimized_model_path``: also write the graph the session runs, after its
    optimizations, there (to see what it fused)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if optimized_model_path is not None:
        opts.optimized_model_filepath = str(optimized_model_path)
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"],
                               disabled_optimizers=list(disabled_optimizers))


#: onnxruntime's input element types -> numpy's (the exported inputs are integer ids and masks)
_ORT_NUMPY_TYPES = {"tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(float)": "float32"}


def _with_defaults(inputs: dict[str, Any], input_names: list[str]) -> dict[str, Any]:
    """``inputs`` plus what the model would assume for a declared input the caller left out:
    ``token_type_ids`` zeros (a single segment, as the PyTorch models default), the shape of
    ``input_ids``. Tokenizers without segment ids (and ``make_inputs``) give none."""
    if "token_type_ids" in input_names and inputs.get("token_type_ids") is None \
            and inputs.get("input_ids") is not None:
        inputs = {**inputs, "token_type_ids": torch.zeros_like(inputs["input_ids"])}
    return inputs


class OrtRunner:
    """An ONNX model on onnxruntime's CPU provider."""

    runtime = "onnxruntime"

    def __init__(self, onnx_path: str | Path, threads: int, label: str) -> None:
        self.session = cpu_session(onnx_path, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._input_types = {i.name: _ORT_NUMPY_TYPES.get(i.type) for i in self.session.get_inputs()}
        self.label = label

    def feed(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The session's declared inputs as numpy arrays of its element types, from the tensors
        ``inputs`` (``(batch, seq)`` ids and masks); a declared ``token_type_ids`` left out is
        zeros (:func:`_with_defaults`), any other missing input a one-line error."""
        inputs = _with_defaults(inputs, self.input_names)
        missing = [n for n in self.input_names if inputs.get(n) is None]
        if missing:
            raise NNPruneError(f"ONNX model {self.label} needs inputs {missing} that were not given")
        feed = {}
        for name in self.input_names:
            array = inputs[name].detach().cpu().numpy()
            want = self._input_types.get(name)
            feed[name] = array.astype(want, copy=False) if want else array
        return feed

    def bind(self, inputs: dict[str, Any]) -> Callable[[], Any]:
        feed = self.feed(inputs)
        session = self.session

        def run() -> Any:
            return session.run(None, feed)
        return run


class OrtModel(nn.Module):
    """An exported ``.onnx`` model behind a PyTorch ``forward``, so that the Hugging Face
    ``Trainer`` evaluation loop (``predict``/``evaluate``, and so every task's ``evaluate``) runs it
    unchanged, on onnxruntime's CPU provider.

    Inputs (CPU or not; fed to the session as numpy): ``input_ids``, ``attention_mask``,
    ``token_type_ids`` ``(batch, seq)`` and ``decoder_input_ids`` ``(batch, target)``, of which the
    session gets only those it declares; a declared ``token_type_ids`` left out is zeros, as in
    PyTorch. Labels, for the loss the ``Trainer`` reads when the batch has them:

    - ``labels`` ``(batch,)`` or ``(batch, seq)`` class ids with logits of one more dimension
      (sequence / token classification): cross-entropy, ``-100`` ignored;
    - ``labels`` ``(batch,)`` numbers with one logit per example ``(batch, 1)`` (regression): MSE;
    - ``labels`` of the logits' shape, as numbers (multi-label classification): BCE with logits;
    - ``start_positions`` and ``end_positions`` ``(batch,)`` with ``start_logits`` /
      ``end_logits`` ``(batch, seq)`` (QA): the mean of the two cross-entropies, positions outside
      the sequence ignored (as the PyTorch QA heads compute it).

    Returns a dict: ``"loss"`` (a scalar, only when labels come in), then every ONNX output in
    export order as fp32 CPU tensors (``logits`` ``(batch, num_labels)`` or
    ``(batch, seq, num_labels)``; ``start_logits``, ``end_logits`` ``(batch, seq)``; ...).

    ``config`` is the checkpoint's (the ``Trainer`` reads it, e.g. ``keys_to_ignore_at_inference``);
    :attr:`label_names` are the label inputs to give ``TrainingArguments(label_names=...)``, since
    the ``Trainer`` can only guess them from a model class name. ``threads``: onnxruntime intra-op
    threads, default ``torch.get_num_threads()``.

    Example::

        ort = nnprune.load_onnx("model-onnx", quantize="int8")   # an OrtModel
        logits = ort(input_ids=ids, attention_mask=mask).logits
    """

    main_input_name = "input_ids"
    # The Trainer hands loss kwargs (num_items_in_batch) only to models that ask; this one
    # computes a per-batch mean, as the PyTorch heads do.
    accepts_loss_kwargs = False

    def __init__(self, onnx_path: str | Path, config: Any, *, threads: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.onnx_path = Path(onnx_path)
        self.runner = OrtRunner(self.onnx_path, threads or torch.get_num_threads(), str(onnx_path))
        self.output_names = self.runner.output_names
        # The Trainer moves the model to its device and reads a parameter's device and dtype;
        # the weights live in the session, so one dummy fp32 parameter stands in for them.
        self.anchor = nn.Parameter(torch.zeros(1), requires_grad=False)

    @property
    def label_names(self) -> list[str]:
        if {"start_logits", "end_logits"} <= set(self.output_names):
            return ["start_positions", "end_positions"]
        return ["labels"]

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None,
                start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None,
                return_dict: bool | None = None) -> dict[str, torch.Tensor]:
        # Explicit arguments (no **kwargs): the Trainer keeps the dataset columns the forward
        # names, and anything else the graph cannot take is dropped before it gets here.
        del return_dict  # always a dict, which the Trainer handles like a ModelOutput
        feed = self.runner.feed({"input_ids": input_ids, "attention_mask": attention_mask,
                                 "token_type_ids": token_type_ids,
                                 "decoder_input_ids": decoder_input_ids})
        device = self.anchor.device
        outputs = {name: torch.from_numpy(value).to(device)
                   for name, value in zip(self.output_names, self.runner.session.run(None, feed))}
        loss = self._loss(outputs, labels, start_positions, end_positions)
        return outputs if loss is None else {"loss": loss, **outputs}

    def _loss(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor | None,
              start_positions: torch.Tensor | None, end_positions: torch.Tensor | None
              ) -> torch.Tensor | None:
        if start_positions is not None and end_positions is not None:
            if not {"start_logits", "end_logits"} <= set(outputs):
                raise NNPruneError(f"ONNX model {self.onnx_path} has no start/end logits for "
                                   f"start_positions/end_positions (outputs: {self.output_names})")
            start, end = outputs["start_logits"], outputs["end_logits"]
            # As the PyTorch QA heads: positions past the sequence (truncated answers) are ignored.
            ignored = start.shape[1]
            s = start_positions.to(start.device).reshape(-1).clamp(0, ignored)
            e = end_positions.to(end.device).reshape(-1).clamp(0, ignored)
            return (F.cross_entropy(start, s, ignore_index=ignored)
                    + F.cross_entropy(end, e, ignore_index=ignored)) / 2
        if labels is None:
            return None
        logits = outputs.get("logits", next(iter(outputs.values())))
        labels = labels.to(logits.device)
        if logits.shape[-1] == 1 and labels.numel() == logits.numel():  # regression
            return F.mse_loss(logits.reshape(-1), labels.reshape(-1).to(logits.dtype))
        if not labels.is_floating_point() and labels.dim() == logits.dim() - 1:
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                   ignore_index=-100)
        if labels.shape == logits.shape:  # multi-label
            return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        raise NNPruneError(f"labels of shape {list(labels.shape)} do not fit the ONNX model's logits "
                           f"{list(logits.shape)}")
