"""Backup and restore as the README says, once end to end on the demo data: ``pg_dump -Fc`` + a copy of the
media folder, ``pg_restore`` into a fresh, empty database + a fresh media folder; every table has the same
rows, ``verify_media`` is clean there, and the restored database takes new writes."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from annotation.models import Image, Pair

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="pg_dump / pg_restore back up PostgreSQL"),
    pytest.mark.skipif(not shutil.which("pg_dump") or not shutil.which("pg_restore"), reason="needs pg_dump"),
]

COUNT_ROWS = (
    "import django, json; django.setup(); from django.apps import apps; "
    "print(json.dumps({m._meta.db_table: m._default_manager.count() "
    "for m in apps.get_models(include_auto_created=True)}))"
)


def _url(name: str) -> str:
    db = connection.settings_dict
    return f"postgres://{db.get('USER') or 'postgres'}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{name}"


def _psql(sql: str) -> None:
    subprocess.run(["psql", _url("postgres"), "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True, capture_output=True)


def _row_counts() -> dict:
    from django.apps import apps

    return {m._meta.db_table: m._default_manager.count() for m in apps.get_models(include_auto_created=True)}


@pytest.mark.slow
def test_it_restores_a_pg_dump_and_a_media_copy_into_a_fresh_database_with_every_row_and_file(tmp_path):
    call_command("seed_demo", stdout=io.StringIO())
    source = _row_counts()
    assert Image.objects.count() >= 32 and Pair.objects.count() >= 16
    backup, restored_name = tmp_path / "backup", f"{connection.settings_dict['NAME']}_restored"
    backup.mkdir()

    # Back up: the database in pg_dump's custom format, then the media folder.
    subprocess.run(
        ["pg_dump", "-Fc", "--no-owner", "-f", str(backup / "scit2i.dump"), _url(connection.settings_dict["NAME"])],
        check=True,
        capture_output=True,
    )
    shutil.copytree(settings.MEDIA_ROOT, backup / "media")

    # Restore: a new empty database and a new media folder.
    _psql(f'DROP DATABASE IF EXISTS "{restored_name}"')
    _psql(f'CREATE DATABASE "{restored_name}"')
    try:
        subprocess.run(
            ["pg_restore", "--no-owner", "--exit-on-error", "-d", _url(restored_name), str(backup / "scit2i.dump")],
            check=True,
            capture_output=True,
        )
        media = tmp_path / "restored-media"
        shutil.copytree(backup / "media", media)
        env = {
            **os.environ,
            "DJANGO_DEBUG": "true",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": _url(restored_name),
            "MEDIA_ROOT": str(media),
        }

        def manage(*args, check=True):
            return subprocess.run(
                [sys.executable, "manage.py", *args],
                env=env,
                cwd=settings.BASE_DIR,
                capture_output=True,
                text=True,
                check=check,
            )

        counted = subprocess.run(
            [sys.executable, "-c", COUNT_ROWS],
            env=env,
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(counted.stdout) == source
        report = json.loads(manage("verify_media", "--json").stdout)
        assert report["clean"] is True
        assert (report["rows"], report["files"]) == (source["annotation_image"], source["annotation_image"])
        manage("migrate", "--check")  # the schema is complete: no migration is missing
        # Sequences came back too: new rows get fresh ids.
        manage("adduser", "after-restore", "--role", "annotator", "--password", "a-long-password-1")
        assert (
            json.loads(
                subprocess.run(
                    [sys.executable, "-c", COUNT_ROWS],
                    env=env,
                    cwd=settings.BASE_DIR,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )["auth_user"]
            == source["auth_user"] + 1
        )

        # And the check has teeth: a media folder that lost a file is reported.
        lost = next((media / "images").rglob("*.png"))
        lost.unlink()
        damaged = manage("verify_media", "--json", check=False)
        assert damaged.returncode == 1 and json.loads(damaged.stdout)["missing"] == 1
        print(
            f"backup/restore: {sum(source.values())} rows in {len(source)} tables, {report['files']} image "
            f"files; dump {(backup / 'scit2i.dump').stat().st_size} bytes"
        )
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{restored_name}" WITH (FORCE)')
