"""The audit log page (admins only): newest first, 50 a page, filtered by action, actor and target.

Read-only by construction: the view answers GET and HEAD only and offers no link or form that
changes an event (``AuditEvent`` itself refuses updates and deletes). :func:`matching_events` is
the one filter, shared with the API (curation/api_audit.py), so both list the same events.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.shortcuts import render
from django.views.decorators.http import require_safe

from annotation import roles
from annotation.models import AuditEvent
from curation.paging import CappedPaginator

PAGE_SIZE = 50
FILTERS = ("action", "actor", "target_type", "target_id")


def filters_of(params: Mapping[str, str]) -> dict[str, str]:
    """The four filters of a query string, stripped; absent ones are empty (no filter)."""
    return {name: params.get(name, "").strip() for name in FILTERS}


def matching_events(filters: dict[str, str]):
    """Events matching the non-empty filters: exact action, actor username, target type (any case)
    and target id; newest first."""
    events = AuditEvent.objects.select_related("actor").order_by("-id")
    if filters["action"]:
        events = events.filter(action=filters["action"])
    if filters["actor"]:
        events = events.filter(actor__username=filters["actor"])
    if filters["target_type"]:
        events = events.filter(target_type__iexact=filters["target_type"])
    if filters["target_id"]:
        events = events.filter(target_id=filters["target_id"])
    return events


def _as_json(state) -> str:
    return "" if state is None else json.dumps(state, indent=1, sort_keys=True, ensure_ascii=False)


def audit_filter_values(field: str) -> list[str]:
    """The distinct values of an indexed column, sorted (as ``SELECT DISTINCT ... ORDER BY``), by a
    loose index scan: one index probe per distinct value instead of reading the whole log."""
    quote = connection.ops.quote_name
    table, column = quote(AuditEvent._meta.db_table), quote(AuditEvent._meta.get_field(field).column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH RECURSIVE found (value) AS (SELECT MIN({column}) FROM {table} "
            f"UNION ALL SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > found.value) "
            "FROM found WHERE found.value IS NOT NULL) "
            "SELECT value FROM found WHERE value IS NOT NULL ORDER BY value"
        )
        return [value for (value,) in cursor.fetchall()]


@require_safe
@login_required
def audit_log(request):
    if not roles.is_admin(request.user):
        raise PermissionDenied("Only admins read the audit log.")
    filters = filters_of(request.GET)
    page = CappedPaginator(matching_events(filters), PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [{"event": event, "before": _as_json(event.before), "after": _as_json(event.after)} for event in page]
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "curation/audit.html",
        {
            "page": page,
            "rows": rows,
            "filters": filters,
            "filtered": any(filters.values()),
            "actions": audit_filter_values("action"),
            "target_types": audit_filter_values("target_type"),
            "query": query.urlencode(),
        },
    )
