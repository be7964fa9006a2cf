"""Settings of the annotate-page key-latency benchmark's servers (``bench/annotate_keys.py``); never used by the
product.

The queue benchmark's settings (``bench/queue_settings.py``: production settings, a server-side query counter,
``MEDIA_ROOT`` from the environment, plain HTTP on loopback), plus what a real browser on plain-HTTP loopback
needs: cookies without the ``Secure`` flag, and static files served by WhiteNoise straight from the source folders
(no ``collectstatic`` manifest). Imported as ``bench.annotate_keys_settings`` by this checkout's server and as the
top-level ``annotate_keys_settings`` by the server of ``--before`` (see ``bench/queue_load.server_env``).
"""

if "." in __name__:
    from bench.queue_settings import *  # noqa: F403
else:  # the server of an older tree: this folder is on PYTHONPATH after that tree
    from queue_settings import *  # type: ignore[import-not-found, no-redef]  # noqa: F403

SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = False
