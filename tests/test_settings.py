"""Settings come from the environment through one typed reader with clear errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import Env

ROOT = Path(__file__).resolve().parents[1]


def test_it_reads_typed_values():
    env = Env({"A": "yes", "B": "42", "C": "x, y ,", "D": " text "})
    assert env.bool("A") is True
    assert env.int("B", minimum=1) == 42
    assert env.list("C") == ["x", "y"]
    assert env.str("D") == "text"
    assert env.int("MISSING", 7) == 7


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda e: e.bool("FLAG"), "FLAG='maybe' is not a boolean"),
        (lambda e: e.int("NUM"), "NUM='ten' is not an integer"),
        (lambda e: e.int("SMALL", minimum=5), "SMALL=1 must be at least 5"),
        (lambda e: e.str("ABSENT"), "ABSENT is required"),
        (lambda e: e.secret("KEY", min_length=50), "KEY must be at least 50 characters"),
    ],
)
def test_it_names_the_variable_in_every_error(call, message):
    env = Env({"FLAG": "maybe", "NUM": "ten", "SMALL": "1", "KEY": "short"})
    with pytest.raises(ImproperlyConfigured, match=message):
        call(env)


def _manage(*args, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True
    )


def test_it_passes_the_deploy_check_in_production_settings(tmp_path):
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY="k" * 20 + "-production-secret-for-the-deploy-check-0123456789",
        DJANGO_ALLOWED_HOSTS="scit2i.example.org",
        SCIT2I_VAR_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_it_refuses_to_start_in_production_without_a_secret_key(tmp_path):
    result = _manage("check", SCIT2I_VAR_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr
