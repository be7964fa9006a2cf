"""A real generate run on the tiny FLUX pipeline, through Celery (eager): images, seeds, pairs, queue."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Image, Pair
from annotation.services import queue
from ml.models import Run
from ml.services import registry, runs
from ml.tasks import execute_run
from tests.support.factories import TupleFactory

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory):
    from ml.core.tiny_flux import make_tiny_flux

    return make_tiny_flux(tmp_path_factory.mktemp("tiny-flux") / "pipeline")


def _start(admin_user, model, tuples, capture) -> Run:
    params = {
        "model": model.pk,
        "tuples": [t.pk for t in tuples],
        "images_per_prompt": 1,
        "steps": 2,
        "width": 16,
        "height": 16,
        "seed": 7,
    }
    with capture(execute=True):
        run = runs.start_run(admin_user, "generate", params, celery_task=execute_run)
    run.refresh_from_db()
    return run


def test_generate_run_stores_images_and_pairs_once(
    admin_user, annotator, tiny_flux, eager_celery, django_capture_on_commit_callbacks
):
    model = registry.register_model(admin_user, "generator_base", "tiny-flux", str(tiny_flux))
    tuples = [TupleFactory(), TupleFactory()]

    run = _start(admin_user, model, tuples, django_capture_on_commit_callbacks)
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.progress == 1.0 and run.worker and run.finished_at
    images = list(Image.objects.order_by("id"))
    assert len(images) == 4
    for t in tuples:
        kinds = sorted(i.kind for i in images if i.tuple_id == t.pk)
        assert kinds == ["explicit", "superficial"]
    assert {i.seed for i in images} == {7}
    assert {i.generator for i in images} == {f"run:{run.pk}:tiny-flux"}
    assert {(i.width, i.height) for i in images} == {(16, 16)}
    assert registry.image_origin(images[0]) == (run, model)

    pairs = list(Pair.objects.order_by("id"))
    assert len(pairs) == 2
    for pair in pairs:
        assert pair.image_correct.kind == "explicit" and pair.image_wrong.kind == "superficial"
        assert pair.image_correct.tuple_id == pair.image_wrong.tuple_id == pair.tuple_id
        assert pair.status == Pair.Status.OPEN
    art = run.artifacts
    assert art["images_created"] == 4 and art["pairs_created"] == 2
    assert sorted(a["image"] for a in art["images"]) == [i.pk for i in images]
    assert {a["seed"] for a in art["images"]} == {7}
    assert sorted(a["pair"] for a in art["pairs"]) == [p.pk for p in pairs]
    assert art["done_tuples"] == [t.pk for t in tuples]
    assert len(run.metrics) == 2 and "2 tuples x 1 images per prompt" in run.log_tail

    lease = queue.next_lease(annotator)
    assert lease is not None and lease.pair_id in {p.pk for p in pairs}

    # The same request again (a crash and a restart, or an admin clicking twice): nothing new.
    second = _start(admin_user, model, tuples, django_capture_on_commit_callbacks)
    assert second.status == Run.Status.SUCCEEDED, second.error
    assert second.artifacts["images_created"] == 0 and second.artifacts["pairs_created"] == 0
    assert sorted(a["image"] for a in second.artifacts["images"]) == [i.pk for i in images]
    assert Image.objects.count() == 4 and Pair.objects.count() == 2

    # Redelivering the finished run does nothing; a run that died mid-way resumes without duplicates.
    assert runs.execute_run(run.pk).status == Run.Status.SUCCEEDED
    Run.objects.filter(pk=second.pk).update(status=Run.Status.RUNNING, heartbeat_at=timezone.now() - timedelta(hours=1))
    second.artifacts["done_tuples"] = second.artifacts["done_tuples"][:1]
    Run.objects.filter(pk=second.pk).update(artifacts=second.artifacts)
    resumed = runs.execute_run(second.pk)
    assert resumed.status == Run.Status.SUCCEEDED and "resumed" in resumed.log_tail
    assert Image.objects.count() == 4 and Pair.objects.count() == 2


def test_a_generate_run_with_a_bad_size_fails_with_the_reason(
    admin_user, tiny_flux, eager_celery, django_capture_on_commit_callbacks
):
    model = registry.register_model(admin_user, "generator_base", "tiny-flux", str(tiny_flux))
    params = {"model": model.pk, "tuples": [TupleFactory().pk], "steps": 1, "width": 18, "height": 16}
    with django_capture_on_commit_callbacks(execute=True):
        run = runs.start_run(admin_user, "generate", params, celery_task=execute_run)
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert "multiples of 4" in run.error and "Traceback" in run.error
    assert not Image.objects.exists()
