"""Fine-pruning on the Hugging Face ``Trainer``.

:class:`PruningTrainer` adds three things to a plain ``Trainer``: the regularization loss of the
mask scores, distillation from a teacher, and an optimizer group for the mask scores (own
learning rate, no weight decay). :class:`PruningCallback` moves the schedule at every step, logs
the pruning state, and saves the pruning config and controller state with every checkpoint so a
run resumes where it stopped. Nothing here is task specific: the task adapter says which logits
are distilled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback

from nnprune.pruning_core.config import PruningConfig, save_pruning_config
from nnprune.pruning_core.pruner import Pruner

STATE_FILE = "nnprune_state.json"
SCORES_GROUP = "nnprune_mask_scores"  # marks the optimizer group of the mask scores


def _constant(step: int) -> float:
    return 1.0


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                      mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``KL(softmax(t/T) || softmax(s/T)) * T^2``, averaged over positions.

    ``student``/``teacher``: ``(..., n_classes)``; ``mask``: boolean over the leading dims
    (``None`` = all positions count). For ``(batch, classes)`` logits this is PyTorch's
    ``kl_div(..., reduction="batchmean")`` as in Sanh et al. With one output (regression) a
    softmax is constant, so the student matches the teacher's value instead: mean squared error.
    """
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


class PruningTrainer(Trainer):
    """A ``Trainer`` that fine-prunes: task loss (+ distillation) + score regularization."""

    def __init__(self, *args: Any, pruner: Pruner, task: Any = None,
                 teacher: Optional[nn.Module] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pruner = pruner
        self.task = task
        self.teacher = teacher
        # The loss is a per-batch mean plus extra terms; don't let the Trainer rescale it.
        self.model_accepts_loss_kwargs = False
        if teacher is not None:
            teacher.eval()
            teacher.requires_grad_(False)
            teacher.to(self.args.device)
        self._extra_logs: dict[str, list[float]] = {}
        self.add_callback(PruningCallback(self))

    @property
    def config(self) -> PruningConfig:
        return self.pruner.config

    def create_optimizer(self, model: Optional[nn.Module] = None) -> torch.optim.Optimizer:
        if self.optimizer is not None:
            return self.optimizer
        model = self.model
        scores = {id(p) for p in self.pruner.mask_score_parameters()}
        decay = set(self.get_decay_parameter_names(model))
        groups: list[dict[str, Any]] = [
            {"params": [p for n, p in model.named_parameters()
                        if p.requires_grad and id(p) not in scores and n in decay],
             "weight_decay": self.args.weight_decay},
            {"params": [p for n, p in model.named_parameters()
                        if p.requires_grad and id(p) not in scores and n not in decay],
             "weight_decay": 0.0},
        ]
        if scores:
            groups.append({"params": self.pruner.mask_score_parameters(), "weight_decay": 0.0,
                           "lr": self.config.mask_scores_learning_rate, SCORES_GROUP: True})
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = optimizer_cls([g for g in groups if g["params"]], **optimizer_kwargs)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None):
        """The weights follow the usual schedule; the mask scores keep a constant learning rate.

        Scores start at their init and must travel to the threshold (|logit(0.1)| = 2.2 for
        soft movement) at about one learning rate per step: under a linear decay a run of a few
        hundred steps stops them before the masks can follow the schedule.
        """
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        opt = optimizer if optimizer is not None else self.optimizer
        lambdas = getattr(scheduler, "lr_lambdas", None)
        if lambdas is not None:
            for i, group in enumerate(opt.param_groups):
                if group.get(SCORES_GROUP):
                    lambdas[i] = _constant
                    group["lr"] = group["initial_lr"]
        return scheduler

    def _clip_grad_norm(self, model: nn.Module):
        """Clip the gradients of the weights only. The scores' regularization gradient grows with
        lambda; inside a global norm it would shrink the weights' updates. Adam normalises the
        scores' steps anyway."""
        groups = self.optimizer.param_groups
        if not any(g.get(SCORES_GROUP) for g in groups):
            return super()._clip_grad_norm(model)
        weights = [p for g in groups if not g.get(SCORES_GROUP) for p in g["params"]]
        return self.accelerator.clip_grad_norm_(weights, self.args.max_grad_norm)

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None):
        outputs = model(**inputs)
        loss = outputs.loss
        if model.training:
            cfg = self.config
            if self.teacher is not None and cfg.alpha_teacher > 0:
                with torch.no_grad():
                    t_out = self.teacher(**inputs)
                mask = self.task.distillation_mask(inputs) if self.task is not None else None
                pairs = zip(self._logits(outputs), self._logits(t_out))
                parts = [distillation_loss(s, t, cfg.temperature, mask) for s, t in pairs]
                distill = torch.stack(parts).mean()
                self._remember("distill_loss", distill)
                self._remember("task_loss", loss)
                loss = cfg.alpha_ce * loss + cfg.alpha_teacher * distill
            elif self.pruner.regularized:
                # "loss" will include the lambda-scaled penalty: log the task's own loss too.
                self._remember("task_loss", loss)
            if self.pruner.regularized:
                reg = self.pruner.regularization_loss().to(loss.device)
                self._remember("regularization_loss", reg)
                loss = loss + reg
        return (loss, outputs) if return_outputs else loss

    def _logits(self, outputs: Any) -> tuple[torch.Tensor, ...]:
        if self.task is not None:
            return self.task.distillation_logits(outputs)
        return (outputs.logits,)

    def _remember(self, key: str, value: torch.Tensor) -> None:
        self._extra_logs.setdefault(key, []).append(float(value.detach()))

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:  # training logs, not evaluation
            for key, values in self._extra_logs.items():
                if values:
                    logs[key] = round(sum(values) / len(values), 6)
            self._extra_logs = {}
            logs.update({k: round(v, 6) for k, v in self.pruner.stats().items()})
        super().log(logs, *args, **kwargs)

    def train(self, resume_from_checkpoint: Any = None, **kwargs: Any):
        if isinstance(resume_from_checkpoint, (str, os.PathLike)):
            state_file = Path(resume_from_checkpoint) / STATE_FILE
            if state_file.is_file():
                self.pruner.load_state_dict(json.loads(state_file.read_text()))
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)


class PruningCallback(TrainerCallback):
    """Moves the schedule each step and saves the pruning state with every checkpoint."""

    def __init__(self, trainer: PruningTrainer) -> None:
        self.trainer = trainer

    @property
    def pruner(self) -> Pruner:
        return self.trainer.pruner

    def on_train_begin(self, args, state, control, **kwargs):
        # Only configure: on_step_begin moves the schedule. Stepping here too would update the
        # density controller twice for the first step of a resumed run.
        self.pruner.configure(state.max_steps)

    def on_step_begin(self, args, state, control, **kwargs):
        self.pruner.step(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        self.pruner.finalize()

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not folder.is_dir():
            return
        from nnprune.io_utils import atomic_write_text

        save_pruning_config(self.pruner.config, folder, self.pruner.saved_info())
        atomic_write_text(folder / STATE_FILE, json.dumps(self.pruner.state_dict()) + "\n")
