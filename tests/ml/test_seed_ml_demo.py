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
    assert "registered tiny-flux, tiny-scorer" in first and "registered nothing new" in capsys.readouterr().out
    assert ModelVersion.objects.count() == 2
    scorer = registry.active_scorer()
    assert scorer.name == "tiny-scorer"
    Scorer.load(scorer.location, device="cpu")
    load_pipeline(ModelVersion.objects.get(name="tiny-flux").location, device="cpu")
    assert (tmp_path / "models" / "demo" / "tiny-detector" / "config.json").exists()


def test_it_needs_an_admin(db):
    with pytest.raises(CommandError, match="run seed_demo first"):
        call_command("seed_ml_demo", admin="nobody")
