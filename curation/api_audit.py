"""``GET /api/curation/audit/``: the audit log for admins, newest first, paginated, read-only.

A list view and nothing else: there is no route that could create, change or delete an event
(other methods answer 405), and ``AuditEvent`` refuses updates and deletes on its own. The filters
are those of the audit page (:func:`curation.views_audit.matching_events`).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers

from annotation.models import AuditEvent
from annotation.permissions import IsAdminRole
from curation.views_audit import filters_of, matching_events


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Null for system events."
    )

    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "actor", "action", "target_type", "target_id", "before", "after"]
        read_only_fields = fields


@extend_schema(
    parameters=[
        OpenApiParameter("action", str, description="Only this action, e.g. judgement.created."),
        OpenApiParameter("actor", str, description="Only events by this username."),
        OpenApiParameter("target_type", str, description="Only this target type (model name, any case), e.g. pair."),
        OpenApiParameter("target_id", str, description="Only this target id (with target_type: one object)."),
    ],
    summary="The audit log, newest first",
)
class AuditEventListView(generics.ListAPIView):
    """Every recorded state change: who, what, when, before and after."""

    permission_classes = [IsAdminRole]
    serializer_class = AuditEventSerializer

    def get_queryset(self):
        return matching_events(filters_of(self.request.query_params))
