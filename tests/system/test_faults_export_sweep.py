"""Leftovers of exports whose process died (curation.services.exporting.sweep_abandoned): a temporary folder
is removed once nobody holds its lock, never while its writer lives; other targets are left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from curation.services import exporting

HOLD = (
    "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); "
    "print('locked', flush=True); time.sleep(120)"
)


def _temporary(parent, name: str, token: str):
    folder = parent / f".{name}.tmp-{token}"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "half.png").write_bytes(b"half an export")
    lock = parent / f"{folder.name}.lock"
    lock.touch()
    return folder, lock


def test_it_removes_a_temporary_folder_only_after_its_writer_died(tmp_path):
    target = tmp_path / "jsonl"
    folder, lock = _temporary(tmp_path, "jsonl", "aaaa")
    writer = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "locked"
        assert exporting.sweep_abandoned(target) == []
        assert folder.is_dir() and lock.exists()
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        assert exporting.sweep_abandoned(target) == [folder.name]
        assert sorted(tmp_path.iterdir()) == []
    finally:
        if writer.poll() is None:
            writer.kill()


def test_it_removes_old_unlocked_and_aside_folders_and_spares_other_targets(tmp_path):
    target = tmp_path / "jsonl"
    old = tmp_path / ".jsonl.tmp-legacy"
    old.mkdir()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    young = tmp_path / ".jsonl.tmp-young"
    young.mkdir()
    aside = tmp_path / ".jsonl.old-123-456"
    aside.mkdir()
    other, other_lock = _temporary(tmp_path, "parquet", "bbbb")
    target.mkdir()

    assert sorted(exporting.sweep_abandoned(target)) == sorted([old.name, aside.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["jsonl", young.name, other.name, other_lock.name])
