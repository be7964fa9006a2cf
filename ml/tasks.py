"""Celery tasks of the ML app: thin wrappers over :mod:`ml.services.runs`, routed to the ``gpu`` queue."""

from celery import shared_task

from ml.services import runs


@shared_task(bind=True, name="ml.tasks.execute_run", acks_late=True, reject_on_worker_lost=True)
def execute_run(self, run_id: int) -> str:
    """Run one :class:`ml.models.Run` to the end; a redelivered finished run is left alone."""
    return runs.execute_run(run_id, worker=self.request.hostname, task_id=self.request.id).status
