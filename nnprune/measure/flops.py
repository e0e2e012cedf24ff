"""FLOPs of a whole forward pass, from the shapes the model's modules have *now*.

Conventions (one multiply-add = 2 FLOPs; biases, norms, activations, softmax and residual adds
are elementwise and not counted; an embedding lookup is 0):

- every ``nn.Linear`` (a :class:`MaskedLinear` included, at its full current shape, since masks
  do not make it smaller) costs ``2 * rows * in * out``, where ``rows`` is the number of vectors it
  is applied to: every source token (encoder layers), every target token (decoder layers,
  teacher-forced: the whole target sequence in one pass), one vector per example (BERT's
  pooler and sequence classifier, BART's classification head), plus a fixed number of rows per
  forward whatever the batch (DeBERTa-v2 projects its ``2 * span`` relative-position embeddings
  once per forward, with ``pos_key_proj`` / ``pos_query_proj`` or with the query/key layers);
  an ``nn.Conv1d`` (DeBERTa-v2's convolution after the first layer) counts as a linear layer
  from its kernel window (``in = in_channels / groups * kernel``) applied at every output position;
- each attention block costs ``2 * B * Lq * Lk * inner_q`` for ``Q K^T`` and
  ``2 * B * Lq * Lk * inner_v`` for ``softmax(.) V``, where ``inner = heads * head_dim`` is read
  from the query/value layers, so a compacted layer with fewer heads costs less. Self attention
  has ``Lq = Lk`` (the decoder's causal mask is counted as a full square, as dense kernels do);
  cross attention has ``Lq = target``, ``Lk = source``. DeBERTa-v2's disentangled attention adds
  ``2 * B * Lq * 2span * inner_q`` (content->position) and ``2 * B * Lk * 2span * inner_q``
  (position->content) when its ``pos_att_type`` has them.

How many rows each linear layer sees is not guessed from names (a ``classifier`` is per example in
sequence classification and per token in token classification): :func:`flop_profile` runs two
probe forwards on tiny batches (2 and 3 examples) with hooks on every linear layer and records
whether the layer ran once per example, once per source token or once per target token, and how
many rows it saw whatever the batch size. The resulting
:class:`FlopProfile` (serializable, stored next to exported ONNX models) then gives the count for
any batch size and sequence length without running the model again.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from nnprune.errors import NNPruneError
from nnprune.pruning_core.architectures import Role, architecture_for, find_sites
from nnprune.pruning_core.structure import ModelStructure, analyze_structure
from nnprune.pruning_core.width_depth import stream_sites, width_depth_support

# Lengths a linear layer's rows scale with.
SRC, TGT, ONE = "src", "tgt", "one"

# Probe shape: small primes, so that a layer's rows per example tell which length it scales with;
# a second probe one example larger separates rows per example from rows per forward.
_PROBE_BATCH, _PROBE_SRC, _PROBE_TGT = 2, 11, 7

# ``LinearEntry.role`` of a linear layer that is not pruned but whose output rows are grouped by
# head (an architecture's ``head_linears``): it shrinks with the heads like Q/K/V.
HEAD_ROWS = "head_rows"


@dataclass
class LinearEntry:
    """One linear layer (or 1-d convolution, as ``in`` = kernel window): its current shape and
    how many rows it sees per example and per forward."""

    path: str
    in_features: int
    out_features: int
    length: str  # SRC, TGT or ONE
    calls: int  # rows per example = calls * length (0: the layer did not run)
    stack: str | None = None  # "encoder"/"decoder" for layers inside a transformer layer
    layer: int | None = None
    role: str | None = None  # Role value for prunable layers (query, ..., ffn_out), or HEAD_ROWS
    attention: str | None = None  # "self"/"cross" for attention roles
    fixed_rows: int = 0  # rows per forward, whatever the batch and lengths
    # Stacked row sections, one row per head row / FFN dimension in each: a fused QKV layer 3,
    # a fused GLU's FFN-in (ModernBERT's Wi) 2.
    parts: int = 1
    # Whether its input columns / output rows are the residual stream (the hidden dimension):
    # they narrow with it (:meth:`FlopProfile.resized` ``hidden``).
    stream_in: bool = False
    stream_out: bool = False

    def flops(self, batch: int, src: int, tgt: int) -> float:
        n = {SRC: src, TGT: tgt, ONE: 1}[self.length]
        rows = batch * self.calls * n + self.fixed_rows
        return 2.0 * rows * self.in_features * self.out_features


@dataclass
class AttentionEntry:
    """One attention block (self or cross) of one layer, with its *current* number of heads."""

    stack: str
    layer: int
    name: str  # "self" / "cross"
    heads: int
    head_dim: int
    inner_q: int  # query/key width = heads * head_dim
    inner_v: int  # value width
    q_length: str
    k_length: str
    # Relative positions each query / key is also scored against (DeBERTa-v2's content->position
    # and position->content terms: 2 * span each); 0 without disentangled attention.
    pos_rows_q: int = 0
    pos_rows_k: int = 0

    def flops(self, batch: int, src: int, tgt: int) -> float:
        lens = {SRC: src, TGT: tgt, ONE: 1}
        lq, lk = lens[self.q_length], lens[self.k_length]
        relative = (lq * self.pos_rows_q + lk * self.pos_rows_k) * self.inner_q
        return 2.0 * batch * (lq * lk * (self.inner_q + self.inner_v) + relative)


@dataclass
class LayerFlops:
    stack: str
    layer: int
    linear: float = 0.0
    attention: float = 0.0
    heads: dict[str, int] = field(default_factory=dict)  # attention name -> current heads
    ffn_dims: int = 0

    @property
    def total(self) -> float:
        return self.linear + self.attention


@dataclass
class FlopCount:
    """Whole-forward FLOPs of one input shape (:func:`nnprune.count_flops`).

    Example::

        f = nnprune.count_flops(model, batch_size=1, seq_len=128)
        print(f.total, f.per_example)
    """

    model_type: str
    batch_size: int
    seq_len: int
    tgt_len: int | None  # encoder-decoder models only
    linear: float  # all linear layers (transformer layers and heads)
    attention: float  # Q K^T and attention x V
    other: float  # linear layers outside the transformer layers (pooler, classifier, lm head...)
    layers: list[LayerFlops]

    @property
    def total(self) -> float:
        return self.linear + self.attention

    @property
    def per_example(self) -> float:
        return self.total / self.batch_size if self.batch_size else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["total"] = self.total
        for lf, d in zip(self.layers, out["layers"]):
            d["total"] = lf.total
        return out


@dataclass
class FlopProfile:
    """Shapes and row counts of a model's linear layers and attention blocks; see module doc."""

    model_type: str
    is_encoder_decoder: bool
    linears: list[LinearEntry]
    attentions: list[AttentionEntry]

    def count(self, batch_size: int, seq_len: int, tgt_len: int | None = None) -> FlopCount:
        """FLOPs of one forward on ``batch_size`` examples of ``seq_len`` source tokens (and
        ``tgt_len`` target tokens, default ``seq_len``, for encoder-decoder models)."""
        if batch_size < 1 or seq_len < 1 or (tgt_len is not None and tgt_len < 1):
            raise NNPruneError(f"batch size and sequence lengths must be >= 1 "
                               f"(got batch {batch_size}, seq {seq_len}, target {tgt_len})")
        tgt = seq_len if tgt_len is None else tgt_len
        layers: dict[tuple[str, int], LayerFlops] = {}
        linear = other = attention = 0.0
        for e in self.linears:
            f = e.flops(batch_size, seq_len, tgt)
            linear += f
            if e.stack is None:
                other += f
            else:
                layers.setdefault((e.stack, e.layer), LayerFlops(e.stack, e.layer)).linear += f
        for a in self.attentions:
            f = a.flops(batch_size, seq_len, tgt)
            attention += f
            lf = layers.setdefault((a.stack, a.layer), LayerFlops(a.stack, a.layer))
            lf.attention += f
            lf.heads[a.name] = a.heads
        arch = architecture_for(self.model_type)
        for stack in arch.stacks:
            for e in self.linears:
                if (e.stack == stack.name and e.path.endswith(tuple("." + p for p in stack.ffn_ins))
                        and (e.stack, e.layer) in layers):
                    layers[(e.stack, e.layer)].ffn_dims = e.out_features // e.parts
        order = [s.name for s in arch.stacks]
        ordered = [layers[k] for k in sorted(layers, key=lambda k: (order.index(k[0]), k[1]))]
        return FlopCount(self.model_type, batch_size, seq_len,
                         tgt if self.is_encoder_decoder else None, linear, attention, other, ordered)

    def resized(self, heads: dict[tuple[str, int, str], int],
                ffn: dict[tuple[str, int], int], hidden: int | None = None,
                layers: dict[str, int] | None = None) -> FlopProfile:
        """The profile with ``heads[(stack, layer, attention)]`` heads and ``ffn[(stack, layer)]``
        FFN dims (missing keys: unchanged), e.g. what compaction would leave of a masked model;
        with ``hidden`` the stream that wide, with ``layers[stack]`` that many layers (the last
        ones dropped, or copies of the first one added at the next indices, e.g. a compacted
        model's dense ancestor). Layers are changed first: ``heads`` / ``ffn`` may name new ones."""
        base = self._relayered(layers) if layers else self
        hd = {(a.stack, a.layer, a.name): a.head_dim for a in base.attentions}
        linears = []
        for e in base.linears:
            e = replace(e)
            if hidden is not None:
                if e.stream_in:
                    e.in_features = hidden
                if e.stream_out:
                    e.out_features = hidden
            key = (e.stack, e.layer, e.attention)
            if (e.role in (Role.QUERY.value, Role.KEY.value, Role.VALUE.value, Role.QKV.value,
                           HEAD_ROWS) and key in heads):
                e.out_features = heads[key] * hd[key] * e.parts
            elif e.role == Role.ATTN_OUTPUT.value and key in heads:
                e.in_features = heads[key] * hd[key]
            elif e.role == Role.FFN_IN.value and (e.stack, e.layer) in ffn:
                e.out_features = ffn[(e.stack, e.layer)] * e.parts
            elif e.role == Role.FFN_OUT.value and (e.stack, e.layer) in ffn:
                e.in_features = ffn[(e.stack, e.layer)]
            linears.append(e)
        attentions = []
        for a in base.attentions:
            a = replace(a)
            k = heads.get((a.stack, a.layer, a.name))
            if k is not None:
                a.heads, a.inner_q, a.inner_v = k, k * a.head_dim, k * a.head_dim
            attentions.append(a)
        return FlopProfile(self.model_type, self.is_encoder_decoder, linears, attentions)

    def layer_counts(self) -> dict[str, int]:
        """Layers per stack."""
        counts: dict[str, int] = {}
        for e in self.linears:
            if e.stack is not None:
                counts[e.stack] = max(counts.get(e.stack, 0), e.layer + 1)
        return counts

    def _relayered(self, layers: dict[str, int]) -> FlopProfile:
        have = self.layer_counts()
        arch = architecture_for(self.model_type)
        patterns = {s.name: re.compile(rf"^((?:.*\.)?{s.layers[:s.layers.index('(')]})(\d+)(\..*)$")
                    for s in arch.stacks}
        linears = [e for e in self.linears if e.stack is None or e.layer < layers.get(e.stack, have[e.stack])]
        attentions = [a for a in self.attentions if a.layer < layers.get(a.stack, have.get(a.stack, 0))]
        for stack, n in layers.items():
            first_l = [e for e in self.linears if e.stack == stack and e.layer == 0]
            first_a = [a for a in self.attentions if a.stack == stack and a.layer == 0]
            for i in range(have.get(stack, 0), n):
                for e in first_l:
                    m = patterns[stack].match(e.path)
                    path = f"{m.group(1)}{i}{m.group(3)}" if m else e.path
                    linears.append(replace(e, path=path, layer=i))
                attentions += [replace(a, layer=i) for a in first_a]
        return FlopProfile(self.model_type, self.is_encoder_decoder, linears, attentions)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for e in out["linears"]:
            # the defaults: profiles stay readable by releases without them
            for key, default in (("parts", 1), ("stream_in", False), ("stream_out", False)):
                if e[key] == default:
                    del e[key]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlopProfile:
        try:
            return cls(data["model_type"], bool(data["is_encoder_decoder"]),
                       [LinearEntry(**e) for e in data["linears"]],
                       [AttentionEntry(**a) for a in data["attentions"]])
        except (KeyError, TypeError) as exc:
            raise NNPruneError(f"FLOP profile is malformed: {exc}") from None


# ---------------------------------------------------------------------------------------- inputs

def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _forward_names(model: nn.Module) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):  # pragma: no cover - HF models always have a signature
        return set()


def takes_decoder_ids(model: nn.Module) -> bool:
    """Whether the forward is given its own target sequence (seq2seq LM, bare encoder-decoder);
    classification and QA heads of BART derive the decoder input from ``input_ids`` instead."""
    config = getattr(model, "config", None)
    if not getattr(config, "is_encoder_decoder", False):
        return False
    name = type(model).__name__
    if name.endswith(("ForSequenceClassification", "ForQuestionAnswering")):
        return False
    return "decoder_input_ids" in _forward_names(model)


def make_inputs(model: nn.Module, batch_size: int, seq_len: int, tgt_len: int | None = None,
                seed: int = 0, device: torch.device | None = None) -> dict[str, Any]:
    """Random token ids (no special tokens except a final EOS for encoder-decoder models, whose
    classification head reads the EOS position), a full attention mask and, for seq2seq models,
    ``tgt_len`` decoder ids. The same seed gives the same ids for a model and its baseline."""
    config = model.config
    vocab = int(getattr(config, "vocab_size", 1000))
    gen = torch.Generator().manual_seed(seed)
    low = 1000 if vocab > 2000 else min(5, vocab - 1)
    ids = torch.randint(low, vocab, (batch_size, seq_len), generator=gen)
    specials = {getattr(config, k, None) for k in ("pad_token_id", "bos_token_id", "eos_token_id",
                                                   "decoder_start_token_id")} - {None}
    for s in specials:
        ids[ids == s] = low if low not in specials else low + 1
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if getattr(config, "is_encoder_decoder", False):
        eos = getattr(config, "eos_token_id", None)
        if eos is not None:
            ids[:, -1] = eos
        if takes_decoder_ids(model):
            tgt = seq_len if tgt_len is None else tgt_len
            dec = torch.randint(low, vocab, (batch_size, tgt), generator=gen)
            start = getattr(config, "decoder_start_token_id", None)
            if start is not None:
                dec[:, 0] = start
            inputs["decoder_input_ids"] = dec
        inputs["use_cache"] = False  # a teacher-forced pass: no key/value cache to build
    if device is not None:
        inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    return inputs


# ---------------------------------------------------------------------------------------- profile

def _head_dim(model: nn.Module, q_path: str, site_head_dim: int) -> int:
    """The head size the block holding ``q_path`` uses (T5: ``key_value_proj_dim``, its
    config's ``d_kv``), else the architecture's (:attr:`LinearSite.head_dim`)."""
    parent = model.get_submodule(q_path.rsplit(".", 1)[0]) if "." in q_path else model
    for attr in ("attention_head_size", "head_dim", "key_value_proj_dim"):
        v = getattr(parent, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return site_head_dim


def _borrow_rows_of_skipped(entries: dict[str, LinearEntry],
                            relative: dict[str, tuple[str, str]]) -> None:
    """Give a layer that did not run the row counts of its counterpart in another layer.

    Compaction's empty attention blocks skip their (0-wide) Q/K/V: they cost nothing now, but a
    profile :meth:`FlopProfile.resized` back to the dense sizes (the dense ancestor's FLOPs) must
    count them as their stack's other layers run them (cross-attention K/V per source token,
    DeBERTa-v2's position projections per forward).
    """
    ran: dict[tuple[str, str], LinearEntry] = {}
    for path, key in relative.items():
        e = entries[path]
        if e.calls or e.fixed_rows:
            ran.setdefault(key, e)
    for path, key in relative.items():
        e, like = entries[path], ran.get(key)
        if not (e.calls or e.fixed_rows) and like is not None:
            e.length, e.calls, e.fixed_rows = like.length, like.calls, like.fixed_rows


def _disentangled_rows(block: nn.Module) -> tuple[int, int]:
    """``(pos_rows_q, pos_rows_k)`` of a DeBERTa-v2 attention block: each query is scored against
    the ``2 * span`` relative-position keys (c2p), each key against as many position queries
    (p2c); ``(0, 0)`` for other blocks (and an emptied one, which has no such attributes)."""
    if not getattr(block, "relative_attention", False):
        return 0, 0
    kinds = getattr(block, "pos_att_type", None) or ()
    rows = 2 * int(getattr(block, "pos_ebd_size", 0))
    return (rows if "c2p" in kinds else 0), (rows if "p2c" in kinds else 0)


def _classify(rows_per_example: float, stack_length: str | None, src: int, tgt: int,
              encoder_decoder: bool) -> tuple[str, int]:
    """``(length, calls)`` with ``calls * length == rows_per_example``."""
    r = round(rows_per_example)
    if r == 0:
        return (stack_length or ONE), 0
    order: list[str] = []
    if stack_length is not None:
        order.append(stack_length)
    if src == tgt and encoder_decoder:
        # Probe could not separate them (BART classification): heads read the decoder output.
        order += [TGT, SRC]
    else:
        order += [SRC, TGT] if r % src == 0 or not encoder_decoder else [TGT, SRC]
    lens = {SRC: src, TGT: tgt}
    for name in order:
        n = lens[name]
        if r % n == 0:
            return name, r // n
    return ONE, r


@torch.no_grad()
def flop_profile(model: nn.Module) -> FlopProfile:
    """Probe ``model`` once (a tiny forward with hooks) and describe its FLOPs; see module doc."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        raise NNPruneError("model has no config.model_type; FLOPs are counted for Hugging Face models")
    arch = architecture_for(model_type)
    sites = find_sites(model)
    enc_dec = bool(getattr(config, "is_encoder_decoder", False))
    stack_res = [(s, re.compile(rf"^(?:.*\.)?{s.layers}\.(.+)$")) for s in arch.stacks]
    linears = [(p, m) for p, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d))]
    rows: dict[str, int] = {p: 0 for p, _ in linears}
    handles = []

    def make_hook(path: str):
        def hook(module, args, output):
            if isinstance(module, nn.Conv1d):
                # (batch, channels, positions) out: one kernel window per batch row and position.
                if isinstance(output, torch.Tensor) and output.dim() == 3:
                    rows[path] += output.shape[0] * output.shape[-1]
            elif args and isinstance(args[0], torch.Tensor) and args[0].dim() >= 1:
                rows[path] += math.prod(args[0].shape[:-1])  # 0-wide inputs (no heads) too
        return hook

    for path, mod in linears:
        handles.append(mod.register_forward_hook(make_hook(path)))
    src, tgt = _PROBE_SRC, (_PROBE_TGT if takes_decoder_ids(model) else _PROBE_SRC)
    was_training = model.training
    model.eval()
    probed: list[dict[str, int]] = []
    try:
        for batch in (_PROBE_BATCH, _PROBE_BATCH + 1):
            rows.update({p: 0 for p in rows})
            inputs = make_inputs(model, batch, src, tgt, device=model_device(model))
            try:
                model(**inputs)
            except Exception as exc:  # a model that cannot run cannot be timed or counted either
                raise NNPruneError(f"probe forward of {type(model).__name__} failed: "
                                   f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
            probed.append(dict(rows))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    entries: dict[str, LinearEntry] = {}
    relative: dict[str, tuple[str, str]] = {}  # path -> (stack, path inside its layer)
    for path, mod in linears:
        stack_name = layer = None
        stack_length = None
        for s, rx in stack_res:
            m = rx.match(path)
            if m:
                stack_name, layer = s.name, int(m.group(1))
                stack_length = TGT if s.is_decoder else SRC
                relative[path] = (s.name, m.group(2))
                break
        per_example = probed[1][path] - probed[0][path]
        fixed = max(probed[0][path] - _PROBE_BATCH * per_example, 0)
        length, calls = _classify(per_example, stack_length, src, tgt, enc_dec)
        if isinstance(mod, nn.Conv1d):
            fan_in, fan_out = mod.in_channels // mod.groups * math.prod(mod.kernel_size), mod.out_channels
        else:
            fan_in, fan_out = mod.in_features, mod.out_features
        entries[path] = LinearEntry(path, fan_in, fan_out, length, calls, stack_name, layer,
                                    fixed_rows=fixed)
    _borrow_rows_of_skipped(entries, relative)
    for s in sites:
        entries[s.path].role, entries[s.path].attention = s.role.value, s.attention
        entries[s.path].parts = s.parts
    _mark_stream(model, entries)
    by_attention = {(st.name, a.name): a for st in arch.stacks for a in st.attentions}
    for s in sites:
        if s.role in (Role.QUERY, Role.QKV):
            layer_path = s.path[: -len(by_attention[(s.stack, s.attention)].query)]
            for rel in by_attention[(s.stack, s.attention)].head_linears:
                entry = entries.get(layer_path + rel)
                if entry is not None:
                    entry.role, entry.attention = HEAD_ROWS, s.attention

    units: dict[tuple, dict[Role, str]] = {}
    head_dims: dict[tuple, int] = {}
    for s in sites:
        if s.attention is not None:
            units.setdefault((s.stack, s.layer, s.attention), {})[s.role] = s.path
            head_dims[(s.stack, s.layer, s.attention)] = s.head_dim
    attentions: list[AttentionEntry] = []
    for (stack, layer, name), paths in units.items():
        if Role.QKV in paths:  # fused: rows [q; k; v], one third each
            q = k = v = entries[paths[Role.QKV]]
        else:
            q, k, v = entries[paths[Role.QUERY]], entries[paths[Role.KEY]], entries[paths[Role.VALUE]]
        inner_q, inner_v = q.out_features // q.parts, v.out_features // v.parts
        # A block with every head removed (compaction's EmptyAttention) keeps 0-wide layers: 0 FLOPs.
        hd = _head_dim(model, q.path, head_dims[(stack, layer, name)])
        heads = inner_q // hd if hd else 0
        block = model.get_submodule(q.path.rsplit(".", 1)[0])
        attentions.append(AttentionEntry(stack, layer, name, heads, hd, inner_q, inner_v,
                                         q.length, k.length, *_disentangled_rows(block)))
    # An emptied block lost the attributes that tell its position terms (0 FLOPs now): the
    # dense sizes of a resized profile need them, and every layer of a stack has the same.
    known = {(a.stack, a.name): a for a in attentions if a.pos_rows_q or a.pos_rows_k}
    for a in attentions:
        like = known.get((a.stack, a.name))
        if a.heads == 0 and like is not None:
            a.pos_rows_q, a.pos_rows_k = like.pos_rows_q, like.pos_rows_k
    return FlopProfile(model_type, enc_dec, list(entries.values()), attentions)


def _mark_stream(model: nn.Module, entries: dict[str, LinearEntry]) -> None:
    """Flag the linear layers reading (columns) and writing (rows) the residual stream, where
    the architecture's hidden dimension can be pruned."""
    if width_depth_support(model) is not None:
        return
    sites = stream_sites(model)
    for path in sites.rows:
        entries[path].stream_out = True
    for lay in sites.layers:
        for rel in lay.reads:
            entries[f"{lay.path}.{rel}"].stream_in = True
        for rel in lay.writes:
            entries[f"{lay.path}.{rel}"].stream_out = True


def count_flops(model: nn.Module, batch_size: int = 1, seq_len: int = 128,
                tgt_len: int | None = None) -> FlopCount:
    """Whole-forward FLOPs of ``model`` at its current shapes (see module doc)."""
    return flop_profile(model).count(batch_size, seq_len, tgt_len)


def compacted_profile(model: nn.Module, structure: ModelStructure | None = None) -> FlopProfile:
    """The profile of ``model`` once compacted: only the heads and FFN dims that
    :func:`~nnprune.pruning_core.structure.analyze_structure` finds exactly removable go (a masked
    model is counted with its eval masks). Gives a masked checkpoint's whole-forward speedup.
    ``structure``: the model's analysis when the caller already has it."""
    st = structure if structure is not None else analyze_structure(model)
    heads = {(u.stack, u.layer, u.name): len(u.kept) for u in st.attention}
    ffn = {(u.stack, u.layer): len(u.kept) for u in st.ffn}
    return flop_profile(model).resized(heads, ffn)
