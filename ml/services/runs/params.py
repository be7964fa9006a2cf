"""Run parameter schemas: typed fields with defaults and bounds, and the shared clean-up helpers.

Every kind's ``validate(params) -> (cleaned, input_model)`` builds on these: unknown keys are
refused, defaults filled in, and every problem is reported at once in :class:`RunParamsError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ml.models import ModelVersion

REQUIRED = object()


class RunParamsError(ValueError):
    """Invalid run parameters; ``errors`` maps each parameter to its message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


@dataclass(frozen=True)
class Int:
    default: int | None
    minimum: int
    maximum: int

    def clean(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"must be between {self.minimum} and {self.maximum}")
        return value


@dataclass(frozen=True)
class Float:
    default: float | None
    minimum: float
    maximum: float

    def clean(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a number")
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"must be between {self.minimum} and {self.maximum}")
        return float(value)


@dataclass(frozen=True)
class Bool:
    default: bool | None  # None: the recipe's

    def clean(self, value):
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value


@dataclass(frozen=True)
class Choice:
    default: str | None  # None: the recipe's
    choices: tuple[str, ...]

    def clean(self, value):
        if value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}")
        return value


@dataclass(frozen=True)
class Ref:
    """A parameter that names something in the database (forms render it as a select).

    ``to`` is ``model`` (a registered ModelVersion of ``model_kinds``), ``dataset_version`` or
    ``tuples`` (a list of tuple ids, or ``{"task": CODE, "limit": N}``).
    """

    to: str
    required: bool = True
    model_kinds: tuple[str, ...] = ()
    help: str = ""


def describe(schema: dict, refs: dict) -> list[dict]:
    """A JSON-able description of a kind's parameters, for forms and the API."""
    fields = [
        {"name": name, "ref": ref.to, "required": ref.required, "model_kinds": list(ref.model_kinds), "help": ref.help}
        for name, ref in refs.items()
    ]
    for name, spec in schema.items():
        field = {"name": name, "type": type(spec).__name__.lower(), "default": spec.default}
        if hasattr(spec, "minimum"):
            field.update(minimum=spec.minimum, maximum=spec.maximum)
        if hasattr(spec, "choices"):
            field["choices"] = list(spec.choices)
        fields.append(field)
    return fields


def clean_fields(params: dict, schema: dict, errors: dict) -> dict:
    """Each schema field from ``params`` (or its default), cleaned; problems go into ``errors``."""
    cleaned = {}
    for name, spec in schema.items():
        value = params.get(name, spec.default)
        try:
            cleaned[name] = spec.clean(value)
        except ValueError as exc:
            errors[name] = str(exc)
    return cleaned


def refuse_unknown(params: dict, allowed, errors: dict) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        errors["params"] = f"unknown parameters: {', '.join(unknown)}"


def clean_model(
    params: dict, name: str, kinds: tuple[str, ...], errors: dict, *, required: bool = True
) -> ModelVersion | None:
    """A registered model id of one of ``kinds`` under ``params[name]`` (None when optional and absent)."""
    value = params.get(name, REQUIRED)
    if value is REQUIRED or value is None:
        if required:
            errors[name] = f"required: a registered {' or '.join(kinds)} id"
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        errors[name] = f"must be a registered {' or '.join(kinds)} id"
        return None
    model = ModelVersion.objects.filter(pk=value).first()
    if model is None:
        errors[name] = f"no registered model {value}"
    elif model.kind not in kinds:
        errors[name] = f"model {value} is a {model.kind}, not a {' or '.join(kinds)}"
        return None
    return model


def clean_dataset_version(params: dict, errors: dict, name: str = "dataset_version"):
    """A frozen dataset version id under ``params[name]``."""
    from curation.models import DatasetVersion

    value = params.get(name, REQUIRED)
    if value is REQUIRED or value is None:
        errors[name] = "required: a dataset version id"
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        errors[name] = "must be a dataset version id"
        return None
    version = DatasetVersion.objects.filter(pk=value).first()
    if version is None:
        errors[name] = f"no dataset version {value}"
    return version
