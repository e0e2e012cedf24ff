"""nnprune: prune transformers while fine-tuning (or after), into models that are physically
smaller and faster and that stock transformers reloads.

The public API, by job (everything else in the package is private):

Fine-pruning inside any training loop
    attach_masks(model, method, target_density=, target_speedup=, ...) -> FinePruning
        FinePruning.parameter_groups() / .step(step) / .regularization_loss() / .loss(...)
        FinePruning.trainer_callback() -> PruningCallback (a Hugging Face Trainer callback)
    distillation_loss(student_logits, teacher_logits, temperature)
    hidden_distillation_loss(student_states, teacher_states, student_hidden_map(model), mask)
    METHODS, PruningConfig, method_config(method, ...): the presets and the full config

Post-training pruning from your own batches and loss
    prune(model, batches, target_speedup= | target_flops=, loss_fn=) -> PostTrainingResult

Shrinking and shipping
    bertarize(model), compact(model) -> CompactResult, expand(model) (its inverse),
    save_pretrained(model, dir),
    refill(model), fill(model, teacher, batches, steps=), prepare_fill(checkpoint),
    export_onnx(model, dir), load_onnx(dir), quantize_int8(model)

Checkpoints and run records
    load_pretrained(dir), load_config(dir), inspect_checkpoint(dir) -> CheckpointInfo,
    bertarize_checkpoint(src, dst, compact=True), records (nnprune_config.json / results types),
    supported_architectures(), max_positions(config), check_positions(config, lengths)

Measuring
    count_parameters(model) -> ParamCount, count_flops(model) -> FlopCount,
    latency_table(model) -> LatencyTable, measure_speed(model, baseline) -> SpeedReport,
    check_speedup(checkpoint, table) -> SpeedCheck,
    model_shape(model) -> ModelShape, drop_layers(model, keep), evenly_spaced_layers(n, k),
    layers_for_speedup(table, target), shaped_model(checkpoint) (random weights, saved shapes)

Errors: every bad input is an NNPruneError with a one-line message.

Example::

    import nnprune, torch
    pruning = nnprune.attach_masks(model, "hybrid-nt", target_speedup=2.0, total_steps=1000)
    optimizer = torch.optim.AdamW(pruning.parameter_groups(lr=5e-5))
    for step, batch in enumerate(loader):
        pruning.step(step)
        loss = model(**batch).loss + pruning.regularization_loss()
        loss.backward(); optimizer.step(); optimizer.zero_grad()
    small = nnprune.compact(pruning.finalize()).model
    nnprune.save_pretrained(small, "model-2x", tokenizer=tokenizer)
"""

from typing import Any

__version__ = "0.1.0"

# Imported on first use, so that ``import nnprune`` stays light (no torch / transformers).
_LAZY = {
    # fine-pruning in any loop
    "attach_masks": "nnprune.api.fine_pruning",
    "FinePruning": "nnprune.api.fine_pruning",
    "PruningCallback": "nnprune.api.fine_pruning",
    "distillation_loss": "nnprune.api.fine_pruning",
    "hidden_distillation_loss": "nnprune.api.fine_pruning",
    "student_hidden_map": "nnprune.api.fine_pruning",
    "PruningConfig": "nnprune.pruning_core.config",
    "METHODS": "nnprune.pruning_core.methods",
    "method_config": "nnprune.api.configs",
    "check_speedup_target": "nnprune.api.configs",
    # post-training pruning
    "prune": "nnprune.api.post_training",
    "PostTrainingResult": "nnprune.api.post_training",
    "check_prune_targets": "nnprune.api.post_training",
    # shrinking and shipping
    "bertarize": "nnprune.api.shrink",
    "compact": "nnprune.api.shrink",
    "CompactResult": "nnprune.api.shrink",
    "expand": "nnprune.api.shrink",
    "save_pretrained": "nnprune.api.shrink",
    "refill": "nnprune.api.shrink",
    "fill": "nnprune.api.shrink",
    "prepare_fill": "nnprune.api.fill",
    "PreparedFill": "nnprune.api.fill",
    "FillInit": "nnprune.api.fill",
    "export_onnx": "nnprune.api.onnx",
    "load_onnx": "nnprune.api.onnx",
    "onnx_metadata": "nnprune.api.onnx",
    "quantize_int8": "nnprune.api.onnx",
    "OnnxExport": "nnprune.export.onnx",
    "OrtModel": "nnprune.export.onnx",
    # checkpoints and run records
    "load_pretrained": "nnprune.pruning_core.checkpoint",
    "load_config": "nnprune.api.checkpoints",
    "inspect_checkpoint": "nnprune.api.checkpoints",
    "CheckpointInfo": "nnprune.api.checkpoints",
    "bertarize_checkpoint": "nnprune.api.checkpoints",
    "CheckpointKind": "nnprune.pruning_core.checkpoint",
    "BertarizeResult": "nnprune.pruning_core.bertarize",
    "records": "nnprune.api.records",  # the run record's types and files, a namespace
    # measuring
    "count_parameters": "nnprune.api.measure",
    "count_flops": "nnprune.api.measure",
    "latency_table": "nnprune.api.measure",
    "measure_speed": "nnprune.api.measure",
    "check_speedup": "nnprune.api.speed",
    "supported_architectures": "nnprune.api.architectures",
    "max_positions": "nnprune.api.architectures",
    "check_positions": "nnprune.api.architectures",
    "SpeedCheck": "nnprune.api.speed",
    "LatencySetting": "nnprune.measure.latency",
    "LatencyTable": "nnprune.measure.latency",
    "ParamCount": "nnprune.measure.counting",
    "FlopCount": "nnprune.measure.flops",
    "SpeedReport": "nnprune.measure.timing",
    "CacheState": "nnprune.measure.timing",
    # shapes: what a trade-off sweep compares (layer dropping, timing from a config)
    "ModelShape": "nnprune.api.shapes",
    "model_shape": "nnprune.api.shapes",
    "drop_layers": "nnprune.api.shapes",
    "evenly_spaced_layers": "nnprune.api.shapes",
    "layers_for_speedup": "nnprune.api.shapes",
    "shaped_model": "nnprune.api.shapes",
    # errors
    "NNPruneError": "nnprune.errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        # An entry naming a module itself (``records``) is that module.
        value = module if _LAZY[name].endswith("." + name) else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nnprune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["__version__", *_LAZY]
