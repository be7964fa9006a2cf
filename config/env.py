"""One typed reader for settings that come from environment variables.

Every setting the platform reads from the environment goes through :class:`Env`, so a
bad value fails at start-up with a message that names the variable and what it expected,
instead of surfacing later as a confusing error deep inside Django or Celery.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_MISSING = object()


class Env:
    def __init__(self, environ: Mapping[str, str] | None = None):
        self._environ = os.environ if environ is None else environ

    def _raw(self, name: str, default):
        value = self._environ.get(name)
        if value is None:
            if default is _MISSING:
                raise ImproperlyConfigured(f"Environment variable {name} is required but not set.")
            return None
        return value.strip()

    def str(self, name: str, default=_MISSING) -> str:
        raw = self._raw(name, default)
        return default if raw is None else raw

    # Below, a bare ``str`` in an annotation would name the method above: hence ``builtins.str``.
    def secret(self, name: builtins.str, default=_MISSING, *, min_length: int = 32) -> builtins.str:
        """A secret must be long enough to be one; the message never echoes the value."""
        value = self.str(name, default)
        if len(value) < min_length:
            raise ImproperlyConfigured(f"Environment variable {name} must be at least {min_length} characters long.")
        return value

    def bool(self, name: builtins.str, default=_MISSING) -> bool:
        raw = self._raw(name, default)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ImproperlyConfigured(
            f"Environment variable {name}={raw!r} is not a boolean (use true/false, 1/0, yes/no)."
        )

    def int(self, name: builtins.str, default=_MISSING, *, minimum: int | None = None) -> int:
        raw = self._raw(name, default)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ImproperlyConfigured(f"Environment variable {name}={raw!r} is not an integer.") from None
        if minimum is not None and value < minimum:
            raise ImproperlyConfigured(f"Environment variable {name}={value} must be at least {minimum}.")
        return value

    def float(
        self, name: builtins.str, default=_MISSING, *, minimum: float | None = None, maximum: float | None = None
    ):
        raw = self._raw(name, default)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ImproperlyConfigured(f"Environment variable {name}={raw!r} is not a number.") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ImproperlyConfigured(f"Environment variable {name}={value} must be within [{minimum}, {maximum}].")
        return value

    def list(self, name: builtins.str, default=_MISSING) -> list[builtins.str]:
        raw = self._raw(name, default)
        if raw is None:
            return list(default)
        return [item.strip() for item in raw.split(",") if item.strip()]
