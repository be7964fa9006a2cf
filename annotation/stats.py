"""Read-only figures for the annotator's home page.

Every figure comes from a fixed number of aggregate queries (two more where the tasks have
qualification sets), whatever the number of tasks or pairs: grouped counts per task, never a query per row.

"Left for you" mirrors the queue's candidate filter (:mod:`annotation.services.queue`): open
pairs in the annotator's expertise that they have not judged and whose ``judgement_count`` is
below ``k``. Other annotators' live leases are deliberately ignored: they come and go within
minutes, and a home page figure that jumps on every refresh helps nobody.

Qualification (:mod:`annotation.services.qualification`): on a task whose set the annotator is still
answering, what is left is the set's pairs they have not answered (the queue serves nothing else there);
on a task they failed, nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

from django.db.models import Count, F
from django.utils import timezone

from annotation.models import Judgement, Pair, Task
from annotation.services import qualification
from annotation.services.queue import allowed_tasks


@dataclass(frozen=True)
class TaskProgress:
    task: Task
    judged: int
    left: int
    qualification: qualification.Progress | None = None  # None: the task has no qualification set

    @property
    def total(self) -> int:
        """The pairs this annotator can contribute to in the task: done plus still open to them."""
        return self.judged + self.left

    @property
    def percent(self) -> int:
        return round(100 * self.judged / self.total) if self.total else 0


@dataclass(frozen=True)
class AnnotatorStats:
    tasks: list[TaskProgress]
    judged_today: int

    @property
    def pairs_left(self) -> int:
        return sum(row.left for row in self.tasks)

    @property
    def qualifying(self) -> list[TaskProgress]:
        """Tasks whose qualification set the annotator is still answering."""
        return [row for row in self.tasks if row.qualification and row.qualification.state == qualification.PENDING]

    @property
    def failed(self) -> list[TaskProgress]:
        """Tasks whose qualification the annotator failed."""
        return [row for row in self.tasks if row.qualification and row.qualification.state == qualification.FAILED]

    @property
    def judged_total(self) -> int:
        return sum(row.judged for row in self.tasks)


def _per_task(queryset) -> dict[int, int]:
    return dict(queryset.values_list("task_id").annotate(n=Count("id")).values_list("task_id", "n"))


def _row(task: Task, judged: int, left: int, progress: qualification.Progress | None) -> TaskProgress:
    if progress is not None and progress.state == qualification.PENDING:
        left = max(progress.size - progress.answered, 0)
    elif progress is not None and progress.state == qualification.FAILED:
        left = 0
    return TaskProgress(task, judged, left, progress)


def annotator_stats(user) -> AnnotatorStats:
    task_ids = allowed_tasks(user)
    mine = Judgement.objects.filter(annotator=user)
    judged = _per_task(
        mine.filter(pair__tuple__task_id__in=task_ids).order_by().annotate(task_id=F("pair__tuple__task_id"))
    )
    left = _per_task(
        Pair.objects.filter(status=Pair.Status.OPEN, judgement_count__lt=F("k"), tuple__task_id__in=task_ids)
        .exclude(id__in=mine.values("pair_id"))
        .order_by()
        .annotate(task_id=F("tuple__task_id"))
    )
    tasks = Task.objects.filter(id__in=task_ids).select_related("discipline")
    progress = qualification.progress_of(user, task_ids)
    start_of_today = timezone.make_aware(datetime.combine(timezone.localdate(), time.min))
    return AnnotatorStats(
        tasks=[_row(task, judged.get(task.id, 0), left.get(task.id, 0), progress.get(task.id)) for task in tasks],
        judged_today=mine.filter(created_at__gte=start_of_today).count(),
    )
