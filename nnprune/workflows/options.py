"""The training options of every command that trains: :class:`TrainingOptions`, declared with the
other settings (:mod:`nnprune.settings`, where the model card reads the declarations back too)
and taken from here by the workflows and the CLI."""

from nnprune.settings import TrainingOptions

__all__ = ["TrainingOptions"]
