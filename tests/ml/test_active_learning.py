"""Active learning: per-task queue order by the active scorer's uncertainty or disagreement."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from annotation.models import AuditEvent, Pair, Task
from annotation.services import queue
from ml.models import ModelVersion, PairScore
from ml.services import active_learning, registry
from tests.support.factories import make_pair, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _deterministic_queue(settings):
    settings.QUEUE_LOCK_WINDOW = 1  # no random pick inside a window
    settings.GOLD_RATE = 0.0


def _scorer(admin, name: str, *, active: bool = False) -> ModelVersion:
    model = registry.register_model(admin, "scorer", name, f"/models/{name}")
    return registry.activate_scorer(admin, model) if active else model


def _score(model: ModelVersion, pair: Pair, probability: float) -> PairScore:
    return PairScore.objects.create(
        pair=pair,
        model=model,
        score_correct=20.0,
        score_wrong=20.0,
        probability=probability,
        uncertainty=1 - abs(2 * probability - 1),
        disagrees=probability < 0.5,
    )


def _served(task: str, n: int) -> list[int]:
    """The pairs of ``task`` that ``n`` fresh chemists are served, in turn (every pair takes one judgement)."""
    return [
        queue.next_lease(make_user(f"{task}-{i}", disciplines=["physics", "chemistry", "biology"]), task=task).pair_id
        for i in range(n)
    ]


def _pairs(task: str, n: int) -> list[Pair]:
    return [make_pair(task, k=1) for _ in range(n)]


def test_an_uncertainty_task_serves_the_most_uncertain_pair_first(admin_user):
    scorer = _scorer(admin_user, "sci", active=True)
    pairs = _pairs("RU", 4)
    for pair, p in zip(pairs, [0.95, 0.55, 0.2, 0.7], strict=True):  # uncertainty 0.1, 0.9, 0.4, 0.6
        _score(scorer, pair, p)
    unscored = make_pair("RU", k=1)

    active_learning.set_queue_order(admin_user, Task.objects.get(code="RU"), "uncertainty")

    assert _served("RU", 5) == [pairs[1].pk, pairs[3].pk, pairs[2].pk, pairs[0].pk, unscored.pk]


def test_a_disagreement_task_serves_the_pair_the_scorer_disputes_most_first(admin_user):
    scorer = _scorer(admin_user, "sci", active=True)
    pairs = _pairs("BU", 3)
    for pair, p in zip(pairs, [0.6, 0.05, 0.9], strict=True):
        _score(scorer, pair, p)

    active_learning.set_queue_order(admin_user, Task.objects.get(code="BU"), "disagreement")

    assert [Pair.objects.get(pk=p.pk).priority for p in pairs] == pytest.approx([0.4, 0.95, 0.1])
    assert _served("BU", 3) == [pairs[1].pk, pairs[0].pk, pairs[2].pk]


def test_a_creation_order_task_ignores_the_scores(admin_user):
    scorer = _scorer(admin_user, "sci", active=True)
    pairs = _pairs("ME", 3)
    for pair, p in zip(pairs, [0.9, 0.5, 0.1], strict=True):
        _score(scorer, pair, p)
    Task.objects.filter(code="ME").update(queue_order="uncertainty")
    active_learning.recompute_priorities()

    active_learning.set_queue_order(admin_user, Task.objects.get(code="ME"), "created")

    assert set(Pair.objects.values_list("priority", flat=True)) == {0.0}
    assert _served("ME", 3) == [p.pk for p in pairs]


def test_switching_the_active_scorer_reorders_the_queue(admin_user):
    first, second = _scorer(admin_user, "first", active=True), _scorer(admin_user, "second")
    pairs = _pairs("RU", 2)
    for pair, p_first, p_second in zip(pairs, [0.5, 0.99], [0.99, 0.5], strict=True):
        _score(first, pair, p_first)
        _score(second, pair, p_second)
    active_learning.set_queue_order(admin_user, Task.objects.get(code="RU"), "uncertainty")
    assert list(Pair.objects.order_by("-priority").values_list("id", flat=True)) == [pairs[0].pk, pairs[1].pk]

    registry.activate_scorer(admin_user, second)

    assert _served("RU", 2) == [pairs[1].pk, pairs[0].pk]


def test_recompute_writes_only_what_changes_and_only_for_the_given_tasks(admin_user):
    scorer = _scorer(admin_user, "sci", active=True)
    ru, bu = make_pair("RU"), make_pair("BU")
    _score(scorer, ru, 0.5), _score(scorer, bu, 0.5)
    Task.objects.filter(code__in=["RU", "BU"]).update(queue_order="uncertainty")

    assert active_learning.recompute_priorities([Task.objects.get(code="RU").pk]) == 1
    assert (Pair.objects.get(pk=ru.pk).priority, Pair.objects.get(pk=bu.pk).priority) == (1.0, 0.0)
    assert active_learning.recompute_priorities() == 1  # BU now; RU is already right
    assert active_learning.recompute_priorities() == 0


def test_changing_the_order_is_for_admins_validated_and_audited(admin_user, annotator):
    task = Task.objects.get(code="RU")
    with pytest.raises(PermissionDenied):
        active_learning.set_queue_order(annotator, task, "uncertainty")
    with pytest.raises(ValueError, match="must be one of created, uncertainty, disagreement"):
        active_learning.set_queue_order(admin_user, task, "random")

    active_learning.set_queue_order(admin_user, task, "disagreement")
    active_learning.set_queue_order(admin_user, task, "disagreement")  # no change, no event

    events = AuditEvent.objects.filter(action="task.queue_order_changed", target_id=str(task.pk))
    assert [(e.actor, e.before, e.after) for e in events] == [
        (admin_user, {"queue_order": "created"}, {"queue_order": "disagreement"})
    ]


def test_the_task_api_shows_and_sets_the_queue_order(api, admin_user, annotator):
    scorer = _scorer(admin_user, "sci", active=True)
    pair = make_pair("BU")
    _score(scorer, pair, 0.25)

    api.force_authenticate(annotator)
    assert api.get("/api/tasks/BU/").json()["queue_order"] == "created"
    assert api.patch("/api/tasks/BU/", {"queue_order": "disagreement"}, format="json").status_code == 403

    api.force_authenticate(admin_user)
    response = api.patch("/api/tasks/BU/", {"queue_order": "disagreement"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["queue_order"] == "disagreement"
    assert Pair.objects.get(pk=pair.pk).priority == 0.75
    assert AuditEvent.objects.filter(action="task.queue_order_changed", actor=admin_user).exists()
    assert api.patch("/api/tasks/BU/", {"queue_order": "random"}, format="json").status_code == 400
    created = api.post(
        "/api/tasks/",
        {"code": "FL", "name": "Floating", "discipline": "physics", "kind": "ST", "queue_order": "uncertainty"},
        format="json",
    )
    assert created.status_code == 201 and Task.objects.get(code="FL").queue_order == "uncertainty"
