"""Django admin for the ML app: runs are read-only (they change only through ml.services.runs);
the registry is listed here and changed through ml.services.registry."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from annotation.admin import ReadOnlyAdmin
from ml.models import ModelVersion, Run


def _json(value) -> str:
    return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(value, indent=2, default=str))


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "status", "progress_percent", "input_model", "output_model", "worker",
                    "created_by", "created_at", "finished_at")
    list_filter = ("kind", "status")
    search_fields = ("id", "worker", "celery_task_id")
    date_hierarchy = "created_at"
    fields = ("kind", "status", "progress_percent", "input_model", "output_model", "created_by", "created_at",
              "started_at", "finished_at", "worker", "celery_task_id", "params_pretty", "log", "error_pretty",
              "metrics_pretty", "artifacts_pretty")
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
    list_display = ("id", "kind", "name", "is_active", "parent", "dataset_version", "location", "created_by",
                    "created_at")
    list_filter = ("kind", "is_active")
    search_fields = ("name", "location")
    fields = ("kind", "name", "is_active", "location", "parent", "dataset_version", "created_by", "created_at",
              "config_pretty", "metrics_pretty")
    readonly_fields = fields

    @admin.display(description="config")
    def config_pretty(self, obj: ModelVersion):
        return _json(obj.config)

    @admin.display(description="metrics")
    def metrics_pretty(self, obj: ModelVersion):
        return _json(obj.metrics)
