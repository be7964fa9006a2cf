"""The WebDataset export: ``<split>-<n:05d>.tar`` shards of ``<key>.json``, ``<key>.correct.<ext>`` and
``<key>.wrong.<ext>``.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from curation.services.exporting.base import DECIDED, SPLITS
from curation.services.exporting.source import (
    Row,
    Source,
    common_columns,
    count_excluded,
    count_row,
    counts_skeleton,
    tuple_columns,
)

# --- WebDataset ------------------------------------------------------------------------------------


def write_webdataset_export(source: Source, folder: Path, shard_bytes: int) -> dict:
    counts = counts_skeleton()
    for split in SPLITS:
        names: list[str] = []
        tar, size = None, 0
        try:
            for batch in source.batches(split, DECIDED):
                for row in batch:
                    if tar is not None and size + row.size > shard_bytes:
                        _close_tar(tar)
                        tar = None
                        if source.hasher is not None:
                            source.hasher.add_file(names[-1])
                    if tar is None:
                        names.append(f"{split}-{len(names):05d}.tar")
                        tar, size = _open_tar(folder / names[-1]), 0
                    _add_sample(tar, row)
                    size += row.size
                    count_row(counts, row)
        finally:
            if tar is not None:
                _close_tar(tar)
                if source.hasher is not None:
                    source.hasher.add_file(names[-1])
        if names:
            counts["files"][split] = names
        count_excluded(source, counts, split)
    return counts


_WRITE_BUFFER = 1 << 20


def _open_tar(path: Path) -> tarfile.TarFile:
    """A PAX tar writing through a 1 MiB buffer, each member's data copied in one piece (``tarfile`` alone
    writes 16 KiB pieces through an 8 KiB buffer: a system call per piece). The bytes are the same."""
    handle = open(path, "wb", buffering=_WRITE_BUFFER)  # noqa: SIM115 — closed by _close_tar
    try:
        return tarfile.open(  # type: ignore[call-overload]  # typeshed lacks TarFile's copybufsize
            fileobj=handle, mode="w", format=tarfile.PAX_FORMAT, copybufsize=_WRITE_BUFFER
        )
    except BaseException:
        handle.close()
        raise


def _close_tar(tar: tarfile.TarFile) -> None:
    handle = tar.fileobj
    try:
        tar.close()
    finally:
        handle.close()


def _add_sample(tar: tarfile.TarFile, row: Row) -> None:
    v = row.values
    key = f"p{v['pair_id']:09d}"
    meta = {
        "implicit_prompt": v["implicit_prompt"],
        "explicit_prompt": v["explicit_prompt"] or "",
        "superficial_prompt": v["superficial_prompt"] or "",
        "category": v["task_name"] or "",
        "split": v["split"],
        **tuple_columns(row),
        **common_columns(row),
    }
    correct, _, correct_ext = row.image("correct")
    wrong, _, wrong_ext = row.image("wrong")
    for name, data in (
        (f"{key}.json", json.dumps(meta, ensure_ascii=False).encode()),
        (f"{key}.correct.{correct_ext}", correct),
        (f"{key}.wrong.{wrong_ext}", wrong),
    ):
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tar.addfile(info, io.BytesIO(data))
