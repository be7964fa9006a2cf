"""Curation state: consensus per pair, reviewer adjudications, gold items and annotator quality.

Labels are stated relative to the pair's *expected* image, never as left/right:

* ``expected`` — the expected-correct image is the scientifically correct one;
* ``other`` — the other image is (the tuple's prompts or images are suspect);
* ``both`` / ``neither``.

State changes go through :mod:`curation.services`; every change is audited.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from annotation.models import Pair


class Label(models.TextChoices):
    EXPECTED = "expected", "expected image is correct"
    OTHER = "other", "the other image is correct"
    BOTH = "both", "both correct"
    NEITHER = "neither", "neither correct"


class Consensus(models.Model):
    class Outcome(models.TextChoices):
        PENDING = "pending", "pending (fewer than k judgements)"
        CONFIRMED = "confirmed", "confirmed"
        REVERSED = "reversed", "reversed"
        REJECTED = "rejected", "rejected"
        DISPUTED = "disputed", "disputed"
        ADJUDICATED = "adjudicated", "adjudicated"
        # Decided elsewhere and brought in by an import (a published dataset's expert label, or another
        # platform's export); ``provenance`` says where from. Judgements or an adjudication here take over.
        IMPORTED = "imported", "imported decision"

    pair = models.OneToOneField(Pair, on_delete=models.CASCADE, related_name="consensus")
    outcome = models.CharField(max_length=12, choices=Outcome.choices, default=Outcome.PENDING, db_index=True)
    label = models.CharField(max_length=8, choices=Label.choices, blank=True, help_text="Empty while undecided.")
    agreement = models.FloatField(null=True, blank=True, help_text="Share of judgements with the majority label.")
    n_judgements = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, help_text="Judgements per label (gold judgements excluded).")
    provenance = models.JSONField(
        default=dict,
        blank=True,
        help_text="For an imported decision: the source (file, row, dataset) and the decision as it stood there.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "consensus"
        indexes = [models.Index(fields=["outcome", "pair"], name="consensus_outcome_pair")]

    def __str__(self) -> str:
        return f"pair {self.pair_id}: {self.outcome}"


class Adjudication(models.Model):
    """A reviewer's decision on a disputed or reversed pair; the latest one is the pair's label."""

    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="adjudications")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="adjudications")
    label = models.CharField(max_length=8, choices=Label.choices)
    comment = models.TextField(blank=True, max_length=4000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"pair {self.pair_id} adjudicated {self.label}"


class GoldItem(models.Model):
    """A pair with a known answer, mixed into queues to measure annotators; not counted in consensus."""

    pair = models.OneToOneField(Pair, on_delete=models.CASCADE, related_name="gold")
    answer = models.CharField(max_length=8, choices=Label.choices)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"gold pair {self.pair_id} ({self.answer})"


class AnnotatorQuality(models.Model):
    """Gold accuracy per annotator; a flagged annotator gets nothing from the queue until restored."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quality")
    gold_judged = models.PositiveIntegerField(default=0)
    gold_correct = models.PositiveIntegerField(default=0)
    flagged = models.BooleanField(default=False, db_index=True)
    flagged_at = models.DateTimeField(null=True, blank=True)
    restored_at = models.DateTimeField(null=True, blank=True)
    restored_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name_plural = "annotator quality"

    def __str__(self) -> str:
        return f"quality of {self.user}"

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_judged if self.gold_judged else None


class DatasetVersion(models.Model):
    """An immutable, named snapshot of curated pairs with labels and leakage-free splits.

    Built and frozen in one step by :mod:`curation.services.versions`; never changed afterwards.
    """

    name = models.CharField(max_length=100, unique=True)
    filters = models.JSONField(default=dict, help_text="What the admin selected (tasks, outcomes, ...).")
    split_ratios = models.JSONField(default=dict, help_text="train / validation / test shares and the seed.")
    content_hash = models.CharField(max_length=64, help_text="sha256 over members, labels, splits and image hashes.")
    counts = models.JSONField(default=dict, help_text="Members per task and split.")
    parent = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="children",
        help_text="The version whose split assignments this one kept stable.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class VersionMember(models.Model):
    """One pair in a version, with the label and split frozen at build time."""

    class Split(models.TextChoices):
        TRAIN = "train", "train"
        VALIDATION = "validation", "validation"
        TEST_S = "test_S", "test (simple scenes)"
        TEST_C = "test_C", "test (complex scenes)"

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="members")
    pair = models.ForeignKey(Pair, on_delete=models.PROTECT, related_name="version_memberships")
    label = models.CharField(max_length=8, choices=Label.choices)
    outcome = models.CharField(max_length=12, choices=Consensus.Outcome.choices)
    agreement = models.FloatField(null=True, blank=True)
    n_judgements = models.PositiveIntegerField(default=0)
    split = models.CharField(max_length=10, choices=Split.choices)
    group_key = models.CharField(max_length=64, help_text="sha256 of normalised implicit prompt + subject.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "pair"], name="member_once_per_version")]
        indexes = [
            models.Index(fields=["version", "split"], name="member_version_split"),
            models.Index(fields=["group_key"], name="member_group"),
        ]

    def __str__(self) -> str:
        return f"{self.version} / pair {self.pair_id} ({self.split})"


class Job(models.Model):
    """A background import or export run on Celery: status, progress and result for the UI and API.

    Identical requests in flight share one job (``dedup_key`` is unique among queued/running jobs).
    ``enqueued_at`` is set once its task message was published and ``heartbeat_at`` while a worker runs
    it: the stuck-work sweep (curation/services/jobs.py) reads both.
    """

    class Kind(models.TextChoices):
        IMPORT = "import", "import"
        EXPORT = "export", "export"

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    params = models.JSONField(default=dict)
    dedup_key = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0, help_text="0..1")
    message = models.CharField(max_length=500, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When its last task message was published; empty while no message stands behind the job.",
    )
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Refreshed every few seconds while a worker runs it."
    )
    recoveries = models.PositiveSmallIntegerField(
        default=0, help_text="How often the stuck-work sweep re-enqueued it after its worker was lost."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["dedup_key"],
                condition=models.Q(status__in=["queued", "running"]),
                name="job_one_in_flight_per_request",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} ({self.status})"
