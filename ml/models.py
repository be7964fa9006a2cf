"""The model registry and the run records of the ML jobs (issue 5).

* :class:`ModelVersion`: scorer versions, generator base models and generator LoRA adapters, each
  with its storage location, config, metrics, parent model and the dataset version it was trained
  on. At most one scorer is active (a partial unique constraint).
* :class:`JudgedItem`: one pair's verdict in an ``eval_judge`` run (the cells of the leaderboard link to them).
* :class:`Run`: one row per job a GPU worker runs (generate, train, evaluate...), with validated
  parameters, status, progress, the tail of its log, a metrics series and its artifacts.

Images made by a run carry ``generator = "run:<run id>:<model name>"`` (the annotation models are
not changed), and ``Run.artifacts["images"]`` maps each image back to its tuple, kind and seed; see
:func:`ml.services.registry.image_origin`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ModelVersion(models.Model):
    class Kind(models.TextChoices):
        SCORER = "scorer", "scorer"
        GENERATOR_BASE = "generator_base", "generator base model"
        GENERATOR_LORA = "generator_lora", "generator LoRA adapter"
        JUDGE = "judge", "LMM judge"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    name = models.CharField(max_length=200)
    location = models.CharField(max_length=1000, help_text="Path or URI of the checkpoint directory.")
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    parent = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="children")
    dataset_version = models.ForeignKey(
        "curation.DatasetVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="model_versions"
    )
    is_active = models.BooleanField(default=False, help_text="The active scorer (at most one; scorers only).")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "name"], name="ml_model_version_unique_name_per_kind"),
            models.UniqueConstraint(
                fields=["is_active"], condition=models.Q(is_active=True), name="ml_one_active_scorer"
            ),
            models.CheckConstraint(
                condition=models.Q(is_active=False) | models.Q(kind="scorer"), name="ml_only_scorers_are_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


class Run(models.Model):
    class Kind(models.TextChoices):
        GENERATE = "generate", "generate candidates"
        TRAIN_SCORER = "train_scorer", "train scorer"
        SFT = "sft", "supervised fine-tuning"
        OFT = "oft", "online fine-tuning"
        EVAL_SCORER = "eval_scorer", "evaluate scorer"
        EVAL_GENERATOR = "eval_generator", "evaluate generator"
        SCORE_PAIRS = "score_pairs", "score pending pairs"
        EVAL_JUDGE = "eval_judge", "evaluate a judge"
        JUDGE_PAIRS = "judge_pairs", "ask an LMM judge about pending pairs"

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
    LOG_LINES = 200
    PHASE_LENGTH = 80

    kind = models.CharField(max_length=20, choices=Kind.choices)
    params = models.JSONField(default=dict, help_text="Validated parameters, defaults filled in.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0, help_text="0..1")
    phase = models.CharField(
        max_length=PHASE_LENGTH,
        blank=True,
        help_text="What the worker is doing now (e.g. loading the model), reported with its progress.",
    )
    log_tail = models.TextField(blank=True, help_text=f"The last {LOG_LINES} lines of the run's log.")
    metrics = models.JSONField(default=list, blank=True, help_text="A series of metric records (dicts).")
    artifacts = models.JSONField(default=dict, blank=True)
    worker = models.CharField(max_length=255, blank=True, help_text="Hostname of the worker that ran it.")
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Refreshed every few seconds while a worker runs it."
    )
    schedule = models.ForeignKey(
        "Schedule",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="runs",
        help_text="The schedule whose firing made this run.",
    )
    celery_task_id = models.CharField(max_length=255, blank=True)
    enqueued_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When its last task message was published; empty while no message stands behind the run.",
    )
    recoveries = models.PositiveSmallIntegerField(
        default=0, help_text="How often the stuck-work sweep re-enqueued it after its worker was lost."
    )
    error = models.TextField(blank=True, help_text="The error and its traceback, for a failed run.")
    input_model = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="runs_as_input"
    )
    output_model = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="produced_by_runs"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__gte=0.0) & models.Q(progress__lte=1.0), name="ml_run_progress_0_1"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} run {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class Schedule(models.Model):
    """A run template fired by django-celery-beat: on a cron schedule, or by a data trigger.

    ``periodic_task`` is the beat entry that fires ``ml.tasks.fire_schedule``: a crontab for
    ``cron``, and a check interval for ``data`` (the trigger starts a run only when at least
    ``min_new_pairs`` pairs were confirmed since the last successful run of this kind).
    """

    class Trigger(models.TextChoices):
        CRON = "cron", "cron"
        DATA = "data", "new confirmed pairs"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Run.Kind.choices)
    params = models.JSONField(default=dict, help_text="The run template's parameters (validated).")
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    cron = models.CharField(max_length=100, blank=True, help_text="minute hour day-of-month month day-of-week")
    min_new_pairs = models.PositiveIntegerField(null=True, blank=True)
    check_every_minutes = models.PositiveIntegerField(default=10, help_text="How often a data trigger is checked.")
    enabled = models.BooleanField(default=True)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_checked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(trigger="cron") & ~models.Q(cron=""))
                | (models.Q(trigger="data") & models.Q(min_new_pairs__gte=1)),
                name="ml_schedule_trigger_complete",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class PairScore(models.Model):
    """A scorer version's SciScores of a pair's two images under the implicit prompt (score_pairs runs).

    ``probability`` is the scorer's probability that the expected-correct image is preferred
    (softmax of the two scores at the model's logit scale); ``uncertainty`` is ``1 - |2p - 1|``
    (1 = a coin flip) and ``disagrees`` says the scorer prefers the expected-wrong image.
    """

    pair = models.ForeignKey("annotation.Pair", on_delete=models.CASCADE, related_name="scores")
    model = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="pair_scores")
    run = models.ForeignKey(Run, on_delete=models.SET_NULL, null=True, blank=True, related_name="pair_scores")
    score_correct = models.FloatField()
    score_wrong = models.FloatField()
    probability = models.FloatField()
    uncertainty = models.FloatField()
    disagrees = models.BooleanField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pair", "model"], name="ml_pair_score_once_per_model")]

    def __str__(self) -> str:
        return f"pair {self.pair_id} by {self.model_id}: p={self.probability:.3f}"


class JudgedItem(models.Model):
    """One pair's verdict in an ``eval_judge`` run (a scorer's, or an LMM judge's over both image orders), or
    an LMM judge's opinion of a pending pair in a ``judge_pairs`` run (``split`` empty, no ``score``).

    ``score`` is the share of the judge's readable answers that picked the right image (the version's label
    says which: 1 or 0 for a scorer, 0, 0.5 or 1 for an LMM asked in both orders); None when no answer could
    be read (counted, never taken as right or wrong). ``prefers_expected`` is the same share for the pair's
    *expected* image (``Pair.image_correct``), whatever the label: the judge's opinion of the pair as the
    queue and the adjudication page see it. ``detail`` keeps what the judge said: the two scores of a scorer,
    or per order the parsed choice and the raw answer of an LMM.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="judged_items")
    pair = models.ForeignKey("annotation.Pair", on_delete=models.CASCADE, related_name="+")
    split = models.CharField(
        max_length=10, blank=True, help_text="The dataset version split the pair is in; empty for a pending pair."
    )
    score = models.FloatField(null=True, blank=True)
    prefers_expected = models.FloatField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "pair"], name="ml_judged_item_once_per_run"),
            models.CheckConstraint(
                condition=models.Q(score__isnull=True) | (models.Q(score__gte=0.0) & models.Q(score__lte=1.0)),
                name="ml_judged_item_score_0_1",
            ),
        ]

    def __str__(self) -> str:
        return f"pair {self.pair_id} in run {self.run_id}: {self.score}"
