"""The audit log: every service that changes state records what changed here, in its transaction."""

from __future__ import annotations

from annotation.models import AuditEvent


def event(actor, action: str, target, *, before: dict | None = None, after: dict | None = None) -> AuditEvent:
    """The event, unsaved. ``target`` is a model instance (its class name and pk are stored; a
    target not saved yet gets its id where the event is written with it: the judgement's, in
    annotation/services/queue_sql.py)."""
    return AuditEvent(
        actor=actor if getattr(actor, "pk", None) else None,
        action=action,
        target_type=type(target).__name__.lower(),
        target_id="" if target.pk is None else str(target.pk),
        before=before,
        after=after,
    )


def record(actor, action: str, target, *, before: dict | None = None, after: dict | None = None) -> AuditEvent:
    """Append one event."""
    created = event(actor, action, target, before=before, after=after)
    created.save(force_insert=True)
    return created
