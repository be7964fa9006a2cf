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

    pair = models.OneToOneField(Pair, on_delete=models.CASCADE, related_name="consensus")
    outcome = models.CharField(max_length=12, choices=Outcome.choices, default=Outcome.PENDING, db_index=True)
    label = models.CharField(max_length=8, choices=Label.choices, blank=True, help_text="Empty while undecided.")
    agreement = models.FloatField(null=True, blank=True, help_text="Share of judgements with the majority label.")
    n_judgements = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, help_text="Judgements per label (gold judgements excluded).")
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
    restored_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                    related_name="+")

    class Meta:
        verbose_name_plural = "annotator quality"

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_judged if self.gold_judged else None

    def __str__(self) -> str:
        return f"quality of {self.user}"
