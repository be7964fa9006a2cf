"""OpenAPI generation: the refusals every API operation can answer, documented once for all views.

drf-spectacular documents what a view declares. :class:`AutoSchema` (``DEFAULT_SCHEMA_CLASS``) adds the
refusals that DRF itself answers for any view, so that the schema lists every status code the API returns
(tests/system/test_api_fuzz.py checks every response against it):

* **401** and **403** for every operation that needs a signed-in user: 401 without credentials, 403 for a role
  that may not (or a session request without its CSRF token);
* **404** for operations with path parameters (no such object, or not yours) and for paginated lists (a page
  past the end);
* **400** for operations that take a request body or query parameters (the errors by field).

A code the view documents itself is left as the view wrote it. Refusals carry ``{"detail", "code"}``
(:class:`ErrorSerializer`); validation errors map each field to its messages.

:class:`OverlappingShapesSerializer` is a ``PolymorphicProxySerializer`` for alternative response shapes of
which one extends another (a reviewer's judgement has every field of an annotator's): ``anyOf``, because a body
of the larger shape matches both and would fail ``oneOf``.
"""

from __future__ import annotations

from drf_spectacular import openapi
from drf_spectacular.plumbing import build_basic_type, build_media_type_object
from drf_spectacular.serializers import PolymorphicProxySerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, for people.")
    code = serializers.CharField(required=False, help_text="A stable code for programs (e.g. not_found, paused).")


_VALIDATION = OpenApiResponse(
    OpenApiTypes.OBJECT, description="Invalid input: each field (or non_field_errors, or detail) with its messages."
)
_UNAUTHENTICATED = OpenApiResponse(ErrorSerializer, description="No valid credentials.")
_FORBIDDEN = OpenApiResponse(ErrorSerializer, description="Your role may not do this.")
_NOT_FOUND = OpenApiResponse(ErrorSerializer, description="No such object (or not yours), or no such page.")


class AutoSchema(openapi.AutoSchema):
    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        parameters = operation.get("parameters", [])
        query = {p["name"] for p in parameters if p["in"] == "query"}
        refusals = {}
        if query or "requestBody" in operation:
            refusals["400"] = _VALIDATION
        if self._needs_sign_in():
            refusals["401"], refusals["403"] = _UNAUTHENTICATED, _FORBIDDEN
        if any(p["in"] == "path" for p in parameters) or "page" in query:
            refusals["404"] = _NOT_FOUND
        responses = operation["responses"]
        for code, response in refusals.items():
            if code not in responses:
                responses[code] = self._refusal(response)
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _needs_sign_in(self) -> bool:
        return any(not isinstance(permission, AllowAny) for permission in self.view.get_permissions())

    def _refusal(self, response: OpenApiResponse) -> dict:
        """The response object of a refusal, in every media type the view renders (public API only)."""
        if response.response is OpenApiTypes.OBJECT:
            schema = build_basic_type(OpenApiTypes.OBJECT)
        else:
            schema = self.resolve_serializer(response.response, "response").ref
        media_types = self.map_renderers("media_type")
        return {
            "content": {media_type: build_media_type_object(schema) for media_type in media_types},
            "description": response.description,
        }


class OverlappingShapesSerializer(PolymorphicProxySerializer):
    """Alternative shapes where a body of one shape may also match another: documented as ``anyOf``."""


class OverlappingShapesExtension(PolymorphicProxySerializerExtension):
    target_class = OverlappingShapesSerializer
    priority = 0  # before drf-spectacular's own extension for PolymorphicProxySerializer (-1)

    def map_serializer(self, auto_schema, direction):
        schema = super().map_serializer(auto_schema, direction)
        return {"anyOf": schema.pop("oneOf"), **schema}
