"""Active learning: the queue serves first the pairs where the active scorer is weakest.

Each task has a ``queue_order`` (:class:`annotation.models.Task.QueueOrder`); the queue serves a
task's pairs by ``Pair.priority`` (higher first), then by id. Priorities come from the *active*
scorer's :class:`~ml.models.PairScore` of each pair:

* ``uncertainty``: ``priority = uncertainty`` (1 for a coin flip, 0 for a sure call);
* ``disagreement``: ``priority = 1 - probability`` (the scorer's confidence that the expected
  image is wrong, so the pairs where it disagrees most come first);
* ``judge_disagreement``: ``priority = |p_scorer - p_judge|``, where ``p_scorer`` is the active scorer's
  probability that the expected image is right and ``p_judge`` the share of the latest LMM judge's readable
  answers that picked it (:class:`~ml.models.JudgedItem` ``prefers_expected``, from a ``judge_pairs`` or
  ``eval_judge`` run of a ``judge`` model): the pairs where the two kinds of judge disagree most come first;
* ``created``, or a pair the active scorer (or, for ``judge_disagreement``, any LMM judge) has not scored:
  ``priority = 0`` (creation order).

:func:`recompute_priorities` sets them in one ``UPDATE`` per order (a correlated subquery on the
unique (pair, model) index), writing only rows whose priority changes. It runs after a
``score_pairs`` or ``judge_pairs`` run, when a task's order changes (:func:`set_queue_order`) and when another scorer
becomes active (:func:`ml.services.registry.activate_scorer`). Priorities are comparable across
tasks, so an annotator who works on several tasks sees scored pairs of uncertainty/disagreement
tasks before pairs of creation-order tasks.

Writes: ``Task.queue_order`` and ``Pair.priority`` are annotation columns, written through their
setters in :mod:`annotation.services.catalog` (``set_task_queue_order``, ``set_pair_priorities``).

Imports: :mod:`ml.services.registry` imports this module (activating a scorer recomputes the
priorities), so this module never imports the registry: it reads the active scorer's row itself.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F, FloatField, OuterRef, Subquery, Value
from django.db.models.functions import Abs, Coalesce

from annotation import roles
from annotation.models import Pair, PromptTuple, Task
from annotation.services import audit, catalog
from ml.models import JudgedItem, ModelVersion, PairScore

Order = Task.QueueOrder


def _active_scorer() -> ModelVersion | None:
    """The active scorer (at most one: a constraint; :func:`ml.services.registry.active_scorer` is the same query)."""
    return ModelVersion.objects.filter(kind=ModelVersion.Kind.SCORER, is_active=True).first()


def _priority(order: str, active: ModelVersion | None):
    """The priority expression of a pair (``OuterRef("pk")``) in a task of ``order``."""
    zero = Value(0.0, output_field=FloatField())
    if active is None or order == Order.CREATED:
        return zero
    scores = PairScore.objects.filter(pair=OuterRef("pk"), model=active)
    if order == Order.JUDGE_DISAGREEMENT:
        scorer = Subquery(scores.values("probability")[:1], output_field=FloatField())
        opinions = JudgedItem.objects.filter(
            pair=OuterRef("pk"), run__input_model__kind=ModelVersion.Kind.JUDGE, prefers_expected__isnull=False
        ).order_by("-run_id")
        judge = Subquery(opinions.values("prefers_expected")[:1], output_field=FloatField())
        return Coalesce(Abs(scorer - judge), zero)
    value = F("uncertainty") if order == Order.UNCERTAINTY else 1.0 - F("probability")
    return Coalesce(Subquery(scores.annotate(value=value).values("value")[:1], output_field=FloatField()), zero)


def recompute_priorities(task_ids=None) -> int:
    """Set ``Pair.priority`` of the pairs of ``task_ids`` (default: every task); return how many changed."""
    active = _active_scorer()
    changed = 0
    for order in Order.values:
        tasks = Task.objects.filter(queue_order=order)
        if task_ids is not None:
            tasks = tasks.filter(pk__in=list(task_ids))
        pairs = Pair.objects.filter(tuple__in=PromptTuple.objects.filter(task__in=tasks).values("id"))
        changed += catalog.set_pair_priorities(pairs, _priority(order, active))
    return changed


def set_queue_order(user, task: Task, order: str) -> Task:
    """Set how the queue orders ``task``'s pairs (admins; audited) and recompute their priorities."""
    if not roles.is_admin(user):
        raise PermissionDenied("Only admins may change a task's queue order.")
    if order not in Order.values:
        raise ValueError(f"queue order must be one of {', '.join(Order.values)}, not {order!r}.")
    with transaction.atomic():
        task, before = catalog.set_task_queue_order(task.pk, order)
        if before == order:
            return task
        audit.record(
            user, "task.queue_order_changed", task, before={"queue_order": before}, after={"queue_order": order}
        )
        recompute_priorities([task.pk])
    return task
