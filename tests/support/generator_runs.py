"""Shared set-up of the generator run tests (sft, oft, eval_generator, the closed loop): tiny FLUX,
scorer and detector on disk, registered; a frozen dataset version; tiny-model run parameters."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from unittest import mock

import pytest
from django.utils import timezone

from ml.models import Run
from ml.services import registry, runs
from ml.tasks import execute_run
from tests.support.versions import make_version

# Settings of the ML core tests (tests/ml) that run in milliseconds on a CPU.
SFT_TINY = {
    "resolution": 16,
    "max_sequence_length": 16,
    "batch_size": 2,
    "grad_accum": 1,
    "checkpoint_every": 1,
    "gradient_checkpointing": False,
    "max_steps": 2,
}
OFT_TINY = {
    "resolution": 32,
    "num_steps": 2,
    "prompts_per_step": 1,
    "max_steps": 1,
    "max_sequence_length": 32,
    "gradient_checkpointing": False,
    "checkpoint_every": 1,
}
EVAL_TINY = {"images_per_prompt": 1, "steps": 2, "width": 16, "height": 16, "max_sequence_length": 16}
TRAIN_SPEC = [("train", "expected"), ("train", "other"), ("train", "both"), ("test_S", "expected"), ("test_S", "other")]


@pytest.fixture(scope="module")
def tiny_paths(tmp_path_factory):
    from ml.core.tiny import make_tiny_scorer
    from ml.core.tiny_detector import make_tiny_grounding_dino
    from ml.core.tiny_flux import make_tiny_flux

    root = tmp_path_factory.mktemp("tiny-models")
    return SimpleNamespace(
        flux=make_tiny_flux(root / "flux", seed=0),
        scorer=make_tiny_scorer(root / "scorer"),
        detector=make_tiny_grounding_dino(root / "detector", words=("nail", "metal")),
    )


@pytest.fixture
def tiny(admin_user, tiny_paths, settings, tmp_path):
    """The tiny models registered (the scorer active); work and model roots in the test's folder."""
    settings.ML_WORK_ROOT = tmp_path / "work"
    settings.ML_MODEL_ROOT = tmp_path / "models"
    base = registry.register_model(admin_user, "generator_base", "tiny-flux", str(tiny_paths.flux))
    scorer = registry.activate_scorer(
        admin_user, registry.register_model(admin_user, "scorer", "tiny-scorer", str(tiny_paths.scorer))
    )
    return SimpleNamespace(base=base, scorer=scorer, detector=str(tiny_paths.detector), paths=tiny_paths)


def train_version(admin, spec=TRAIN_SPEC, **kwargs):
    """A frozen version: two decided train pairs (one reversed), a rejected one, two test_S pairs."""
    return make_version(admin, spec, **kwargs)


def start(admin, kind: str, params: dict) -> Run:
    with mock.patch("ml.tasks.execute_run.apply_async"):
        return runs.start_run(admin, kind, params, celery_task=execute_run)


def execute(run: Run) -> Run:
    run = runs.execute_run(run.pk)
    assert run.status == Run.Status.SUCCEEDED, run.error
    return run


def worker_died(run: Run, **fields) -> None:
    """Leave ``run`` as a worker killed mid-run leaves it: running, with a stale heartbeat."""
    Run.objects.filter(pk=run.pk).update(
        status=Run.Status.RUNNING, finished_at=None, heartbeat_at=timezone.now() - timedelta(hours=1), **fields
    )


def commands(run: Run) -> int:
    """How many ``python -m ml`` commands the run's log shows."""
    return sum(1 for line in run.log_tail.splitlines() if " $ " in line)
