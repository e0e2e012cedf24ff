"""The commands' ``Trainer``: fine-pruning through the public API (:class:`nnprune.FinePruning`
and its :class:`nnprune.PruningCallback`, which moves the schedule, adds the regularization
gradient, saves and restores the pruning state with every checkpoint), plus what only the
commands do: distillation from a teacher on the task's logits, the mask scores as a group of the
Trainer's own optimizer (own learning rate, constant, no weight decay, outside the gradient
clipping: the checkpoints of runs started before the public API resume as they were) and the
extra loss terms in the logs. Its checkpoints appear only complete (:meth:`PruningTrainer._save_checkpoint`).
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn
from transformers import Trainer

import nnprune
from nnprune.io_utils import CHECKPOINT_RE, TMP_PREFIX

SCORES_GROUP = "nnprune_mask_scores"  # marks the optimizer group of the mask scores


def _constant(step: int) -> float:
    return 1.0


class PruningTrainer(Trainer):
    """A ``Trainer`` that fine-prunes ``pruning``'s model: task loss (+ distillation); the
    callback adds the scores' regularization."""

    def __init__(self, *args: Any, pruning: "nnprune.FinePruning", task: Any = None,
                 teacher: Optional[nn.Module] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pruning = pruning
        self.task = task
        self.teacher = teacher
        # The loss is a per-batch mean plus extra terms; don't let the Trainer rescale it.
        self.model_accepts_loss_kwargs = False
        if teacher is not None:
            teacher.eval()
            teacher.requires_grad_(False)
            teacher.to(self.args.device)
        self._extra_logs: dict[str, list[float]] = {}
        self._hidden_map: Optional[tuple[list[int], Optional[list[int]]]] = None
        self._pruning_callback = nnprune.PruningCallback(pruning, manage_optimizer=False)
        self.add_callback(self._pruning_callback)
        self._staging_root: Optional[str] = None

    # ------------------------------------------------------------------ checkpoints
    def _run_epoch(self, *args: Any, **kwargs: Any) -> Any:
        """One epoch, unless the run has no step left: the Trainer resumed from the checkpoint of
        its last step (a run killed while saving its final model) would take one step more
        before it checks, and end with other weights than the unbroken run."""
        if 0 < self.state.max_steps <= self.state.global_step:
            self.control.should_training_stop = True
            return None
        return super()._run_epoch(*args, **kwargs)

    def _get_output_dir(self, trial: Any) -> str:
        # while a checkpoint is written: the temporary folder it is written in
        return self._staging_root or super()._get_output_dir(trial)

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """The Trainer's checkpoint, written whole in a temporary folder (every process writes its
        part: weights, optimizer, its RNG state), with the pruning state, then renamed into
        ``checkpoint-<step>``: a process killed (or a disk full) while saving leaves no
        ``checkpoint-<step>`` folder at all, only a temporary one the next claim of the folder
        removes. Older checkpoints past ``save_total_limit`` are renamed away before they are
        deleted, so none is ever seen half-deleted either."""
        run_dir = Path(super()._get_output_dir(trial))
        name = f"checkpoint-{self.state.global_step}"
        staging = run_dir / f"{TMP_PREFIX}{name}"
        main = self.args.should_save
        if main:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        self.accelerator.wait_for_everyone()  # the others write their RNG state there too
        self._staging_root = str(staging)
        try:
            super()._save_checkpoint(model, trial)
            if main:
                # the pruning state inside, before the folder appears (the callback writes it
                # again into the renamed folder, the same bytes)
                args = copy.copy(self.args)
                args.output_dir = str(staging)
                self._pruning_callback.on_save(args, self.state, self.control)
        except BaseException:
            if main:
                shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            self._staging_root = None
        self.accelerator.wait_for_everyone()
        if main:
            final = run_dir / name
            if final.exists():  # the same step saved again (a resumed run)
                _remove_whole(final, run_dir)
            os.replace(staging / name, final)
            shutil.rmtree(staging, ignore_errors=True)
            self._rotate(run_dir)

    def _rotate(self, run_dir: Path) -> None:
        """Keep the last ``save_total_limit`` checkpoints (and the best one)."""
        limit = self.args.save_total_limit
        if not limit or limit <= 0:
            return
        found = sorted((int(p.name.split("-")[1]), p) for p in run_dir.iterdir()
                       if CHECKPOINT_RE.fullmatch(p.name) and p.is_dir())
        best = self.state.best_model_checkpoint
        keep = {p for _, p in found[-limit:]} | ({Path(best)} if best else set())
        for _, p in found:
            if p not in keep:
                _remove_whole(p, run_dir)

    @property
    def config(self) -> "nnprune.PruningConfig":
        return self.pruning.config

    def create_optimizer(self, model: Optional[nn.Module] = None) -> torch.optim.Optimizer:
        if self.optimizer is not None:
            return self.optimizer
        model = self.model
        groups = self.pruning.parameter_groups(
            weight_decay=self.args.weight_decay,
            decay_names=set(self.get_decay_parameter_names(model)))
        if self.pruning.score_parameters():  # the last group: marked for the scheduler and clipping
            groups[-1][SCORES_GROUP] = True
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
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
        cfg = self.config
        layerwise = model.training and self.teacher is not None and cfg.alpha_hidden > 0
        outputs = model(**inputs, **({"output_hidden_states": True} if layerwise else {}))
        loss = outputs.loss
        if model.training:
            if self.teacher is not None and (cfg.alpha_teacher > 0 or layerwise):
                with torch.no_grad():
                    t_out = self.teacher(**inputs, **({"output_hidden_states": True} if layerwise else {}))
                self._remember("task_loss", loss)
                if cfg.alpha_teacher > 0:
                    mask = self.task.distillation_mask(inputs) if self.task is not None else None
                    pairs = zip(self._logits(outputs), self._logits(t_out))
                    parts = [nnprune.distillation_loss(s, t, cfg.temperature, mask) for s, t in pairs]
                    distill = torch.stack(parts).mean()
                    self._remember("distill_loss", distill)
                    loss = cfg.alpha_ce * loss + cfg.alpha_teacher * distill
                if layerwise:
                    if self._hidden_map is None:  # the student's shape does not change in a run
                        self._hidden_map = nnprune.student_hidden_map(self.accelerator.unwrap_model(model),
                                                                      self.teacher)
                    hidden = nnprune.hidden_distillation_loss(
                        outputs.hidden_states, t_out.hidden_states, self._hidden_map,
                        inputs.get("attention_mask"))
                    self._remember("hidden_loss", hidden)
                    loss = loss + cfg.alpha_hidden * hidden
            elif self.pruning.regularized:
                # the task's own loss, beside the regularization the logs show
                self._remember("task_loss", loss)
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
            logs.update({k: round(v, 6) for k, v in self.pruning.stats().items()})
        super().log(logs, *args, **kwargs)


def _remove_whole(folder: Path, parent: Path) -> None:
    """Rename ``folder`` away, then delete it: it is there whole or not at all."""
    gone = parent / f"{TMP_PREFIX}removed-{folder.name}"
    shutil.rmtree(gone, ignore_errors=True)
    os.replace(folder, gone)
    shutil.rmtree(gone, ignore_errors=True)


__all__ = ["SCORES_GROUP", "PruningTrainer"]
