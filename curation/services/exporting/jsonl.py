"""The JSONL export: ``tuples.jsonl`` and ``<split>.jsonl``, images in ``images/<sha256>.<ext>``.

Beyond the published columns, each line says how sure the pair's annotators were and why, from their
optional answers: ``judgement_confidence`` (``{"sure": n, "unsure": m}``) and ``judgement_reasons``
(``{reason: n}``), read with one query per batch. The parquet export keeps the published layout.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from annotation.models import Judgement
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
                    signals = judgement_signals([row.values["pair_id"] for row in batch])
                    for row in batch:
                        record = _jsonl_record(row, images, source.hasher)
                        record.update(signals.get(row.values["pair_id"], _NO_SIGNALS))
                        line = json.dumps(record, ensure_ascii=False) + "\n"
                        everything.write(line)
                        per_split.write(line)
                        count_row(counts, row)
            if not counts["splits"].get(split):
                path.unlink()
            else:
                counts["files"][split] = [path.name]
    return counts


_NO_SIGNALS: dict = {"judgement_confidence": {"sure": 0, "unsure": 0}, "judgement_reasons": {}}


def judgement_signals(pair_ids: list[int]) -> dict[int, dict]:
    """Per pair: how many of its judgements said sure / unsure, and how often each reason was given."""
    confidence: dict[int, Counter] = {}
    reasons: dict[int, Counter] = {}
    rows = Judgement.objects.filter(pair_id__in=pair_ids).exclude(confidence="", reasons=[])
    for pair_id, said, why in rows.values_list("pair_id", "confidence", "reasons"):
        if said:
            confidence.setdefault(pair_id, Counter())[said] += 1
        for reason in why or []:
            reasons.setdefault(pair_id, Counter())[reason] += 1
    return {
        pair_id: {
            "judgement_confidence": {
                "sure": confidence.get(pair_id, Counter())["sure"],
                "unsure": confidence.get(pair_id, Counter())["unsure"],
            },
            "judgement_reasons": dict(sorted(reasons.get(pair_id, Counter()).items())),
        }
        for pair_id in set(confidence) | set(reasons)
    }


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
