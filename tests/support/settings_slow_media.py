"""Settings of a worker whose media storage is slow (tests.support.fault_workers.SlowFileSystemStorage)."""

from config.settings import *  # noqa: F403
from config.settings import STORAGES

STORAGES = {**STORAGES, "default": {"BACKEND": "tests.support.fault_workers.SlowFileSystemStorage"}}
