"""catalog.upsert_tuple: one tuple per (normalised implicit prompt, task), filled in, never erased."""

import pytest

from annotation.models import PromptTuple, Task
from annotation.services import catalog

pytestmark = pytest.mark.django_db


def _upsert(**fields):
    return catalog.upsert_tuple(implicit_prompt="An iron gate in the rain for years.", **fields)


def test_it_keeps_a_stored_scene_when_none_is_given():
    ru = Task.objects.get(code="RU")
    _upsert(task=ru, scene="complex")
    tuple_, outcome = _upsert(task=ru, explicit_prompt="A rusty gate.")
    assert (outcome, tuple_.scene, tuple_.explicit_prompt) == ("updated", "complex", "A rusty gate.")


def test_it_takes_over_the_task_less_tuple_when_a_task_is_assigned():
    untasked, _ = _upsert(task=None)
    tuple_, outcome = catalog.upsert_tuple(
        implicit_prompt="an iron gate in the rain for years", task=Task.objects.get(code="RU")
    )
    assert outcome == "updated" and tuple_.pk == untasked.pk
    assert PromptTuple.objects.count() == 1


def test_it_skips_when_nothing_is_new():
    ru = Task.objects.get(code="RU")
    _upsert(task=ru, subject="gate")
    assert _upsert(task=ru)[1] == "skipped"
    assert PromptTuple.objects.get().subject == "gate"


def test_it_keeps_the_same_prompt_apart_under_different_tasks():
    _upsert(task=Task.objects.get(code="RU"))
    _upsert(task=Task.objects.get(code="WR"))
    assert PromptTuple.objects.count() == 2
