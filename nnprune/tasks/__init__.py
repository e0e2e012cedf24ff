"""Task adapters: importing this package registers the built-in tasks in :data:`TASKS`."""

from nnprune.tasks import (  # noqa: F401  (register the built-in tasks)
    cnn_dailymail,
    glue,
    question_answering,
    squad,
    summarization,
    text_classification,
    token_classification,
)
from nnprune.tasks.base import TASKS, DataArgs, TaskAdapter, TaskData


def get_task(name: str, options: "dict[str, str] | None" = None) -> TaskAdapter:
    """Instantiate a registered task adapter by name (the built-in adapters are
    registered when this package is imported), with its ``--task-option`` settings."""
    return TASKS.get(name)().with_options(dict(options or {}))


__all__ = ["TASKS", "DataArgs", "TaskAdapter", "TaskData", "get_task"]
