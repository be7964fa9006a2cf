"""``eval_judge`` runs with a scorer as the judge: the same accuracy as ``eval_scorer``, the version's label
deciding which image is right, both/neither members left out, n and bootstrap intervals per discipline, task
and kind, resumption, and the parameter checks (a judge's request budget included)."""

from __future__ import annotations

from unittest import mock

import pytest

from curation.models import VersionMember
from ml.models import JudgedItem, Run
from ml.services import registry, runs
from ml.tasks import execute_run
from tests.support.scoring_data import synthetic_version, tiny_scorer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture
def scorer(admin_user, tmp_path):
    return tiny_scorer(admin_user, tmp_path / "scorer", name="tiny-sciscore", active=True)


def _start(admin_user, kind: str, **params) -> Run:
    with mock.patch("ml.tasks.execute_run.apply_async"):
        return runs.start_run(admin_user, kind, params, celery_task=execute_run)


def _run(admin_user, kind: str = "eval_judge", **params) -> Run:
    return runs.execute_run(_start(admin_user, kind, **params).pk)


def test_a_scorer_judged_as_a_judge_gets_the_accuracy_eval_scorer_measures(admin_user, scorer):
    version = synthetic_version(admin_user, {"validation": 6, "test_S": 10, "test_C": 8})

    judged = _run(admin_user, dataset_version=version.pk, splits=["test_S", "test_C", "validation"])
    measured = _run(admin_user, "eval_scorer", dataset_version=version.pk)

    assert judged.status == Run.Status.SUCCEEDED, judged.error
    assert judged.params["model"] == scorer.pk and judged.artifacts["protocol"] == "scorer-margin"
    summary = judged.artifacts["summary"]
    for split in ("test_S", "test_C", "validation"):
        overall = summary[split]["overall"]
        assert overall["n"] == measured.artifacts["evaluation"][split]["n"]
        assert overall["accuracy"] == pytest.approx(measured.artifacts["evaluation"][split]["accuracy"])
        assert overall["low"] <= overall["accuracy"] <= overall["high"]
        by_task = summary[split]["by_task"]
        assert sum(cell["n"] for cell in by_task.values()) == overall["n"]
        for task, cell in by_task.items():
            assert cell["accuracy"] == pytest.approx(
                measured.artifacts["evaluation"][split]["by_task"][task]["accuracy"]
            )
        assert sum(c["n"] for c in summary[split]["by_discipline"].values()) == overall["n"]
        assert set(summary[split]["by_kind"]) <= {"ST", "CT"}
    assert JudgedItem.objects.filter(run=judged).count() == 24
    scorer.refresh_from_db()
    assert scorer.metrics[f"judge:{version.name}"]["test_S"]["n"] == 10


def test_the_versions_label_says_which_image_is_right_and_both_or_neither_are_left_out(admin_user, scorer):
    version = synthetic_version(admin_user, {"test_S": 6})
    members = list(VersionMember.objects.filter(version=version).order_by("pair_id"))
    first = _run(admin_user, dataset_version=version.pk, splits=["test_S"])
    before = {i.pair_id: i for i in JudgedItem.objects.filter(run=first)}

    # The experts decided that the *other* image of the first pair is right; the second pair shows neither.
    VersionMember.objects.filter(pk=members[0].pk).update(label="other")
    VersionMember.objects.filter(pk=members[1].pk).update(label="neither")
    second = _run(admin_user, dataset_version=version.pk, splits=["test_S"])
    after = {i.pair_id: i for i in JudgedItem.objects.filter(run=second)}

    assert set(after) == set(before) - {members[1].pair_id}
    flipped = after[members[0].pair_id]
    assert flipped.score == 1.0 - before[members[0].pair_id].score  # the same scores, the other answer
    assert flipped.prefers_expected == before[members[0].pair_id].prefers_expected  # the opinion is unchanged
    assert flipped.detail["score_right"] == before[members[0].pair_id].detail["score_wrong"]
    assert second.artifacts["summary"]["test_S"]["overall"]["n"] == 5


def test_a_redelivered_run_judges_only_what_is_left(admin_user, scorer):
    version = synthetic_version(admin_user, {"test_S": 5})
    run = _start(admin_user, "eval_judge", dataset_version=version.pk, splits=["test_S"], batch_size=2)
    complete = _run(admin_user, dataset_version=version.pk, splits=["test_S"])
    reference = {i.pair_id: i.score for i in JudgedItem.objects.filter(run=complete)}
    # The worker died after its first chunk: two items are stored, the run is still running.
    done = sorted(reference)[:2]
    JudgedItem.objects.bulk_create(
        [
            JudgedItem(run=run, pair_id=p, split="test_S", score=reference[p], prefers_expected=reference[p])
            for p in done
        ]
    )
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING)

    resumed = runs.execute_run(run.pk)

    assert resumed.status == Run.Status.SUCCEEDED, resumed.error
    assert "2 judged before, resuming" in resumed.log_tail
    assert {i.pair_id: i.score for i in JudgedItem.objects.filter(run=run)} == reference
    assert resumed.artifacts["summary"]["test_S"]["overall"]["n"] == 5


def test_max_items_takes_the_first_pairs_of_each_split(admin_user, scorer):
    version = synthetic_version(admin_user, {"test_S": 4, "test_C": 3})
    run = _run(admin_user, dataset_version=version.pk, max_items=2)
    assert {s: r["overall"]["n"] for s, r in run.artifacts["summary"].items()} == {"test_S": 2, "test_C": 2}
    first_two = sorted(VersionMember.objects.filter(version=version, split="test_S").values_list("pair_id", flat=True))[
        :2
    ]
    assert sorted(JudgedItem.objects.filter(run=run, split="test_S").values_list("pair_id", flat=True)) == first_two


def test_the_parameters_are_checked_before_anything_runs(admin_user, scorer):
    version = synthetic_version(admin_user, {"test_S": 3, "train": 2})
    generator = registry.register_model(admin_user, "generator_base", "flux", "/models/flux")
    judge = registry.register_model(
        admin_user,
        "judge",
        "remote",
        "http://127.0.0.1:9/v1",
        config={"backend": "endpoint", "model": "m", "request_budget": 5},
    )
    cases = [
        ({"dataset_version": version.pk, "model": generator.pk}, "model", "not a scorer or judge"),
        ({"dataset_version": version.pk, "splits": ["train"]}, "splits", "unknown split"),
        ({"dataset_version": 999999}, "dataset_version", "no dataset version"),
        (
            {"dataset_version": version.pk, "model": judge.pk},
            "model",
            "3 pairs in both orders needs 6 requests, over the judge's request budget of 5",
        ),
        ({"dataset_version": version.pk, "cot": "yes"}, "cot", "true or false"),
    ]
    for params, field, words in cases:
        with pytest.raises(runs.RunParamsError) as refused:
            _start(admin_user, "eval_judge", **params)
        assert words in refused.value.errors[field], refused.value.errors
    with pytest.raises(runs.RunParamsError, match="lower max_pairs or raise the budget"):
        _start(admin_user, "judge_pairs", model=judge.pk, only_open=False)  # 5 pairs exist: 10 requests
    _start(admin_user, "judge_pairs", model=judge.pk, only_open=False, max_pairs=2)  # 4 requests fit
    Run.objects.filter(kind="judge_pairs").delete()
    empty = synthetic_version(admin_user, {"train": 1})
    with pytest.raises(runs.RunParamsError, match="no two-choice members"):
        _start(admin_user, "eval_judge", dataset_version=empty.pk)
    assert not Run.objects.filter(kind="eval_judge").exists()
