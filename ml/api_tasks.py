"""``/api/tasks/`` with a writable ``queue_order`` (admins; ml/api_root_urls.py, mounted before annotation's).

annotation serves tasks (:class:`annotation.api.TaskViewSet`) with ``queue_order`` read-only, because
setting it recomputes the task's pair priorities from the active scorer (:mod:`ml.services.active_learning`)
and annotation never imports ml. ml therefore serves the same URLs with a subclass of that viewset: every
field, permission and filter is annotation's; only the serializer also accepts ``queue_order`` (``POST`` and
``PATCH``/``PUT``) and sets it through :func:`~ml.services.active_learning.set_queue_order` (audited; an unknown
order is a 400, a non-admin gets the viewset's 403 first).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from annotation import api as annotation_api
from annotation import serializers as annotation_serializers
from annotation.models import Task
from ml.services import active_learning


@extend_schema_serializer(component_name="Task")  # the same resource as annotation's, now writable
class TaskSerializer(annotation_serializers.TaskSerializer):
    queue_order = serializers.ChoiceField(
        choices=Task.QueueOrder.choices,
        required=False,
        help_text="How the queue orders this task's pairs: created, uncertainty or disagreement (active learning).",
    )

    class Meta(annotation_serializers.TaskSerializer.Meta):
        pass

    def create(self, validated_data):
        order = validated_data.pop("queue_order", None)
        return self.set_queue_order(super().create(validated_data), order)

    def update(self, instance, validated_data):
        order = validated_data.pop("queue_order", None)
        return self.set_queue_order(super().update(instance, validated_data), order)

    def set_queue_order(self, task: Task, order: str | None) -> Task:
        """Through the service, which also recomputes the task's pair priorities."""
        if order is None or order == task.queue_order:
            return task
        return active_learning.set_queue_order(self.context["request"].user, task, order)


class TaskViewSet(annotation_api.TaskViewSet):
    """Tasks, addressed by code."""  # as annotation's; only the serializer differs

    serializer_class = TaskSerializer
