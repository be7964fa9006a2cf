"""Query parameters of the list endpoints: reading them (a bad value answers 400 naming the parameter) and
describing them in the OpenAPI schema. Used by every app's API (annotation, curation, ml)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import ValidationError


def int_param(request, name: str) -> int | None:
    """The query parameter ``name`` as an integer id; ``None`` when absent or empty."""
    value = request.query_params.get(name, "")
    if not value:
        return None
    if not value.isdigit():
        raise ValidationError({name: f"{name} is an integer id, not {value!r}."})
    return int(value)


def choice_param(request, name: str, choices: list[str]) -> str | None:
    """The query parameter ``name``, one of ``choices``; ``None`` when absent or empty."""
    value = request.query_params.get(name, "")
    if value and value not in choices:
        raise ValidationError({name: f"{name} is one of {', '.join(choices)}, not {value!r}."})
    return value or None


def openapi_param(name: str, description: str, type_=str) -> OpenApiParameter:
    """A query parameter as the OpenAPI schema documents it (``extend_schema(parameters=[...])``)."""
    return OpenApiParameter(name, type_, description=description)
