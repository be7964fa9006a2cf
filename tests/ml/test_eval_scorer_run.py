"""``eval_scorer`` runs: a registered scorer's pairwise accuracy per split and task on a dataset version."""

from __future__ import annotations

from unittest import mock

import pytest

from ml.models import Run
from ml.services import runs
from ml.tasks import execute_run
from tests.support.scoring_data import synthetic_version, tiny_scorer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture
def active(admin_user, tmp_path):
    return tiny_scorer(admin_user, tmp_path / "active", name="active", active=True)


def _run(admin_user, **params) -> Run:
    with mock.patch("ml.tasks.execute_run.apply_async"):
        run = runs.start_run(admin_user, "eval_scorer", params, celery_task=execute_run)
    return runs.execute_run(run.pk)


def test_it_evaluates_the_active_scorer_per_split_and_task(admin_user, active):
    version = synthetic_version(admin_user, {"train": 2, "validation": 4, "test_S": 8})

    run = _run(admin_user, dataset_version=version.pk)

    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.params == {
        "model": active.pk,
        "dataset_version": version.pk,
        "splits": ["validation", "test_S", "test_C"],
        "batch_size": 64,
    }
    results = run.artifacts["evaluation"]
    assert set(results) == {"validation", "test_S"} and "test_C: no rows, not evaluated" in run.log_tail
    assert results["test_S"]["n"] == 8 and set(results["test_S"]["by_task"]) == {
        "ME",
        "RU",
        "RI",
        "EL",
        "BU",
        "IM",
        "EV",
        "SC",
    }
    assert [(m["split"], m["n"]) for m in run.metrics] == [("validation", 4), ("test_S", 8)]
    active.refresh_from_db()
    assert active.metrics["evaluations"] == {str(version.pk): results}


def test_a_second_evaluation_merges_into_the_model_metrics(admin_user, active):
    version = synthetic_version(admin_user, {"validation": 2, "test_C": 2})
    _run(admin_user, dataset_version=version.pk, splits=["validation"])
    _run(admin_user, dataset_version=version.pk, splits=["test_C", "test_C"])

    active.refresh_from_db()
    assert set(active.metrics["evaluations"][str(version.pk)]) == {"validation", "test_C"}


def test_a_version_without_rows_in_the_splits_fails_clearly(admin_user, active):
    version = synthetic_version(admin_user, {"train": 2})
    run = _run(admin_user, dataset_version=version.pk)
    assert run.status == Run.Status.FAILED and "has no rows in validation, test_S, test_C" in run.error


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"splits": "test_S"}, "splits", "non-empty list"),
        ({"splits": []}, "splits", "non-empty list"),
        ({"splits": ["test_X"]}, "splits", "unknown split(s) ['test_X']"),
        ({"dataset_version": None}, "dataset_version", "required"),
    ],
)
def test_bad_params_are_refused(admin_user, active, params, field, message):
    with pytest.raises(runs.RunParamsError) as caught:
        _run(admin_user, **{"dataset_version": 1, **params})
    assert message in caught.value.errors[field]
