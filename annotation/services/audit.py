"""The audit log: every service that changes state records what changed here, in its transaction."""

from __future__ import annotations

from annotation.models import AuditEvent
from annotation.services import rows


def record(actor, action: str, target, *, before: dict | None = None, after: dict | None = None) -> AuditEvent:
    """Append one event. ``target`` is a model instance (its class name and pk are stored). Written
    with one INSERT (:func:`annotation.services.rows.insert`): every judgement records one."""
    return rows.insert(AuditEvent(
        actor=actor if getattr(actor, "pk", None) else None,
        action=action,
        target_type=type(target).__name__.lower(),
        target_id=str(target.pk),
        before=before,
        after=after,
    ))
