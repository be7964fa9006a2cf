"""manage.py seed_demo: demo users and a drawn image pair for every task, idempotently."""

import hashlib
import json
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.core.management import call_command

from annotation import demo
from annotation.models import Image, Pair, PromptTuple
from annotation.taxonomy import TASKS
from tests.support.paths import DATA

LABELLED = DATA / "task_rules_prompts.json"


def prompt_file(folder: Path) -> tuple[Path, int]:
    """A prompt list in the reference repository's shape ({"prompt", "object"}, no category), written from the
    labelled prompts of the task-rule tests; returns the file and its number of prompts."""
    prompts = [p for group in json.loads(LABELLED.read_text())["labelled"].values() for p in group]
    path = folder / "prompts.json"
    path.write_text(json.dumps([{"prompt": p, "object": p.split()[1]} for p in prompts]))
    return path, len(prompts)


pytestmark = pytest.mark.django_db


def seed(*args) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def counts() -> tuple:
    return (get_user_model().objects.count(), PromptTuple.objects.count(), Image.objects.count(), Pair.objects.count())


def test_it_creates_a_pair_for_every_task_with_images_on_disk():
    seed()
    pairs = Pair.objects.select_related("tuple__task", "image_correct", "image_wrong")
    assert pairs.count() >= 16
    assert {p.tuple.task.code for p in pairs} == {code for code, *_ in TASKS}
    for pair in pairs:
        assert pair.tuple.explicit_prompt and pair.tuple.superficial_prompt
        assert (pair.image_correct.kind, pair.image_wrong.kind) == (Image.Kind.EXPLICIT, Image.Kind.SUPERFICIAL)
        for image in (pair.image_correct, pair.image_wrong):
            assert (image.width, image.height, image.format, image.generator) == (512, 384, "PNG", "demo-renderer")
            with default_storage.open(image.file.name) as fh:
                assert hashlib.sha256(fh.read()).hexdigest() == image.sha256


def test_it_creates_nothing_on_a_second_run():
    seed()
    before = counts()
    assert "created 0 users, 0 tuples, 0 images, 0 pairs" in seed()
    assert counts() == before


def test_it_prints_logins_that_work(client):
    out = seed()
    for username, _, _, password in demo.USERS:
        assert f"{username}" in out and password in out
        assert client.login(username=username, password=password)
    expert = get_user_model().objects.get(username="expert")
    assert sorted(expert.expertise.disciplines.values_list("slug", flat=True)) == ["biology", "chemistry", "physics"]


def test_it_keeps_the_password_of_an_existing_account():
    from tests.support.factories import make_user

    make_user("admin", "admin", password="the-real-admin-password")
    out = seed()
    assert get_user_model().objects.get(username="admin").check_password("the-real-admin-password")
    assert "admin-demo-pass" not in out


def test_it_renders_the_same_bytes_every_time_and_distinct_pictures():
    pictures = [p for d in demo.DEMO_TUPLES for p in (d.correct, d.wrong)]
    rendered = [demo.render(p) for p in pictures]
    assert rendered == [demo.render(p) for p in pictures]
    assert len(set(rendered)) == len(pictures)


def test_it_also_imports_a_prompt_file(tmp_path):
    path, n = prompt_file(tmp_path)
    out = seed("--prompts", str(path), "--auto-task")
    assert f"created {n}" in out
    assert PromptTuple.objects.filter(task__isnull=True).count() == 0
