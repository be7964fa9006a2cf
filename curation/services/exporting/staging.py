"""The temporary folder an export is built in, and what dead exports leave beside the target.

An export is written in a temporary sibling (``.<name>.tmp-<random>``) claimed with a flocked ``.lock``
(:func:`claim_temporary`, :func:`release_temporary`); :func:`sweep_abandoned` removes those whose lock is free and
the aside folders of :func:`discard_export`.
"""

from __future__ import annotations

import fcntl
import glob
import os
import secrets
import shutil
import time
from pathlib import Path


def claim_temporary(target: Path) -> tuple[Path, tuple[int, Path]]:
    """A fresh temporary sibling of ``target`` and its lock (``.<name>.tmp-<token>.lock``, flocked).

    The lock is taken before the folder exists and dropped after it is gone, and the kernel drops it when
    its process dies (a SIGKILLed worker): a temporary folder whose lock can be taken is abandoned."""
    while True:
        token = secrets.token_hex(8)
        lock_path = target.parent / f".{target.name}.tmp-{token}.lock"
        fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                break
        except (BlockingIOError, FileNotFoundError):
            pass
        os.close(fd)  # a sweeper took the lock between create and flock (and removed it): again
    temporary = target.parent / f".{target.name}.tmp-{token}"
    temporary.mkdir()
    return temporary, (fd, lock_path)


def release_temporary(lock: tuple[int, Path]) -> None:
    fd, lock_path = lock
    lock_path.unlink(missing_ok=True)
    os.close(fd)


def sweep_abandoned(target: Path, *, unlocked_after: float = 3600) -> list[str]:
    """Remove what dead exports of ``target`` left beside it; returns the names removed.

    A worker killed mid-export (SIGKILL, power loss) leaves its temporary folder: it is abandoned when its
    lock can be taken. Folders without a lock (made before locks existed) go once ``unlocked_after``
    seconds old, and aside folders of :func:`discard_export` always (nobody reads them)."""
    removed = []
    prefix = glob.escape(f".{target.name}")
    for lock_path in sorted(target.parent.glob(f"{prefix}.tmp-*.lock")):
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live export
        try:
            shutil.rmtree(lock_path.with_suffix(""), ignore_errors=True)
            lock_path.unlink(missing_ok=True)
            removed.append(lock_path.with_suffix("").name)
        finally:
            os.close(fd)
    old = time.time() - unlocked_after
    for folder in sorted(target.parent.glob(f"{prefix}.tmp-*")) + sorted(target.parent.glob(f"{prefix}.old-*")):
        if not folder.is_dir() or Path(f"{folder}.lock").exists():
            continue
        if ".old-" in folder.name or folder.stat().st_mtime < old:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def discard_export(path: Path) -> None:
    aside = path.with_name(f".{path.name}.old-{os.getpid()}-{id(path)}")
    os.rename(path, aside)
    shutil.rmtree(aside, ignore_errors=True)
