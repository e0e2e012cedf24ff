"""The cubic threshold schedule (Zhu & Gupta 2017, as used by Sanh et al. 2020).

``value(step)`` stays at ``initial`` during the warm-up, moves to ``final`` along a cubic, and
stays at ``final`` for the cool-down. ``progress`` is the same curve normalised to [0, 1]; the
regularization weight ramps with it.
"""

from __future__ import annotations

from dataclasses import dataclass


def resolve_steps(position: float, total_steps: int) -> int:
    """A schedule position given as a fraction (< 1) or a step count (whole number >= 1)."""
    if position < 1:
        return int(round(position * total_steps))
    return int(position)


@dataclass(frozen=True)
class CubicSchedule:
    initial: float
    final: float
    warmup_steps: int
    cooldown_steps: int
    total_steps: int

    @classmethod
    def build(cls, initial: float, final: float, initial_warmup: float, final_warmup: float,
              total_steps: int) -> "CubicSchedule":
        total = max(1, int(total_steps))
        warm = resolve_steps(initial_warmup, total)
        cool = resolve_steps(final_warmup, total)
        if warm + cool >= total:
            # Leave at least one pruning step; short debug runs must still reach the final value.
            warm = min(warm, max(0, total - 1))
            cool = max(0, total - warm - 1)
        return cls(initial, final, warm, cool, total)

    def progress(self, step: int) -> float:
        """0 before pruning starts, 1 from the start of the cool-down on."""
        if step <= self.warmup_steps:
            return 0.0
        pruning_steps = self.total_steps - self.warmup_steps - self.cooldown_steps
        if step >= self.warmup_steps + pruning_steps:
            return 1.0
        remaining = 1.0 - (step - self.warmup_steps) / pruning_steps
        return 1.0 - remaining ** 3

    def value(self, step: int) -> float:
        return self.final + (self.initial - self.final) * (1.0 - self.progress(step))
