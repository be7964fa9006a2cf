"""One small world for the permission matrix (tests/support/permission_matrix.py): every object a route
of the platform can name, five personas, and the text annotators must never receive.

Built through the services (as in production) except where a test helper already makes rows
(dataset versions with members, runs as a worker left them). Ids are returned under the names
the matrix's paths and bodies use: ``{pair}``, ``{lease}``, ``{version}``...
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from django.db.models import Count
from PIL import Image as PILImage

from annotation.models import Discipline, PromptTuple, Task
from annotation.services import queue
from curation.models import DatasetVersion, Job
from curation.services import adjudication, consensus, exporting, gold, jobs, judging, splits, versions
from curation.tasks import run_job
from ml.models import Run
from ml.services import schedules
from tests.support.factories import make_image, make_pair, make_user
from tests.support.ml_registry_data import registry_world
from tests.support.versions import make_version

PASSWORD = "pw-for-tests-1"  # tests/support/factories.make_user's password
ROLES = ("anonymous", "annotator", "other_field", "reviewer", "admin")

# Names that say which image is right, or the hidden prompts: never in what an annotator receives.
ANSWER_WORDS = (
    "image_correct",
    "image_wrong",
    "expected",
    "consensus",
    "chosen_image",
    "agrees_with",
    "explicit_prompt",
    "superficial_prompt",
    "gold",
)


def build(settings, tmp_path: Path) -> dict:
    """The world; ``settings`` is pytest-django's fixture (import roots point into ``tmp_path``)."""
    settings.GOLD_RATE = 0.0  # gold picks are random; the matrix wants the same answers every run
    users = {
        "annotator": make_user("ann-chem", "annotator", disciplines=["chemistry"]),
        "other_field": make_user("ann-bio", "annotator", disciplines=["biology"]),
        "reviewer": make_user("rev", "reviewer"),
        "admin": make_user("boss", "admin"),
    }
    ann, admin = users["annotator"], users["admin"]
    peer = make_user("ann-chem-2", "annotator", disciplines=["chemistry"])

    judged = make_pair("RU")  # judged by the annotator and a peer
    leased = make_pair("RU")  # then leased to the annotator (their live lease)
    goldie = make_pair("RU")
    spare = make_pair("RU")  # adjudicated in the matrix
    decided = make_pair("RU")  # adjudicated here: a labelled pair that a new version can freeze
    mine, _ = judging.judge(ann, queue.next_lease(ann).id, queue.JudgementInput(choice="left"))
    lease = queue.next_lease(ann)
    theirs = _judge(peer, exclude={lease.pair_id})
    gold.mark_gold(admin, goldie.pk, "expected")
    for pair in (judged, leased):
        consensus.recompute_consensus(pair.pk)
    adjudication.adjudicate(users["reviewer"], decided.pk, "expected")

    registry = registry_world(admin)
    version = make_version(admin)
    other_version = make_version(admin)
    _count_members()
    exporting.export_version(version, "jsonl")
    export_job, _ = jobs.start(
        Job.Kind.EXPORT, {"version": version.pk, "format": "parquet"}, admin, celery_task=run_job
    )
    queued = Run.objects.create(
        kind="generate", status="queued", created_by=admin, params={"model": registry.generator.pk, "tuples": [1]}
    )
    judge_run = Run.objects.create(
        kind="eval_judge",
        status="succeeded",
        created_by=admin,
        input_model=registry.tuned,
        params={"model": registry.tuned.pk, "dataset_version": version.pk, "splits": ["test_S"], "cot": False},
        artifacts={"summary": {}},
    )
    eval_generator_run = Run.objects.create(
        kind="eval_generator",
        status="succeeded",
        created_by=admin,
        input_model=registry.generator,
        params={"model": registry.generator.pk, "dataset_version": version.pk, "split": "test_S"},
    )
    _keep_generated_image(eval_generator_run)
    schedule = schedules.create_schedule(
        admin,
        name="nightly",
        kind="generate",
        trigger="cron",
        cron="0 3 * * 1-5",
        params=_generate_params(registry.generator),
    )

    roots = tmp_path / "imports"
    roots.mkdir()
    (roots / "prompts.json").write_text(json.dumps([{"prompt": "Ice left in the sun.", "object": "ice"}]))
    settings.IMPORT_ROOTS = [str(roots)]

    Discipline.objects.create(slug="astronomy", name="Astronomy")
    Task.objects.create(code="ZZ", name="Unused", discipline=Discipline.objects.get(slug="physics"), kind="CT")
    return {
        "users": users,
        "PASSWORD": PASSWORD,
        "tuple": judged.tuple_id,
        "pair": judged.pk,
        "leased_pair": leased.pk,
        "gold_pair": goldie.pk,
        "spare_pair": spare.pk,
        "image": judged.image_correct_id,
        "judgement": mine.pk,
        "peer_judgement": theirs.pk,
        "lease": lease.pk,
        "annotator_id": ann.pk,
        "version": version.pk,
        "other_version": other_version.pk,
        "export_file": "MANIFEST.sha256",
        "job": export_job.pk,
        "run": registry.failed.pk,
        "queued_run": queued.pk,
        "judge_run": judge_run.pk,
        "eval_generator_run": eval_generator_run.pk,
        "model": registry.tuned.pk,
        "base_model": registry.base.pk,
        "child_model": registry.child.pk,
        "generator": registry.generator.pk,
        "generated_image": registry.image.pk,
        "schedule": schedule.pk,
        "new_a": make_image().pk,
        "new_b": make_image().pk,
        "hidden_texts": hidden_texts(),
        "guide_example": _guide_example(admin),
    }


def _keep_generated_image(run) -> None:
    """The first implicit-prompt image of an evaluation, as the run keeps it in the media storage."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from ml.services.runs.eval_generator import image_name

    buffer = io.BytesIO()
    PILImage.new("RGB", (8, 8), (200, 40, 40)).save(buffer, "PNG")
    default_storage.save(image_name(run.pk, "model", 0, "IP", 0), ContentFile(buffer.getvalue()))


def _count_members() -> None:
    """The helpers make version rows directly: give each the counts, filters and ratios a frozen
    version has."""
    for version in DatasetVersion.objects.all():
        rows = version.members.values_list("pair__tuple__task__code", "split").annotate(n=Count("pk"))
        version.counts = versions.make_counts(rows)
        version.filters = versions.clean_filters(tasks=version.filters.get("tasks"))
        version.split_ratios = {**splits.DEFAULT_RATIOS, "seed": 0}
        version.save(update_fields=["counts", "filters", "split_ratios"])


def _generate_params(generator) -> dict:
    return {"model": generator.pk, "tuples": {"task": "RU", "limit": 5}}


def _judge(user, exclude: set[int]):
    """A judgement by ``user`` on the first pair the queue gives them outside ``exclude``."""
    lease = queue.next_lease(user)
    while lease.pair_id in exclude:
        queue.release(user, lease.id)
        lease = queue.next_lease(user)
    judgement, _ = judging.judge(user, lease.id, queue.JudgementInput(choice="right"))
    return judgement


def hidden_texts() -> list[str]:
    """Every explicit and superficial prompt in the database."""
    rows = PromptTuple.objects.values_list("explicit_prompt", "superficial_prompt")
    return sorted({text for row in rows for text in row if text})


def user(world: dict, role: str):
    return None if role == "anonymous" else world["users"][role]


def _guide_example(admin) -> int:
    """A worked example in the guide of RU (the annotator's task): a closed pair, its right image shown."""
    from annotation.services import catalog, guides

    pair = make_pair("RU")
    catalog.set_pair_retired(pair.pk, True)
    task = Task.objects.get(code="RU")
    guides.save_guide(admin, task, body="Rust needs *water* and oxygen.", reasons=["colour", "shape"])
    return guides.add_example(admin, task, pair.pk, right_image_id=pair.image_correct_id).pk
