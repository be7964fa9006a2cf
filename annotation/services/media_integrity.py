"""Check that media storage and the ``Image`` table agree (``python manage.py verify_media``).

Three kinds of problem, each reported by name as it is found:

* **missing**: an ``Image`` row whose file is not in storage;
* **mismatched**: a file whose bytes do not hash to the row's ``sha256`` (or whose size differs);
* **orphan**: a file under ``images/`` (where :func:`annotation.services.catalog.store_image` writes)
  that no ``Image`` row references. A crash between writing a file and committing its row leaves one;
  the next store of the same bytes reuses it. Other folders of the media root (``exports/``,
  ``imports/``) are not looked at.

Both passes stream: rows come from ``.iterator()`` in chunks and files are hashed in 1 MiB blocks; the
orphan pass walks storage one directory at a time (``Storage.listdir``, so filesystem and S3 alike) and
looks up each directory's files in chunks. Memory stays flat in the number of images.

Nothing is changed unless ``delete_orphans`` is set; then orphans whose modification time is older than
``orphan_grace_seconds`` are deleted (a younger one may be a store in progress whose row is not yet
committed). Rows are never deleted or edited: a missing or mismatched file needs a restore from backup.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from django.core.files.storage import Storage, default_storage
from django.utils import timezone

from annotation.models import Image

IMAGES_PREFIX = "images"
CHUNK = 500
SAMPLE = 100  # names kept per kind of problem in the report (the counts are exact)

Problem = Callable[[str, str, str], None]  # (kind, storage name, detail)


@dataclass
class Report:
    rows: int = 0
    files: int = 0
    missing: int = 0
    mismatched: int = 0
    orphans: int = 0
    orphans_deleted: int = 0
    examples: dict[str, list[str]] = field(default_factory=lambda: {"missing": [], "mismatched": [], "orphan": []})

    @property
    def clean(self) -> bool:
        return not (self.missing or self.mismatched or self.orphans - self.orphans_deleted)

    def as_dict(self) -> dict:
        return {
            "rows": self.rows,
            "files": self.files,
            "missing": self.missing,
            "mismatched": self.mismatched,
            "orphans": self.orphans,
            "orphans_deleted": self.orphans_deleted,
            "clean": self.clean,
            "examples": self.examples,
        }


def verify_media(
    *,
    storage: Storage | None = None,
    check_hashes: bool = True,
    delete_orphans: bool = False,
    orphan_grace_seconds: float = 3600,
    on_problem: Problem | None = None,
) -> Report:
    """Check every ``Image`` row against ``storage`` (default storage) and look for orphan files."""
    storage = storage or default_storage
    report = Report()

    def problem(kind: str, name: str, detail: str) -> None:
        if len(report.examples[kind]) < SAMPLE:
            report.examples[kind].append(name)
        if on_problem is not None:
            on_problem(kind, name, detail)

    rows = Image.objects.order_by("pk").values_list("pk", "file", "sha256", "size_bytes")
    for pk, name, sha256, size in rows.iterator(chunk_size=CHUNK):
        report.rows += 1
        if not name or not storage.exists(name):
            report.missing += 1
            problem("missing", name, f"image {pk}: file not in storage")
            continue
        if check_hashes:
            digest, length = _hash(storage, name)
            if digest != sha256 or length != size:
                report.mismatched += 1
                problem(
                    "mismatched",
                    name,
                    f"image {pk}: sha256 {digest[:12]}… ({length} bytes), row says {sha256[:12]}… ({size} bytes)",
                )

    cutoff = timezone.now() - timedelta(seconds=orphan_grace_seconds)
    for directory, names in _walk(storage, IMAGES_PREFIX):
        report.files += len(names)
        for start in range(0, len(names), CHUNK):
            chunk = [f"{directory}/{n}" for n in names[start : start + CHUNK]]
            known = set(Image.objects.filter(file__in=chunk).values_list("file", flat=True))
            for name in chunk:
                if name in known:
                    continue
                report.orphans += 1
                deleted = delete_orphans and storage.get_modified_time(name) < cutoff
                if deleted:
                    storage.delete(name)
                    report.orphans_deleted += 1
                problem("orphan", name, "deleted" if deleted else "no image row references it")
    return report


def _hash(storage: Storage, name: str) -> tuple[str, int]:
    digest, length = hashlib.sha256(), 0
    with storage.open(name, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            length += len(block)
    return digest.hexdigest(), length


def _walk(storage: Storage, top: str) -> Iterator[tuple[str, list[str]]]:
    """``(directory, sorted file names)`` for ``top`` and every directory below it, one listing at a time."""
    try:
        directories, files = storage.listdir(top)
    except FileNotFoundError:  # no image was ever stored on this filesystem
        return
    yield top, sorted(files)
    for name in sorted(directories):
        yield from _walk(storage, f"{top}/{name}")
