"""Helpers of the fault tests: a real worker on any queue (:class:`tests.support.worker_process.WorkerProcess`
extended), a slow media storage to kill an export mid-way reliably, and a small frozen version."""

from __future__ import annotations

import hashlib
import itertools
import subprocess
import sys
import time

from django.conf import settings
from django.core.files.storage import FileSystemStorage

from tests.support.worker_process import WorkerProcess

_versions = itertools.count(1)


class QueueWorker(WorkerProcess):
    """A worker process consuming ``queue``; ``env`` adds or replaces environment variables."""

    def __init__(self, root, queue: str = "gpu", env: dict | None = None):
        super().__init__(root)
        self.queue, self.extra_env = queue, env or {}

    def env(self) -> dict:
        return {**super().env(), **self.extra_env}

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
            self.queue,
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
            f"{self.queue}-test-{self.starts}@%h",
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


class SlowFileSystemStorage(FileSystemStorage):
    """Media on the filesystem, with every open delayed (``SLOW_STORAGE_SECONDS``): a slow disk or bucket."""

    def _open(self, name, mode="rb"):
        import os

        time.sleep(float(os.environ.get("SLOW_STORAGE_SECONDS", "0.02")))
        return super()._open(name, mode)


def small_version(admin, pairs: int, task: str = "RU"):
    """A frozen version of ``pairs`` new pairs, all labelled ``expected``, spread over the four splits."""
    from curation.models import DatasetVersion, VersionMember
    from tests.support.factories import make_pair

    n = next(_versions)
    version = DatasetVersion.objects.create(
        name=f"v-fault-{n}",
        content_hash=hashlib.sha256(f"fault-{n}".encode()).hexdigest(),
        counts={},
        filters={"tasks": [task]},
        split_ratios={"seed": 0},
        created_by=admin,
    )
    splits = ("train", "train", "validation", "test_S", "test_C")
    VersionMember.objects.bulk_create(
        VersionMember(
            version=version,
            pair=make_pair(task),
            label="expected",
            outcome="confirmed",
            agreement=1.0,
            n_judgements=3,
            split=splits[i % len(splits)],
            group_key="0" * 64,
        )
        for i in range(pairs)
    )
    return version
