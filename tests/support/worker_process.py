"""A real Celery worker *process* (prefork pool) consuming the ``gpu`` queue, for integration tests.

It talks to the same Redis broker and the same test database as the test process, with media,
work and model folders shared through the environment, a short visibility timeout (so a killed
worker's run is redelivered within seconds) and a fast heartbeat.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

VISIBILITY_TIMEOUT = 6
STALE_AFTER = 3


def _database_url() -> str:
    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


class WorkerProcess:
    def __init__(self, root: Path):
        self.root = root
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def env(self) -> dict:
        return {
            **os.environ,
            "DJANGO_DEBUG": "true",
            "DATABASE_URL": _database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "ML_WORK_ROOT": str(settings.ML_WORK_ROOT),
            "ML_MODEL_ROOT": str(settings.ML_MODEL_ROOT),
            "ML_HEARTBEAT_SECONDS": "0.5",
            "ML_STALE_AFTER_SECONDS": str(STALE_AFTER),
            "ML_CANCEL_GRACE_SECONDS": "3",
            "CELERY_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY_TIMEOUT),
            "ML_ALLOW_SHORT_VISIBILITY": "true",
            "OMP_NUM_THREADS": "1",
        }

    def start(self) -> None:
        self.starts += 1
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            "gpu",
            "-c",
            "1",
            "-P",
            "prefork",
            "--prefetch-multiplier",
            "1",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "info",
            "-n",
            f"gpu-test-{self.starts}@%h",
        ]
        with open(self.root / f"worker-{self.starts}.log", "wb") as log:  # the worker keeps its own copy
            self.proc = subprocess.Popen(
                argv,
                env=self.env(),
                cwd=settings.BASE_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL the worker and its pool (a machine losing power, as far as the broker can tell)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return "\n".join((self.root / f"worker-{n}.log").read_text(errors="replace") for n in range(1, self.starts + 1))


def wait_for(predicate, timeout: float, what: str, worker: WorkerProcess | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    tail = worker.log()[-3000:] if worker else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n--- worker log ---\n{tail}")
