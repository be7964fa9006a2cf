"""Settings come from the environment through one typed reader with clear errors."""

import ast
import json
import os
import re
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import Env
from tests.support.paths import REPO

ROOT = REPO  # the repository


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


PRODUCTION = {
    "DJANGO_SECRET_KEY": "k" * 20 + "-production-secret-for-the-settings-tests-0123456789",
    "DJANGO_ALLOWED_HOSTS": "scit2i.example.org",
}


def _production_settings(tmp_path, names: list[str], **env) -> dict:
    code = (
        "import json; from django.conf import settings as s; "
        f"print(json.dumps({{n: getattr(s, n, None) for n in {names!r}}}, default=str))"
    )
    result = _manage("shell", "-c", code, SCIT2I_VAR_DIR=str(tmp_path), **PRODUCTION, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_it_keeps_session_and_csrf_cookies_secure_http_only_and_same_site_in_production(tmp_path):
    values = _production_settings(
        tmp_path,
        [
            "SESSION_COOKIE_SECURE",
            "SESSION_COOKIE_HTTPONLY",
            "SESSION_COOKIE_SAMESITE",
            "CSRF_COOKIE_SECURE",
            "CSRF_COOKIE_HTTPONLY",
            "CSRF_COOKIE_SAMESITE",
            "SECURE_SSL_REDIRECT",
            "DEBUG",
        ],
    )
    assert values == {
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "CSRF_COOKIE_SECURE": True,
        "CSRF_COOKIE_HTTPONLY": True,
        "CSRF_COOKIE_SAMESITE": "Lax",
        "SECURE_SSL_REDIRECT": True,
        "DEBUG": False,
    }


def test_it_takes_the_database_password_and_s3_keys_only_from_the_environment(tmp_path):
    values = _production_settings(
        tmp_path,
        ["DATABASES", "STORAGES", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_S3_SECRET_ACCESS_KEY"],
        DATABASE_URL="postgres://scit2i:db-secret-from-env@db.example.org:5432/scit2i",
        MEDIA_S3_BUCKET="scit2i-media",
        AWS_ACCESS_KEY_ID="AKIA-FROM-ENV",
        AWS_SECRET_ACCESS_KEY="s3-secret-from-env",
    )
    assert values["DATABASES"]["default"]["PASSWORD"] == "db-secret-from-env"
    assert values["STORAGES"]["default"]["BACKEND"] == "storages.backends.s3.S3Storage"
    # Not copied into settings: boto3 reads the keys from the environment (or an instance role).
    assert values["AWS_ACCESS_KEY_ID"] is values["AWS_SECRET_ACCESS_KEY"] is values["AWS_S3_SECRET_ACCESS_KEY"] is None
    assert "s3-secret-from-env" not in json.dumps(values["STORAGES"])


def test_no_secret_is_written_into_the_settings_source():
    """Every setting named like a credential is read from the environment, never a string literal."""
    tree = ast.parse((ROOT / "config" / "settings.py").read_text())
    literal = [
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
        if re.search(r"(SECRET|PASSWORD|ACCESS_KEY|TOKEN)(_KEY|_ID)?$", target.id)
        and not isinstance(node.value, ast.Call)
    ]
    assert not literal, f"credentials assigned literally in config/settings.py: {literal}"


def test_it_refuses_a_soft_margin_as_long_as_the_run_time_limit(tmp_path):
    # ML_RUN_TIME_LIMIT_SECONDS=240 with the default 300 s margin loaded and gave a 1 s soft limit.
    refused = _manage(
        "check",
        SCIT2I_VAR_DIR=str(tmp_path),
        DJANGO_DEBUG="true",
        ML_RUN_TIME_LIMIT_SECONDS="240",
        CELERY_VISIBILITY_TIMEOUT_SECONDS="4000",
    )
    assert refused.returncode != 0
    assert "ML_RUN_SOFT_MARGIN_SECONDS (300) must be smaller than ML_RUN_TIME_LIMIT_SECONDS (240)" in refused.stderr
    accepted = _manage(
        "check",
        SCIT2I_VAR_DIR=str(tmp_path),
        DJANGO_DEBUG="true",
        ML_RUN_TIME_LIMIT_SECONDS="240",
        ML_RUN_SOFT_MARGIN_SECONDS="60",
        CELERY_VISIBILITY_TIMEOUT_SECONDS="4000",
    )
    assert accepted.returncode == 0, accepted.stderr
