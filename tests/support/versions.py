"""Frozen dataset versions built row by row (``make_version``: one new pair per ``(split, label)``), to
control labels and splits exactly; reading back a version's members, stored image bytes and export manifests."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

from django.core.files.storage import default_storage

from curation.models import DatasetVersion, VersionMember
from curation.services import exporting
from tests.support.factories import make_pair

_versions = itertools.count(1)

OUTCOME = {"expected": "confirmed", "other": "reversed", "both": "rejected", "neither": "rejected"}

DEFAULT_SPEC = [
    ("train", "expected"),
    ("train", "other"),
    ("train", "expected"),
    ("train", "both"),
    ("validation", "expected"),
    ("test_S", "other"),
    ("test_C", "expected"),
    ("test_C", "neither"),
]


def make_version(admin, spec=DEFAULT_SPEC, *, name=None, task="RU") -> DatasetVersion:
    """A frozen version with one new pair per ``(split, label)`` of ``spec`` (rows made directly)."""
    n = next(_versions)
    version = DatasetVersion.objects.create(
        name=name or f"v-test-{n}",
        content_hash=hashlib.sha256(f"v{n}".encode()).hexdigest(),
        counts={},
        filters={"tasks": [task]},
        split_ratios={"seed": 0},
        created_by=admin,
    )
    for split, label in spec:
        VersionMember.objects.create(
            version=version,
            pair=make_pair(task),
            label=label,
            outcome=OUTCOME[label],
            agreement=1.0 if label == "expected" else 2 / 3,
            n_judgements=3,
            split=split,
            group_key="0" * 64,
        )
    return version


def stored(image) -> bytes:
    with default_storage.open(image.file.name, "rb") as handle:
        return handle.read()


def members(version, split=None):
    rows = version.members.select_related("pair__image_correct", "pair__image_wrong", "pair__tuple__task")
    return list((rows.filter(split=split) if split else rows).order_by("pair_id"))


def manifest_ok(folder: Path) -> None:
    listed = exporting.read_manifest(folder)
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"MANIFEST.sha256"}
    assert set(listed) == on_disk
    for name, digest in listed.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    assert exporting.verify_manifest(folder) == []
