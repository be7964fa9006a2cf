"""Tiny models for the demo: a FLUX pipeline, a scorer (made active), a Grounding DINO detector and an LMM
judge (a tiny Qwen2-VL fitted to always answer the first image), written under ``ML_MODEL_ROOT/demo/`` and
registered, so the whole loop, the leaderboards included, runs on a laptop's CPU.

Real deployments register real checkpoints instead (the registry API, or the Django admin); nothing
else changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from ml.models import ModelVersion
from ml.services import registry


@dataclass
class DemoModels:
    generator: ModelVersion
    scorer: ModelVersion
    detector: Path
    created: list[str]
    judge: ModelVersion | None = None


def _registered(
    user, kind: str, name: str, location: Path, make, created: list[str], config: dict | None = None
) -> ModelVersion:
    existing = ModelVersion.objects.filter(kind=kind, name=name).first()
    if existing is not None:
        return existing
    if not (location / ".complete").exists():
        make(location)
        (location / ".complete").touch()
    created.append(name)
    return registry.register_model(user, kind, name, str(location), config=config or {"demo": True, "tiny": True})


def _make_judge(location: Path) -> None:
    from ml.core.judges.tiny import TINY_JUDGE_ANSWER, make_tiny_qwen2_vl

    make_tiny_qwen2_vl(location, answer=TINY_JUDGE_ANSWER)


def seed_models(user) -> DemoModels:
    """Write and register the tiny models once (idempotent); activate the scorer if none is active."""
    from ml.core.tiny import make_tiny_scorer
    from ml.core.tiny_detector import make_tiny_grounding_dino
    from ml.core.tiny_flux import make_tiny_flux

    root = Path(settings.ML_MODEL_ROOT) / "demo"
    created: list[str] = []
    generator = _registered(
        user, ModelVersion.Kind.GENERATOR_BASE, "tiny-flux", root / "tiny-flux", make_tiny_flux, created
    )
    scorer = _registered(user, ModelVersion.Kind.SCORER, "tiny-scorer", root / "tiny-scorer", make_tiny_scorer, created)
    if registry.active_scorer() is None:
        registry.activate_scorer(user, scorer)
    detector = root / "tiny-detector"
    if not (detector / ".complete").exists():
        make_tiny_grounding_dino(detector)
        (detector / ".complete").touch()
    judge = _registered(
        user,
        ModelVersion.Kind.JUDGE,
        "tiny-judge",
        root / "tiny-judge",
        _make_judge,
        created,
        config={"backend": "local", "notes": "demo: a tiny Qwen2-VL that always answers the first image"},
    )
    return DemoModels(generator=generator, scorer=scorer, detector=detector, created=created, judge=judge)
