"""Seconds per phase of a job (load, score, evaluate, ...), logged as each phase ends and
reported in its result."""

from __future__ import annotations

import logging
import time


class PhaseClock:
    """``clock("score")`` ends the phase running since the last call (or since the clock was
    made): its seconds go to ``clock.seconds["score"]`` and to the log."""

    def __init__(self, logger: logging.Logger, job: str) -> None:
        self.seconds: dict[str, float] = {}
        self._logger = logger
        self._job = job
        self._tick = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._tick, 2)
        self._tick = now
        self._logger.info("%s: %s done in %.1f s", self._job, name, self.seconds[name])

    def restart(self) -> None:
        """The next phase starts now (time spent elsewhere meanwhile is not counted)."""
        self._tick = time.perf_counter()


__all__ = ["PhaseClock"]
