"""Scheduling: the dynamic batcher, priority queues and per-instance threads."""

from sonic.scheduler.batcher import BatchPolicy, BatchRecord, Pending, QueuePolicy, Scheduler, plan_batch

__all__ = ["BatchPolicy", "BatchRecord", "Pending", "QueuePolicy", "Scheduler", "plan_batch"]
