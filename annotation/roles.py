"""Roles are Django groups. Admins are also staff (Django admin); superusers count as admins."""

from __future__ import annotations

ANNOTATOR = "annotator"
REVIEWER = "reviewer"
ADMIN = "admin"
ROLES = (ANNOTATOR, REVIEWER, ADMIN)


def roles_of(user) -> set[str]:
    """The user's roles, read once per user object (requests load their user afresh)."""
    if not user or not user.is_authenticated:
        return set()
    cached = getattr(user, "scit2i_roles", None)
    if cached is None:
        cached = remember(user, set(user.groups.filter(name__in=ROLES).values_list("name", flat=True)))
    return cached


def remember(user, group_roles: set[str]) -> set[str]:
    """Keep ``user``'s roles, given the names of the role groups they are in (read with the user, as the
    token authentication does), on the user object; superusers are admins."""
    held = set(group_roles) | ({ADMIN} if user.is_superuser else set())
    user.scit2i_roles = held
    return held


def is_admin(user) -> bool:
    return ADMIN in roles_of(user)


def is_reviewer(user) -> bool:
    """Reviewers and admins may see the full tuple and everyone's judgements."""
    return bool(roles_of(user) & {REVIEWER, ADMIN})


def is_annotator(user) -> bool:
    return ANNOTATOR in roles_of(user)
