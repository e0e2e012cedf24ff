"""Fine-pruning inside any training loop: :func:`attach_masks` and the :class:`FinePruning` handle.

The handle is everything a loop needs from nnprune and nothing it has to give up: the user keeps
their data loader, optimizer, scheduler, loss and launcher. Per step the loop calls
:meth:`FinePruning.step` (moves the threshold / latency-budget schedule from the global step) and
adds :meth:`FinePruning.regularization_loss` to its loss; the optimizer gets the mask scores as
their own group from :meth:`FinePruning.parameter_groups`. In a Hugging Face ``Trainer`` (stock or
the user's own subclass) :meth:`FinePruning.trainer_callback` does all of that from a callback.

Under a distributed launch (``torchrun``, ``accelerate launch``) every process attaches the same
masks: a latency table is measured (or read) by the main process and given to the others, and the
mask scores are ordinary parameters, so DDP keeps them equal.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import TrainerCallback

from nnprune.errors import NNPruneError
from nnprune.io_utils import atomic_write_text
from nnprune.api.measure import table_for
from nnprune.measure.latency import LatencySetting, LatencyTable
from nnprune.pruning_core.architectures import architecture_for
from nnprune.pruning_core.checkpoint import save_checkpoint
from nnprune.pruning_core.config import PruningConfig, ScoreInit
from nnprune.pruning_core.learned_width_depth import init_width_depth_from
from nnprune.pruning_core.methods import build_config
from nnprune.pruning_core.post_training import fisher_information, init_scores_from, mask_groups
from nnprune.pruning_core.pruner import Pruner, patch_model, unpatch_model
from nnprune.pruning_core.run_record import RunConfig, write_config

logger = logging.getLogger(__name__)

STATE_FILE = "nnprune_state.json"  # the density controller's state, in every checkpoint-N
NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
SCORES_OPTIMIZER_FILE = "nnprune_scores_optimizer.pt"  # the callback's own optimizer state
# (task, teacher) weights of FinePruning.loss when the config sets none: Sanh et al.'s mix, the
# one the presets with a teacher use
DISTILLATION_ALPHAS = (0.1, 0.9)
DEFAULT_SEQ_LEN = 128  # the latency table's sequence length when the setting names none


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float = 2.0, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Knowledge distillation: ``KL(softmax(t/T) || softmax(s/T)) * T^2``, the mean over positions.

    Args:
        student_logits: ``(..., n_classes)`` logits of the model being pruned.
        teacher_logits: the same shape, from the teacher (computed under ``torch.no_grad()``).
        temperature: ``T``; 2 as in Sanh et al. 2020.
        mask: boolean over the leading dimensions (e.g. ``(batch, seq)`` for token logits);
            ``None``: every position counts.

    Returns:
        A scalar tensor. For ``(batch, classes)`` logits this is PyTorch's
        ``kl_div(..., reduction="batchmean")`` as in Sanh et al. With one output column
        (regression) a softmax is constant, so the student matches the teacher's value instead:
        the mean squared error.

    Example::

        with torch.no_grad():
            t = teacher(**batch).logits
        out = model(**batch)
        loss = 0.1 * out.loss + 0.9 * nnprune.distillation_loss(out.logits, t)
    """
    student, teacher = student_logits, teacher_logits
    if mask is not None and not bool(mask.any()):
        return student.float().sum() * 0.0  # no position counts: no pull (and no NaN)
    if student.shape[-1] == 1:
        se = (student.float() - teacher.float()).pow(2).squeeze(-1)
        return (se[mask] if mask is not None else se).mean()
    t = temperature
    log_p = F.log_softmax(student.float() / t, dim=-1)
    log_q = F.log_softmax(teacher.float() / t, dim=-1)
    kl = (log_q.exp() * (log_q - log_p)).sum(-1)
    if mask is not None:
        kl = kl[mask]
    return kl.mean() * (t * t)


def student_hidden_map(model: nn.Module, teacher: Optional[nn.Module] = None
                       ) -> tuple[list[int], Optional[list[int]]]:
    """Where each of ``model``'s hidden states sits in its dense ancestor's: ``(layers,
    channels)``. ``layers[j]`` is the index in the dense model's ``hidden_states`` of the
    student's ``hidden_states[j]`` (0: the embeddings' output; then one per layer the student
    has, the layers a compaction removed skipped); ``channels``: the dense channels the
    student's stream keeps (``None``: all of them). A model that was not compacted (masked, or
    plain) maps one to one; given the ``teacher``, one with another number of layers (a
    layer-dropped model: which layers it kept is not recorded) is refused.

    Example::

        small = nnprune.load_pretrained("runs/sst2-x5")        # compacted: 5 of 6 layers, 288 wide
        layers, channels = nnprune.student_hidden_map(small)   # [0, 1, 2, 3, 5, 6], [0, 2, ...]
    """
    layout = getattr(model.config, "nnprune_layout", None) or {}
    stacks = layout.get("stacks") or {}
    if len(stacks) > 1:
        raise NNPruneError("hidden-state distillation covers encoder models (one stack)")
    stack = next(iter(stacks.values()), {})
    if "kept_layers" in stack:
        layers = [0] + [int(i) + 1 for i in stack["kept_layers"]]
    else:
        n = _num_layers(model.config)
        if teacher is not None and _num_layers(teacher.config) != n:
            raise NNPruneError(f"hidden-state distillation: the student has {n} layers and the teacher "
                               f"{_num_layers(teacher.config)}, with no record of which the student kept "
                               "(only compacted models record it)")
        layers = list(range(n + 1))
    hidden = layout.get("hidden")
    return layers, ([int(c) for c in hidden["index"]] if hidden else None)


def _num_layers(config: Any) -> int:
    """The layer count of an encoder's config, by the attribute its architecture names."""
    return int(getattr(config, architecture_for(config.model_type).stacks[0].layers_attr))


def hidden_distillation_loss(student_states: Sequence[torch.Tensor],
                             teacher_states: Sequence[torch.Tensor],
                             hidden_map: tuple[list[int], Optional[list[int]]],
                             mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Layer-wise distillation (TinyBERT; CoFi's layer loss without its learnt map): the mean
    over the student's hidden states of the mean squared error to the teacher's at the same
    dense layer and the channels the student kept.

    Args:
        student_states: the student's ``hidden_states`` (``output_hidden_states=True``), each
            ``(batch, seq, width)``: the kept width, or the dense width where the stream is
            put back (a compacted model's last layer), zeros on the removed channels.
        teacher_states: the dense teacher's, each ``(batch, seq, hidden)``.
        hidden_map: :func:`student_hidden_map` of the student.
        mask: ``(batch, seq)`` positions that count (the attention mask); ``None``: all.

    Returns:
        A scalar tensor.

    Example::

        out = model(**batch, output_hidden_states=True)
        with torch.no_grad():
            t = teacher(**batch, output_hidden_states=True)
        loss = out.loss + nnprune.hidden_distillation_loss(
            out.hidden_states, t.hidden_states, nnprune.student_hidden_map(model), batch["attention_mask"])
    """
    layers, channels = hidden_map
    if len(student_states) != len(layers) or max(layers) >= len(teacher_states):
        raise NNPruneError(f"hidden-state distillation: the student has {len(student_states)} hidden "
                           f"states and the teacher {len(teacher_states)}, expected {len(layers)} "
                           f"of a teacher with at least {max(layers) + 1}")
    index = None if channels is None else torch.tensor(channels, device=student_states[0].device)
    parts = []
    for s, i in zip(student_states, layers):
        t = teacher_states[i]
        if index is not None:
            t = t.index_select(-1, index)
            if s.shape[-1] != t.shape[-1]:  # put back at the dense width: its kept channels
                s = s.index_select(-1, index)
        if s.shape != t.shape:
            raise NNPruneError(f"hidden-state distillation: student state {tuple(s.shape)} against "
                               f"teacher {tuple(t.shape)}")
        se = (s.float() - t.float()).pow(2).mean(-1)  # (batch, seq)
        parts.append(se[mask.bool()].mean() if mask is not None else se.mean())
    return torch.stack(parts).mean()


def attach_masks(model: nn.Module, method: str = "hybrid-nt", *,
                 config: Optional[PruningConfig] = None,
                 target_density: Optional[float] = None,
                 target_speedup: Optional[float] = None,
                 latency_table: "LatencyTable | str | Path | None" = None,
                 latency: Optional[LatencySetting] = None,
                 total_steps: Optional[int] = None,
                 overrides: Optional[dict[str, Any]] = None,
                 importance_batches: Optional[Iterable[dict[str, Any]]] = None) -> "FinePruning":
    """Replace the prunable linear layers of ``model`` (in place) by masked ones.

    Args:
        model: a supported transformers model (BERT, RoBERTa, DeBERTa, BART, ... with any head).
        method: a preset (``nnprune.METHODS``: ``hybrid-nt``, ``struct``, ``movement``,
            ``block``, ...); ignored when ``config`` is given. Presets that need a teacher
            (``hybrid``) are refused here: use ``hybrid-nt`` and add
            :func:`distillation_loss` to your own loss.
        config: a full :class:`PruningConfig` instead of a preset. Its ``teacher`` is recorded,
            not loaded: distil in your loss (:meth:`FinePruning.loss`).
        target_density: fraction of the pruned matrices' weights to keep, in ``(0, 1]``.
        target_speedup: speedup of the whole forward to reach (> 1), priced by a latency table.
        latency_table: with ``target_speedup``: a :class:`LatencyTable`, or the path of one
            (``nnprune latency-table --json-file``); ``None`` measures one on this machine (cached)
            at ``latency`` (default: batch 1 x 128 tokens, CPU), on the main process only.
        total_steps: optimizer steps of the run; the schedule needs it (or pass it to the first
            :meth:`FinePruning.step` call through :meth:`FinePruning.configure`).
        overrides: any :class:`PruningConfig` field, e.g. ``{"final_warmup": 0.2}``.
        importance_batches: with ``score_init="importance"``: labelled batches whose Fisher
            information orders the mask scores before the first step (a few hundred examples).

    Returns:
        A :class:`FinePruning` handle.

    Example::

        pruning = nnprune.attach_masks(model, "hybrid-nt", target_speedup=2.0, total_steps=1000)
        optimizer = torch.optim.AdamW(pruning.parameter_groups(lr=5e-5, weight_decay=0.01))
        for step, batch in enumerate(loader):
            pruning.step(step)
            loss = model(**batch).loss + pruning.regularization_loss()
            loss.backward(); optimizer.step(); optimizer.zero_grad()
        small = nnprune.compact(pruning.finalize())
    """
    if config is None:
        config = _preset_config(method, target_density, target_speedup, overrides)
    else:
        if method != "hybrid-nt":
            raise NNPruneError("pass a method preset or a config, not both")
        changes = dict(overrides or {})
        if target_density is not None:
            changes["target_density"] = target_density
        if target_speedup is not None:
            changes["target_speedup"] = target_speedup
        config = config.replace(**changes) if changes else config
    importance = None
    if config.prunes and config.score_init is ScoreInit.IMPORTANCE:
        if importance_batches is None:
            raise NNPruneError("score_init 'importance' scores the units on data: pass "
                               "importance_batches")
        # On the model before it is patched: its heads', FFN dimensions' (and, learning width
        # and depth, the stream's channels' and layers') Fisher importance.
        groups = mask_groups(model)
        importance = fisher_information(model, importance_batches, groups,
                                        width_depth=config.learns_width_depth)
    pruner = patch_model(model, config)
    if importance is not None:
        init_scores_from(pruner.layers, importance, groups, config.score_init_scale or 1.0)
        if pruner.width_depth is not None:  # else the layer gates tie and drop together
            init_width_depth_from(pruner.width_depth, importance.hidden, importance.layers,
                                  config.score_init_scale or 1.0)
        logger.info("mask scores initialised from the Fisher importance of %d examples",
                    importance.samples)
    table = None
    if config.target_speedup is not None and config.prunes:
        table = table_for(model, latency_table, (latency or LatencySetting()).at(DEFAULT_SEQ_LEN))
        pruner.use_latency(table.model)
    pruning = FinePruning(model, pruner, table)
    if total_steps is not None:
        pruning.configure(total_steps)
    return pruning


def _preset_config(method: str, target_density: Optional[float], target_speedup: Optional[float],
                   overrides: Optional[dict[str, Any]]) -> PruningConfig:
    from nnprune.pruning_core.methods import METHODS

    preset = METHODS.get(method)
    if preset.needs_teacher or preset.fill:
        raise NNPruneError(f"method {method!r} is a CLI recipe with a teacher"
                           f"{' and a fill stage' if preset.fill else ''}; in your own loop use "
                           f"'hybrid-nt' with nnprune.distillation_loss (and nnprune.refill)")
    return build_config(method, target_density=target_density, target_speedup=target_speedup,
                        overrides=overrides)


class FinePruning:
    """The masks attached to one model, and what a training loop needs from them.

    Created by :func:`attach_masks`. The model stays the user's: it is patched in place and keeps
    working in any loop, under DDP / accelerate, and with ``save_pretrained`` of the masked
    checkpoint through :meth:`save`.

    Example::

        pruning = nnprune.attach_masks(model, "struct", target_density=0.5, total_steps=500)
        ...  # train (see attach_masks)
        pruning.finalize()
        print(pruning.density(), pruning.stats())
        pruning.save("masked")          # or nnprune.compact(model) to ship it
    """

    def __init__(self, model: nn.Module, pruner: Pruner, table: Optional[LatencyTable]) -> None:
        self.model = model
        self._pruner = pruner
        self.latency_table = table
        self._configured = False

    @classmethod
    def from_pretrained(cls, path: "str | Path") -> "FinePruning":
        """A masked checkpoint (``FinePruning.save``, ``nnprune fine-prune``) loaded with its masks
        attached again, as they were saved (final cut); call :meth:`configure` to go on training.

        Example::

            pruning = nnprune.FinePruning.from_pretrained("runs/sst2-hybrid")
            print(pruning.density(), pruning.config.method)
            small = nnprune.compact(pruning.model).model
        """
        from nnprune.pruning_core.checkpoint import load_model

        loaded = load_model(path)
        if loaded.pruner is None:
            raise NNPruneError(f"{path} has no masks (a {loaded.kind.value} checkpoint): load it "
                               "with nnprune.load_pretrained")
        return cls(loaded.model, loaded.pruner, None)

    # ------------------------------------------------------------------ what the loop needs
    @property
    def config(self) -> PruningConfig:
        """The :class:`PruningConfig` in force (saved with every checkpoint)."""
        return self._pruner.config

    def score_parameters(self) -> list[nn.Parameter]:
        """The mask-score parameters (empty for ``magnitude`` / ``dense``)."""
        return self._pruner.mask_score_parameters()

    def parameter_groups(self, lr: Optional[float] = None, weight_decay: float = 0.0,
                         no_decay: Sequence[str] = NO_DECAY,
                         decay_names: Optional[Collection[str]] = None) -> list[dict[str, Any]]:
        """Optimizer groups: the model's weights with ``weight_decay`` (none on biases and norms:
        names containing one of ``no_decay``, or those not in ``decay_names`` when given, e.g. a
        ``Trainer``'s ``get_decay_parameter_names(model)``), then the mask scores with their own
        learning rate (``config.mask_scores_learning_rate``) and no weight decay. Empty groups
        are left out. Pass them to any ``torch.optim`` optimizer.

        Keep the scores' learning rate constant (see :meth:`lr_lambdas`): under a decaying
        schedule they stop before reaching the threshold in short runs.

        Example::

            optimizer = torch.optim.AdamW(pruning.parameter_groups(lr=5e-5, weight_decay=0.01))
        """
        scores = {id(p) for p in self.score_parameters()}
        decay, plain = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad or id(p) in scores:
                continue
            decays = (name in decay_names if decay_names is not None
                      else not any(k in name for k in no_decay))
            (decay if decays else plain).append(p)
        extra = {} if lr is None else {"lr": lr}
        groups = [{"params": decay, "weight_decay": weight_decay, **extra},
                  {"params": plain, "weight_decay": 0.0, **extra}]
        if scores:
            groups.append({"params": self.score_parameters(), "weight_decay": 0.0,
                           "lr": self.config.mask_scores_learning_rate})
        return [g for g in groups if g["params"]]

    def lr_lambdas(self, weights: Callable[[int], float]) -> list[Callable[[int], float]]:
        """Per-group factors for ``torch.optim.lr_scheduler.LambdaLR`` matching
        :meth:`parameter_groups`: ``weights`` for the weight groups, a constant 1 for the scores.

        Example::

            sched = LambdaLR(optimizer, pruning.lr_lambdas(lambda s: 1 - s / total_steps))
        """
        groups = self.parameter_groups()
        return [weights] * (len(groups) - (1 if self.score_parameters() else 0)) + (
            [_constant] if self.score_parameters() else [])

    def configure(self, total_steps: int) -> None:
        """Build the schedule for a run of ``total_steps`` optimizer steps."""
        if total_steps < 1:
            raise NNPruneError(f"total_steps must be >= 1, got {total_steps}")
        self._pruner.configure(total_steps)
        self._configured = True

    def step(self, global_step: int) -> None:
        """Move the schedule to ``global_step`` (0-based optimizer steps done so far): call it
        before the step's forward. Resuming at step ``s`` is just calling ``step(s)``."""
        if not self._configured:
            raise NNPruneError("the schedule needs the run's length: pass total_steps to "
                               "attach_masks or call configure(total_steps) first")
        self._pruner.step(global_step)

    def __len__(self) -> int:
        """The number of masked layers (0 for a dense config)."""
        return len(self._pruner)

    @property
    def regularized(self) -> bool:
        """Whether the method penalises its scores (:meth:`regularization_loss` is not zero)."""
        return self._pruner.regularized

    def regularization_loss(self) -> torch.Tensor:
        """The scores' sparsity penalty for this step (a scalar; zero for methods without one),
        to add to the loss. Its lambda ramps with the schedule or is set by the density
        controller of a target."""
        return self._pruner.regularization_loss()

    def loss(self, task_loss: torch.Tensor, student_logits: Optional[torch.Tensor] = None,
             teacher_logits: Optional[torch.Tensor] = None,
             mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``task_loss`` (mixed with distillation when teacher logits are given, by the config's
        ``alpha_ce`` / ``alpha_teacher`` / ``temperature``) plus :meth:`regularization_loss`."""
        loss = task_loss
        if teacher_logits is not None:
            if student_logits is None:
                raise NNPruneError("distillation needs the student's logits too")
            c = self.config
            alpha_ce, alpha_t = ((c.alpha_ce, c.alpha_teacher) if c.alpha_teacher > 0
                                 else DISTILLATION_ALPHAS)
            loss = alpha_ce * loss + alpha_t * distillation_loss(student_logits, teacher_logits,
                                                                 c.temperature, mask)
        return loss + self.regularization_loss().to(loss.device)

    def finalize(self) -> nn.Module:
        """Put every mask on its final (evaluation) cut; returns the model."""
        self._pruner.finalize()
        return self.model

    # ------------------------------------------------------------------ measurements
    def density(self, training: bool = False) -> float:
        """Fraction of the pruned matrices' weights kept by the eval masks (``training``: by the
        masks at the current point of the schedule)."""
        return self._pruner.density(training=training)

    def predicted_speedup(self) -> float:
        """Speedup of the eval masks predicted by the latency table (``nan`` without one)."""
        return self._pruner.predicted_speedup()

    def stats(self) -> dict[str, float]:
        """The pruning scalars a loop may log, of the masks at the current point of the schedule:
        ``pruning/density`` (and ``pruning/density_attention`` / ``pruning/density_ffn``),
        ``pruning/threshold``, ``pruning/lambda_attention`` / ``pruning/lambda_ffn``,
        ``pruning/target_density``; with a speed target ``pruning/scheduled_speedup`` (the
        latency budget's) and ``pruning/predicted_speedup`` (the masks', by the latency table);
        ``pruning/heads_kept`` and ``pruning/ffn_dims_kept`` (whole units left). Measuring never
        draws a random mask sample, so logging leaves the training unchanged.

        Example::

            for step, batch in enumerate(loader):
                ...
                if step % 50 == 0:
                    writer.add_scalars("pruning", pruning.stats(), step)   # or any tracker
        """
        out = self._pruner.stats()
        if out:
            out.update(_schedule_stats(self.model, self._pruner))
        return out

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """The density controller's state (save it with your checkpoints to resume exactly)."""
        return self._pruner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pruner.load_state_dict(state)

    def save(self, directory: "str | Path", tokenizer: Any = None) -> Path:
        """Save the masked checkpoint (weights, scores, ``nnprune_config.json``) atomically;
        :func:`nnprune.load_pretrained` reloads it with its masks."""
        return save_checkpoint(self.model, directory, config=self.config, tokenizer=tokenizer,
                               extra=self._pruner.saved_info())

    def detach(self, apply_masks: bool = True) -> nn.Module:
        """Undo :func:`attach_masks`: plain ``nn.Linear`` layers again, with the final masks baked
        into the weights (``apply_masks``) or the original weights untouched. Returns the model."""
        if apply_masks:
            self.finalize()
        return unpatch_model(self.model, apply_masks=apply_masks)

    def trainer_callback(self) -> "PruningCallback":
        """A ``TrainerCallback`` that fine-prunes inside a Hugging Face ``Trainer`` (stock or your
        own subclass); see :class:`PruningCallback`.

        Example::

            trainer = Trainer(model=model, args=args, train_dataset=ds,
                              callbacks=[pruning.trainer_callback()])
            trainer.train()
        """
        return PruningCallback(self)


def _constant(step: int) -> float:
    return 1.0


def _schedule_stats(model: nn.Module, pruner: Pruner) -> dict[str, float]:
    """Per-group densities, the scheduled speedup and the units kept, of the training masks
    (``pruner.stats()`` already set their cutoffs for this step)."""
    groups = sorted({p.site.group for p in pruner.layers})
    out = {f"pruning/density_{g}": pruner.density(training=True, group=g) for g in groups}
    cut = pruner.latency_cut
    if cut is not None and pruner.config.target_speedup is not None:
        budget = pruner.latency_budget(training=True)
        out["pruning/scheduled_speedup"] = cut.model.dense_ms / budget
        heads, dims = cut.sizes(cut.cutoff(budget))  # what the latency cut keeps now
        out["pruning/heads_kept"], out["pruning/ffn_dims_kept"] = float(sum(heads)), float(sum(dims))
    elif not pruner.binarizer.stochastic:  # an L0 gate sample would move the RNG: no count
        heads, dims = _units_kept(model, pruner)
        out["pruning/heads_kept"], out["pruning/ffn_dims_kept"] = float(heads), float(dims)
    return out


@torch.no_grad()
def _units_kept(model: nn.Module, pruner: Pruner) -> tuple[int, int]:
    """Heads and FFN dimensions the training masks leave whole: a head is gone when its value
    rows or its output columns are all masked, an FFN dimension when its input row (any part
    of a gated one) or its output column is; matrices without masks keep everything."""
    from nnprune.pruning_core.architectures import Role, find_sites

    masks = {p.site.path: p.layer.expand(p.layer.block_mask(training=True)) != 0
             for p in pruner.layers}
    units: dict[tuple, dict[Role, Any]] = {}
    ffn_ins: dict[tuple, list[Any]] = {}  # a gated FFN has two FFN-in matrices
    for site in find_sites(model):
        units.setdefault(site.unit, {}).setdefault(site.role, site)
        if site.role is Role.FFN_IN:
            ffn_ins.setdefault(site.unit, []).append(site)
    heads = dims = 0
    for unit, roles in units.items():
        attention = unit[2]
        if attention is not None:
            value = roles.get(Role.VALUE) or roles.get(Role.QKV)
            out = roles[Role.ATTN_OUTPUT]
            hd = value.head_dim
            n = model.get_submodule(value.path).out_features // (hd * value.parts)
            gone = torch.zeros(n, dtype=torch.bool)
            if value.path in masks:
                rows = masks[value.path].any(dim=1)
                v_rows = rows.view(value.parts, -1)[-1] if value.role is Role.QKV else rows
                gone |= ~v_rows.view(n, hd).any(dim=1)
            if out.path in masks:
                gone |= ~masks[out.path].any(dim=0).view(n, hd).any(dim=1)
            heads += int((~gone).sum())
        else:
            out = roles[Role.FFN_OUT]
            size = model.get_submodule(out.path).in_features
            gone = torch.zeros(size, dtype=torch.bool)
            if out.path in masks:
                gone |= ~masks[out.path].any(dim=0)
            for site in (s for s in ffn_ins.get(unit, []) if s.path in masks):
                gone |= (~masks[site.path].any(dim=1)).view(site.parts, -1).any(dim=0)
            dims += int((~gone).sum())
    return heads, dims


class PruningCallback(TrainerCallback):
    """Fine-pruning in a Hugging Face ``Trainer`` without an nnprune ``Trainer`` subclass.

    * Optimizer: before the Trainer builds its optimizer the scores are hidden from it; the
      callback steps them with its own AdamW (``config.mask_scores_learning_rate``, constant, no
      weight decay) right after the Trainer's step. If you pass your own optimizer holding
      :meth:`FinePruning.parameter_groups`, the callback leaves the scores to it.
    * Gradients: the scores' gradients are kept out of the Trainer's gradient clipping (a
      large regularization gradient would shrink the weights' steps), averaged over the
      processes of a distributed launch, and the regularization gradient is added to them.
    * Schedule: moved from ``state.global_step`` at every step; the eval masks are set at the end.
    * Checkpoints: the pruning config, the controller state and the scores' optimizer state go
      into every ``checkpoint-N`` folder, and a resumed run (``train(resume_from_checkpoint=...)``)
      reads them back, so it ends where an unbroken run ends.
    * Logs: the pruning scalars (:meth:`FinePruning.stats`) are added to every training log and
      to the Trainer's ``state.log_history``. The Trainer calls its trackers' callbacks
      (``report_to``: TensorBoard, W&B, MLflow) before the callbacks you pass it: for the
      trackers to get the scalars too, add the callback ahead of them with :meth:`install`.

    Example::

        pruning = nnprune.attach_masks(model, "hybrid-nt", target_speedup=2.0)
        trainer = MyTrainer(model=model, args=args, train_dataset=ds,
                            callbacks=[nnprune.PruningCallback(pruning)])
        trainer.train()
        # or, with report_to="tensorboard": the curves of density, threshold, lambda, speedup
        trainer = MyTrainer(model=model, args=args, train_dataset=ds)
        nnprune.PruningCallback(pruning).install(trainer)
    """

    STATE_FILE = STATE_FILE  # what a complete checkpoint-N holds last (a resume needs it)

    def __init__(self, pruning: FinePruning, manage_optimizer: Optional[bool] = None) -> None:
        """``manage_optimizer``: ``None`` decides from the Trainer (its own optimizer for the
        scores unless an optimizer you passed holds them); ``False`` leaves them to the
        Trainer's optimizer, for a subclass that groups them itself (as nnprune's CLI does)."""
        self.pruning = pruning
        self._optimizer: Optional[torch.optim.Optimizer] = None
        self._stash: dict[int, torch.Tensor] = {}
        self._hooks: list[Any] = []
        # decided when the Trainer is built (on_init_end), unless the caller said
        self._own_optimizer: Optional[bool] = manage_optimizer
        self._told = manage_optimizer is not None
        self._first = False  # installed ahead of the trackers (install)
        self._warned = False

    def install(self, trainer: Any) -> "PruningCallback":
        """Add this callback to a built ``trainer`` (before ``train()``) ahead of all its other
        callbacks, the trackers' included, so that they log the pruning scalars too; the mask
        scores get their own optimizer as when passed in ``Trainer(callbacks=[...])``. Returns
        the callback."""
        trainer.callback_handler.callbacks.insert(0, self)
        self._first = True
        self.on_init_end(trainer.args, trainer.state, trainer.control, optimizer=trainer.optimizer)
        return self

    def _scores(self) -> list[nn.Parameter]:
        return self.pruning.score_parameters()

    def on_init_end(self, args, state, control, optimizer=None, **kwargs):
        if self._told:
            return
        held = {id(p) for g in (optimizer.param_groups if optimizer is not None else [])
                for p in g["params"]}
        scores = self._scores()
        self._own_optimizer = bool(scores) and not any(id(p) in held for p in scores)
        if self._own_optimizer:
            # Hidden from the Trainer's create_optimizer (it keeps requires_grad parameters
            # only); given back in on_train_begin, after the optimizer and DDP are built.
            for p in scores:
                p.requires_grad_(False)

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.pruning.configure(state.max_steps)
        if self._own_optimizer is None:
            # Added after the Trainer was built (trainer.add_callback): its optimizer already
            # holds the scores, so it steps them; they need their own group and learning rate.
            self._own_optimizer = False
            lr = self.pruning.config.mask_scores_learning_rate
            scores = {id(p) for p in self._scores()}
            groups = [g for g in (optimizer.param_groups if optimizer is not None else [])
                      if any(id(p) in scores for p in g["params"])]
            if any(g["lr"] != lr or any(id(p) not in scores for p in g["params"]) for g in groups):
                logger.warning("the Trainer's optimizer steps the mask scores with the weights' "
                               "learning rate: pass the callback in Trainer(callbacks=[...]) or "
                               "build the optimizer from FinePruning.parameter_groups()")
        if self._own_optimizer:
            scores = self._scores()
            for p in scores:
                p.requires_grad_(True)
                self._hooks.append(p.register_post_accumulate_grad_hook(self._take_grad))
            self._optimizer = torch.optim.AdamW(
                scores, lr=self.pruning.config.mask_scores_learning_rate, weight_decay=0.0)
        if state.global_step > 0:  # resumed: the checkpoint it resumed from
            self._load(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    def _take_grad(self, p: torch.Tensor) -> None:
        """After backward: move a score's gradient aside, out of the Trainer's clipping."""
        g = p.grad
        if g is None:
            return
        key = id(p)
        self._stash[key] = g.detach().clone() if key not in self._stash else self._stash[key] + g
        p.grad = None

    def on_step_begin(self, args, state, control, **kwargs):
        self.pruning.step(state.global_step)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self._optimizer is not None:
            self._restore_grads()
        reg = self.pruning.regularization_loss()
        if reg.requires_grad:
            # Its gradient goes to the scores only, next to the task's (not through backward():
            # the stashing hooks would take it away again).
            scores = self._scores()
            for p, g in zip(scores, torch.autograd.grad(reg, scores, allow_unused=True)):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad + g

    def _restore_grads(self) -> None:
        """The stashed task gradients back on the scores, averaged over the processes (the scores
        were not trainable when DDP was built, so DDP does not reduce them)."""
        import torch.distributed as dist

        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        for p in self._scores():
            g = self._stash.pop(id(p), None)
            if g is None:
                g = torch.zeros_like(p)
            if distributed:
                dist.all_reduce(g)
                g /= dist.get_world_size()
            p.grad = g
        self._stash.clear()

    def on_optimizer_step(self, args, state, control, **kwargs):
        if self._optimizer is not None:
            self._optimizer.step()
            self._optimizer.zero_grad(set_to_none=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # (a Trainer that logs them itself, as the commands' does, has them already)
        if logs is None or "loss" not in logs or "pruning/density" in logs:
            return
        stats = {k: round(v, 6) for k, v in self.pruning.stats().items()}
        logs.update(stats)  # for the callbacks after this one
        # Trainer.log appended a copy of the logs to the history before the callbacks ran
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(stats)
        if stats and not self._first and args.report_to and not self._warned:
            self._warned = True
            logger.warning("the trackers (report_to=%s) ran before this callback and miss the "
                           "pruning scalars: add it with PruningCallback(pruning).install(trainer)",
                           args.report_to)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not folder.is_dir():
            return
        p = self.pruning
        write_config(folder, RunConfig.from_dict(
            {**p._pruner.saved_info(), "pruning": p.config.to_dict()}, "run config"))
        if self._optimizer is not None:
            tmp = folder / (SCORES_OPTIMIZER_FILE + ".tmp")
            torch.save(self._optimizer.state_dict(), tmp)
            tmp.replace(folder / SCORES_OPTIMIZER_FILE)
        atomic_write_text(folder / STATE_FILE, json.dumps(p.state_dict()) + "\n")

    def _load(self, folder: Path) -> None:
        state = folder / STATE_FILE
        if state.is_file():
            self.pruning.load_state_dict(json.loads(state.read_text()))
        if self._optimizer is None:
            return  # the Trainer's optimizer holds the scores: it restores them itself
        opt = folder / SCORES_OPTIMIZER_FILE
        if opt.is_file():
            self._optimizer.load_state_dict(torch.load(opt, weights_only=True))
        else:
            logger.warning("resuming from %s without the mask scores' optimizer state", folder)

    def on_train_end(self, args, state, control, **kwargs):
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self.pruning.finalize()


__all__ = ["FinePruning", "PruningCallback", "attach_masks", "distillation_loss",
           "hidden_distillation_loss", "student_hidden_map"]
