"""Settings of the queue benchmark's server (``bench/queue_load.py``); never used by the product.

The production settings (``config.settings``, read from the same environment variables) plus:

* a first middleware that counts the SQL statements of each request on the server side
  (``X-Bench-Queries``, ``X-Bench-DB-Ms`` response headers);
* a URLconf that mounts, next to every product URL, the *baseline* queue under ``/bench/baseline/``
  (``bench/queue_baseline.py``: the simplest correct implementation, for the ratio);
* plain HTTP on loopback (no SSL redirect) and quiet logs.
"""

from config.settings import *  # noqa: F401,F403
from config.settings import MIDDLEWARE

MIDDLEWARE = ["bench.queue_server.QueryCountMiddleware", *MIDDLEWARE]
ROOT_URLCONF = "bench.queue_server"
SECURE_SSL_REDIRECT = False
SECURE_HSTS_SECONDS = 0
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
