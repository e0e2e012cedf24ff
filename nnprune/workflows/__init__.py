"""End-to-end workflows the CLI commands call: fine-prune, fill, evaluate, speed.

Shared training options: :class:`~nnprune.workflows.options.TrainingOptions`.
"""
