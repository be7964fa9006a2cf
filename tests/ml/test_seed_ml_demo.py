"""``manage.py seed_ml_demo`` registers loadable tiny models once and activates the scorer."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from ml.models import ModelVersion
from ml.services import registry


def test_it_registers_tiny_models_once_and_activates_the_scorer(admin_user, settings, tmp_path, capsys):
    from ml.core.generate import load_pipeline
    from ml.core.scorer import Scorer

    settings.ML_MODEL_ROOT = tmp_path / "models"
    call_command("seed_ml_demo", admin=admin_user.username)
    first = capsys.readouterr().out
    call_command("seed_ml_demo", admin=admin_user.username)
    assert "registered tiny-flux, tiny-scorer, tiny-judge" in first
    assert "registered nothing new" in capsys.readouterr().out
    assert ModelVersion.objects.count() == 3
    scorer = registry.active_scorer()
    assert scorer.name == "tiny-scorer"
    Scorer.load(scorer.location, device="cpu")
    load_pipeline(ModelVersion.objects.get(name="tiny-flux").location, device="cpu")
    assert (tmp_path / "models" / "demo" / "tiny-detector" / "config.json").exists()
    judge = ModelVersion.objects.get(kind="judge", name="tiny-judge")
    assert judge.config["backend"] == "local"
    from PIL import Image

    from ml.core.judges.local import LocalBackend
    from ml.core.judges.protocol import pairwise_request, parse_choice

    black, white = Image.new("RGB", (32, 32)), Image.new("RGB", (32, 32), "white")
    with LocalBackend(judge.location, device="cpu") as backend:
        (reply,) = backend.complete([pairwise_request("Ice left in the sun.", black, white)])
    assert parse_choice(reply.text) == 1  # the demo's judge answers, and its answer parses


def test_it_needs_an_admin(db):
    with pytest.raises(CommandError, match="run seed_demo first"):
        call_command("seed_ml_demo", admin="nobody")
