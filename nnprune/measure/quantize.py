"""Dynamic int8 quantization of a PyTorch model for CPU inference."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from nnprune.errors import NNPruneError


def quantize_int8(model: nn.Module) -> nn.Module:
    """PyTorch dynamic int8 quantization of every ``nn.Linear`` (CPU; weights int8 per tensor,
    activations quantized on the fly). Returns a new model; ``model`` is left as it was.

    Uses ``torch.ao.quantization.quantize_dynamic`` (deprecated in favour of torchao, still shipped
    with torch 2.13). For shipping, the onnxruntime int8 export (``export-onnx --quantize int8``)
    is the maintained and faster path: measured on a 3.5x MiniLM, 8.1 ms against 11.1 ms here at
    batch 1, the same at batch 32 (README). A quantized model cannot be saved for stock Hugging
    Face loading: quantize after loading, or ship the ONNX int8 export.
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
    from torch.ao.quantization import default_dynamic_qconfig

    # Quantize every Linear by name except 0-sized ones (a layer that kept no heads or no FFN dims
    # after compaction: in_features or out_features == 0). The quantized kernel does not handle a
    # 0-wide input: with in_features == 0 it returns uninitialized memory instead of the bias
    # (huge / inf / NaN values that change from call to call), and the next quantized layer then
    # fails in ChooseQuantizationParams ("min should be less than or equal to max"). Such layers
    # do no arithmetic, so fp32 costs nothing there and gives the exact result (bias / empty).
    spec = {name: default_dynamic_qconfig for name, mod in q.named_modules()
            if isinstance(mod, nn.Linear) and quantizable_linear(mod)}
    if not spec:
        return q
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(q, spec, dtype=torch.qint8)


def quantizable_linear(mod: nn.Linear) -> bool:
    """Whether dynamic int8 can take ``mod``: not 0-sized (see :func:`quantize_int8`)."""
    return mod.in_features > 0 and mod.out_features > 0


