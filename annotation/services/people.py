"""Users, roles and expertise."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from annotation import roles
from annotation.models import Discipline, Expertise, Task
from annotation.services import audit


def _resolve(model, field: str, values: list[str], label: str):
    wanted = [v.strip() for v in values if v.strip()]
    found = {getattr(obj, field).lower(): obj for obj in model.objects.filter(**{f"{field}__in": _variants(wanted)})}
    missing = [v for v in wanted if v.lower() not in found]
    if missing:
        known = ", ".join(model.objects.order_by(field).values_list(field, flat=True))
        raise ValueError(f"Unknown {label}: {', '.join(missing)}. Known: {known}.")
    return [found[v.lower()] for v in wanted]


def _variants(values: list[str]) -> list[str]:
    return sorted({form for v in values for form in (v, v.lower(), v.upper(), v.capitalize())})


def ensure_user(
    username: str,
    *,
    role: str,
    password: str | None = None,
    disciplines: list[str] | None = None,
    tasks: list[str] | None = None,
    email: str = "",
    actor=None,
) -> tuple[object, bool]:
    """Create or update a user so they have exactly ``role`` and the given expertise.

    Idempotent. ``disciplines`` are slugs (physics), ``tasks`` are codes (BU); ``None`` leaves
    the stored expertise as it is, an empty list clears it.
    """
    if role not in roles.ROLES:
        raise ValueError(f"Unknown role {role!r}; use one of {', '.join(roles.ROLES)}.")
    if not username.strip():
        raise ValueError("The username is empty.")
    discipline_objs = _resolve(Discipline, "slug", disciplines, "discipline") if disciplines is not None else None
    task_objs = _resolve(Task, "code", tasks, "task") if tasks is not None else None
    User = get_user_model()
    with transaction.atomic():
        user, created = User.objects.get_or_create(username=username.strip(), defaults={"email": email})
        changed_password = bool(password) and not user.check_password(password)
        if changed_password:  # re-hashing an unchanged password would only change the salt
            user.set_password(password)
        elif created:
            user.set_unusable_password()
        # Admins manage everything in the Django admin, so they are staff and superusers.
        user.is_staff = user.is_superuser = role == roles.ADMIN
        user.save()
        user.groups.remove(*Group.objects.filter(name__in=roles.ROLES).exclude(name=role))
        user.groups.add(Group.objects.get(name=role))
        expertise, _ = Expertise.objects.get_or_create(user=user)
        if discipline_objs is not None:
            expertise.disciplines.set(discipline_objs)
        if task_objs is not None:
            expertise.tasks.set(task_objs)
        audit.record(
            actor,
            "user.created" if created else "user.ensured",
            user,
            after={
                "username": user.username,
                "role": role,
                "password_changed": bool(password) and changed_password,
                "disciplines": sorted(expertise.disciplines.values_list("slug", flat=True)),
                "tasks": sorted(expertise.tasks.values_list("code", flat=True)),
            },
        )
    return user, created


def set_paused(user, paused: bool) -> int:
    """Pause an annotator (the queue serves them nothing) or let them work again; returns the rows changed.

    No permission check and no audit event here: :mod:`curation.services.gold` pauses an annotator
    whose gold accuracy is too low and an admin's restore un-pauses them; it checks the admin and
    records ``annotator.flagged`` / ``annotator.restored``. Call it inside the caller's transaction
    after the annotator's quality row is locked: locks go pair, quality, expertise (the judgement path's
    order, see annotation/services/queue.py).
    """
    return Expertise.objects.filter(user=user).update(paused=paused)
