import os

import pytest

# Playwright's sync API runs an event loop in the test thread; Django's ORM must still be usable.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    """Media in a fresh folder per test; a fast password hasher (users are made in most tests)."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # A cache of this test's own (nothing leaks between tests), and pages' figures computed on every request.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": str(tmp_path)}}
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
    from tests.factories import make_user

    return make_user("ann-chem", "annotator", disciplines=["chemistry"])


@pytest.fixture
def outsider(db):
    """An annotator of another field (biology)."""
    from tests.factories import make_user

    return make_user("ann-bio", "annotator", disciplines=["biology"])


@pytest.fixture
def reviewer(db):
    from tests.factories import make_user

    return make_user("rev", "reviewer")


@pytest.fixture
def admin_user(db):
    from tests.factories import make_user

    return make_user("boss", "admin")


@pytest.fixture
def api(db):
    from rest_framework.test import APIClient

    return APIClient()
