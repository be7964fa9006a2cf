"""An annotator's work sessions: a session runs from the end of their previous one (or their first judgement)
until they end it (the annotate page's "End session"). Ending one is an audit event (``session.ended``, naming
the user), so no table is needed.

What ending a session settles: its judgements can no longer be undone
(:func:`annotation.services.queue.undo_last_judgement` looks only after :func:`last_end`), because the
session's report (``curation.services.gold.session_report``) then says which of them were attention checks
(gold) and whether each was right; the live lease, if any, is released so the pair goes back to the queue.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from annotation.models import AuditEvent, Lease
from annotation.services import audit

SESSION_ENDED = "session.ended"


def _ends(user):
    return AuditEvent.objects.filter(action=SESSION_ENDED, target_type="user", target_id=str(user.pk)).order_by("-id")


def last_end(user) -> datetime | None:
    """When the user last ended a session (``None``: never)."""
    return _ends(user).values_list("created_at", flat=True).first()


def ended_sessions(user, limit: int = 6) -> list[tuple[datetime | None, datetime]]:
    """The user's latest ended sessions, newest first, as ``(start, end)`` (start ``None``: from the beginning)."""
    ends = list(_ends(user).values_list("created_at", flat=True)[: limit + 1])
    return [(ends[i + 1] if i + 1 < len(ends) else None, end) for i, end in enumerate(ends[:limit])]


def end_session(user) -> datetime:
    """End the user's session now: record ``session.ended`` and release their live lease. Serialized with their
    judgements and undos by the lock on their active lease, as an undo is."""
    with transaction.atomic():
        list(Lease.objects.select_for_update().filter(annotator=user, state=Lease.State.ACTIVE).values_list("pk"))
        now = timezone.now()
        started = last_end(user)
        Lease.objects.filter(annotator=user, state=Lease.State.ACTIVE).update(state=Lease.State.RELEASED, ended_at=now)
        target = get_user_model()(pk=user.pk)  # the model itself: a request's user is a lazy wrapper
        event = audit.record(
            user, SESSION_ENDED, target, before={"started": started.isoformat() if started else None}, after=None
        )
        return event.created_at
