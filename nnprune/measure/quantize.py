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


