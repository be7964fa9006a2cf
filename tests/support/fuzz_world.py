"""A small world for the API fuzz run (tests/system/test_api_fuzz.py), built through the services.

One user per role with a DRF token, pairs in every state the API distinguishes (open, leased by the
annotator, judged to consensus, disputed and adjudicated, gold), two frozen dataset versions, a finished
export and a queued export job, the model registry of :mod:`tests.support.ml_registry_data` (scorers, generator,
runs) and a schedule. ``World.path_values`` names, per path template of the schema, existing values for its
path parameters, so that the fuzzer reaches real objects and not only 404s.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from django.test import override_settings
from rest_framework.authtoken.models import Token

from annotation.models import Discipline, Image, Judgement
from annotation.services import queue
from curation.models import Job
from curation.services import adjudication, exporting, gold, jobs, judging, versions
from curation.tasks import run_job
from ml.services import schedules
from tests.support.factories import make_image, make_pair, make_user, png_bytes
from tests.support.ml_registry_data import registry_world

ROLES = ("anonymous", "annotator", "reviewer", "admin")
ALL_FIELDS = ["physics", "chemistry", "biology"]
PASSWORD = "pw-for-tests-1"  # tests.support.factories.make_user's default


@dataclass
class World:
    tokens: dict[str, str]  # role -> token key ("anonymous" has none)
    users: dict[str, int]  # role -> user id
    path_values: dict[str, list[dict]] = field(default_factory=dict)  # path template -> parameter sets
    body_values: dict[str, dict[str, list]] = field(default_factory=dict)  # operation -> field -> values

    def headers(self, role: str) -> dict[str, str]:
        token = self.tokens.get(role)
        return {"Authorization": f"Token {token}"} if token else {}


def _judge_by_all(pair, annotators, choices) -> list[Judgement]:
    """Each annotator leases ``pair`` (the only open pair of its task at this point) and judges it."""
    judged = []
    for user, choice in zip(annotators, choices, strict=True):
        lease = queue.next_lease(user, task=pair.tuple.task.code)
        assert lease is not None and lease.pair_id == pair.pk, "the world's pairs are leased one at a time"
        judgement, _ = judging.judge(user, lease.id, queue.JudgementInput(choice=choice))
        judged.append(judgement)
    return judged


@override_settings(GOLD_RATE=0.0)
def build_world(import_root: Path) -> World:
    random.seed(2024)  # the queue's random picks and left/right orders: the same world every run
    annotator = make_user("fz-ann", "annotator", disciplines=ALL_FIELDS)
    helpers = [make_user(f"fz-ann{n}", "annotator", disciplines=ALL_FIELDS) for n in (2, 3)]
    reviewer = make_user("fz-rev", "reviewer")
    admin = make_user("fz-admin", "admin")
    people = {"annotator": annotator, "reviewer": reviewer, "admin": admin}

    # Judged to consensus (all agree), then disputed (three different choices) and adjudicated.
    agreed = make_pair("RU")
    agreed_judgements = _judge_by_all(agreed, [annotator, *helpers], ["left", "left", "left"])
    disputed = make_pair("RU")
    _judge_by_all(disputed, [annotator, *helpers], ["left", "right", "both"])
    adjudication.adjudicate(reviewer, disputed.pk, "expected", "fuzz world")
    # Gold, and a lease the annotator holds (pairs made after the judgements, so nothing else was leased).
    golden = make_pair("BU")
    gold.mark_gold(admin, golden.pk, "expected")
    leased = make_pair("ME")
    lease = queue.next_lease(annotator, task="ME")
    open_pairs = [make_pair("FR"), make_pair("LR")]
    spare = [make_image(kind, open_pairs[0].tuple) for kind in (Image.Kind.EXPLICIT, Image.Kind.SUPERFICIAL)]
    Discipline.objects.create(slug="astronomy", name="Astronomy")  # one nothing uses, so DELETE can succeed

    first = versions.build_version(admin, "fz-v1", seed=1)
    second = versions.build_version(admin, "fz-v2", seed=2)
    exporting.export_version(first, "jsonl")  # a finished export with files to download
    # queued, never run
    job, _ = jobs.start(Job.Kind.EXPORT, {"version": second.pk, "format": "parquet"}, admin, celery_task=run_job)

    ml = registry_world(admin)
    schedule = schedules.create_schedule(
        admin,
        name="fz-nightly",
        kind="generate",
        trigger="cron",
        cron="0 3 * * 1-5",
        params={"model": ml.generator.pk, "tuples": {"task": "RU", "limit": 5}},
    )

    tokens = {role: Token.objects.create(user=user).key for role, user in people.items()}
    pairs = [agreed, disputed, golden, leased, *open_pairs]
    world = World(tokens=tokens, users={role: user.pk for role, user in people.items()})
    ids = lambda objs: [{"id": o.pk} for o in objs]  # noqa: E731
    pv = world.path_values
    pv["/api/disciplines/{slug}/"] = [{"slug": "chemistry"}, {"slug": "astronomy"}]
    pv["/api/tasks/{code}/"] = [{"code": "RU"}, {"code": "GR"}]
    pv["/api/tuples/{id}/"] = [{"id": p.tuple_id} for p in pairs]
    pv["/api/images/{id}/"] = [{"id": p.image_correct_id} for p in pairs] + [{"id": ml.image.pk}]
    pv["/api/images/{id}/file/"] = pv["/api/images/{id}/"]
    pv["/api/pairs/{id}/"] = ids(pairs)
    pv["/api/judgements/{id}/"] = ids(agreed_judgements)
    for action in ("heartbeat", "judgement", "release"):
        pv[f"/api/leases/{{lease_id}}/{action}/"] = [{"lease_id": lease.pk}]
    pv["/api/leases/{lease_id}/image/{side}/"] = [{"lease_id": lease.pk, "side": s} for s in ("left", "right")]
    pv["/api/curation/consensus/{pair_id}/"] = [{"pair_id": p.pk} for p in (agreed, disputed, leased)]
    pv["/api/curation/gold/{pair_id}/"] = [{"pair_id": golden.pk}, {"pair_id": agreed.pk}]
    pv["/api/curation/quality/{user_id}/restore/"] = [{"user_id": annotator.pk}, {"user_id": helpers[0].pk}]
    pv["/api/curation/jobs/{job_id}/"] = [{"job_id": job.pk}]
    pv["/api/curation/versions/{id}/"] = ids([first, second, ml.version])
    pv["/api/curation/versions/{id}/members/"] = pv["/api/curation/versions/{id}/"]
    pv["/api/curation/versions/{a}/diff/{b}/"] = [{"a": first.pk, "b": second.pk}, {"a": second.pk, "b": first.pk}]
    pv["/api/curation/versions/{version_id}/exports/"] = [{"version_id": v.pk} for v in (first, second)]
    pv["/api/curation/versions/{version_id}/exports/{export_format}/"] = [
        {"version_id": first.pk, "export_format": "jsonl"},
        {"version_id": second.pk, "export_format": "parquet"},
    ]
    pv["/api/curation/versions/{version_id}/exports/{export_format}/{path}"] = [
        {"version_id": first.pk, "export_format": "jsonl", "path": name}
        for name in ("MANIFEST.sha256", *sorted(exporting.read_manifest(exporting.export_dir(first, "jsonl")))[:2])
    ]
    pv["/api/ml/images/{id}/origin/"] = [{"id": ml.image.pk}]
    pv["/api/ml/models/{id}/"] = ids([ml.base, ml.tuned, ml.child, ml.generator])
    pv["/api/ml/models/{id}/activate/"] = pv["/api/ml/models/{id}/"]
    pv["/api/ml/runs/{id}/"] = ids([ml.trained, ml.generated, ml.failed])
    pv["/api/ml/runs/{id}/cancel/"] = pv["/api/ml/runs/{id}/"]
    for suffix in ("", "fire/", "pause/", "resume/"):
        pv[f"/api/ml/schedules/{{id}}/{suffix}"] = [{"id": schedule.pk}]
    _add_body_values(world, people, pairs, spare, [first, second], ml, import_root)
    assert Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).exists()
    return world


def _add_body_values(world, people, pairs, spare, frozen, ml, import_root: Path) -> None:
    """Request body fields that name objects (ids, codes, credentials, a file to import): in the ``world``
    mode these replace the generated values, so that creations get past "no such object"."""
    import_root.mkdir(parents=True, exist_ok=True)
    prompts = import_root / "prompts.json"
    prompts.write_text(json.dumps([{"prompt": "A nail left in the rain for a month.", "object": "nail"}]))
    run_params = {"model": ml.generator.pk, "tuples": [pairs[0].tuple_id], "steps": 2}
    tuples, pair_ids = sorted({p.tuple_id for p in pairs}), [p.pk for p in pairs]
    bv = world.body_values
    bv["POST /api/auth/token/"] = {"username": [u.username for u in people.values()], "password": [PASSWORD]}
    bv["POST /api/curation/adjudications/"] = {"pair": pair_ids}
    bv["POST /api/curation/gold/"] = {"pair": pair_ids}
    bv["POST /api/curation/imports/"] = {"path": [str(prompts)], "format": ["prompts", "auto"]}
    bv["POST /api/curation/versions/"] = {"parent": [v.pk for v in frozen] + [None], "tasks": [["RU"], None]}
    bv["POST /api/ml/models/"] = {"parent": [ml.base.pk, ml.generator.pk], "dataset_version": [frozen[0].pk]}
    bv["POST /api/ml/runs/"] = {"kind": ["generate"], "params": [run_params]}
    bv["POST /api/ml/schedules/"] = {
        "kind": ["generate"],
        "params": [run_params],
        "trigger": ["cron"],
        "cron": ["0 3 * * 1-5"],
    }
    bv["PATCH /api/ml/schedules/{id}/"] = {"params": [run_params], "cron": ["*/30 * * * *"]}
    bv["POST /api/pairs/"] = {
        "tuple": [pairs[-2].tuple_id],
        "image_correct": [spare[0].pk],
        "image_wrong": [spare[1].pk, pairs[0].image_wrong_id],
    }
    bv["POST /api/images/"] = {"file": [png_bytes()], "tuple": tuples}
    bv["POST /api/tasks/"] = {"discipline": ["physics", "astronomy"]}
    bv["PUT /api/tasks/{code}/"] = {"discipline": ["chemistry"], "code": ["RU", "GR"]}
    bv["POST /api/tuples/"] = {"task": ["RU", "bu"]}
