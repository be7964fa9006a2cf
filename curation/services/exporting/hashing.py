"""sha256 of an export's files: :func:`sha256_file` (one file, read back) and :class:`Hasher` (on a background
thread while the writers go on, from the bytes in memory where it can).
"""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Hasher:
    """sha256 of an export's files on a background thread while the writers go on (hashlib releases the
    GIL, so on a machine with more than one core the manifest costs little wall time).

    ``add_file(name, path)`` hashes a finished file (opened at once, so renaming it afterwards is fine:
    ``rename(name, new)`` files the digest under the new name); ``add_bytes(name, data)`` hashes the bytes
    just written to ``name`` without reading them back. At most ``max_pending`` bytes wait in the queue, so
    memory stays bounded when hashing falls behind. Used as a context manager around the writing of
    ``folder``; :func:`write_manifest` finds it by the folder (``Hasher.of``) and takes its digests."""

    _active: dict[str, Hasher] = {}

    def __init__(self, folder: Path, max_pending: int = 64 * 1024 * 1024):
        import queue
        import threading

        self.folder = folder
        self._queue: queue.Queue = queue.Queue()
        self._room = threading.Condition()
        self._pending, self._max_pending = 0, max_pending
        self._digests: dict[str, str] = {}
        self._sizes: dict[str, int] = {}
        self._renamed: dict[str, str] = {}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="export-sha256", daemon=True)

    @classmethod
    def of(cls, folder: Path) -> Hasher | None:
        return cls._active.get(str(folder))

    def __enter__(self) -> Hasher:
        self._thread.start()
        Hasher._active[str(self.folder)] = self
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        Hasher._active.pop(str(self.folder), None)
        if exc is not None and self._error is None:
            self._error = exc  # the export failed: what is still queued is closed, not hashed
        self._queue.put(None)
        self._thread.join()

    def add_file(self, name: str, path: Path | None = None) -> None:
        self._queue.put((name, (path or self.folder / name).open("rb")))

    def add_bytes(self, name: str, data: bytes) -> None:
        with self._room:
            while self._pending and self._pending + len(data) > self._max_pending and self._error is None:
                self._room.wait()
            self._pending += len(data)
        self._queue.put((name, data))

    def rename(self, name: str, new: str) -> None:
        self._renamed[new] = name

    def sizes(self) -> dict[str, int]:
        """``{relative path: bytes}`` of everything hashed here (call after :meth:`digests`)."""
        sizes = dict(self._sizes)
        for new, old in self._renamed.items():
            if old in sizes:
                sizes[new] = sizes.pop(old)
        return sizes

    def digests(self) -> dict[str, str]:
        """``{relative path: sha256}`` of everything added so far (waits until it is hashed)."""
        self._queue.join()
        if self._error is not None:
            raise self._error
        digests = dict(self._digests)
        for new, old in self._renamed.items():
            if old in digests:
                digests[new] = digests.pop(old)
        return digests

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                self._queue.task_done()
                return
            name, source = job
            try:
                if isinstance(source, bytes):
                    if self._error is None:
                        self._digests[name] = hashlib.sha256(source).hexdigest()
                        self._sizes[name] = len(source)
                else:
                    with source:
                        if self._error is None:
                            digest, size = hashlib.sha256(), 0
                            for block in iter(partial(source.read, 1 << 20), b""):
                                digest.update(block)
                                size += len(block)
                            self._digests[name], self._sizes[name] = digest.hexdigest(), size
            except BaseException as exc:  # raised again by digests(): the export fails
                self._error = exc
            finally:
                if isinstance(source, bytes):
                    with self._room:
                        self._pending -= len(source)
                        self._room.notify_all()
                self._queue.task_done()
