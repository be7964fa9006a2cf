"""Each run kind's parameter validator and handler, in one table."""

from __future__ import annotations

from collections.abc import Callable

from ml.models import ModelVersion, Run
from ml.services.runs import generate

VALIDATORS: dict[str, Callable[[dict], tuple[dict, ModelVersion | None]]] = {
    Run.Kind.GENERATE: generate.validate,
}
HANDLERS: dict[str, Callable] = {
    Run.Kind.GENERATE: generate.handle,
}
