"""``manage.py adduser NAME --role ROLE``: create or update a user through ``people.ensure_user``.

Idempotent: the state after one run equals the state after two. In particular a password that
the user already has is not set again (that would only re-salt the hash), and the command says
``unchanged`` when there was nothing to do.
"""

from __future__ import annotations

import os

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation import roles
from annotation.services import people


class Command(BaseCommand):
    help = (
        "Create a user, or bring an existing one to exactly the given role and expertise. "
        "Running it twice with the same arguments changes nothing the second time. "
        "Annotators are served pairs of their disciplines and tasks; reviewers see full tuples and "
        "everyone's judgements; admins are also Django staff and superusers. "
        "Example: adduser ada --role annotator --disciplines physics,chemistry --tasks RU --password-env ADA_PW"
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=roles.ROLES, help="The user's one role.")
        parser.add_argument(
            "--disciplines",
            metavar="SLUGS",
            help="Comma-separated discipline slugs, e.g. physics,chemistry. Replaces the stored list; "
            "an empty string clears it; leave the option out to keep what is stored.",
        )
        parser.add_argument(
            "--tasks",
            metavar="CODES",
            help="Comma-separated task codes, e.g. GR,BU. Same replace/clear/keep rules as --disciplines.",
        )
        parser.add_argument("--email", default="", help="E-mail address, used only when the user is created.")
        secret = parser.add_mutually_exclusive_group()
        secret.add_argument(
            "--password",
            metavar="PW",
            help="The password, checked against the project's password validators. It shows up in shell "
            "history and process lists; prefer --password-env. Without either option a new user "
            "cannot log in and an existing one keeps their password.",
        )
        secret.add_argument(
            "--password-env",
            metavar="VAR",
            help="Name of an environment variable that holds the password (kept out of shell history).",
        )

    def handle(self, *args, **opts):
        username = opts["username"].strip()
        existing = get_user_model().objects.filter(username=username).first()
        password = self._password(opts)
        if password is not None:
            self._validate(password, existing or get_user_model()(username=username, email=opts["email"]))
            if existing is not None and existing.check_password(password):
                password = None  # already set: report the user as unchanged
        before = _snapshot(existing)
        try:
            user, created = people.ensure_user(
                username,
                role=opts["role"],
                password=password,
                email=opts["email"],
                disciplines=_split(opts["disciplines"]),
                tasks=_split(opts["tasks"]),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        after = _snapshot(user)
        if created:
            verb = "Created"
        elif before != after or password is not None:
            verb = "Updated"
        else:
            verb = "Unchanged:"
        disciplines, tasks = after[2] or ("-",), after[3] or ("-",)
        self.stdout.write(
            f"{verb} user {user.username} (role {opts['role']}; disciplines {', '.join(disciplines)}; "
            f"tasks {', '.join(tasks)})."
        )
        if created and password is None:
            self.stdout.write("No password given: the user cannot log in until one is set.")

    def _password(self, opts) -> str | None:
        if opts["password_env"]:
            value = os.environ.get(opts["password_env"])
            if not value:
                raise CommandError(f"The environment variable {opts['password_env']} is not set or empty.")
            return value
        if opts["password"] is not None and not opts["password"]:
            raise CommandError("The password is empty.")
        return opts["password"]

    @staticmethod
    def _validate(password: str, user) -> None:
        try:
            password_validation.validate_password(password, user)
        except ValidationError as exc:
            raise CommandError("Password rejected: " + " ".join(exc.messages)) from exc


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [part for part in value.split(",") if part.strip()]


def _snapshot(user) -> tuple | None:
    """What this command controls, to tell an update from a no-op."""
    if user is None:
        return None
    expertise = getattr(user, "expertise", None)
    return (
        tuple(sorted(user.groups.filter(name__in=roles.ROLES).values_list("name", flat=True))),
        (user.is_staff, user.is_superuser),
        tuple(sorted(expertise.disciplines.values_list("slug", flat=True))) if expertise else (),
        tuple(sorted(expertise.tasks.values_list("code", flat=True))) if expertise else (),
    )
