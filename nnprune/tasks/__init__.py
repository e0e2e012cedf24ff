"""Task adapters: importing this package registers the built-in tasks in :data:`TASKS`."""

from nnprune.tasks import glue  # noqa: F401  (registers sst2, mrpc, qqp, mnli)
from nnprune.tasks.base import TASKS, DataArgs, TaskAdapter, TaskData, get_task

__all__ = ["TASKS", "DataArgs", "TaskAdapter", "TaskData", "get_task"]
