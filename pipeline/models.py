"""Django loads an app's models from `<app>.models`: the task record lives with the rest of the task-queue plumbing."""

from pipeline.taskqueue.models import TaskRecord

__all__ = ["TaskRecord"]
