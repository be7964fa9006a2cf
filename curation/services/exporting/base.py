"""The export's constants and errors, where exports live, the result of a finished export and its manifest
(``MANIFEST.sha256``: written by :func:`write_manifest`, read by :func:`read_manifest`, checked by
:func:`verify_manifest`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from curation.models import DatasetVersion, Label, VersionMember
from curation.services.exporting.hashing import Hasher, sha256_file

FORMATS = ("parquet", "published", "jsonl", "webdataset")
SPLITS = tuple(VersionMember.Split.values)  # train, validation, test_S, test_C
DEFAULT_SHARD_BYTES = 500 * 1000 * 1000
DEFAULT_BATCH_SIZE = 64
MANIFEST = "MANIFEST.sha256"
METADATA = "export.json"
DECIDED = (Label.EXPECTED, Label.OTHER)  # labels with a correct image: the only ones in parquet / WebDataset
ROW_OVERHEAD = 512  # bytes per row besides images and prompts, for the shard size estimate

Progress = Callable[[float, str], None]


class ExportError(ValueError):
    """An export that cannot be made as asked (unknown format, a target that is not ours, ...)."""


# --- where exports live ----------------------------------------------------------------------------


def export_root() -> Path:
    return Path(settings.MEDIA_ROOT) / "exports"


def export_dir(version: DatasetVersion | int, fmt: str) -> Path:
    check_format(fmt)
    return export_root() / str(getattr(version, "pk", version)) / fmt


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}: use one of {', '.join(FORMATS)}.")


def finished_export(version: DatasetVersion, fmt: str, out: str | Path | None = None) -> dict | None:
    """The result of a finished export of ``version`` in ``fmt`` (at ``out`` or the default place), or None."""
    target = Path(out) if out is not None else export_dir(version, fmt)
    if not (target / MANIFEST).is_file() or not (target / METADATA).is_file():
        return None
    meta = json.loads((target / METADATA).read_text(encoding="utf-8"))
    if (
        meta.get("version_id") != version.pk
        or meta.get("content_hash") != version.content_hash
        or meta.get("format") != fmt
    ):
        return None
    return export_result(target, meta)


def export_result(target: Path, meta: dict, sizes: dict[str, int] | None = None) -> dict:
    """The result dict of the export in ``target``; ``sizes`` are file sizes already known (no stat)."""
    files, sizes = [], sizes or {}
    for line in (target / MANIFEST).read_text(encoding="utf-8").splitlines():
        digest, name = line.split("  ", 1)
        size = sizes.get(name)
        files.append(
            {"path": name, "bytes": (target / name).stat().st_size if size is None else size, "sha256": digest}
        )
    files.append(
        {"path": MANIFEST, "bytes": (target / MANIFEST).stat().st_size, "sha256": sha256_file(target / MANIFEST)}
    )
    return {
        "version": meta["version_id"],
        "format": meta["format"],
        "path": str(target),
        "files": files,
        "bytes": sum(f["bytes"] for f in files),
        "counts": meta["counts"],
        "manifest": MANIFEST,
    }


def read_manifest(target: str | Path) -> dict[str, str]:
    """``{relative path: sha256}`` of an export's manifest."""
    lines = (Path(target) / MANIFEST).read_text(encoding="utf-8").splitlines()
    return {name: digest for digest, name in (line.split("  ", 1) for line in lines)}


def verify_manifest(target: str | Path) -> list[str]:
    """The files whose sha256 differs from the manifest, or that are missing or not listed; [] when intact."""
    target = Path(target)
    listed = read_manifest(target)
    bad = [
        name for name, digest in listed.items() if not (target / name).is_file() or sha256_file(target / name) != digest
    ]
    present = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()} - {MANIFEST}
    return sorted(bad + sorted(present - set(listed)))


def _list_files(folder: Path) -> list[str]:
    """Every file under ``folder`` as a sorted relative POSIX path (directory entries' types: no stat)."""
    names: list[str] = []
    for directory, _, files in os.walk(folder):
        base = Path(directory).relative_to(folder)
        names.extend((base / name).as_posix() for name in files)
    return sorted(names)


def write_manifest(folder: Path) -> None:
    """``MANIFEST.sha256`` of every file in ``folder``; digests the writers already computed (in the
    background, see :class:`Hasher`) are taken from the folder's hasher, the rest are computed here."""
    names = _list_files(folder)
    hasher = Hasher.of(folder)
    known = hasher.digests() if hasher is not None else {}
    lines = [f"{known.get(name) or sha256_file(folder / name)}  {name}" for name in names if name != MANIFEST]
    (folder / MANIFEST).write_text("\n".join(lines) + "\n", encoding="utf-8")
