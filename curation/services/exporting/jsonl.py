"""The JSONL export: ``tuples.jsonl`` and ``<split>.jsonl``, images in ``images/<sha256>.<ext>``."""

from __future__ import annotations

import json
from pathlib import Path

from curation.services.exporting.base import SPLITS
from curation.services.exporting.hashing import Hasher
from curation.services.exporting.source import Row, Source, common_columns, count_row, counts_skeleton, tuple_columns

# --- JSONL + image folder --------------------------------------------------------------------------


def write_jsonl_export(source: Source, folder: Path, shard_bytes: int) -> dict:
    counts = counts_skeleton()
    images = folder / "images"
    images.mkdir()
    with (folder / "tuples.jsonl").open("w", encoding="utf-8") as everything:
        for split in SPLITS:
            path = folder / f"{split}.jsonl"
            with path.open("w", encoding="utf-8") as per_split:
                for batch in source.batches(split):
                    for row in batch:
                        line = json.dumps(_jsonl_record(row, images, source.hasher), ensure_ascii=False) + "\n"
                        everything.write(line)
                        per_split.write(line)
                        count_row(counts, row)
            if not counts["splits"].get(split):
                path.unlink()
            else:
                counts["files"][split] = [path.name]
    return counts


def _jsonl_record(row: Row, images: Path, hasher: Hasher | None = None) -> dict:
    v = row.values
    paths = {}
    for which in ("expected", "other"):
        data, sha, ext = row.image(which)
        name = f"{sha}.{ext}"
        try:
            with open(images / name, "xb") as handle:  # each image once (no stat before: "x" says it)
                handle.write(data)
        except FileExistsError:
            pass
        else:
            if hasher is not None:
                hasher.add_bytes(f"images/{name}", data)
        paths[which] = f"images/{name}"
    correct, wrong = ("other", "expected") if row.swapped else ("expected", "other")
    return {
        "implicit_prompt": v["implicit_prompt"],
        "explicit_prompt": v["explicit_prompt"] or "",
        "superficial_prompt": v["superficial_prompt"] or "",
        "correct_image": paths[correct],
        "wrong_image": paths[wrong],
        "expected_image": paths["expected"],
        "other_image": paths["other"],
        "split": v["split"],
        **tuple_columns(row),
        **common_columns(row),
    }
