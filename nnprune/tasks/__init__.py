"""Task adapters: importing this package registers the built-in tasks in :data:`TASKS`."""

from nnprune.tasks import cnn_dailymail, glue, squad  # noqa: F401  (register the built-in tasks)
from nnprune.tasks.base import TASKS, DataArgs, TaskAdapter, TaskData, get_task

__all__ = ["TASKS", "DataArgs", "TaskAdapter", "TaskData", "get_task"]
