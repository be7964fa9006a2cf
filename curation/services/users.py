"""In-app user management for admins (/curation/users/): create and invite, roles and expertise,
pause and restore, and each user's figures (throughput, gold accuracy, agreement with consensus).

Every change takes the acting admin, checks that they are an admin (``PermissionDenied``
otherwise) and is audited in its transaction:

* ``user.created`` — by :func:`annotation.services.people.ensure_user` (the one writer of users,
  groups and expertise, shared with ``manage.py adduser``), after state;
* ``user.updated`` — role or expertise changed, before and after (``ensure_user`` also records its
  ``user.ensured`` with the after state, as it does for the command);
* ``user.paused`` / ``user.unpaused`` — a manual pause and its lifting; lifting the pause of an
  annotator that gold accuracy *flagged* is :func:`curation.services.gold.restore` instead
  (``annotator.restored``: it also clears the flag and starts a fresh assessment period);
* ``user.invite_link`` — a one-time set-password link was issued (the token itself is not logged).

**Invitations.** No e-mail server is configured, so an invitation is a link the admin hands over:
Django's :class:`~django.contrib.auth.tokens.PasswordResetTokenGenerator` token for the user,
answered by Django's own ``PasswordResetConfirmView`` at ``/curation/users/set-password/<uid>/<token>/``.
The token is one-time (it hashes the password hash and the last login, so it dies once the password
is set or the user signs in) and expires after ``PASSWORD_RESET_TIMEOUT`` (Django's default, three
days). A new user has an unusable password until then. The new password meets the project's
``AUTH_PASSWORD_VALIDATORS``, as everywhere else.

**Lock-out.** An admin cannot take the admin role away from themselves nor pause themselves
(:class:`LockOut`): there would be no admin left to undo it in the app.

Locking: a pause or unpause locks the user's quality row, then their expertise row (the order of
:mod:`curation.services.gold` and the judgement path: pair, quality, expertise).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Avg, Count, F, Max, Min, Q
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from annotation import roles
from annotation.models import Expertise, Judgement
from annotation.services import audit, people
from curation.models import AnnotatorQuality, Label
from curation.services import gold
from curation.services.agreement import LABELS, label_expression

USERNAME_MAX = 150
EMAIL_MAX = 254
DEFAULT_DAYS = 14


class LockOut(ValueError):
    """The change would lock the acting admin out (their own admin role, their own pause)."""


class UserExists(ValueError):
    """A user of that name exists already."""


def _require_admin(admin) -> None:
    if not roles.is_admin(admin):
        raise PermissionDenied("Only admins manage users.")


def role_of(user) -> str:
    """The user's one role (the highest if the groups say several; superusers are admins); '' for none."""
    held = roles.roles_of(user)
    return next((role for role in reversed(roles.ROLES) if role in held), "")


def state_of(user) -> dict:
    """Role, expertise and pause of a user, as the audit log records them."""
    expertise = Expertise.objects.filter(user=user).first()
    return {
        "username": user.username,
        "role": role_of(user),
        "disciplines": sorted(expertise.disciplines.values_list("slug", flat=True)) if expertise else [],
        "tasks": sorted(expertise.tasks.values_list("code", flat=True)) if expertise else [],
        "paused": bool(expertise and expertise.paused),
    }


def _forget_roles(user) -> None:
    """Drop the roles cached on the object, so the next read sees the groups as they are now."""
    if hasattr(user, "scit2i_roles"):
        del user.scit2i_roles


# --- Listing ---------------------------------------------------------------------------------------


def users(search: str = "", role: str = ""):
    """Every user, by username; ``search`` matches the username or e-mail (any case), ``role`` one role."""
    rows = get_user_model().objects.select_related("expertise", "quality").order_by("username")
    search = search.strip()
    if search:
        rows = rows.filter(Q(username__icontains=search) | Q(email__icontains=search))
    if role == roles.ADMIN:
        rows = rows.filter(Q(groups__name=role) | Q(is_superuser=True)).distinct()
    elif role in roles.ROLES:
        rows = rows.filter(groups__name=role)
    return rows


def list_rows(page_users) -> list[dict]:
    """The figures of one page of users: role, pause, flag, gold accuracy, judgements (two queries)."""
    ids = [user.pk for user in page_users]
    judged = dict(
        Judgement.objects.filter(annotator_id__in=ids)
        .order_by()
        .values("annotator_id")
        .annotate(n=Count("id"))
        .values_list("annotator_id", "n")
    )
    held: dict[int, set[str]] = {}
    for user_id, name in (
        get_user_model()
        .groups.through.objects.filter(user_id__in=ids, group__name__in=roles.ROLES)
        .values_list("user_id", "group__name")
    ):
        held.setdefault(user_id, set()).add(name)
    rows = []
    for user in page_users:
        roles.remember(user, held.get(user.pk, set()))
        expertise = user.expertise if _has_expertise(user) else None
        quality = user.quality if _has_quality(user) else None
        rows.append(
            {
                "user": user,
                "role": role_of(user),
                "paused": bool(expertise and expertise.paused),
                "flagged": bool(quality and quality.flagged),
                "accuracy": quality.gold_accuracy if quality else None,
                "gold_judged": quality.gold_judged if quality else 0,
                "judgements": judged.get(user.pk, 0),
            }
        )
    return rows


def _has_expertise(user) -> bool:
    try:
        user.expertise  # noqa: B018 - loaded by select_related; absent raises
    except Expertise.DoesNotExist:
        return False
    return True


def _has_quality(user) -> bool:
    try:
        user.quality  # noqa: B018
    except AnnotatorQuality.DoesNotExist:
        return False
    return True


# --- Changes ---------------------------------------------------------------------------------------


def validate_username(username: str) -> str:
    username = username.strip()
    if not username:
        raise ValidationError("The username is empty.")
    if len(username) > USERNAME_MAX:
        raise ValidationError(f"At most {USERNAME_MAX} characters.")
    UnicodeUsernameValidator()(username)
    return username


def create_user(
    admin, *, username: str, role: str, email: str = "", disciplines: list[str], tasks: list[str]
) -> object:
    """A new user with the role and expertise, who cannot sign in until they set a password through
    an invitation link (:func:`invitation`). Raises :class:`UserExists`, ``ValidationError`` for a
    bad username, ``ValueError`` for an unknown role, discipline or task."""
    _require_admin(admin)
    username = validate_username(username)
    User = get_user_model()
    with transaction.atomic():
        if User.objects.filter(username__iexact=username).exists():
            raise UserExists(f"A user called {username!r} exists already.")
        user, _ = people.ensure_user(
            username, role=role, email=email.strip(), disciplines=disciplines, tasks=tasks, actor=admin
        )
    return user


def update_user(admin, user, *, role: str, disciplines: list[str], tasks: list[str]) -> bool:
    """Give ``user`` exactly this role and expertise; False when nothing changed. Raises
    :class:`LockOut` when an admin would drop their own admin role, ``ValueError`` for unknown values."""
    _require_admin(admin)
    if user.pk == admin.pk and role != roles.ADMIN:
        raise LockOut("You cannot remove your own admin role; ask another admin.")
    with transaction.atomic():
        _forget_roles(user)
        before = state_of(user)
        wanted = {**before, "role": role, "disciplines": sorted(disciplines), "tasks": sorted(tasks)}
        if wanted == before:
            return False
        people.ensure_user(user.username, role=role, disciplines=disciplines, tasks=tasks, actor=admin)
        _forget_roles(user)
        audit.record(admin, "user.updated", user, before=before, after=state_of(user))
    return True


def set_paused(admin, user, paused: bool) -> bool:
    """Pause ``user`` (the queue serves them nothing) or lift the pause; False when already so.

    Lifting the pause of an annotator flagged by gold accuracy is :func:`curation.services.gold.restore`.
    Raises :class:`LockOut` for an admin pausing themselves."""
    _require_admin(admin)
    if paused and user.pk == admin.pk:
        raise LockOut("You cannot pause yourself.")
    with transaction.atomic():
        quality, _ = AnnotatorQuality.objects.select_for_update().get_or_create(user=user)
        expertise, _ = Expertise.objects.select_for_update().get_or_create(user=user)
        if not paused and quality.flagged:
            gold.restore(admin, user)
            return True
        if expertise.paused == paused:
            return False
        people.set_paused(user, paused)
        audit.record(
            admin,
            "user.paused" if paused else "user.unpaused",
            user,
            before={"paused": not paused},
            after={"paused": paused},
        )
    return True


def invitation(admin, user) -> tuple[str, str]:
    """``(uidb64, token)`` of a one-time set-password link for ``user`` (see the module docstring);
    audited as ``user.invite_link`` without the token."""
    _require_admin(admin)
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    audit.record(admin, "user.invite_link", user, after={"username": user.username})
    return uid, token


# --- Drill-down ------------------------------------------------------------------------------------


@dataclass
class Figures:
    """One user's work: judgements per day over ``days``, totals, gold accuracy, agreement with consensus."""

    days: list[date]
    per_day: list[int]
    total: int = 0
    in_window: int = 0
    mean_seconds: float | None = None
    flagged_items: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    gold_judged: int = 0
    gold_correct: int = 0
    gold_accuracy: float | None = None
    flagged: bool = False
    flagged_at: datetime | None = None
    restored_at: datetime | None = None
    on_decided: int = 0
    agreeing: int = 0
    consensus_agreement: float | None = None
    by_label: dict[str, int] = field(default_factory=dict)
    by_task: list[dict] = field(default_factory=list)  # task, judgements, on_decided, agreeing, agreement


def figures_of(user, *, days: int = DEFAULT_DAYS, now: datetime | None = None) -> Figures:
    """The drill-down figures of one user (a fixed number of aggregate queries).

    Throughput counts every judgement (gold included) by local calendar day, as the dashboard does;
    agreement with consensus is the share of their judgements on non-gold pairs with a decided
    consensus label that equal it (the agreement page's definition, :mod:`curation.services.agreement`)."""
    now = timezone.localtime(now or timezone.now())
    today = now.date()
    window = [today - timedelta(days=days - 1 - n) for n in range(days)]
    since = timezone.make_aware(datetime.combine(window[0], datetime.min.time()))
    mine = Judgement.objects.filter(annotator=user).order_by()
    per_day = dict(
        mine.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("id"))
        .values_list("day", "n")
    )
    totals = mine.aggregate(
        total=Count("id"),
        mean_ms=Avg("time_spent_ms"),
        flagged=Count("id", filter=Q(flag_prompt_unclear=True) | Q(flag_image_broken=True) | Q(flag_off_topic=True)),
        first=Min("created_at"),
        last=Max("created_at"),
    )
    result = Figures(days=window, per_day=[per_day.get(day, 0) for day in window])
    result.total = totals["total"]
    result.in_window = sum(result.per_day)
    result.mean_seconds = None if totals["mean_ms"] is None else totals["mean_ms"] / 1000
    result.flagged_items = totals["flagged"]
    result.first_at, result.last_at = totals["first"], totals["last"]
    quality = AnnotatorQuality.objects.filter(user=user).first()
    if quality is not None:
        result.gold_judged, result.gold_correct = quality.gold_judged, quality.gold_correct
        result.gold_accuracy = quality.gold_accuracy
        result.flagged, result.flagged_at, result.restored_at = quality.flagged, quality.flagged_at, quality.restored_at
    # One grouped query: per task, gold or not, the judgement's label and the pair's consensus label
    # (None without a consensus row, "" while undecided).
    grouped = (
        mine.values(task=F("pair__tuple__task__code"), gold=F("pair__is_gold"))
        .annotate(lab=label_expression(), con=F("pair__consensus__label"))
        .values("task", "gold", "lab", "con")
        .annotate(n=Count("id"))
        .values_list("task", "gold", "lab", "con", "n")
    )
    by_label = dict.fromkeys(Label.values, 0)
    by_task: dict[str, dict] = {}
    for task, is_gold, code, consensus, n in grouped:
        row = by_task.setdefault(task or "", {"judgements": 0, "on_decided": 0, "agreeing": 0})
        row["judgements"] += n
        if is_gold or not consensus:
            continue
        agrees = n if LABELS[code] == consensus else 0
        row["on_decided"] += n
        row["agreeing"] += agrees
        result.on_decided += n
        result.agreeing += agrees
        by_label[LABELS[code]] += n
    result.by_label = by_label
    result.by_task = [
        {"task": task, **row, "agreement": row["agreeing"] / row["on_decided"] if row["on_decided"] else None}
        for task, row in sorted(by_task.items())
    ]
    result.consensus_agreement = result.agreeing / result.on_decided if result.on_decided else None
    return result
