"""Each run kind's parameter validator, handler and parameter description, in one table.

A kind module exposes ``validate(params) -> (cleaned, input_model)``, ``handle(run, ctx)``, and
``SCHEMA`` (typed fields with defaults) plus ``REFS`` (fields naming database objects), which
:func:`describe` turns into the form and API description of the kind.
"""

from __future__ import annotations

from collections.abc import Callable

from ml.models import ModelVersion, Run
from ml.services.runs import eval_judge, generate, generators, judge_pairs, params, scorers

MODULES = {
    Run.Kind.GENERATE: generate,
    **scorers.KINDS,
    **generators.KINDS,
    Run.Kind.EVAL_JUDGE: eval_judge,
    Run.Kind.JUDGE_PAIRS: judge_pairs,
}
VALIDATORS: dict[str, Callable[[dict], tuple[dict, ModelVersion | None]]] = {
    kind: module.validate for kind, module in MODULES.items()
}
HANDLERS: dict[str, Callable] = {kind: module.handle for kind, module in MODULES.items()}


def available() -> list[str]:
    """The kinds that can be started, in the order of ``Run.Kind``."""
    return [kind for kind in Run.Kind.values if kind in MODULES]


def describe(kind: str) -> list[dict]:
    """The parameters of ``kind``: references first, then typed fields with defaults and bounds."""
    module = MODULES[kind]
    return params.describe(module.SCHEMA, module.REFS)
