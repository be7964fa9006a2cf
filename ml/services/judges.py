"""LMM judges in the registry: what a judge's ``location`` and ``config`` may hold, and its backend.

A judge is a :class:`~ml.models.ModelVersion` of kind ``judge`` with one of two backends:

* ``local``: ``location`` is the absolute path of a vision-language model directory on the GPU workers
  (transformers ``save_pretrained`` layout: Qwen2-VL / Qwen2.5-VL, LLaVA-OneVision...), loaded there with
  :class:`ml.core.judges.local.LocalBackend`; ``batch_size`` requests are generated at once.
* ``endpoint``: ``location`` is the base URL of an OpenAI-compatible chat-completions server (vLLM, SGLang,
  TGI, LMDeploy, ``transformers serve``...), e.g. ``http://gpu-3:8000/v1``; ``model`` is the name the server
  serves. The API key is never stored: ``api_key_env`` names the environment variable the *worker* reads it
  from. ``max_concurrency`` requests are in flight at once, each with ``timeout`` seconds and up to
  ``max_retries`` retries with exponential back-off; ``request_budget`` caps the requests one run may send.

:func:`clean_config` is the one place these rules live: the registry calls it when a judge is registered,
and a run reads the cleaned config back. Keys that look like secrets (``api_key``, ``token``,
``password``...) are refused, so a key cannot reach the database by mistake.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import urlsplit

BACKENDS = ("local", "endpoint")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
# A config key is taken for a secret when one of its words is one of these (api_key, auth-token, X_Secret...).
SECRET_WORDS = {"key", "apikey", "token", "secret", "password", "passwd", "authorization", "bearer", "credentials"}
# name: (default, minimum, maximum); None as a default means "no limit".
NUMBERS: dict[str, tuple[float | None, float, float]] = {
    "max_concurrency": (4, 1, 64),
    "timeout": (60.0, 1.0, 3600.0),
    "max_retries": (3, 0, 10),
    "request_budget": (None, 1, 10_000_000),
    "batch_size": (8, 1, 256),
}
ENDPOINT_KEYS = {"backend", "model", "api_key_env", "max_concurrency", "timeout", "max_retries", "request_budget"}
LOCAL_KEYS = {"backend", "batch_size", "dtype"}
COMMON_KEYS = {"notes"}
DTYPES = ("auto", "bfloat16", "float16", "float32")


class JudgeConfigError(ValueError):
    """A judge's location or config refused; ``field`` is ``location`` or ``config``."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


def clean_config(location: str, config: dict) -> dict:
    """The judge's config with defaults filled in; :class:`JudgeConfigError` naming the first problem found.

    ``location`` is checked against the backend: an absolute path for ``local``, an http(s) base URL with no
    credentials, query or fragment for ``endpoint``.
    """
    if not isinstance(config, dict):
        raise JudgeConfigError("config", "A judge's config must be a JSON object.")
    backend = config.get("backend")
    if backend not in BACKENDS:
        raise JudgeConfigError("config", f'A judge\'s config needs "backend": one of {", ".join(BACKENDS)}.')
    allowed = (ENDPOINT_KEYS if backend == "endpoint" else LOCAL_KEYS) | COMMON_KEYS
    for name in config:
        if name != "api_key_env" and SECRET_WORDS & set(re.split(r"[^a-z0-9]+", str(name).lower())):
            raise JudgeConfigError(
                "config",
                f"The config key {name!r} looks like a secret; secrets are never stored: put the API key in an "
                'environment variable of the workers and name it in "api_key_env".',
            )
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise JudgeConfigError("config", f"Unknown config keys for a {backend} judge: {', '.join(unknown)}.")
    cleaned: dict = {"backend": backend}
    for name in sorted(allowed & set(NUMBERS)):
        cleaned[name] = _number(name, config.get(name, NUMBERS[name][0]))
    if "notes" in config:
        if not isinstance(config["notes"], str) or len(config["notes"]) > 2000:
            raise JudgeConfigError("config", "The config's notes must be a text of at most 2000 characters.")
        cleaned["notes"] = config["notes"]
    if backend == "endpoint":
        _check_url(location)
        model = config.get("model")
        if not isinstance(model, str) or not model.strip() or len(model) > 200:
            raise JudgeConfigError(
                "config", 'An endpoint judge\'s config needs "model": the model name the server serves.'
            )
        cleaned["model"] = model.strip()
        env = config.get("api_key_env")
        if env is not None and (not isinstance(env, str) or not ENV_NAME.match(env)):
            raise JudgeConfigError(
                "config", '"api_key_env" must be an environment variable name such as JUDGE_API_KEY.'
            )
        cleaned["api_key_env"] = env
    else:
        if not PurePosixPath(location).is_absolute():
            raise JudgeConfigError(
                "location", "A local judge's location must be the absolute path of its model directory."
            )
        dtype = config.get("dtype", "auto")
        if dtype not in DTYPES:
            raise JudgeConfigError("config", f'"dtype" must be one of {", ".join(DTYPES)}.')
        cleaned["dtype"] = dtype
    return cleaned


def _number(name: str, value):
    default, low, high = NUMBERS[name]
    if value is None and default is None:
        return None
    integer = isinstance(low, int) and isinstance(high, int)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise JudgeConfigError(
            "config", f'"{name}" must be {"an integer" if integer else "a number"} between {low} and {high}.'
        )
    if not low <= value <= high:
        raise JudgeConfigError("config", f'"{name}" must be between {low} and {high}.')
    return value


def _check_url(location: str) -> None:
    parts = urlsplit(location)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise JudgeConfigError(
            "location", "An endpoint judge's location must be the server's http(s) base URL, e.g. http://host:8000/v1."
        )
    if parts.username or parts.password:
        raise JudgeConfigError(
            "location", "The base URL must not carry credentials: name an environment variable in api_key_env."
        )
    if parts.query or parts.fragment:
        raise JudgeConfigError("location", "The base URL must not have a query or a fragment.")


def over_budget(model, pairs: int, knob: str) -> str | None:
    """Why asking ``model`` about ``pairs`` pairs in both image orders would overrun its request budget, or None
    (``knob``: the run parameter that lowers the count). Runs check this before they start."""
    budget = (model.config or {}).get("request_budget") if model.kind == "judge" else None
    if budget is None or 2 * pairs <= budget:
        return None
    return (
        f"asking about {pairs} pairs in both orders needs {2 * pairs} requests, over the judge's request budget of "
        f"{budget}: lower {knob} or raise the budget"
    )


def is_url(location: str) -> bool:
    """Whether ``location`` is an http(s) URL (an endpoint judge's) rather than a path."""
    return urlsplit(location).scheme in ("http", "https")


def open_backend(model, *, request_budget: int | None = None, device: str | None = None):
    """The judge's backend, ready to answer (on this worker). ``request_budget`` (a run's own) overrides the
    config's when it is smaller."""
    config = clean_config(model.location, model.config)
    if config["backend"] == "endpoint":
        from ml.core.judges.endpoint import EndpointBackend

        budgets = [b for b in (config["request_budget"], request_budget) if b is not None]
        return EndpointBackend(
            model.location,
            config["model"],
            api_key_env=config["api_key_env"],
            max_concurrency=config["max_concurrency"],
            timeout=config["timeout"],
            max_retries=config["max_retries"],
            request_budget=min(budgets) if budgets else None,
            name=model.name,
        )
    import torch

    from ml.core.judges.local import LocalBackend

    dtype = None if config["dtype"] == "auto" else getattr(torch, config["dtype"])
    return LocalBackend(model.location, device=device, dtype=dtype, batch_size=config["batch_size"], name=model.name)
