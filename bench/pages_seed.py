"""Seed a benchmark database with N pairs of realistic curation data, fast (``bulk_create``).

Used by ``bench/pages.py``; not part of the app. Deterministic for a given ``(n_pairs, seed)``.

What one seeded database holds (all with real foreign keys, written straight into the tables, so
the services' side effects are reproduced by hand rather than by calling the services per row):

* the migrated taxonomy (3 disciplines, 16 tasks) and roles; 21 annotators (4 per discipline plus
  3 for all disciplines, one of them paused for low gold accuracy), 2 reviewers and 1 admin;
* ``N / 2`` prompt tuples (70 % simple scenes), three image rows each pointing at a few small
  shared PNG files under ``MEDIA_ROOT/bench/`` (distinct made-up sha256 values), and N pairs
  (two per tuple) spread over every task, physics heaviest;
* pairs in creation order: the oldest are judged to k = 3, then ~8 % in progress (1–2
  judgements), the newest ~7 % untouched; 2 % gold (judged by every qualified annotator, with a
  ``GoldItem``, no consensus row), 0.5 % retired;
* one judgement per annotator and pair, each with its judged lease and left/right order; labels
  drawn from a per-pair truth (85 % expected, 8 % other, 5 % both/neither, 2 % ambiguous) and a
  per-annotator accuracy, so there are confirmed, reversed, rejected and disputed pairs; a few
  flags and comments;
* a ``Consensus`` row per judged non-gold pair computed with the real ``decide()``; 30 % of the
  disputed and reversed pairs adjudicated by a reviewer;
* skipped (released), reclaimed (expired) and a few live and expired-unreclaimed leases;
* annotator gold quality; the audit events the services would have written (tuple, image, pair,
  judgement, consensus, adjudication, gold) — about 7 per pair;
* one frozen dataset version holding the pairs decided in the first two thirds of the history.

Time: judgements arrive at a constant rate (``JUDGEMENTS_PER_DAY``) up to now, so a bigger
database has a longer history, as a real one would; the dashboard's 14-day window then holds
about the same number of judgements at every size.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import random
from collections import Counter
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.utils import timezone

JUDGEMENTS_PER_DAY = 800
BATCH = 5000
SHARED_FILES = 4


@contextlib.contextmanager
def explicit_timestamps(*models):
    """Let bulk_create store the given created_at/updated_at values (auto_now(_add) off meanwhile)."""
    changed = []
    for model in models:
        for field in model._meta.concrete_fields:
            for attr in ("auto_now", "auto_now_add"):
                if getattr(field, attr, False):
                    setattr(field, attr, False)
                    changed.append((field, attr))
    try:
        yield
    finally:
        for field, attr in changed:
            setattr(field, attr, True)


def _png(n: int) -> bytes:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", (16, 16), ((n * 70) % 256, (n * 130) % 256, 90)).save(buf, "PNG")
    return buf.getvalue()


def _shared_files() -> list[tuple[str, int]]:
    root = Path(settings.MEDIA_ROOT) / "bench"
    root.mkdir(parents=True, exist_ok=True)
    files = []
    for n in range(SHARED_FILES):
        data = _png(n)
        (root / f"shared-{n}.png").write_bytes(data)
        files.append((f"bench/shared-{n}.png", len(data)))
    return files


def _users():
    from annotation.services import people

    annotators = []
    for slug in ("physics", "chemistry", "biology"):
        for i in range(1, 5):
            user, _ = people.ensure_user(f"ann-{slug}-{i}", role="annotator", disciplines=[slug])
            annotators.append((user, {slug}))
    for i in range(1, 4):
        user, _ = people.ensure_user(f"ann-all-{i}", role="annotator", disciplines=["physics", "chemistry", "biology"])
        annotators.append((user, {"physics", "chemistry", "biology"}))
    reviewers = [people.ensure_user(f"rev-{i}", role="reviewer")[0] for i in (1, 2)]
    admin, _ = people.ensure_user("bench-admin", role="admin")
    return annotators, reviewers, admin


def seed(n_pairs: int, *, seed: int = 1, log=print) -> dict:
    """Fill the (migrated, empty) current database; returns a summary of what was written."""
    from annotation.models import AuditEvent, Image, Judgement, Lease, Pair, PromptTuple, Task, normalise_prompt
    from curation.models import (
        Adjudication,
        AnnotatorQuality,
        Consensus,
        DatasetVersion,
        GoldItem,
        Label,
        VersionMember,
    )
    from curation.services import splits
    from curation.services.consensus import decide
    from curation.services.versions import make_counts

    rng = random.Random(seed)
    now = timezone.now()
    if Pair.objects.exists():
        raise RuntimeError("the benchmark database is not empty; use --reseed")
    annotators, reviewers, admin = _users()
    files = _shared_files()
    accuracy = {user.pk: rng.uniform(0.82, 0.96) for user, _ in annotators}
    paused = annotators[-1][0]
    accuracy[paused.pk] = 0.55
    tasks = list(Task.objects.select_related("discipline").order_by("code"))
    weights = [3 if t.discipline.slug == "physics" else 2 for t in tasks]
    qualified = {slug: [u for u, ds in annotators if slug in ds] for slug in ("physics", "chemistry", "biology")}

    # --- the plan: every pair's fate, in creation order -------------------------------------
    n_tuples = (n_pairs + 1) // 2
    plan = []  # per pair: dict(kind, n_judgements, truth)
    for index in range(n_pairs):
        position = index / max(n_pairs - 1, 1)
        roll = rng.random()
        if roll < 0.02:
            kind = "gold"
        elif roll < 0.025:
            kind = "retired"
        else:
            kind = "normal"
        if kind == "normal":
            n = 3 if position < 0.85 else (rng.choice((1, 2)) if position < 0.93 else 0)
        elif kind == "retired":
            n = 3
        else:
            n = -1  # every qualified annotator (set below)
        truth_roll = rng.random()
        truth = (
            "expected"
            if truth_roll < 0.85
            else "other"
            if truth_roll < 0.93
            else "both"
            if truth_roll < 0.96
            else "neither"
            if truth_roll < 0.98
            else None
        )
        plan.append({"kind": kind, "n": n, "truth": truth})
    total_judgements = sum(len(qualified["physics"]) if p["n"] < 0 else p["n"] for p in plan)
    history = timedelta(days=max(total_judgements / JUDGEMENTS_PER_DAY, 1.0))
    start = now - history

    def at(fraction: float):
        return start + history * min(max(fraction, 0.0), 1.0)

    with (
        explicit_timestamps(
            PromptTuple, Image, Pair, Lease, Judgement, Consensus, Adjudication, GoldItem, AuditEvent, DatasetVersion
        ),
        transaction.atomic(),
    ):
        # --- tuples and images ------------------------------------------------------------
        log(f"  tuples and images ({n_tuples} tuples)")
        tuple_objs = []
        for t in range(n_tuples):
            task = rng.choices(tasks, weights)[0]
            subject = rng.choice(("nail", "ice cube", "apple", "candle", "leaf", "copper wire", "sugar", "balloon"))
            implicit = f"A {subject} left for a while, bench scene {t} of task {task.code}."
            tuple_objs.append(
                PromptTuple(
                    implicit_prompt=implicit,
                    implicit_normalised=normalise_prompt(implicit),
                    explicit_prompt=f"The explicit outcome for {subject} {t}.",
                    superficial_prompt=f"A plain {subject} {t}.",
                    task=task,
                    subject=subject,
                    scene="complex" if rng.random() < 0.3 else "simple",
                    source="bench",
                    created_at=at(2 * t / n_pairs - 0.001),
                    updated_at=at(2 * t / n_pairs - 0.001),
                )
            )
        PromptTuple.objects.bulk_create(tuple_objs, batch_size=BATCH)
        image_objs = []
        for t, tup in enumerate(tuple_objs):
            for j, kind in enumerate((Image.Kind.EXPLICIT, Image.Kind.EXPLICIT, Image.Kind.SUPERFICIAL)):
                name, size = files[(3 * t + j) % len(files)]
                image_objs.append(
                    Image(
                        file=name,
                        sha256=hashlib.sha256(f"bench-image-{seed}-{t}-{j}".encode()).hexdigest(),
                        width=16,
                        height=16,
                        format="PNG",
                        size_bytes=size,
                        kind=kind,
                        tuple=tup,
                        generator="bench",
                        seed=j,
                        created_at=tup.created_at,
                    )
                )
        Image.objects.bulk_create(image_objs, batch_size=BATCH)

        # --- pairs --------------------------------------------------------------------------
        log(f"  pairs ({n_pairs})")
        pair_objs = []
        for index, fate in enumerate(plan):
            t = index // 2
            tup = tuple_objs[t]
            correct, wrong = image_objs[3 * t + index % 2], image_objs[3 * t + 2]
            slug = tup.task.discipline.slug
            if fate["n"] < 0:
                fate["n"] = len(qualified[slug])
            fate["annotators"] = rng.sample(qualified[slug], fate["n"])
            status = (
                Pair.Status.RETIRED
                if fate["kind"] == "retired"
                else Pair.Status.COMPLETE
                if fate["kind"] == "normal" and fate["n"] >= 3
                else Pair.Status.OPEN
            )
            pair_objs.append(
                Pair(
                    tuple=tup,
                    image_correct=correct,
                    image_wrong=wrong,
                    status=status,
                    k=3,
                    is_gold=fate["kind"] == "gold",
                    judgement_count=fate["n"],
                    created_at=at(index / n_pairs),
                )
            )
        Pair.objects.bulk_create(pair_objs, batch_size=BATCH)

        # --- judgements with their leases ---------------------------------------------------
        log(f"  judgements and leases ({total_judgements})")
        labels = list(Label.values)
        lease_objs, judgement_specs = [], []
        for index, (pair, fate) in enumerate(zip(pair_objs, plan, strict=True)):
            for user in fate["annotators"]:
                truth = fate["truth"] or rng.choice(labels)
                label = truth if rng.random() < accuracy[user.pk] else rng.choice([x for x in labels if x != truth])
                when = at((index + rng.uniform(0.0, 3.0)) / n_pairs)
                spent = rng.randint(2_000, 40_000)
                swap = rng.random() < 0.5
                left, right = (pair.image_wrong, pair.image_correct) if swap else (pair.image_correct, pair.image_wrong)
                lease_objs.append(
                    Lease(
                        pair=pair,
                        annotator=user,
                        left_image=left,
                        right_image=right,
                        state=Lease.State.JUDGED,
                        created_at=when - timedelta(milliseconds=spent),
                        expires_at=when + settings.LEASE_TTL,
                        ended_at=when,
                    )
                )
                judgement_specs.append((pair, user, label, when, spent, left))
        Lease.objects.bulk_create(lease_objs, batch_size=BATCH)
        judgement_objs = []
        for lease, (pair, user, label, when, spent, left) in zip(lease_objs, judgement_specs, strict=True):
            if label == "expected":
                chosen = pair.image_correct
            elif label == "other":
                chosen = pair.image_wrong
            else:
                chosen = None
            choice = label if chosen is None else ("left" if chosen.pk == left.pk else "right")
            flag = rng.random()
            judgement_objs.append(
                Judgement(
                    pair=pair,
                    annotator=user,
                    lease=lease,
                    choice=choice,
                    chosen_image=chosen,
                    flag_prompt_unclear=flag < 0.02,
                    flag_image_broken=0.02 <= flag < 0.03,
                    flag_off_topic=0.03 <= flag < 0.04,
                    comment="unsure about this one" if flag > 0.995 else "",
                    time_spent_ms=spent,
                    created_at=when,
                )
            )
        Judgement.objects.bulk_create(judgement_objs, batch_size=BATCH)

        # --- other leases: skipped, reclaimed, live, expired-unreclaimed --------------------
        other_leases = []
        users = [u for u, _ in annotators]
        for _ in range(total_judgements // 20):
            pair = rng.choice(pair_objs)
            when = at(rng.random())
            other_leases.append(
                Lease(
                    pair=pair,
                    annotator=rng.choice(users),
                    left_image=pair.image_correct,
                    right_image=pair.image_wrong,
                    state=Lease.State.RELEASED,
                    created_at=when,
                    expires_at=when + settings.LEASE_TTL,
                    ended_at=when + timedelta(seconds=30),
                )
            )
        for _ in range(total_judgements * 3 // 100):
            pair = rng.choice(pair_objs)
            when = at(rng.random())
            other_leases.append(
                Lease(
                    pair=pair,
                    annotator=rng.choice(users),
                    left_image=pair.image_wrong,
                    right_image=pair.image_correct,
                    state=Lease.State.EXPIRED,
                    created_at=when,
                    expires_at=when + settings.LEASE_TTL,
                    ended_at=when + settings.LEASE_TTL + timedelta(minutes=1),
                )
            )
        open_pairs = [
            p for p, f in zip(pair_objs, plan, strict=True) if p.status == Pair.Status.OPEN and f["kind"] == "normal"
        ]
        for i, user in enumerate(users[:8]):
            pair = open_pairs[-1 - i]
            live = i < 6
            created = now - timedelta(minutes=2 if live else 30)
            other_leases.append(
                Lease(
                    pair=pair,
                    annotator=user,
                    left_image=pair.image_correct,
                    right_image=pair.image_wrong,
                    state=Lease.State.ACTIVE,
                    created_at=created,
                    expires_at=created + settings.LEASE_TTL,
                )
            )
        Lease.objects.bulk_create(other_leases, batch_size=BATCH)

        # --- consensus, adjudications, gold ---------------------------------------------------
        log("  consensus, adjudications, gold")
        by_pair: dict[int, list] = {}
        for j in judgement_objs:
            by_pair.setdefault(j.pair_id, []).append(j)
        label_of_judgement = {id(j): spec[2] for j, spec in zip(judgement_objs, judgement_specs, strict=True)}
        consensus_objs, adjudication_objs, gold_objs, events = [], [], [], []
        decided_at = {}
        for pair, fate in zip(pair_objs, plan, strict=True):
            judged = by_pair.get(pair.pk, [])
            if pair.is_gold:
                gold_objs.append(
                    GoldItem(
                        pair=pair, answer=fate["truth"] or "expected", created_by=admin, created_at=pair.created_at
                    )
                )
                events.append(
                    AuditEvent(
                        actor=admin,
                        action="gold.marked",
                        target_type="pair",
                        target_id=str(pair.pk),
                        before={"gold": None},
                        after={"gold": fate["truth"] or "expected"},
                        created_at=pair.created_at,
                    )
                )
                continue
            if not judged:
                continue
            found = Counter(label_of_judgement[id(j)] for j in judged)
            counts = {label: found[label] for label in labels}
            n = sum(counts.values())
            outcome, label = decide(counts, pair.k)
            updated = max(j.created_at for j in judged)
            if outcome in ("disputed", "reversed") and rng.random() < 0.3:
                reviewer = rng.choice(reviewers)
                decision = fate["truth"] or rng.choice(labels)
                updated = updated + timedelta(hours=rng.uniform(1, 72))
                adjudication_objs.append(
                    Adjudication(
                        pair=pair, reviewer=reviewer, label=decision, comment="checked the prompt", created_at=updated
                    )
                )
                outcome, label = "adjudicated", decision
            updated = min(updated, now)
            consensus_objs.append(
                Consensus(
                    pair=pair,
                    outcome=outcome,
                    label=label,
                    n_judgements=n,
                    counts=counts,
                    agreement=max(counts.values()) / n,
                    updated_at=updated,
                )
            )
            if outcome != "pending":
                decided_at[pair.pk] = updated
                events.append(
                    AuditEvent(
                        actor=judged[-1].annotator,
                        action="consensus.changed",
                        target_type="pair",
                        target_id=str(pair.pk),
                        before={"outcome": "pending", "label": ""},
                        after={"outcome": outcome, "label": label, "counts": counts},
                        created_at=updated,
                    )
                )
        Consensus.objects.bulk_create(consensus_objs, batch_size=BATCH)
        Adjudication.objects.bulk_create(adjudication_objs, batch_size=BATCH)
        for adjudication in adjudication_objs:
            events.append(
                AuditEvent(
                    actor=adjudication.reviewer,
                    action="adjudication.created",
                    target_type="adjudication",
                    target_id=str(adjudication.pk),
                    after={"pair": adjudication.pair_id, "label": adjudication.label, "comment": adjudication.comment},
                    created_at=adjudication.created_at,
                )
            )
        GoldItem.objects.bulk_create(gold_objs, batch_size=BATCH)
        gold_answer = {g.pair_id: g.answer for g in gold_objs}
        quality = {u.pk: [0, 0] for u in users}
        for j in judgement_objs:
            if j.pair_id in gold_answer:
                quality[j.annotator_id][0] += 1
                quality[j.annotator_id][1] += label_of_judgement[id(j)] == gold_answer[j.pair_id]
        AnnotatorQuality.objects.bulk_create(
            [
                AnnotatorQuality(
                    user_id=pk,
                    gold_judged=judged,
                    gold_correct=correct,
                    flagged=pk == paused.pk,
                    flagged_at=now - timedelta(days=2) if pk == paused.pk else None,
                )
                for pk, (judged, correct) in quality.items()
            ]
        )
        paused.expertise.paused = True
        paused.expertise.save(update_fields=["paused"])

        # --- audit events for the catalogue and the judgements ------------------------------
        log("  audit events")
        for tup in tuple_objs:
            events.append(
                AuditEvent(
                    actor=admin,
                    action="tuple.created",
                    target_type="prompttuple",
                    target_id=str(tup.pk),
                    after={"implicit_prompt": tup.implicit_prompt, "task": tup.task_id, "scene": tup.scene},
                    created_at=tup.created_at,
                )
            )
        for image in image_objs:
            events.append(
                AuditEvent(
                    actor=admin,
                    action="image.created",
                    target_type="image",
                    target_id=str(image.pk),
                    after={"sha256": image.sha256, "kind": image.kind},
                    created_at=image.created_at,
                )
            )
        for pair in pair_objs:
            events.append(
                AuditEvent(
                    actor=admin,
                    action="pair.created",
                    target_type="pair",
                    target_id=str(pair.pk),
                    after={
                        "tuple": pair.tuple_id,
                        "image_correct": pair.image_correct_id,
                        "image_wrong": pair.image_wrong_id,
                        "k": pair.k,
                        "status": "open",
                    },
                    created_at=pair.created_at,
                )
            )
        for j in judgement_objs:
            events.append(
                AuditEvent(
                    actor=j.annotator,
                    action="judgement.created",
                    target_type="judgement",
                    target_id=str(j.pk),
                    after={
                        "pair": j.pair_id,
                        "annotator": j.annotator_id,
                        "choice": j.choice,
                        "chosen_image": j.chosen_image_id,
                    },
                    created_at=j.created_at,
                )
            )
        events.sort(key=lambda event: event.created_at)  # ids follow time, as in a real log
        AuditEvent.objects.bulk_create(events, batch_size=BATCH)

        # --- one frozen version: the pairs decided in the first two thirds of the history ----
        log("  dataset version")
        cutoff = at(2 / 3)
        members, tally = [], []
        version = DatasetVersion.objects.create(
            name="bench-v1",
            filters={"outcomes": ["adjudicated", "confirmed", "reversed"]},
            split_ratios={"train": 0.8, "validation": 0.1, "test": 0.1, "seed": 0},
            content_hash="0" * 64,
            counts={},
            created_by=admin,
            created_at=cutoff,
        )
        task_code = {t.pk: t.code for t in tasks}
        for c in consensus_objs:
            if c.outcome in ("confirmed", "reversed", "adjudicated") and decided_at.get(c.pair_id, now) < cutoff:
                if c.label in ("both", "neither"):
                    continue
                tup = c.pair.tuple
                key = splits.group_key(tup.implicit_prompt, tup.subject)
                u = splits.uniform(0, key)
                split = (
                    "train"
                    if u < 0.8
                    else "validation"
                    if u < 0.9
                    else ("test_C" if tup.scene == "complex" else "test_S")
                )
                members.append(
                    VersionMember(
                        version=version,
                        pair_id=c.pair_id,
                        label=c.label,
                        outcome=c.outcome,
                        agreement=c.agreement,
                        n_judgements=c.n_judgements,
                        split=split,
                        group_key=key,
                    )
                )
                tally.append((task_code[tup.task_id], split, 1))
        VersionMember.objects.bulk_create(members, batch_size=BATCH)
        version.counts = make_counts(tally)
        version.save(update_fields=["counts"])

    with connection.cursor() as cursor:  # fresh statistics and visibility map, as autovacuum would give
        cursor.execute("VACUUM ANALYZE")
    outcomes = Counter(c.outcome for c in consensus_objs)
    return {
        "pairs": n_pairs,
        "tuples": n_tuples,
        "images": len(image_objs),
        "judgements": len(judgement_objs),
        "leases": len(lease_objs) + len(other_leases),
        "consensus": len(consensus_objs),
        "outcomes": {str(k): v for k, v in sorted(outcomes.items())},
        "gold": len(gold_objs),
        "adjudications": len(adjudication_objs),
        "audit_events": len(events),
        "version_members": len(members),
        "annotators": len(users),
        "history_days": round(history.total_seconds() / 86400, 1),
    }


def ensure_groups():
    """Roles exist after migrate (annotation 0002); a sanity check with a clear message if not."""
    missing = {"annotator", "reviewer", "admin"} - set(Group.objects.values_list("name", flat=True))
    if missing:
        raise RuntimeError(f"roles missing after migrate: {sorted(missing)}")
    return get_user_model()
