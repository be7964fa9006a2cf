"""A small registry for the runs and registry API and page tests: a lineage of three scorers on a
dataset version, the runs that produced and used them, a generator with a generate run that made an
image, and a failed run with its traceback. Runs are made as rows (a worker's outcome), not executed."""

from __future__ import annotations

from types import SimpleNamespace

from annotation.models import Image
from annotation.services import catalog
from curation.models import DatasetVersion
from ml.models import Run
from ml.services import registry
from tests.support.factories import TupleFactory, png_bytes

BASE_METRICS = {
    "validation": {"accuracy": 0.6, "by_task": {"RU": 0.5, "BU": {"accuracy": 0.7, "n": 10}}},
    "test_S": {"accuracy": 0.55},
}
TUNED_METRICS = {
    "validation": {"accuracy": 0.8, "by_task": {"RU": 0.9}},
    "test_C": {"accuracy": 0.7, "by_task": {"FR": 0.6}},
}
TRACEBACK = 'ValueError: no tuples were selected\n\nTraceback (most recent call last):\n  File "generate.py", line 9'


def registry_world(admin) -> SimpleNamespace:
    version = DatasetVersion.objects.create(name="v1", content_hash="0" * 64, created_by=admin)
    base = registry.register_model(admin, "scorer", "sciscore-base", "/models/base", metrics=BASE_METRICS)
    tuned = registry.register_model(
        admin, "scorer", "sciscore-v1", "/models/v1", parent=base, dataset_version=version, metrics=TUNED_METRICS
    )
    child = registry.register_model(admin, "scorer", "sciscore-v2", "/models/v2", parent=tuned)
    trained = Run.objects.create(
        kind="train_scorer",
        status="succeeded",
        progress=1.0,
        created_by=admin,
        params={"model": base.pk, "dataset_version": version.pk},
        input_model=base,
        output_model=tuned,
        worker="gpu-1",
        metrics=[
            {"step": 10, "loss": 0.7, "val_by_task": {"RU": 0.5, "BU": 0.6}},
            {"step": 20, "loss": 0.4, "val_by_task": {"RU": 0.8, "BU": 0.7}},
        ],
    )
    evaluated = Run.objects.create(kind="eval_scorer", status="succeeded", created_by=admin, input_model=tuned)
    generator = registry.register_model(admin, "generator_base", "tiny-flux", "/models/tiny-flux")
    generated = Run.objects.create(
        kind="generate",
        status="succeeded",
        progress=1.0,
        created_by=admin,
        input_model=generator,
        params={"model": generator.pk, "tuples": [1]},
    )
    image, _ = catalog.store_image(
        png_bytes(),
        kind=Image.Kind.EXPLICIT,
        tuple=TupleFactory(),
        generator=registry.generator_label(generated, generator.name),
        seed=7,
    )
    generated.artifacts = {"images": [{"image": image.pk, "tuple": image.tuple_id, "kind": "explicit", "seed": 7}]}
    generated.save(update_fields=["artifacts"])
    failed = Run.objects.create(
        kind="generate",
        status="failed",
        created_by=admin,
        error=TRACEBACK,
        log_tail="started\nfailed: ValueError: no tuples were selected",
    )
    return SimpleNamespace(
        version=version,
        base=base,
        tuned=tuned,
        child=child,
        trained=trained,
        evaluated=evaluated,
        generator=generator,
        generated=generated,
        image=image,
        failed=failed,
    )
