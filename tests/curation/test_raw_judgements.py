"""The raw judgements download (curation/services/exporting/raw_judgements.py, curation/views_downloads.py):
columns, pseudonyms by default and names on request, a version's member pairs only, the CSV defence against
spreadsheet formulas, streaming, and admins only."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.http import StreamingHttpResponse

from annotation.models import Judgement
from curation.models import VersionMember
from curation.services.exporting import raw_judgements
from tests.support.factories import make_pair, make_user
from tests.support.judging import judge
from tests.support.versions import make_version

pytestmark = pytest.mark.django_db

URL = "/curation/judgements/export/"


@pytest.fixture
def boss():
    return make_user("boss", "admin")


@pytest.fixture
def judged():
    """Two annotators on one pair, one of them with a comment that a spreadsheet would run."""
    ada, bob = make_user("ada", "annotator", disciplines=["chemistry"]), make_user("bob", "annotator", tasks=["RU"])
    pair = make_pair("RU")
    first = judge(
        ada, pair, "expected", comment='=HYPERLINK("http://evil")', flag_prompt_unclear=True, time_spent_ms=1234
    )
    second = judge(bob, pair, "both", comment="-2+3 looks odd")
    return pair, first, second


def body(response) -> str:
    assert isinstance(response, StreamingHttpResponse), "the download is streamed"
    return b"".join(response.streaming_content).decode()


def test_csv_has_the_columns_pseudonyms_and_defused_formulas(client, boss, judged):
    pair, first, second = judged
    client.force_login(boss)
    response = client.get(URL, {"format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert 'filename="judgements-all.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(body(response))))
    assert list(rows[0]) == raw_judgements.column_names()
    assert [row["judgement_id"] for row in rows] == [str(first.pk), str(second.pk)]
    one = rows[0]
    assert one["pair_id"] == str(pair.pk) and one["task"] == "RU"
    assert one["label"] == "expected" and one["choice"] in ("left", "right")
    assert (one["flag_prompt_unclear"], one["flag_image_broken"], one["time_spent_ms"]) == ("true", "false", "1234")
    assert one["comment"] == '\'=HYPERLINK("http://evil")', "a formula is defused"
    assert rows[1]["comment"] == "'-2+3 looks odd" and rows[1]["label"] == "both"
    assert one["judged_at"].startswith(str(first.created_at.date())) and one["leased_at"]
    assert one["annotator"] == raw_judgements.pseudonym(first.annotator_id, "all")
    assert one["annotator"] != rows[1]["annotator"]
    assert "ada" not in body(client.get(URL, {"format": "csv"})), "no names unless asked for"


def test_names_only_when_asked_and_pseudonyms_are_stable_per_scope(client, boss, judged):
    client.force_login(boss)
    named = [json.loads(line) for line in body(client.get(URL, {"format": "jsonl", "names": "1"})).splitlines()]
    assert [row["annotator"] for row in named] == ["ada", "bob"]
    again = [json.loads(line) for line in body(client.get(URL, {"format": "jsonl"})).splitlines()]
    once_more = [json.loads(line) for line in body(client.get(URL, {"format": "jsonl"})).splitlines()]
    assert [r["annotator"] for r in again] == [r["annotator"] for r in once_more], "stable across downloads"
    ada = named[0]
    assert raw_judgements.pseudonym(1, "all") != raw_judgements.pseudonym(1, "version-1"), "scopes do not link"
    assert again[0]["comment"] == ada["comment"] == '=HYPERLINK("http://evil")', "JSONL keeps the text as it is"
    assert again[0]["flag_prompt_unclear"] is True and again[0]["time_spent_ms"] == 1234


def test_optional_columns_follow_the_model():
    """Confidence and reasons are exported exactly when the judgement model has them."""
    names = raw_judgements.column_names()
    for field in ("confidence", "reasons"):
        assert (field in names) == hasattr(Judgement, field)


def test_a_version_exports_only_its_member_pairs(client, boss, judged):
    pair, first, second = judged
    outsider = make_pair("GR")
    carl = make_user("carl", "annotator", disciplines=["physics"])
    judge(carl, outsider, "other")
    version = make_version(boss, [])
    VersionMember.objects.create(
        version=version, pair=pair, label="expected", outcome="confirmed", split="train", group_key="0" * 64
    )
    client.force_login(boss)
    response = client.get(f"/curation/versions/{version.pk}/judgements/", {"format": "csv", "names": "1"})
    assert 'filename="judgements-version-' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(body(response))))
    assert [row["judgement_id"] for row in rows] == [str(first.pk), str(second.pk)]
    assert {row["annotator"] for row in rows} == {"ada", "bob"}
    assert client.get("/curation/versions/999999/judgements/").status_code == 404


def test_bad_parameters_are_400(client, boss):
    client.force_login(boss)
    assert client.get(URL, {"format": "xlsx"}).status_code == 400
    assert client.get(URL, {"format": "csv", "names": "yes"}).status_code == 400
    assert client.get(URL)["Location"] == "/curation/dashboard/#raw-judgements", "no format: the page with the links"


def test_reviewers_and_annotators_are_refused(client, judged):
    for user in (make_user("rev", "reviewer"), judged[1].annotator):
        client.force_login(user)
        assert client.get(URL, {"format": "csv"}).status_code == 403
    client.logout()
    assert client.get(URL, {"format": "csv"})["Location"].startswith("/accounts/login/")


def test_the_rows_are_read_in_batches(boss, judged, monkeypatch):
    """The rows come from a server-side cursor in batches, not one list in memory: with a batch of one,
    the generator has handed out the first row before the database has been asked for the rest."""
    monkeypatch.setattr(raw_judgements, "BATCH", 1)
    rows = raw_judgements.rows()
    first = next(rows)
    assert first["judgement_id"] == judged[1].pk
    assert [row["judgement_id"] for row in rows] == [judged[2].pk]


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_every_formula_start_is_defused(text):
    assert raw_judgements.safe_cell(text) == "'" + text
    assert raw_judgements.safe_cell("plain " + text) == "plain " + text


@pytest.mark.skipif(not hasattr(Judgement, "reasons"), reason="the judgement has no confidence and reasons yet")
def test_confidence_and_reasons_are_exported(client, boss, judged):
    _, first, _ = judged
    Judgement.objects.filter(pk=first.pk).update(confidence="unsure", reasons=["=cmd|' /C calc'!A0", "blurry"])
    client.force_login(boss)
    row = next(csv.DictReader(io.StringIO(body(client.get(URL, {"format": "csv"})))))
    assert row["confidence"] == "unsure"
    assert json.loads(row["reasons"]) == ["=cmd|' /C calc'!A0", "blurry"], "a list is one JSON cell"
    line = json.loads(body(client.get(URL, {"format": "jsonl"})).splitlines()[0])
    assert (line["confidence"], line["reasons"]) == ("unsure", ["=cmd|' /C calc'!A0", "blurry"])
