"""What a run handler gets: log lines, progress, metrics and artifacts, each written straight to the row."""

from __future__ import annotations

from collections import deque
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from ml.models import Run


class RunCancelled(Exception):
    pass


class RunContext:
    def __init__(self, run: Run):
        self.run = run
        self._log = deque((run.log_tail or "").splitlines(), maxlen=Run.LOG_LINES)

    def _update(self, **fields) -> None:
        Run.objects.filter(pk=self.run.pk).update(**fields)
        for name, value in fields.items():
            setattr(self.run, name, value)

    @property
    def work_dir(self) -> Path:
        """The run's folder under ``ML_WORK_ROOT`` (checkpoints live here, so a redelivered run resumes)."""
        path = Path(settings.ML_WORK_ROOT) / f"run-{self.run.pk}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log(self, line: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        for part in str(line).splitlines() or [""]:
            self._log.append(f"{stamp} {part}")
        self._update(log_tail="\n".join(self._log))

    def progress(self, fraction: float | None = None, *, phase: str | None = None) -> None:
        """Record how far the run is (0..1; None keeps it) and, if given, what it is doing now (``phase``:
        e.g. "loading the model", shown on the run's page beside the percentage; "" clears it)."""
        fields: dict = {}
        if fraction is not None:
            fields["progress"] = max(0.0, min(1.0, float(fraction)))
        if phase is not None:
            fields["phase"] = str(phase)[: Run.PHASE_LENGTH]
        if fields:
            self._update(**fields)

    def metric(self, record: dict) -> None:
        self._update(metrics=[*self.run.metrics, record])

    def set_metrics(self, records: list[dict]) -> None:
        """Replace the whole series (a resumed trainer re-reads its metrics file)."""
        self._update(metrics=list(records))

    def save_artifacts(self) -> None:
        self._update(artifacts=self.run.artifacts)

    def is_cancelled(self) -> bool:
        return Run.objects.filter(pk=self.run.pk, status=Run.Status.CANCELLED).exists()

    def check_cancelled(self) -> None:
        if self.is_cancelled():
            raise RunCancelled()
