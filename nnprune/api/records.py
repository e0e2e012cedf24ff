"""The run record (``nnprune.records``): how every folder nnprune saves a model to was made
(``nnprune_config.json``, a :class:`RunConfig`: the pruning config, the task, the options of the
command, the stages of a filled model, ...) and how it scored (``nnprune_results.json``: a
:class:`FinePruneResult`, :class:`FillResult` or :class:`PruneResult`), as typed records.

Read them with :func:`read_config` / :func:`read_results` (``None`` when the folder records
none; a one-line :class:`~nnprune.NNPruneError` for a corrupted file or a newer schema); change
them with :func:`update_results` / :func:`update_config`, or build the types and
:func:`write_config` / :func:`write_results` (atomic writes). Keys a newer nnprune added are kept
and written back unchanged.

Example::

    from nnprune import records

    run = records.read_config("runs/sst2-hybrid")        # a RunConfig, or None
    print(run.task, run.pruning.method, run.training.value("learning_rate"))
    results = records.read_results("runs/sst2-hybrid")   # a FinePruneResult, ...
    print(results.metrics[results.main_metric], results.density)
    records.update_results("runs/sst2-hybrid", speed_check={"measured": 2.1})
"""

from nnprune.pruning_core.run_record import (CONFIG_FILE, RESULTS_FILE, SCHEMA_VERSION, AutoRecord,
                                             BeforePruning, CommandOptions, FillResult,
                                             FinePruneResult, LatencyRecord, PostTrainingRecord,
                                             PruneResult, RunConfig, RunResults, Stage,
                                             StageRecord, latency_record, read_config,
                                             read_results, update_config, update_results,
                                             write_config, write_results)

__all__ = [
    "AutoRecord", "BeforePruning", "CONFIG_FILE", "CommandOptions", "FillResult",
    "FinePruneResult", "LatencyRecord", "PostTrainingRecord", "PruneResult", "RESULTS_FILE",
    "RunConfig", "RunResults", "SCHEMA_VERSION", "Stage", "StageRecord", "latency_record",
    "read_config", "read_results", "update_config", "update_results", "write_config",
    "write_results",
]
