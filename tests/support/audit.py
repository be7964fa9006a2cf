"""The audit events recorded about one object, for the tests that check what was audited."""

from annotation.models import AuditEvent


def events(action: str, target) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(action=action, target_type=type(target).__name__.lower(), target_id=str(target.pk))
    )
