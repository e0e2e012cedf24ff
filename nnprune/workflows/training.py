"""The middle of every training workflow: data, model, teacher, ``PruningTrainer``, evaluation and
counts (:func:`run_training`), and the final save beside the Trainer's checkpoints
(:func:`save_final`). ``fine-prune`` (:mod:`nnprune.workflows.fine_prune`) and ``fill``
(:mod:`nnprune.workflows.fill`) are built on it.
"""

from __future__ import annotations

import functools
import json
import logging
import pickle
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import nnprune
from nnprune import ParamCount, PruningConfig, count_parameters, records
from nnprune.errors import NNPruneError
from nnprune.io_utils import (NAMESPACE_PREFIX, TMP_PREFIX, atomic_write_text, check_output_dir,
                              check_output_file, claim_output_dir, move_into, read_record,
                              record_written)
from nnprune.launch import barrier, from_main_process, is_main_process
from nnprune.tasks import DataArgs, TaskAdapter
from nnprune.workflows.options import TrainingOptions
from nnprune.workflows.preflight import check_data
from nnprune.workflows.progress import install_progress
from nnprune.workflows.tracking import check_trackers, log_final, place_tensorboard, run_name
from nnprune.workflows.trainer import PruningTrainer

logger = logging.getLogger(__name__)
# re-exported: the workflows and tests name them from here
FinePruneResult = records.FinePruneResult
RESULTS_FILE = records.RESULTS_FILE

IMPORTANCE_SAMPLES = 512  # training examples scored for score_init=importance
CHECKPOINT_PREFIX = "checkpoint-"  # the Trainer's resumable checkpoint folders
F = TypeVar("F", bound=Callable[..., Any])


def claim_output(output_dir: Path, opts: TrainingOptions, *inputs: Any):
    """:func:`nnprune.io_utils.claim_output_dir` of a training run's ``--output-dir`` with its
    ``--overwrite`` / ``--resume``: checked before any work, locked (one writer), a save a killed
    run left half-done finished. ``inputs``: the folders the run reads."""
    return claim_output_dir(output_dir, overwrite=opts.overwrite, resume=opts.resume,
                            inputs=[str(i) for i in inputs if i])


def claims_output(fn: F) -> F:
    """Run a workflow ``fn(args, ...)`` (``args.output_dir``, ``args.training``; ``checkpoint``,
    ``model``, ``teacher`` read) inside :func:`claim_output` of its output folder, from its first
    line to its last save."""
    @functools.wraps(fn)
    def run(args: Any, *rest: Any, **kw: Any) -> Any:
        inputs = [getattr(args, name, None) for name in ("checkpoint", "model", "teacher")]
        with claim_output(args.output_dir, args.training, *inputs):
            return fn(args, *rest, **kw)

    return run  # type: ignore[return-value]


def resume_checkpoint(output_dir: Path, opts: TrainingOptions) -> Optional[str]:
    """The checkpoint a run in ``output_dir`` resumes from (``--resume``), or ``None`` for a fresh
    run; refuses to start over existing checkpoints unless ``--overwrite``, which removes them
    (a stale ``checkpoint-900`` would otherwise be taken for this run's last one).

    ``--resume`` takes the last *complete* checkpoint (:func:`checkpoint_complete`): a process
    killed while saving leaves a half-written folder, which is skipped (and overwritten when the
    resumed run saves that step again).
    """
    folders = checkpoint_folders(output_dir)
    if opts.resume:
        complete = [f for f in folders if checkpoint_complete(f)]
        if not complete:
            what = (f"no complete {CHECKPOINT_PREFIX}* folder" if folders
                    else f"no {CHECKPOINT_PREFIX}* folder")
            raise NNPruneError(f"--resume: {what} in {output_dir} to resume from")
        for partial in folders[folders.index(complete[-1]) + 1:]:
            logger.warning("--resume: skipping %s, a half-written checkpoint (the run was stopped "
                           "while saving it)", partial)
        return str(complete[-1])
    if folders:
        if not opts.overwrite:
            raise NNPruneError(f"{output_dir} already holds checkpoints ({folders[-1].name}); pass "
                               "--resume to continue that run or --overwrite to start again")
        if is_main_process():
            for old in folders:
                shutil.rmtree(old)
            logger.info("--overwrite: removed the previous checkpoints in %s", output_dir)
    return None


def checkpoint_folders(output_dir: Path) -> list[Path]:
    """The Trainer's ``checkpoint-<step>`` folders in ``output_dir``, by step."""
    if not output_dir.is_dir():
        return []
    found = []
    for p in output_dir.iterdir():
        step = p.name[len(CHECKPOINT_PREFIX):]
        if p.name.startswith(CHECKPOINT_PREFIX) and step.isdigit() and p.is_dir():
            found.append((int(step), p))
    return [p for _, p in sorted(found)]


def checkpoint_complete(folder: Path) -> bool:
    """Whether a Trainer checkpoint was saved to the end. The Trainer writes the weights, the
    optimizer, scheduler and RNG states, then ``trainer_state.json``; the pruning callback then
    writes ``nnprune_state.json`` (atomically), last."""
    from nnprune import PruningCallback

    state = folder / "trainer_state.json"
    if not (state.is_file() and (folder / PruningCallback.STATE_FILE).is_file()):
        return False
    try:
        json.loads(state.read_text())
    except (OSError, ValueError):
        return False
    return True


def has_complete_checkpoint(output_dir: Path) -> bool:
    """Whether ``output_dir`` holds a checkpoint ``--resume`` can continue from."""
    return any(checkpoint_complete(f) for f in checkpoint_folders(output_dir))


def check_predictions_dir(folder: Optional[Path], overwrite: bool = False) -> None:
    """Refuse now (one line, before any work) a ``--predictions-dir`` that is a file. A folder
    holding the user's files is fine: prediction files are added to it
    (:func:`write_prediction_files` refuses to replace one nnprune did not write)."""
    if folder is not None:
        check_output_dir(folder, overwrite=overwrite, adds=True, option="--predictions-dir")


def write_prediction_files(files: dict[str, Any], folder: Path, *,
                           overwrite: bool = False) -> list[str]:
    """Write a task's prediction artefacts (:meth:`TaskAdapter.prediction_files`: file name ->
    JSON-able object) into ``folder``, each atomically; return their paths. A file of that name
    nnprune did not write there is replaced only with ``overwrite`` (checked for all of them
    before any is written); the folder records the files as nnprune's."""
    folder = Path(folder)
    for name in files:
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"prediction file name {name!r} must be a plain file name")
    check_predictions_dir(folder, overwrite)
    for name in files:
        check_output_file(folder / name, overwrite=overwrite, option="prediction file")
    if files:
        folder.mkdir(parents=True, exist_ok=True)
        record_written(folder, [], create=True)
    written = []
    for name, obj in files.items():
        path = folder / name
        atomic_write_text(path, json.dumps(obj, indent=2) + "\n")
        written.append(str(path))
    return written


@dataclass
class TrainingRun:
    """What :func:`run_training` leaves behind: the trained model (masks at their final
    threshold), its tokenizer, the trainer, the options it really used (defaults resolved), the
    parameter count of the model as it computes now, and the result."""

    model: Any
    tokenizer: Any
    trainer: Any
    options: TrainingOptions
    count: ParamCount
    result: FinePruneResult

    @property
    def is_main_process(self) -> bool:
        return bool(self.trainer.is_world_process_zero())


def collate_first(dataset: Any, collator: Any, n: int, batch_size: int) -> list[dict[str, Any]]:
    """The first ``n`` rows of a tokenized ``dataset``, collated into batches of ``batch_size``
    (what calibration and importance scoring run on)."""
    rows = [dataset[i] for i in range(min(n, len(dataset)))]
    return [collator(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]


def load_tokenizer(source: str) -> Any:
    """``AutoTokenizer.from_pretrained(source)``, or a one-line error; a tokenizer whose
    class only the folder's own code has (``auto_map``) is refused, that code never run."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise NNPruneError(f"cannot load a tokenizer from {source!r}: "
                           f"{str(exc).splitlines()[0]}") from None


def run_training(task: TaskAdapter, model_source: str, output_dir: Path, opts: TrainingOptions,
                 pcfg: PruningConfig, *, model: Any = None, tokenizer: Any = None,
                 latency: "Optional[nnprune.LatencyTable]" = None) -> TrainingRun:
    """Data, model, teacher, training and evaluation of one run with config ``pcfg``; no save
    but the task's prediction files (main process, into ``output_dir``).

    ``model_source``: the folder or hub name the model (unless ``model`` is given: e.g. a
    compacted model, which stock ``from_pretrained`` cannot build) and the tokenizer (unless
    ``tokenizer``) come from. ``opts.max_seq_length`` ``None`` means the task's default. The
    optimizer is created by the trainer when training starts, from the model's parameters at
    that time: anything that replaces layers (compaction) must happen before this call.
    ``latency``: the latency table a ``target_speedup`` cuts the masks with.

    Evaluation during training (``opts.eval_steps``) scores the model as it is being trained:
    the masks at the current point of the threshold schedule, not the final ones; the final
    evaluation (``result.metrics``) uses the final masks.
    """
    with claim_output(output_dir, opts, model_source):  # free when the caller holds it
        return _run_training(task, model_source, output_dir, opts, pcfg, model=model,
                             tokenizer=tokenizer, latency=latency)


def _run_training(task: TaskAdapter, model_source: str, output_dir: Path, opts: TrainingOptions,
                  pcfg: PruningConfig, *, model: Any, tokenizer: Any,
                  latency: "Optional[nnprune.LatencyTable]") -> TrainingRun:
    import torch
    from transformers import TrainingArguments, set_seed

    if opts.max_seq_length is None:
        opts = replace(opts, max_seq_length=task.default_max_seq_length)
    check_trackers(opts.trackers)
    resume_from = resume_checkpoint(output_dir, opts)
    data_args = DataArgs(data_dir=opts.data_dir, train_file=opts.train_file,
                         validation_file=opts.validation_file,
                         max_train_samples=opts.max_train_samples,
                         max_eval_samples=opts.max_eval_samples,
                         max_seq_length=opts.max_seq_length, seed=opts.seed)
    set_seed(opts.seed)
    if tokenizer is None:
        tokenizer = load_tokenizer(model_source)
    data = task.load_data(tokenizer, data_args)
    check_data(data, task.name)  # before the model: data left empty once filtered is one line
    if model is None:
        model = task.build_model(model_source)
    calib = None
    if pcfg.prunes and pcfg.score_init == "importance":
        # the first training examples: their head / FFN-dim Fisher importance orders the scores
        calib = collate_first(data.train, data.data_collator, IMPORTANCE_SAMPLES, opts.batch_size)
    pruning = nnprune.attach_masks(model, config=pcfg, latency_table=latency,
                                   importance_batches=calib)
    teacher = None
    if pcfg.teacher:
        # A teacher with another head or another label order would distil the wrong classes.
        task.check_checkpoint(nnprune.inspect_checkpoint(pcfg.teacher).config, str(pcfg.teacher))
        teacher = nnprune.load_pretrained(pcfg.teacher, bake_masks=True)
    training_args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=opts.batch_size,
        per_device_eval_batch_size=opts.eval_batch_size or opts.batch_size,
        num_train_epochs=opts.epochs,
        max_steps=opts.max_steps if opts.max_steps is not None else -1,
        learning_rate=opts.learning_rate,
        warmup_steps=opts.warmup,
        weight_decay=opts.weight_decay,
        seed=opts.seed,
        data_seed=opts.order_seed,
        logging_steps=opts.logging_steps,
        save_strategy="steps",
        save_steps=opts.save_steps,
        save_total_limit=opts.save_total_limit,
        eval_strategy="steps" if opts.eval_steps else "no",
        eval_steps=opts.eval_steps,
        report_to=opts.trackers,  # --report-to: the Trainer's own integrations
        run_name=run_name(output_dir),
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )
    eval_first = next(iter(data.eval.values()), None)
    trainer = PruningTrainer(
        model=model, args=training_args, train_dataset=data.train,
        eval_dataset=eval_first if opts.eval_steps else None,
        data_collator=data.data_collator, processing_class=tokenizer,
        pruning=pruning, task=task, teacher=teacher)
    install_progress(trainer)  # log lines instead of the Trainer's dict prints and tqdm bars
    tensorboard = place_tensorboard(trainer, output_dir)
    if tensorboard is not None and trainer.is_world_process_zero():
        record_written(output_dir, [tensorboard.name])  # nnprune's: --overwrite may replace it
    start = time.perf_counter()
    try:
        train_out = trainer.train(resume_from_checkpoint=resume_from)
    except pickle.UnpicklingError:
        # The Trainer reads a checkpoint's RNG, optimizer and scheduler states with
        # torch.load(weights_only=True): a pickle holding more than tensors is refused, never run.
        if resume_from is None:
            raise
        raise NNPruneError(f"cannot resume from {resume_from}: one of its state files "
                           "(optimizer.pt, scheduler.pt, rng_state.pth) holds more than tensors "
                           "and is not unpickled; remove that checkpoint folder, or start again "
                           "with --overwrite") from None
    seconds = time.perf_counter() - start
    pruning.finalize()
    metrics = task.evaluate(trainer, data)
    log_final(trainer, metrics)  # the final masks' evaluation, beside the curves
    # the task's prediction files (SQuAD: predictions.json, ...) beside the results; save_final
    # keeps the ones named in the results
    files = task.prediction_files()
    if files and trainer.is_world_process_zero():
        predictions = write_prediction_files(files, output_dir)
    else:
        predictions = [str(output_dir / name) for name in files]
    count = count_parameters(model, seq_len=opts.max_seq_length)
    density = pruning.density() if len(pruning) else count.density
    result = FinePruneResult(output_dir, metrics, task.main_metric, density, _group_density(count),
                             count.estimated_speedup, count.compression, seconds,
                             int(train_out.global_step), predictions)
    return TrainingRun(model, tokenizer, trainer, opts, count, result)


def _group_density(count: Any) -> dict[str, float]:
    sums: dict[str, list[int]] = {"attention": [0, 0], "ffn": [0, 0]}
    for lc in count.layers:
        for name, (rem, tot) in lc.matrices.items():
            g = sums["ffn" if name.startswith("ffn") else "attention"]
            g[0] += rem
            g[1] += tot
    return {g: (r / t if t else 1.0) for g, (r, t) in sums.items()}


def save_final(model: Any, tokenizer: Any, record: "records.RunConfig", output_dir: Path) -> None:
    """Save the final model *beside* the Trainer's checkpoint-* folders, with its run
    ``record`` (``nnprune_config.json``) and its results (``record.results``, in
    ``nnprune_results.json``).

    Never half-written: the whole model is written to a temporary folder inside ``output_dir``
    first, then its files are moved in (``config.json``, then the results, last) by
    :func:`nnprune.io_utils.move_into`, which the next claim of the folder finishes if the
    process is killed half-way; before that an earlier final model there is untouched. The
    files of an earlier final model that this save does not write again (a
    ``model.safetensors.index.json`` of a sharded save, say, which loaders would prefer) are
    removed: those nnprune recorded writing, never the user's; sub-folders (checkpoints, a
    ``prune`` stage) are kept.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output_dir, prefix=f"{TMP_PREFIX}final-"))
    try:
        model_dir = staging / "model"
        nnprune.save_pretrained(model, model_dir, tokenizer=tokenizer, record=record)
        if record.results is not None:
            records.write_results(model_dir, record.results)
        written = {f.name for f in model_dir.iterdir()}
        # run_training's prediction files, named in the results, are this run's too
        if isinstance(record.results, FinePruneResult):
            written |= {Path(p).name for p in record.results.prediction_files}
        earlier = (read_record(output_dir) or set()) | {
            f.name for f in output_dir.iterdir() if f.name.startswith(NAMESPACE_PREFIX)}
        stale = sorted(n for n in earlier if n not in written and (output_dir / n).is_file())
        for name in stale:
            logger.info("removing %s of an earlier save", output_dir / name)
        move_into(output_dir, model_dir, remove=stale, last=("config.json", records.RESULTS_FILE))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


__all__ = ["CHECKPOINT_PREFIX", "RESULTS_FILE", "FinePruneResult", "TrainingRun", "barrier",
           "check_predictions_dir", "claim_output", "claims_output", "has_complete_checkpoint",
           "checkpoint_complete", "checkpoint_folders", "collate_first", "from_main_process",
           "load_tokenizer", "resume_checkpoint", "run_training", "save_final",
           "write_prediction_files"]
