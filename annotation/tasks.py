"""Celery tasks of the annotation app: thin wrappers over the services."""

from celery import shared_task

from annotation.services import queue


@shared_task(name="annotation.tasks.reclaim_expired_leases", ignore_result=False)
def reclaim_expired_leases() -> int:
    """Mark expired leases as expired (scheduled by beat, see CELERY_BEAT_SCHEDULE)."""
    return queue.reclaim_expired_leases()
