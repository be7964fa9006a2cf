"""Runs: start a job on the ``gpu`` queue, execute it on a worker, record what happened.

``start_run(user, kind, params)`` validates the parameters against the kind's schema (defaults
filled in, unknown keys refused), stores a queued :class:`~ml.models.Run` and enqueues
``ml.tasks.execute_run`` on the ``gpu`` queue once the transaction commits. ``execute_run(run_id)``
(called by the task) marks it running with the worker's hostname, dispatches to the kind's handler
and marks it succeeded, or failed with the traceback. A redelivered finished run is left alone; a
redelivered *running* run (its worker died) resumes from what the handler recorded or checkpointed.

Modules: :mod:`.params` (schemas), :mod:`.context` (what handlers write through),
:mod:`.kinds` (validator and handler per kind), :mod:`.lifecycle` (start, cancel, execute), and
one module per family of kinds (:mod:`.generate`...).
"""

from ml.services.runs.context import RunCancelled, RunContext
from ml.services.runs.kinds import HANDLERS
from ml.services.runs.lifecycle import GPU_QUEUE, RunBusy, cancel_run, execute_run, start_run, validate_params
from ml.services.runs.params import RunParamsError

__all__ = [
    "GPU_QUEUE",
    "HANDLERS",
    "RunBusy",
    "RunCancelled",
    "RunContext",
    "RunParamsError",
    "cancel_run",
    "execute_run",
    "start_run",
    "validate_params",
]
