"""Roles are Django groups. Admins are also staff (Django admin); superusers count as admins."""

from __future__ import annotations

ANNOTATOR = "annotator"
REVIEWER = "reviewer"
ADMIN = "admin"
ROLES = (ANNOTATOR, REVIEWER, ADMIN)


def roles_of(user) -> set[str]:
    if not user or not user.is_authenticated:
        return set()
    cached = getattr(user, "_scit2i_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        if user.is_superuser:
            cached.add(ADMIN)
        user._scit2i_roles = cached
    return cached


def is_admin(user) -> bool:
    return ADMIN in roles_of(user)


def is_reviewer(user) -> bool:
    """Reviewers and admins may see the full tuple and everyone's judgements."""
    return bool(roles_of(user) & {REVIEWER, ADMIN})


def is_annotator(user) -> bool:
    return ANNOTATOR in roles_of(user)
