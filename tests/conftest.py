import os

import pytest

from tests.support import markers, stands_alone

# Playwright's sync API runs an event loop in the test thread; Django's ORM must still be usable.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

# No test reads beside the repository (a neighbour ``shared`` folder, say): the project stands on its own.
stands_alone.guard()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """The ``fuzz`` and ``slow`` marks of tests/support/markers.py, before ``-m`` selects (make test-fast)."""
    markers.mark(items)


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    """Media in a fresh folder per test; a fast password hasher (users are made in most tests)."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # A cache of this test's own (nothing leaks between tests), and pages' figures computed on every request.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": str(tmp_path)}
    }
    settings.FIGURES_MAX_AGE = 0


@pytest.fixture
def one_torch_thread():
    """Torch on one thread in this process (the tiny models train faster than threads start)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def annotator(db):
    from tests.support.factories import make_user

    return make_user("ann-chem", "annotator", disciplines=["chemistry"])


@pytest.fixture
def outsider(db):
    """An annotator of another field (biology)."""
    from tests.support.factories import make_user

    return make_user("ann-bio", "annotator", disciplines=["biology"])


@pytest.fixture
def reviewer(db):
    from tests.support.factories import make_user

    return make_user("rev", "reviewer")


@pytest.fixture
def admin_user(db):
    from tests.support.factories import make_user

    return make_user("boss", "admin")


@pytest.fixture
def api(db):
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def eager_celery(settings):
    """Celery tasks run inside ``delay()``. The app's configuration reads the CELERY_* settings live, but an
    assignment to ``app.conf`` shadows them for the rest of the run; so the value to restore is read before
    the settings change (reading it after the override and restoring it left every later test eager)."""
    from config.celery import app

    before = app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


@pytest.fixture
def offline_hf(monkeypatch, tmp_path):
    """Hugging Face libraries without network, their caches in the test's folder."""
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
