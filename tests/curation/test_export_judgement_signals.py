"""The JSONL export carries the annotators' confidence and reasons per pair; the parquet layout is unchanged."""

import json
from pathlib import Path

import pytest

from annotation.models import Judgement, Lease
from curation.services import exporting
from tests.support.factories import make_user
from tests.support.versions import make_version, members

pytestmark = pytest.mark.django_db


def add_judgement(pair, user, *, confidence="", reasons=()):
    lease = Lease.objects.create(
        pair=pair,
        annotator=user,
        left_image=pair.image_correct,
        right_image=pair.image_wrong,
        state=Lease.State.JUDGED,
        expires_at=pair.created_at,
    )
    Judgement.objects.create(
        pair=pair, annotator=user, lease=lease, choice="left", confidence=confidence, reasons=list(reasons)
    )


def test_jsonl_lines_count_confidence_and_reasons_per_pair(admin_user):
    version = make_version(admin_user, [("train", "expected"), ("train", "other")])
    first, second = (m.pair for m in members(version, "train"))
    one, two, three = (make_user(f"ann-{n}", "annotator", disciplines=["chemistry"]) for n in range(3))
    add_judgement(first, one, confidence="sure", reasons=["colour"])
    add_judgement(first, two, confidence="unsure", reasons=["colour", "flakes"])
    add_judgement(first, three)
    folder = Path(exporting.export_version(version, "jsonl")["path"])
    lines = {r["pair_id"]: r for r in map(json.loads, (folder / "train.jsonl").read_text().splitlines())}
    assert lines[first.pk]["judgement_confidence"] == {"sure": 1, "unsure": 1}
    assert lines[first.pk]["judgement_reasons"] == {"colour": 2, "flakes": 1}
    assert lines[second.pk]["judgement_confidence"] == {"sure": 0, "unsure": 0}
    assert lines[second.pk]["judgement_reasons"] == {}


def test_the_parquet_export_keeps_the_published_columns(admin_user):
    import pyarrow.parquet as pq

    version = make_version(admin_user, [("train", "expected")])
    add_judgement(members(version, "train")[0].pair, admin_user, confidence="sure", reasons=["colour"])
    folder = Path(exporting.export_version(version, "parquet")["path"])
    columns = {name for path in folder.rglob("*.parquet") for name in pq.read_schema(path).names}
    assert columns and not any("confidence" in name or "reason" in name for name in columns)
