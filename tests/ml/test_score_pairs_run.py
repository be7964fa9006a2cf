"""``score_pairs`` runs: a tiny scorer's SciScores of the pending pairs, idempotent, feeding the queue priorities."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
import torch
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image as PILImage

from annotation.models import Pair, Task
from ml.core.scorer import Scorer
from ml.models import PairScore, Run
from ml.services import runs
from ml.services.runs import score_pairs
from ml.tasks import execute_run
from tests.support.scoring_data import synthetic_pairs, tiny_scorer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture
def active(admin_user, tmp_path):
    return tiny_scorer(admin_user, tmp_path / "active", name="active", active=True)


def _run(admin_user, **params) -> Run:
    with mock.patch("ml.tasks.execute_run.apply_async"):
        run = runs.start_run(admin_user, "score_pairs", params, celery_task=execute_run)
    return runs.execute_run(run.pk)


def _image(image) -> PILImage.Image:
    with default_storage.open(image.file.name, "rb") as handle:
        return PILImage.open(handle).convert("RGB")


def test_it_scores_the_open_pairs_with_the_active_scorer(admin_user, active):
    pairs = synthetic_pairs(5, tasks=("RU", "ME"))
    gold, complete = synthetic_pairs(2, seed=1, tasks=("RU",))
    Pair.objects.filter(pk=gold.pk).update(is_gold=True)
    Pair.objects.filter(pk=complete.pk).update(status=Pair.Status.COMPLETE)

    run = _run(admin_user, batch_size=2)

    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.params == {"model": active.pk, "tasks": None, "only_open": True, "batch_size": 2}
    scores = {s.pair_id: s for s in PairScore.objects.filter(model=active)}
    assert set(scores) == {p.pk for p in pairs}  # neither the gold nor the complete pair
    scorer = Scorer.load(active.location, device="cpu")
    for pair in pairs:
        s = scores[pair.pk]
        images = [_image(pair.image_correct), _image(pair.image_wrong)]
        expected = scorer.score([pair.tuple.implicit_prompt] * 2, images)
        assert (s.score_correct, s.score_wrong) == pytest.approx(expected.tolist(), abs=1e-4)
        assert s.probability == pytest.approx(torch.sigmoid(expected[0] - expected[1]).item(), abs=1e-5)
        assert s.uncertainty == pytest.approx(1 - abs(2 * s.probability - 1))
        assert s.disagrees == (s.probability < 0.5) and s.run_id == run.pk
    assert run.artifacts["scored"] == 5 and run.artifacts["disagreements"] == sum(s.disagrees for s in scores.values())
    assert [m["pairs"] for m in run.metrics] == [2, 2, 1]
    assert "5 pairs to score with active" in run.log_tail


def test_a_redelivered_run_carries_on_and_a_second_run_scores_only_new_pairs(admin_user, active):
    first = synthetic_pairs(3, tasks=("RU",))
    with mock.patch("ml.tasks.execute_run.apply_async"):
        run = runs.start_run(admin_user, "score_pairs", {"batch_size": 1}, celery_task=execute_run)
    real_images, seen = score_pairs.pair_images, []

    def dies_on_the_second_pair(ctx, pair):
        seen.append(pair.pk)
        if len(seen) == 2:
            raise RuntimeError("worker killed")
        return real_images(ctx, pair)

    with mock.patch.object(score_pairs, "pair_images", side_effect=dies_on_the_second_pair):
        runs.execute_run(run.pk)
    kept = PairScore.objects.get()
    assert kept.pair_id == first[0].pk
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING, heartbeat_at=timezone.now() - timedelta(hours=1))

    run = runs.execute_run(run.pk)
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.artifacts["scored"] == 3 and "2 pairs to score" in run.log_tail
    assert PairScore.objects.get(pk=kept.pk).score_correct == kept.score_correct

    before = {s.pk: (s.score_correct, s.run_id) for s in PairScore.objects.all()}
    again = _run(admin_user)
    assert again.status == Run.Status.SUCCEEDED and again.artifacts["scored"] == 0
    assert {s.pk: (s.score_correct, s.run_id) for s in PairScore.objects.all()} == before

    later = synthetic_pairs(2, seed=3, tasks=("RU",))
    third = _run(admin_user, tasks=["ru"])
    assert third.params["tasks"] == ["RU"] and third.artifacts["scored"] == 2
    assert PairScore.objects.filter(model=active).count() == len(first) + len(later)


def test_only_the_selected_tasks_are_scored_and_their_priorities_follow(admin_user, active):
    ru, me = synthetic_pairs(3, tasks=("RU",)), synthetic_pairs(3, seed=2, tasks=("ME",))
    Task.objects.filter(code="RU").update(queue_order=Task.QueueOrder.UNCERTAINTY)

    run = _run(admin_user, tasks=["RU"])

    assert set(PairScore.objects.values_list("pair_id", flat=True)) == {p.pk for p in ru}
    for pair in Pair.objects.filter(pk__in=[p.pk for p in ru]):
        assert pair.priority == pytest.approx(PairScore.objects.get(pair=pair).uncertainty)
    assert set(Pair.objects.filter(pk__in=[p.pk for p in me]).values_list("priority", flat=True)) == {0.0}
    assert run.artifacts["priorities_changed"] == sum(1 for p in Pair.objects.filter(priority__gt=0))


def test_another_scorer_leaves_the_priorities_alone(admin_user, active, tmp_path):
    other = tiny_scorer(admin_user, tmp_path / "other", name="other", seed=5)
    synthetic_pairs(2, tasks=("RU",))
    Task.objects.filter(code="RU").update(queue_order=Task.QueueOrder.UNCERTAINTY)

    run = _run(admin_user, model=other.pk)

    assert run.input_model == other and PairScore.objects.filter(model=other).count() == 2
    assert set(Pair.objects.values_list("priority", flat=True)) == {0.0}
    assert "other is not the active scorer" in run.log_tail


def test_an_unreadable_image_is_logged_and_skipped(admin_user, active):
    broken, fine = synthetic_pairs(2, tasks=("RU",))
    default_storage.delete(broken.image_wrong.file.name)

    run = _run(admin_user)

    assert run.status == Run.Status.SUCCEEDED, run.error
    assert list(PairScore.objects.values_list("pair_id", flat=True)) == [fine.pk]
    assert run.artifacts["unreadable"] == 1 and f"pair {broken.pk}: an image cannot be read" in run.log_tail


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"tasks": "RU"}, "tasks", "non-empty list of task codes"),
        ({"tasks": ["RU", "XX"]}, "tasks", "no task(s) XX"),
        ({"model": "latest"}, "model", "registered scorer id"),
        ({"batch_size": 0}, "batch_size", "between"),
        ({"only_open": "yes"}, "only_open", "true or false"),
    ],
)
def test_bad_params_are_refused(admin_user, active, params, field, message):
    with pytest.raises(runs.RunParamsError) as caught:
        _run(admin_user, **params)
    assert message in caught.value.errors[field]


def test_without_an_active_scorer_a_model_is_required(admin_user):
    with pytest.raises(runs.RunParamsError) as caught:
        _run(admin_user)
    assert "no scorer is active" in caught.value.errors["model"]
