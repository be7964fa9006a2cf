"""Settings of the queue benchmark's servers (``bench/queue_load.py``); never used by the product.

The production settings (``config.settings``, read from the same environment variables) plus:

* a first middleware that counts the SQL statements of each request on the server side
  (``X-Bench-Queries``, ``X-Bench-DB-Ms`` response headers);
* a URLconf that mounts, next to every product URL, the *baseline* queue under ``/bench/baseline/``
  (``bench/queue_baseline.py``: the simplest correct implementation, for the ratio);
* ``MEDIA_ROOT`` from the environment (the seeded images; every bench server reads the same folder);
* plain HTTP on loopback (no SSL redirect) and quiet logs.

Imported as ``bench.queue_settings`` by the server of this checkout, and as the top-level module
``queue_settings`` (this file, with this folder on ``PYTHONPATH`` after an older tree) by the
server of ``--before``: its middleware and URLconf are then the top-level ``queue_server``, and
``config.settings`` is the older tree's.
"""

import os
from pathlib import Path

from config.settings import *  # noqa: F403
from config.settings import MIDDLEWARE

_PREFIX = f"{__name__.rpartition('.')[0]}." if "." in __name__ else ""

MIDDLEWARE = [f"{_PREFIX}queue_server.QueryCountMiddleware", *MIDDLEWARE]
ROOT_URLCONF = f"{_PREFIX}queue_server"
if os.environ.get("MEDIA_ROOT"):  # an older tree may not read it
    MEDIA_ROOT = Path(os.environ["MEDIA_ROOT"])
SECURE_SSL_REDIRECT = False
SECURE_HSTS_SECONDS = 0
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
