"""A frozen version, exported by the platform and imported into a fresh database (issue 13): the combined
parquet export comes back as the same tuples (every wording, the rubrics, scene and subject), the same pairs
in the catalogue's orientation, and the same labels as imported decisions; the published layout comes back
as the same tuples, each with its images and decisions from the positional label."""

from __future__ import annotations

import hashlib

import pytest
from django.db import transaction

from annotation.models import Pair, PromptTuple
from curation.models import Consensus
from curation.services import exporting, versions
from curation.services.importing import import_dataset

pytestmark = pytest.mark.django_db


def _sha(image) -> str:
    with image.file.open("rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _tuples() -> set:
    return {
        (
            t.implicit_prompt,
            t.task.code,
            t.explicit_prompt,
            t.superficial_prompt,
            tuple(t.implicit_paraphrases),
            tuple(t.explicit_paraphrases),
            tuple(t.superficial_paraphrases),
            t.scene_scoring,
            t.real_scoring,
            t.scene,
            t.subject,
        )
        for t in PromptTuple.objects.select_related("task")
    }


def _pairs() -> set:
    return {
        (p.tuple.implicit_prompt, _sha(p.image_correct), _sha(p.image_wrong), p.consensus.label)
        for p in Pair.objects.select_related("tuple", "image_correct", "image_wrong", "consensus")
    }


@pytest.fixture
def exported(admin_user, tmp_path):
    """A version of three tuples (one with two pairs, one reversed by the experts, one complex scene with
    paraphrases and rubrics) exported as combined parquet and as the published layout; the catalogue is rolled
    back afterwards, so each test starts from a fresh database. Returns (folders, tuples, pairs)."""
    from tests.support.judging import judged

    out = {"parquet": tmp_path / "combined", "published": tmp_path / "published"}
    with transaction.atomic():
        nail = judged("expected", "expected", "expected")
        PromptTuple.objects.filter(pk=nail.tuple_id).update(
            implicit_paraphrases=["Rain on a nail for weeks", "A nail, weeks of rain"],
            explicit_paraphrases=["A nail covered in rust"],
            scene_scoring="A nail is in the picture.",
            real_scoring="3: rust-brown; 0: shiny",
            scene="complex",
            subject="nail",
        )
        judged("other", "other", "expected", tuple=nail.tuple)  # the tuple's second pair, reversed
        judged("expected", "expected", "other", task="BU")
        # Every group in train: the published test sets have string prompts (no paraphrases), so where a
        # tuple lands must not depend on its prompt's hash (the factory's sequence number).
        version = versions.build_version(admin_user, "v1", ratios={"train": 1.0, "validation": 0.0, "test": 0.0})
        for fmt, folder in out.items():
            exporting.export_version(version, fmt, out=folder)
        state = (
            _tuples(),
            {
                (m.pair.tuple.implicit_prompt, _sha(m.pair.image_correct), _sha(m.pair.image_wrong), m.label)
                for m in version.members.select_related("pair__tuple")
            },
        )
        transaction.set_rollback(True)
    assert not PromptTuple.objects.exists()
    return out, *state


def test_the_combined_export_comes_back_exactly(exported):
    out, tuples, pairs = exported

    report = import_dataset(out["parquet"])

    assert report.ok, report.errors
    assert _tuples() == tuples
    assert _pairs() == pairs and {label for *_, label in pairs} == {"expected", "other"}
    assert set(Consensus.objects.values_list("outcome", "provenance__dataset")) == {("imported", "platform export")}
    assert set(Pair.objects.values_list("status", flat=True)) == {"complete"}
    assert report.decisions == {"recorded": 3, "unchanged": 0, "kept": 0}

    again = import_dataset(out["parquet"])
    assert (again.tuples["created"], again.pairs["created"], again.decisions) == (
        0,
        0,
        {"recorded": 0, "unchanged": 3, "kept": 0},
    )


def test_the_published_layout_comes_back_with_every_wording_and_image(exported):
    out, tuples, pairs = exported

    report = import_dataset(out["published"])

    assert report.ok, report.errors
    # the published columns have no scene or subject: the split decides the scene of a new tuple
    assert {t[:9] for t in _tuples()} == {t[:9] for t in tuples}
    # positional labels: the image the experts judged correct is the explicit one
    judged = {
        (prompt, *((correct, wrong) if label == "expected" else (wrong, correct)), "expected")
        for prompt, correct, wrong, label in pairs
    }
    assert _pairs() == judged
    assert set(Consensus.objects.values_list("provenance__dataset", flat=True)) == {"published"}
