"""One fine-pruning job, end to end: config, training (:func:`~nnprune.workflows.training.run_training`)
and the final save of the masked model.

The CLI's ``fine-prune`` command parses options into :class:`FinePruneArgs` and calls
:func:`fine_prune`; scripts can do the same. A method preset marked ``fill`` (``hybrid-filled``)
makes :func:`fine_prune` run both stages: fine-pruning into ``OUTPUT/prune``, then
:func:`~nnprune.workflows.fill.fill` from there into ``OUTPUT``. ``auto`` (the default with a
speed target) chooses between that and one-shot pruning + distillation by the model and the
budget (:mod:`nnprune.workflows.route`); both leave the same two folders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import nnprune
from nnprune import (METHODS, LatencySetting, LatencyTable, PruningConfig, check_speedup_target,
                     load_config, method_config, records)
from nnprune.errors import NNPruneError
from nnprune.launch import is_main_process, world_size
from nnprune.settings import coerce, load_config_file, parse_assignments
from nnprune.tasks import DataArgs, TaskAdapter, get_task
from nnprune.workflows.fill import FillArgs, FillInit, FillResult, fill
from nnprune.workflows.options import TrainingOptions
from nnprune.workflows.preflight import (cap_max_seq_length, check_data_paths, check_device,
                                         check_free_disk, check_output_dir, check_seq_lens,
                                         check_task_head, check_tokenizer, parameter_count,
                                         run_bytes)
from nnprune.workflows.route import (AUTO_METHOD, Budget, Route, RouteChoice, budget_of,
                                     choose_route)
from nnprune.workflows.speed import add_results, record_speed_check
from nnprune.workflows.training import (RESULTS_FILE, FinePruneResult, barrier, claims_output,
                                        has_complete_checkpoint,
                                        load_tokenizer, resume_checkpoint, run_training,
                                        save_final)

logger = logging.getLogger(__name__)

PRUNE_SUBDIR = "prune"  # where fine-prune --method hybrid-filled puts its pruning stage


@dataclass(frozen=True)
class FinePruneArgs:
    """One fine-pruning job: what to prune, how, and the shared :class:`TrainingOptions`."""

    task: str
    model: str
    output_dir: Path
    # a preset (METHODS) or "auto"; None: a config file's method, else "auto" with a
    # target_speedup and "hybrid-nt" without
    method: Optional[str] = None
    teacher: Optional[str] = None
    target_density: Optional[float] = None
    target_speedup: Optional[float] = None  # measured speedup asked for (latency table)
    latency: LatencySetting = field(default_factory=LatencySetting)  # where that speed counts
    latency_table: Optional[Path] = None  # a saved table to use instead of the cached/measured one
    config_file: Optional[Path] = None
    overrides: tuple[str, ...] = ()  # "key=value" pruning config overrides (--set)
    # Only for a method that fills after pruning (hybrid-filled): the fill stage's budget. Both
    # None: the same as the pruning stage; fill_max_steps wins over fill_epochs.
    fill_epochs: Optional[float] = None
    fill_max_steps: Optional[int] = None
    fill_init: FillInit = FillInit.NOISE  # what fills the zeros inside kept units (fill stage)
    task_options: dict[str, str] = field(default_factory=dict)  # --task-option key=value
    training: TrainingOptions = field(default_factory=TrainingOptions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        object.__setattr__(self, "overrides", tuple(self.overrides))
        if self.latency_table is not None:
            object.__setattr__(self, "latency_table", Path(self.latency_table))
        if self.target_density is not None and not 0 < self.target_density <= 1:
            raise NNPruneError(f"--target-density must be in (0, 1], got {self.target_density}")
        check_speedup_target(self.target_speedup, self.target_density)
        object.__setattr__(self, "fill_init", FillInit.parse(self.fill_init, "--fill-init"))
        if self.fill_max_steps is not None and self.fill_max_steps < 1:
            raise NNPruneError(f"--fill-max-steps must be >= 1, got {self.fill_max_steps}")
        if self.fill_epochs is not None and self.fill_epochs <= 0:
            raise NNPruneError(f"--fill-epochs must be > 0, got {self.fill_epochs}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values, as recorded in ``nnprune_config.json``."""
        out = {k: getattr(self, k) for k in ("task", "model", "method", "teacher", "target_density",
                                             "target_speedup", "fill_epochs", "fill_max_steps")}
        out["latency"] = self.latency.to_dict()
        out["fill_init"] = self.fill_init.value
        out.update(output_dir=str(self.output_dir), overrides=list(self.overrides),
                   latency_table=None if self.latency_table is None else str(self.latency_table),
                   task_options=dict(self.task_options),
                   config_file=None if self.config_file is None else str(self.config_file))
        return {**out, **self.training.to_dict()}


def _file_settings(args: FinePruneArgs) -> dict[str, Any]:
    """The --config file's settings, each checked against its pruning config field (a key or a
    value of the wrong type is a one-line error naming it, before any work)."""
    if args.config_file is None:
        return {}
    settings = load_config_file(args.config_file)
    try:
        return {k: coerce(nnprune.PruningConfig, k, v, what="pruning config")
                for k, v in settings.items()}
    except NNPruneError as exc:
        raise NNPruneError(f"config file {args.config_file}: {exc}") from None


def requested_method(args: FinePruneArgs) -> str:
    """--method, else the config file's ``method``, else ``auto`` with a speed target (explicit
    or in the file) and ``hybrid-nt`` without."""
    if args.method is not None:
        return args.method
    file = _file_settings(args)
    if "method" in file:
        return str(file["method"])
    speed_target = args.target_speedup is not None or (
        args.target_density is None and file.get("target_speedup") is not None)
    return AUTO_METHOD if speed_target else "hybrid-nt"


def resolve_config(args: FinePruneArgs, method: Optional[str] = None,
                   default_teacher: Optional[str] = None) -> PruningConfig:
    """Preset < config file < --set overrides < explicit --teacher / --target-density /
    --target-speedup (an explicit target replaces a file's target of either kind).

    ``method``: the preset (default :func:`requested_method`); ``default_teacher``: the teacher
    when neither --teacher nor the file names one."""
    overrides = _file_settings(args)
    overrides.pop("method", None)
    method = method or requested_method(args)
    overrides.update(parse_assignments(args.overrides, option="--set"))
    # Explicit flags win over the file and --set: take the keys out either way.
    file_teacher = overrides.pop("teacher", None)
    file_density = overrides.pop("target_density", None)
    file_speedup = overrides.pop("target_speedup", None)
    teacher = args.teacher or file_teacher or default_teacher
    density, speedup = args.target_density, args.target_speedup
    if density is None and speedup is None:
        density, speedup = file_density, file_speedup
    return method_config(method, teacher=teacher,
                         target_density=coerce(nnprune.PruningConfig, "target_density", density,
                                               what="pruning config"),
                         target_speedup=coerce(nnprune.PruningConfig, "target_speedup", speedup,
                                               what="pruning config"),
                         overrides=overrides)


def fine_prune(args: FinePruneArgs, *, model: Any = None,
               tokenizer: Any = None) -> FinePruneResult | FillResult:
    """Run one fine-pruning job and save the final masked model in ``args.output_dir``.

    ``model``: start from this model instead of ``task.build_model(args.model)``; ``tokenizer``:
    instead of the one in ``args.model``. A method preset marked ``fill`` (``hybrid-filled``) runs
    both stages (see :func:`prune_then_fill`); its result is then a :class:`FillResult`.
    Everything that can be checked before work is (:func:`check_before_work`), before the output
    folder is claimed: a refused run leaves it as it was, even with ``overwrite``.
    """
    task = get_task(args.task, args.task_options)
    args = replace(args, method=requested_method(args))  # recorded as what ran, never None
    if args.method != AUTO_METHOD and args.method not in METHODS:
        raise NNPruneError(f"unknown method {args.method!r}; known: {AUTO_METHOD}, "
                           f"{', '.join(METHODS.names())}")
    args, tokenizer = check_before_work(args, task, model=model, tokenizer=tokenizer)
    return _fine_prune_claimed(args, task, model=model, tokenizer=tokenizer)


@claims_output  # the output folder is checked and locked before any work, until the last save
def _fine_prune_claimed(args: FinePruneArgs, task: TaskAdapter, *, model: Any = None,
                        tokenizer: Any = None) -> FinePruneResult | FillResult:
    if args.method == AUTO_METHOD:
        if model is not None:
            raise NNPruneError("--method auto chooses how to start from args.model; it does not "
                               "take a prebuilt model")
        return _auto(args, task)
    pcfg = resolve_config(args)
    table = resolve_latency(args, pcfg, task, model)
    if METHODS.get(pcfg.method).fill:
        if model is not None:
            raise NNPruneError(f"method {pcfg.method!r} runs two stages from args.model; "
                               "it does not take a prebuilt model")
        result: FinePruneResult = prune_then_fill(args, pcfg, task, table)
    else:
        result = _fine_prune_once(args, pcfg, task, model=model, tokenizer=tokenizer, table=table)
    if table is not None and is_main_process():
        result.speed_check = record_speed_check(args.output_dir, table)
    return result


def check_before_work(args: FinePruneArgs, task: TaskAdapter, *, model: Any = None,
                      tokenizer: Any = None) -> tuple[FinePruneArgs, Any]:
    """What :func:`fine_prune` checks before it loads data or trains
    (:mod:`nnprune.workflows.preflight`): the output folder, the latency device and length, the
    sequence length against the model's positions (capped, with a warning), the starting
    model's and the teacher's heads against the task, the tokenizer against the vocabulary, and
    the free disk for what the run writes. Returns ``args`` with the length it will use and the
    tokenizer (loaded here unless given)."""
    check_output_dir(args.output_dir)
    check_data_paths(args.training)
    config = model.config if model is not None else load_config(args.model)
    where = str(args.model)
    if args.latency_table is None:
        check_device(args.latency.device, "--latency-device")
    check_seq_lens(config, [args.latency.seq_len], "--latency-seq-len", where)
    length = args.training.max_seq_length or task.default_max_seq_length
    capped = cap_max_seq_length(config, length, where)
    if capped != length:
        args = replace(args, training=replace(args.training, max_seq_length=capped))
    check_task_head(task, config.to_dict(), where)
    teacher = args.teacher or _file_settings(args).get("teacher")
    if teacher:  # a teacher with another head would distil the wrong classes
        task.check_checkpoint(nnprune.inspect_checkpoint(teacher).config, str(teacher))
    if tokenizer is None:
        tokenizer = load_tokenizer(args.model)
    check_tokenizer(tokenizer, config, where)
    stages = 2 if args.method == AUTO_METHOD or METHODS.get(args.method).fill else 1
    check_free_disk(args.output_dir, run_bytes(parameter_count(config) or 0, args.training,
                                               stages=stages, masked=args.method != "dense"))
    return args, tokenizer


def resolve_latency(args: FinePruneArgs, pcfg: PruningConfig, task: TaskAdapter,
                    model: Any = None) -> Optional[LatencyTable]:
    """The latency table a ``target_speedup`` run cuts its masks with
    (:func:`nnprune.latency_table`); refuses a target beyond its reach before
    any training."""
    if pcfg.target_speedup is None or not pcfg.prunes:
        return None
    config = model.config if model is not None else load_config(args.model)
    # measured (or read) once, on the main process: every process cuts with the same table
    table = nnprune.latency_table(config, setting=args.latency.at(_latency_seq_len(args, task)),
                                  path=args.latency_table)
    final = table.model.budget_ms(pcfg.target_speedup)
    logger.info("target %.2fx: %.2f ms -> %.2f ms per forward at batch %d x %d tokens",
                pcfg.target_speedup, table.model.dense_ms, final,
                table.key["setting"]["batch_size"], table.key["setting"]["seq_len"])
    return table


def _latency_seq_len(args: FinePruneArgs, task: TaskAdapter) -> int:
    return args.training.max_seq_length or task.default_max_seq_length


def _fine_prune_once(args: FinePruneArgs, pcfg: PruningConfig, task: TaskAdapter, *,
                     model: Any = None, tokenizer: Any = None,
                     table: Optional[LatencyTable] = None) -> FinePruneResult:
    run = run_training(task, args.model, args.output_dir, args.training, pcfg, model=model,
                       tokenizer=tokenizer, latency=table)
    if run.is_main_process:
        record = records.RunConfig(
            pruning=pcfg, task=args.task, base_model=args.model, results=run.result,
            training=records.CommandOptions({**args.to_dict(), **run.options.to_dict()}),
            latency_table=records.latency_record(table.to_dict()) if table is not None else None)
        save_final(run.model, run.tokenizer, record, args.output_dir)
    return run.result


def fill_budget(args: FinePruneArgs) -> TrainingOptions:
    """The fill stage's options: the pruning stage's, with ``fill_max_steps`` steps, else
    ``fill_epochs`` epochs, else the pruning stage's own budget."""
    opts = args.training
    if args.fill_max_steps is not None:
        return replace(opts, max_steps=args.fill_max_steps)
    if args.fill_epochs is not None:
        return replace(opts, epochs=args.fill_epochs, max_steps=None)
    return opts


def prune_then_fill(args: FinePruneArgs, pcfg: PruningConfig, task: TaskAdapter,
                    table: Optional[LatencyTable] = None) -> FillResult:
    """Both stages of a ``fill`` method preset (``hybrid-filled``): fine-prune ``args.model``
    with ``pcfg`` into ``OUTPUT/prune``, then :func:`fill` it into ``OUTPUT`` with the same
    teacher, data and optimiser settings (budget: :func:`fill_budget`).

    With ``resume`` a pruning stage that already saved its final model is not run again, and the
    fill stage resumes from its own checkpoints in ``OUTPUT`` when it has some.
    """
    if not pcfg.teacher:  # pragma: no cover - build_config refuses fill presets without one
        raise NNPruneError(f"method {pcfg.method!r} distils from a teacher: pass --teacher PATH")

    def stage1(prune_dir: Path) -> None:
        _fine_prune_once(replace(args, output_dir=prune_dir), pcfg, task, table=table)

    return _then_fill(args, stage1, FillArgs(
        checkpoint=args.output_dir / PRUNE_SUBDIR, task=args.task, output_dir=args.output_dir,
        teacher=pcfg.teacher, task_options=args.task_options, fill_init=args.fill_init,
        training=fill_budget(args), alpha_hidden=pcfg.alpha_hidden))


def _then_fill(args: FinePruneArgs, stage1: Callable[[Path], None], fill_args: FillArgs) -> FillResult:
    """Run ``stage1`` into ``OUTPUT/prune`` (every process: it synchronises them itself), then
    ``fill_args`` from there into ``OUTPUT``. With ``resume`` a first stage that already saved
    its final model is not run again, and the fill stage resumes from its own checkpoints in
    ``OUTPUT`` when it has some."""
    out = args.output_dir
    opts = args.training
    fill_has_checkpoints = has_complete_checkpoint(out)
    if not opts.resume:
        resume_checkpoint(out, opts)  # refuse now, not after the first stage, if OUTPUT is in use
    prune_dir = out / PRUNE_SUBDIR
    finished = (prune_dir / RESULTS_FILE).is_file() and (prune_dir / "config.json").is_file()
    if not (opts.resume and finished):  # resuming after the first stage saved: skip it
        stage1(prune_dir)
    barrier()  # other processes read OUTPUT/prune only once the main one has written it
    training = replace(fill_args.training, resume=opts.resume and fill_has_checkpoints)
    return fill(replace(fill_args, training=training))


def _auto(args: FinePruneArgs, task: TaskAdapter) -> FinePruneResult:
    """``--method auto``: choose the route (:func:`~nnprune.workflows.route.choose_route`), run
    it, and record the choice in the results."""
    # hybrid-filled's config: it checks --set / the file and resolves the target and teacher;
    # the model stands in as the teacher until the route is known.
    pcfg = resolve_config(args, Route.HYBRID_FILLED.value, default_teacher=args.model)
    if pcfg.target_speedup is None:
        raise NNPruneError("--method auto chooses the route to a --target-speedup; with "
                           "--target-density choose a method (e.g. --method hybrid-filled)")
    teacher = args.teacher or _file_settings(args).get("teacher")
    budget = budget_of(args.training, fill_budget(args), lambda: _count_train(args, task),
                       world_size())
    choice = choose_route(task, args.model, load_config(args.model).to_dict(), budget, teacher)
    logger.info("--method auto: %s (%s)", choice.route.value, choice.reason)
    table = resolve_latency(args, pcfg, task)
    if choice.route is Route.ONE_SHOT:
        result: FinePruneResult = _one_shot_then_fill(args, task, choice, budget, pcfg)
    else:
        result = prune_then_fill(replace(args, method=Route.HYBRID_FILLED.value),
                                 pcfg.replace(teacher=choice.teacher), task, table)
    result.route = choice.to_dict()
    if is_main_process():
        add_results(args.output_dir, route=result.route)
        # The command that made OUTPUT is this auto one, whatever its stages record
        records.update_config(args.output_dir, auto=records.AutoRecord(training=records.CommandOptions(args.to_dict()),
                                                       route=result.route))
        if table is not None:
            result.speed_check = record_speed_check(args.output_dir, table)
    return result


def _one_shot_then_fill(args: FinePruneArgs, task: TaskAdapter, choice: RouteChoice,
                        budget: Budget, pcfg: PruningConfig) -> FillResult:
    """:attr:`Route.ONE_SHOT`: ``nnprune prune`` into ``OUTPUT/prune``, then distil the
    compacted model from ``choice.teacher`` into ``OUTPUT`` for the whole budget."""
    from nnprune.workflows.prune import PRUNE_TRAINING, PruneArgs, prune

    recipe = set(_file_settings(args)) - {"method", "teacher", "target_speedup"}
    unused = [name for name, given in (
        ("--set", bool(args.overrides)), (f"--config's {', '.join(sorted(recipe))}", bool(recipe)),
        ("--fill-init weights", args.fill_init is FillInit.WEIGHTS)) if given]
    if unused:
        raise NNPruneError(f"{', '.join(unused)} configure fine-pruning, and --method auto chose "
                           f"one-shot pruning for this budget ({choice.reason}); pass --method "
                           "hybrid-filled to fine-prune with them")
    opts = args.training

    # the run's data, sequence length, seed and batch size calibrate the cut
    calibration = replace(PRUNE_TRAINING, **{name: getattr(opts, name) for name in (
        "batch_size", "max_seq_length", "seed", "data_dir", "train_file", "validation_file",
        "max_eval_samples", "overwrite", "resume")})

    def stage1(prune_dir: Path) -> None:
        prune(PruneArgs(  # every process: prune synchronises them itself
            checkpoint=args.model, task=args.task, output_dir=prune_dir,
            target_speedup=pcfg.target_speedup, speed_probe=False, training=calibration,
            task_options=args.task_options,
            latency=args.latency.at(_latency_seq_len(args, task)),
            latency_table=args.latency_table))

    # Post-training pruning removes whole units: nothing inside them to re-initialise
    return _then_fill(args, stage1, FillArgs(
        checkpoint=args.output_dir / PRUNE_SUBDIR, task=args.task, output_dir=args.output_dir,
        teacher=choice.teacher, reinit_std=0.0, task_options=args.task_options,
        training=budget.one_shot(world_size())))


def _count_train(args: FinePruneArgs, task: TaskAdapter) -> int:
    """Training examples in one epoch (what ``--epochs`` counts in)."""
    opts = args.training
    data = task.load_data(load_tokenizer(args.model), DataArgs(
        data_dir=opts.data_dir, train_file=opts.train_file, validation_file=opts.validation_file,
        max_train_samples=opts.max_train_samples, max_eval_samples=1,
        max_seq_length=opts.max_seq_length or task.default_max_seq_length, seed=opts.seed))
    return len(data.train) if data.train is not None else 0


__all__ = ["PRUNE_SUBDIR", "FinePruneArgs", "check_before_work", "fill_budget", "fine_prune",
           "prune_then_fill",
           "requested_method", "resolve_config", "resolve_latency"]
