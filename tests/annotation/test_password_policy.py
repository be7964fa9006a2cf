"""Weak passwords are refused wherever a person sets one: the adduser command and the Django admin
(AUTH_PASSWORD_VALIDATORS in config/settings.py: length, common, numeric, similar to the username)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db

WEAK = [
    ("short-pw1", "too short"),
    ("password1234", "too common"),
    ("48151623424815", "entirely numeric"),
    ("margaret-hamilton", "too similar"),
]


@pytest.mark.parametrize(("password", "reason"), WEAK)
def test_adduser_refuses_a_weak_password(password, reason):
    with pytest.raises(CommandError, match=reason):
        call_command("adduser", "margaret-hamilton", "--role", "annotator", "--password", password)
    assert not get_user_model().objects.filter(username="margaret-hamilton").exists()


def test_adduser_accepts_a_strong_password():
    call_command("adduser", "margaret-hamilton", "--role", "annotator", "--password", "lunar-module-1969")
    assert get_user_model().objects.get(username="margaret-hamilton").check_password("lunar-module-1969")


def add_user_form(password: str) -> dict:
    """The admin's add-user form, with the (empty) expertise inline."""
    return {
        "username": "margaret-hamilton",
        "usable_password": "true",
        "password1": password,
        "password2": password,
        "expertise-TOTAL_FORMS": "0",
        "expertise-INITIAL_FORMS": "0",
        "expertise-MIN_NUM_FORMS": "0",
        "expertise-MAX_NUM_FORMS": "1",
    }


@pytest.mark.parametrize(("password", "reason"), WEAK)
def test_the_django_admin_refuses_a_weak_password(client, admin_user, password, reason):
    client.force_login(admin_user)
    response = client.post("/admin/auth/user/add/", add_user_form(password))
    assert response.status_code == 200
    assert reason in response.content.decode()
    assert not get_user_model().objects.filter(username="margaret-hamilton").exists()


def test_the_django_admin_accepts_a_strong_password(client, admin_user):
    client.force_login(admin_user)
    response = client.post("/admin/auth/user/add/", add_user_form("lunar-module-1969"))
    assert response.status_code == 302, response.content[:2000]
    assert get_user_model().objects.get(username="margaret-hamilton").check_password("lunar-module-1969")
