"""Where a sweep's points train, on existing engines (no scheduler of nnprune's own):

* ``local``: a pool of N worker slots (:class:`concurrent.futures.ThreadPoolExecutor`), each
  point a ``python -m nnprune sweep-point`` process of its own (a crash fails that point only,
  its output goes to the point's ``sweep.log``). GPU-aware: a slot holds ``gpus`` GPUs
  (``CUDA_VISIBLE_DEVICES``), ``workers_per_gpu`` slots share them; the CPU threads are split
  between the slots.
* ``slurm``: one submitit array job, a task per point (:class:`PointTask`, checkpointable: a
  pre-empted or timed-out task is requeued and resumes its point from its last checkpoint).
* ``submitit-local`` / ``debug``: the same submitit path on submitit's local (a process per
  point) and in-process executors: the cluster path without a cluster.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from nnprune.errors import NNPruneError
from nnprune.io_utils import atomic_write_text
from nnprune.registry import Registry
from nnprune.workflows.sweep_points import LOG_FILE, PointContext, read_record, run_point
from nnprune.workflows.sweep_spec import (ExecutorKind, ExecutorSpec, read_saved_spec, slug,
                                          table_fingerprint)

logger = logging.getLogger(__name__)

SUBMITIT_DIR = "submitit"  # the submitit folder of a sweep (job pickles, job logs)
SUBMITTED_FILE = "sweep_jobs.json"  # the jobs a detached submission left running


@dataclass
class Outcome:
    """How a point's process or job ended: ``ok``, or the reason it did not."""

    point_id: str
    ok: bool
    reason: Optional[str] = None


def load_context(work: "str | Path") -> PointContext:
    """A point process's view of its sweep: the resolved spec the sweep saved in ``work`` and
    its latency table (the file the spec names, hashed: the table's identity in point keys)."""
    spec = read_saved_spec(Path(work))
    table = spec.latency.table
    return PointContext(spec, table, table_fingerprint(table) if table is not None else None)


def set_threads(threads: Optional[int]) -> None:
    """This process's torch CPU threads (a worker's share of the machine)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


# --------------------------------------------------------------------------------- local
@dataclass(frozen=True)
class Slot:
    """One worker slot: its GPUs (``None``: leave the visible devices alone, a CPU machine;
    ``()``: hide them) and its CPU threads."""

    index: int
    gpus: Optional[tuple[int, ...]]
    threads: int

    def describe(self) -> str:
        gpus = "cpu" if not self.gpus else f"gpu {','.join(map(str, self.gpus))}"
        return f"worker {self.index}: {gpus}, {self.threads} thread{'s' if self.threads > 1 else ''}"


def local_slots(spec: ExecutorSpec, gpu_count: int, cpu_count: int) -> list[Slot]:
    """The worker slots of the local executor on a machine with ``gpu_count`` GPUs and
    ``cpu_count`` cores: with GPUs, ``workers_per_gpu`` slots per group of ``gpus`` GPUs
    (default one GPU a point), at most ``workers``; without, ``workers`` CPU slots (default 1).
    Each slot gets its share of the cores."""
    per_point = spec.gpus if spec.gpus is not None else (1 if gpu_count else 0)
    if per_point > gpu_count:
        raise NNPruneError(f"executor.gpus: {per_point} GPU(s) a point, this machine has {gpu_count}")
    if per_point:
        groups = [tuple(range(g * per_point, (g + 1) * per_point)) for g in range(gpu_count // per_point)]
        gpu_slots: list[Optional[tuple[int, ...]]] = [grp for grp in groups for _ in range(spec.workers_per_gpu)]
        workers = spec.workers or len(gpu_slots)
        if workers > len(gpu_slots):
            raise NNPruneError(f"executor.workers: {workers} at once, but {gpu_count} GPU(s) with "
                               f"{spec.workers_per_gpu} worker(s) each hold {len(gpu_slots)}; raise "
                               "executor.workers_per_gpu to share them")
        gpu_slots = gpu_slots[:workers]
    else:
        workers = spec.workers or 1
        gpu_slots = [() if gpu_count else None] * workers  # CPU points on a GPU machine: hide them
    threads = spec.threads or max(1, cpu_count // workers)
    return [Slot(i, g, threads) for i, g in enumerate(gpu_slots)]


class LocalExecutor:
    """N points at once on this machine, each in its own process (see the module doc)."""

    def __init__(self, spec: ExecutorSpec, work: Path, slots: Optional[Sequence[Slot]] = None) -> None:
        """``slots``: the worker slots (default :func:`local_slots` of this machine)."""
        self.work = Path(work)
        if slots is None:
            import torch

            gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
            slots = local_slots(spec, gpus, os.cpu_count() or 1)
        self.slots = list(slots)

    def describe(self) -> list[str]:
        return [f"local: {len(self.slots)} worker(s) at once"] + [s.describe() for s in self.slots]

    def preflight(self) -> None:
        """Nothing to check: this machine runs the points."""

    def command(self, point_id: str, slot: Slot) -> list[str]:
        cmd = [sys.executable, "-m", "nnprune", "sweep-point", str(self.work), point_id,
               "--threads", str(slot.threads)]
        if slot.gpus is not None:
            # the standard env utility sets the child's devices; this process's stay as they are
            cmd = ["env", f"CUDA_VISIBLE_DEVICES={','.join(map(str, slot.gpus))}", *cmd]
        return cmd

    def run(self, point_ids: Sequence[str], detach: bool = False) -> list[Outcome]:
        """Every point, ``len(slots)`` at a time. Interrupted (Ctrl-C, or SIGTERM: ``kill``, a
        batch system's time limit), it stops its running points' processes and starts no more
        before it gives up: nothing keeps writing into the work folder behind a sweep that has
        exited, and the next run resumes each point from its last checkpoint."""
        if detach:
            raise NNPruneError("--detach leaves a cluster's jobs running; the local executor "
                               "runs its points in this process's children")
        free: "queue.Queue[Slot]" = queue.Queue()
        for slot in self.slots:
            free.put(slot)
        self._stopping = threading.Event()
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        outcomes: list[Outcome] = []
        with interrupt_on_sigterm(), ThreadPoolExecutor(max_workers=len(self.slots)) as pool:
            futures = [pool.submit(self._one, pid, free) for pid in point_ids]
            try:
                for future in as_completed(futures):
                    outcomes.append(future.result())
            except BaseException:
                self._stop(futures)
                raise
        return outcomes

    def _stop(self, futures: list[Any]) -> None:
        """Start no more points and end the running ones: SIGTERM, then SIGKILL after
        ``STOP_GRACE_S``."""
        self._stopping.set()
        for future in futures:
            future.cancel()
        with self._lock:
            running = list(self._running)
        for proc in running:
            proc.terminate()
        for proc in running:
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        logger.warning("sweep interrupted: %d running point(s) stopped; run it again to resume them",
                       len(running))

    def _one(self, point_id: str, free: "queue.Queue[Slot]") -> Outcome:
        slot = free.get()
        try:
            # under the lock: a stop either sees this process in _running or keeps it unstarted
            with self._lock:
                if self._stopping.is_set():
                    return Outcome(point_id, False, "the sweep was interrupted before it started")
                folder = self.work / point_id
                folder.mkdir(parents=True, exist_ok=True)
                logger.info("%s: started on %s", point_id, slot.describe())
                with (folder / LOG_FILE).open("ab") as log:  # the child holds its own copy
                    proc = subprocess.Popen(self.command(point_id, slot), stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                self._running.add(proc)
            rc = proc.wait()
            with self._lock:
                self._running.discard(proc)
        finally:
            free.put(slot)
        if rc == 0:
            return Outcome(point_id, True)
        return Outcome(point_id, False, f"its process exited with code {rc}")


STOP_GRACE_S = 10.0  # an interrupted sweep's points get this long to exit on SIGTERM


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the main thread while inside (what Ctrl-C does), so
    ``kill`` reaches the same clean-up; outside the main thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ------------------------------------------------------------------------------- submitit
class PointTask:
    """What a submitit job runs: one point of the sweep in ``work``, in the job's own process.
    Checkpointable: when SLURM pre-empts the task or its time runs out, submitit calls
    :meth:`checkpoint` and requeues the same call, which resumes the point."""

    def __init__(self, work: str, threads: Optional[int] = None) -> None:
        self.work = work
        self.threads = threads

    def __call__(self, point_id: str) -> dict[str, Any]:
        set_threads(self.threads)
        ctx = load_context(self.work)
        record = run_point(ctx, ctx.spec.point(point_id), log_to_file=True)
        return {"id": point_id, "state": record["state"], "metric": record.get("metric")}

    def checkpoint(self, point_id: str) -> Any:
        import submitit

        # nothing to save: the point's training checkpoints itself every save_steps
        return submitit.helpers.DelayedSubmission(self, point_id)


class SubmititExecutor:
    """One submitit array job, a task per point (``slurm``), or submitit's ``local`` / ``debug``
    executors on this machine (see the module doc)."""

    CLUSTERS = {ExecutorKind.SLURM: "slurm", ExecutorKind.SUBMITIT_LOCAL: "local",
                ExecutorKind.DEBUG: "debug"}

    def __init__(self, spec: ExecutorSpec, work: Path, name: str) -> None:
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise NNPruneError(f"executor {spec.kind.value} runs on submitit, which is not "
                               "installed: pip install 'nnprune[cluster]'") from None
        self.spec = spec
        self.work = Path(work)
        self.name = name
        self.cluster = self.CLUSTERS[spec.kind]

    def preflight(self) -> None:
        """Refuse now, before anything starts, a SLURM executor where SLURM is not."""
        import shutil

        missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
        if self.cluster == "slurm" and missing:
            raise NNPruneError(f"executor slurm: no {missing[0]} here; run the sweep where jobs are "
                               "submitted (a SLURM login node), or --executor submitit-local to try "
                               "the same path on this machine")

    def parameters(self) -> dict[str, Any]:
        """submitit's parameters of the job (its generic names, and ``slurm_`` ones)."""
        s = self.spec
        gpus = s.gpus if s.gpus is not None else (1 if s.kind is ExecutorKind.SLURM else 0)
        params: dict[str, Any] = {"name": f"nnprune-sweep-{slug(self.name)}",
                                  "timeout_min": s.time_min, "cpus_per_task": s.cpus_per_task,
                                  "mem_gb": s.mem_gb, "slurm_array_parallelism": s.array_parallelism}
        if gpus:
            params["gpus_per_node"] = gpus
        if s.partition:
            params["slurm_partition"] = s.partition
        if s.account:
            params["slurm_account"] = s.account
        if s.slurm:
            params["slurm_additional_parameters"] = dict(s.slurm)
        return params

    def describe(self) -> list[str]:
        shown = ", ".join(f"{k}={v}" for k, v in self.parameters().items())
        return [f"{self.spec.kind.value}: one array job, a task per point ({shown})"]

    def executor(self) -> Any:
        import submitit

        ex = submitit.AutoExecutor(folder=str(self.work / SUBMITIT_DIR / "%j"), cluster=self.cluster)
        ex.update_parameters(**self.parameters())
        return ex

    def run(self, point_ids: Sequence[str], detach: bool = False) -> list[Outcome]:
        if not point_ids:
            return []
        ex = self.executor()
        # a job's process gets its CPUs' threads; the debug executor runs in this process: its own
        threads = self.spec.threads or (None if self.cluster == "debug" else self.spec.cpus_per_task)
        jobs = ex.map_array(PointTask(str(self.work), threads), list(point_ids))
        atomic_write_text(self.work / SUBMITTED_FILE, json.dumps(
            {"cluster": self.cluster, "jobs": {pid: job.job_id for pid, job in zip(point_ids, jobs)}},
            indent=2) + "\n")
        logger.info("submitted %d point(s) as %s job %s", len(jobs), self.cluster,
                    jobs[0].job_id.split("_")[0])
        if detach:
            return []
        outcomes = []
        for pid, job in zip(point_ids, jobs):
            try:
                job.result()
                outcomes.append(Outcome(pid, True))
            except Exception as exc:  # submitit raises the job's own error, or its state
                outcomes.append(Outcome(pid, False, _first_line(exc)))
        return outcomes


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".strip()


#: One executor per kind; unknown kinds are refused with the known ones (ExecutorKind does).
EXECUTORS: Registry[type] = Registry("executor")
EXECUTORS.add(ExecutorKind.LOCAL.value, LocalExecutor)
for _kind in SubmititExecutor.CLUSTERS:
    EXECUTORS.add(_kind.value, SubmititExecutor)


def make_executor(spec: ExecutorSpec, work: Path, name: str) -> Any:
    """The executor of ``spec.kind`` for the sweep in ``work``."""
    cls = EXECUTORS.get(spec.kind.value)
    return cls(spec, work) if cls is LocalExecutor else cls(spec, work, name)


def recorded_state(work: Path, point_id: str) -> Optional[str]:
    record = read_record(Path(work) / point_id)
    return None if record is None else str(record["state"])


__all__ = ["EXECUTORS", "LocalExecutor", "Outcome", "PointTask", "SUBMITIT_DIR", "SUBMITTED_FILE",
           "Slot", "SubmititExecutor", "load_context", "local_slots", "make_executor",
           "recorded_state", "set_threads"]
