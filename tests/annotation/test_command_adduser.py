"""manage.py adduser: create or update a user with a role and expertise, idempotently."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation import roles

pytestmark = pytest.mark.django_db

PASSWORD = "a-fine-password-1"


def adduser(*args) -> str:
    out = StringIO()
    call_command("adduser", *args, stdout=out)
    return out.getvalue()


def state(username: str) -> tuple:
    user = get_user_model().objects.get(username=username)
    return (
        user.password,
        user.is_staff,
        user.is_superuser,
        sorted(user.groups.values_list("name", flat=True)),
        sorted(user.expertise.disciplines.values_list("slug", flat=True)),
        sorted(user.expertise.tasks.values_list("code", flat=True)),
    )


def test_it_creates_an_annotator_with_expertise():
    out = adduser(
        "ada", "--role", "annotator", "--disciplines", "physics,chemistry", "--tasks", "gr,BU", "--password", PASSWORD
    )
    assert out.startswith("Created user ada")
    user = get_user_model().objects.get(username="ada")
    assert user.check_password(PASSWORD)
    assert roles.roles_of(user) == {"annotator"}
    assert state("ada")[3:] == (["annotator"], ["chemistry", "physics"], ["BU", "GR"])


def test_it_changes_nothing_when_run_twice():
    args = ("ada", "--role", "annotator", "--disciplines", "physics", "--password", PASSWORD)
    adduser(*args)
    before = state("ada")
    assert adduser(*args).startswith("Unchanged: user ada")
    assert state("ada") == before  # not even a re-salted password hash


def test_it_changes_the_role_and_keeps_unmentioned_expertise():
    adduser("ada", "--role", "annotator", "--disciplines", "biology", "--password", PASSWORD)
    assert adduser("ada", "--role", "admin").startswith("Updated user ada")
    _, staff, superuser, groups, disciplines, _ = state("ada")
    assert (staff, superuser, groups, disciplines) == (True, True, ["admin"], ["biology"])
    adduser("ada", "--role", "reviewer", "--disciplines", "")
    assert state("ada")[1:5] == (False, False, ["reviewer"], [])


def test_it_reads_the_password_from_an_environment_variable(monkeypatch):
    monkeypatch.setenv("ADA_PW", PASSWORD)
    adduser("ada", "--role", "reviewer", "--password-env", "ADA_PW")
    assert get_user_model().objects.get(username="ada").check_password(PASSWORD)


def test_it_creates_a_user_who_cannot_log_in_without_a_password():
    assert "cannot log in" in adduser("ada", "--role", "annotator")
    assert not get_user_model().objects.get(username="ada").has_usable_password()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--role", "annotator", "--disciplines", "physics,alchemy"), "Unknown discipline: alchemy"),
        (("--role", "annotator", "--tasks", "RU,ZZ"), "Unknown task: ZZ"),
        (("--role", "boss"), "invalid choice: 'boss'"),
        (("--role", "annotator", "--password", "short"), "Password rejected"),
        (("--role", "annotator", "--password-env", "SCIT2I_UNSET_VARIABLE"), "SCIT2I_UNSET_VARIABLE is not set"),
    ],
)
def test_it_refuses_bad_arguments_and_creates_nobody(args, message):
    with pytest.raises(CommandError, match=message):
        adduser("ada", *args)
    assert not get_user_model().objects.filter(username="ada").exists()
