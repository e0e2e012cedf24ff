"""PyTorch dynamic int8 (``quantize_int8``) on compacted models of every shape.

A layer that kept no heads (or no FFN dims) compacts to 0-sized Linears; the quantized kernel
returns uninitialized memory for a 0-wide input, and the next quantized layer then failed with
``ChooseQuantizationParams, min should be less than or equal to max``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnprune.measure.quantize import quantize_int8
from conftest import compact_first, tiny_bert

QLinear = torch.ao.nn.quantized.dynamic.Linear

# (heads kept, FFN dims kept) per (stack, layer); missing: keep all.
SHAPES = {
    "empty-attention": ({("encoder", 0): 0}, {}),
    "tiny-ffn": ({}, {("encoder", 1): 1}),
    "empty-attention+tiny-ffn": ({("encoder", 0): 0}, {("encoder", 1): 2}),
    "empty-ffn": ({}, {("encoder", 1): 0}),
    "empty-layer": ({("encoder", 0): 0}, {("encoder", 0): 0, ("encoder", 1): 3}),
}


def _batches():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 30000, (4, 12), generator=g)
    padded = torch.ones_like(ids)
    padded[1, 6:] = 0
    padded[2, :] = 0  # one row fully padded
    one = torch.ones(1, 1, dtype=torch.long)
    return [
        dict(input_ids=ids, attention_mask=torch.ones_like(ids)),
        dict(input_ids=ids, attention_mask=padded),
        dict(input_ids=ids[:1, :1], attention_mask=one),  # a batch of 1 token
        dict(input_ids=ids[:1, :5], attention_mask=torch.zeros(1, 5, dtype=torch.long)),
    ]


def _linears(model):
    return {n: m for n, m in model.named_modules() if type(m) is nn.Linear}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_int8_runs_and_matches_fp32_on_compacted_shapes(shape):
    heads, ffn = SHAPES[shape]
    model = compact_first(tiny_bert(), heads, ffn)
    q = quantize_int8(model)
    with torch.no_grad():
        for _ in range(3):  # the bad output was uninitialized memory: differs run to run
            for batch in _batches():
                ref = model(**batch).logits
                out = q(**batch).logits
                assert torch.isfinite(out).all()
                assert (out - ref).abs().max().item() < 0.1


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_quantizable_linear_is_quantized(shape):
    heads, ffn = SHAPES[shape]
    model = compact_first(tiny_bert(), heads, ffn)
    before = _linears(model)
    zero = {n for n, m in before.items() if 0 in (m.in_features, m.out_features)}
    if shape != "tiny-ffn":
        assert zero  # the shape really has 0-sized Linears
    q = quantize_int8(model)
    mods = dict(q.named_modules())
    quantized = {n for n, m in mods.items() if isinstance(m, QLinear)}
    assert quantized == set(before) - zero
    assert all(type(mods[n]) is nn.Linear for n in zero)  # left in fp32
    assert all(type(m) is nn.Linear for m in _linears(model).values())  # original untouched


def test_zero_input_linear_gives_its_bias():
    torch.manual_seed(0)
    lin = nn.Linear(0, 16)
    nn.init.normal_(lin.bias)
    q = quantize_int8(nn.Sequential(lin, nn.Linear(16, 4)))
    assert type(q[0]) is nn.Linear and isinstance(q[1], QLinear)
    with torch.no_grad():
        for _ in range(5):
            out = q[0](torch.randn(3, 7, 0))
            assert torch.equal(out, lin.bias.expand(3, 7, 16))
