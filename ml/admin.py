"""Django admin for the ML app: runs are read-only (they change only through ml.services.runs);
the registry is listed here and changed through ml.services.registry.

Tasks: annotation's :class:`~annotation.admin.TaskAdmin` shows a task's queue order read-only
(annotation never imports ml); this module registers a subclass in its place whose actions set the
order through :func:`ml.services.active_learning.set_queue_order` (audited; it recomputes the
task's pair priorities from the active scorer).
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.utils.html import format_html

from annotation.admin import ReadOnlyAdmin, TaskAdmin
from annotation.models import Task
from ml.models import ModelVersion, Run
from ml.services import active_learning, registry


def _json(value) -> str:
    return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(value, indent=2, default=str))


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "status",
        "progress_percent",
        "input_model",
        "output_model",
        "worker",
        "created_by",
        "created_at",
        "finished_at",
    )
    list_filter = ("kind", "status")
    search_fields = ("id", "worker", "celery_task_id")
    date_hierarchy = "created_at"
    fields = (
        "kind",
        "status",
        "progress_percent",
        "input_model",
        "output_model",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "worker",
        "celery_task_id",
        "params_pretty",
        "log",
        "error_pretty",
        "metrics_pretty",
        "artifacts_pretty",
    )
    readonly_fields = fields

    @admin.display(description="progress")
    def progress_percent(self, obj: Run) -> str:
        return f"{obj.progress * 100:.0f}%"

    @admin.display(description="params")
    def params_pretty(self, obj: Run):
        return _json(obj.params)

    @admin.display(description="log (last lines)")
    def log(self, obj: Run):
        return format_html("<pre style='white-space:pre-wrap;max-height:30em;overflow:auto'>{}</pre>", obj.log_tail)

    @admin.display(description="error")
    def error_pretty(self, obj: Run):
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", obj.error) if obj.error else "-"

    @admin.display(description="metrics")
    def metrics_pretty(self, obj: Run):
        return _json(obj.metrics)

    @admin.display(description="artifacts")
    def artifacts_pretty(self, obj: Run):
        return _json(obj.artifacts)


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "name",
        "is_active",
        "parent",
        "dataset_version",
        "location",
        "created_by",
        "created_at",
    )
    list_filter = ("kind", "is_active")
    search_fields = ("name", "location")
    fields = (
        "kind",
        "name",
        "is_active",
        "location",
        "parent",
        "dataset_version",
        "created_by",
        "created_at",
        "config_pretty",
        "metrics_pretty",
    )
    readonly_fields = fields

    @admin.display(description="config")
    def config_pretty(self, obj: ModelVersion):
        return _json(obj.config)

    @admin.display(description="metrics")
    def metrics_pretty(self, obj: ModelVersion):
        return _json(obj.metrics)


admin.site.unregister(Task)


@admin.register(Task)
class TaskWithQueueOrderAdmin(TaskAdmin):
    """annotation's task admin plus the actions that set the queue order (see the module docstring)."""

    actions = ["order_queue_by_created", "order_queue_by_uncertainty", "order_queue_by_disagreement"]

    @admin.action(description="Order the queue by creation", permissions=["change"])
    def order_queue_by_created(self, request, queryset):
        self.set_queue_order(request, queryset, Task.QueueOrder.CREATED)

    @admin.action(description="Order the queue by scorer uncertainty", permissions=["change"])
    def order_queue_by_uncertainty(self, request, queryset):
        self.set_queue_order(request, queryset, Task.QueueOrder.UNCERTAINTY)

    @admin.action(description="Order the queue by scorer disagreement", permissions=["change"])
    def order_queue_by_disagreement(self, request, queryset):
        self.set_queue_order(request, queryset, Task.QueueOrder.DISAGREEMENT)

    def set_queue_order(self, request, queryset, order: str):
        """Each task through :func:`set_queue_order` (audited; recomputes its pairs' priorities)."""
        changed, unchanged = [], []
        for task in queryset.order_by("code"):
            try:
                active_learning.set_queue_order(request.user, task, order)
            except (PermissionDenied, ValueError) as exc:
                self.message_user(request, f"{task.code}: {exc}", messages.ERROR)
                continue
            (unchanged if task.queue_order == order else changed).append(task.code)
        label = Task.QueueOrder(order).label
        if changed:
            self.message_user(request, f"Queue order set to {label} for {', '.join(changed)}.")
        if unchanged:
            self.message_user(request, f"Already {label}: {', '.join(unchanged)}.", messages.INFO)
        if order != Task.QueueOrder.CREATED and registry.active_scorer() is None:
            self.message_user(
                request, "No scorer is active: these tasks are served in creation order until one is.", messages.WARNING
            )
