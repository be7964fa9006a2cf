"""User management pages under /curation/users/ (admins only): the list with search and paging, a new
user with a one-time set-password link, and each user's drill-down (figures, role and expertise,
pause and restore, a fresh link). Every change goes through :mod:`curation.services.users`, which
checks the admin, refuses a lock-out and writes the audit log.

The set-password page (``users/set-password/<uid>/<token>/``) is Django's own
``PasswordResetConfirmView``: the token is the permission (anyone holding a valid link may set that
user's password, once); the new password meets ``AUTH_PASSWORD_VALIDATORS`` and signs the user in.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from annotation import roles
from annotation.models import Discipline, Task
from curation.services import users as users_service
from curation.views_dashboard import sparkline

PAGE_SIZE = 50
SEARCH_MAX = 100
_LINK_KEY = "curation.users.invite_link"


def _require_admin(user) -> None:
    if not roles.is_admin(user):
        raise PermissionDenied("Only admins manage users.")


class ExpertiseFields(forms.Form):
    role = forms.ChoiceField(choices=[(role, role) for role in roles.ROLES], initial=roles.ANNOTATOR)
    disciplines = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="Served every task of these disciplines."
    )
    tasks = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="And these tasks, whatever their discipline."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["disciplines"].choices = list(Discipline.objects.order_by("name").values_list("slug", "name"))
        self.fields["tasks"].choices = [
            (code, f"{code} {name}") for code, name in Task.objects.order_by("code").values_list("code", "name")
        ]


class NewUserForm(ExpertiseFields):
    username = forms.CharField(max_length=users_service.USERNAME_MAX, help_text="Letters, digits and @.+-_ only.")
    email = forms.EmailField(
        max_length=users_service.EMAIL_MAX, required=False, help_text="Optional; no e-mail is sent."
    )
    field_order = ["username", "email", "role", "disciplines", "tasks"]

    def clean_username(self):
        return users_service.validate_username(self.cleaned_data["username"])


class SearchForm(forms.Form):
    q = forms.CharField(max_length=SEARCH_MAX, required=False, label="Search")
    role = forms.ChoiceField(
        choices=[("", "any role")] + [(role, role) for role in roles.ROLES], required=False, label="Role"
    )


def _invite_url(request, admin, user) -> str:
    uid, token = users_service.invitation(admin, user)
    return request.build_absolute_uri(reverse("curation:user-set-password", args=[uid, token]))


@require_safe
@login_required
def user_list(request):
    _require_admin(request.user)
    form = SearchForm(request.GET)
    search = role = ""
    if form.is_valid():
        search, role = form.cleaned_data["q"], form.cleaned_data["role"]
    page = Paginator(users_service.users(search, role), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "curation/users_list.html",
        {"form": form, "page": page, "rows": users_service.list_rows(list(page)), "query": query.urlencode()},
    )


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def user_new(request):
    _require_admin(request.user)
    form = NewUserForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            user = users_service.create_user(
                request.user,
                username=data["username"],
                role=data["role"],
                email=data["email"],
                disciplines=data["disciplines"],
                tasks=data["tasks"],
            )
        except ValidationError as exc:
            form.add_error("username", exc)
        except ValueError as exc:
            form.add_error("username" if isinstance(exc, users_service.UserExists) else None, str(exc))
        else:
            request.session[_LINK_KEY] = {"user": user.pk, "url": _invite_url(request, request.user, user)}
            messages.success(request, f"Created {user.username}. Hand them the link below to set a password.")
            return redirect("curation:user-detail", user_id=user.pk)
    return render(request, "curation/users_new.html", {"form": form}, status=400 if form.is_bound else 200)


def _detail_context(request, user, form=None) -> dict:
    days = users_service.DEFAULT_DAYS
    figures = users_service.figures_of(user, days=days)
    state = users_service.state_of(user)
    link = request.session.pop(_LINK_KEY, None)
    return {
        "person": user,
        "state": state,
        "is_self": user.pk == request.user.pk,
        "figures": figures,
        "spark": sparkline(figures.per_day, figures.days, max(figures.per_day, default=0)),
        "gold_percent": None if figures.gold_accuracy is None else round(100 * figures.gold_accuracy, 1),
        "consensus_percent": (
            None if figures.consensus_agreement is None else round(100 * figures.consensus_agreement, 1)
        ),
        "invite_link": link["url"] if link and link.get("user") == user.pk else None,
        "form": form
        or ExpertiseFields(
            initial={"role": state["role"], "disciplines": state["disciplines"], "tasks": state["tasks"]}
        ),
        "days": days,
    }


@require_safe
@login_required
def user_detail(request, user_id: int):
    _require_admin(request.user)
    user = get_object_or_404(get_user_model(), pk=user_id)
    return render(request, "curation/users_detail.html", _detail_context(request, user))


@require_safe
@login_required
def user_by_name(request, username: str):
    """The dashboard names annotators; this finds the drill-down of one."""
    _require_admin(request.user)
    user = get_object_or_404(get_user_model(), username=username[: users_service.USERNAME_MAX])
    return redirect("curation:user-detail", user_id=user.pk)


@require_POST
@login_required
def user_edit(request, user_id: int):
    _require_admin(request.user)
    user = get_object_or_404(get_user_model(), pk=user_id)
    form = ExpertiseFields(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            changed = users_service.update_user(
                request.user, user, role=data["role"], disciplines=data["disciplines"], tasks=data["tasks"]
            )
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Saved." if changed else "Nothing to change.")
            return redirect("curation:user-detail", user_id=user.pk)
    context = _detail_context(request, user, form)
    return render(request, "curation/users_detail.html", context, status=400)


def _pause(request, user_id: int, paused: bool):
    _require_admin(request.user)
    user = get_object_or_404(get_user_model(), pk=user_id)
    try:
        changed = users_service.set_paused(request.user, user, paused)
    except users_service.LockOut as exc:
        messages.error(request, str(exc))
    else:
        if paused:
            messages.success(request, "Paused: the queue serves them nothing." if changed else "Already paused.")
        else:
            messages.success(request, "Restored: they are served work again." if changed else "Not paused.")
    return redirect("curation:user-detail", user_id=user.pk)


@require_POST
@login_required
def user_pause(request, user_id: int):
    return _pause(request, user_id, True)


@require_POST
@login_required
def user_restore(request, user_id: int):
    return _pause(request, user_id, False)


@require_POST
@login_required
def user_invite(request, user_id: int):
    _require_admin(request.user)
    user = get_object_or_404(get_user_model(), pk=user_id)
    request.session[_LINK_KEY] = {"user": user.pk, "url": _invite_url(request, request.user, user)}
    messages.success(request, "A new set-password link; earlier ones still work until a password is set.")
    return redirect("curation:user-detail", user_id=user.pk)


class SetPasswordView(auth_views.PasswordResetConfirmView):
    """Django's reset-confirm view with this project's template; a set password signs the user in."""

    template_name = "curation/users_set_password.html"
    success_url = reverse_lazy("home")
    post_reset_login = True
    post_reset_login_backend = "django.contrib.auth.backends.ModelBackend"


# The view answers a bad link before Django's method check, so the methods are checked first here.
set_password = require_http_methods(["GET", "HEAD", "POST"])(SetPasswordView.as_view())
