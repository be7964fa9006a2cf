"""``POST /api/auth/token/``: DRF's token view, with usernames as long as the user model allows.

DRF's ``AuthTokenSerializer`` takes a username of any length and passes it to ``authenticate``; on a failure
django-axes records it in a 255-character column, so a longer username was a 500 (``DataError``, found by
tests/test_api_fuzz.py). The login form refuses such usernames itself (``AuthenticationForm`` uses the
model's ``max_length``); this serializer does the same, a 400 before anything is authenticated.

A locked-out user (django-axes: too many failures for this username and address) gets 429 with code
``locked_out`` and ``Retry-After``, as the login page answers 429. Axes marks the request it was given
during ``authenticate``; here that is DRF's request, which its middleware never sees, so without this
view's check the lockout was a plain 400 "Unable to log in".
"""

from __future__ import annotations

from axes.helpers import get_cool_off
from django.contrib.auth import get_user_model
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import parsers, serializers, status
from rest_framework.authtoken import serializers as drf_token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from annotation import input_guard
from annotation.openapi import ErrorSerializer

USERNAME_MAX_LENGTH = get_user_model()._meta.get_field(get_user_model().USERNAME_FIELD).max_length


class AuthTokenSerializer(drf_token.AuthTokenSerializer):  # same name: the schema keeps AuthTokenRequest
    username = serializers.CharField(label="Username", write_only=True, max_length=USERNAME_MAX_LENGTH)


class ObtainTokenView(ObtainAuthToken):
    serializer_class = AuthTokenSerializer
    # DRF's view names its own parsers; these are the API's (annotation/input_guard.py bounds JSON bodies)
    parser_classes = [input_guard.JSONParser, parsers.FormParser, parsers.MultiPartParser]

    @extend_schema(
        responses={
            200: AuthTokenSerializer,
            429: OpenApiResponse(
                ErrorSerializer,
                description="Locked out after too many failed sign-ins (code locked_out; see Retry-After).",
            ),
        }
    )
    def post(self, request, *args, **kwargs):
        try:
            return super().post(request, *args, **kwargs)
        except ValidationError:
            if not getattr(request, "axes_locked_out", False):
                raise
        cool_off = get_cool_off(request)
        headers = {"Retry-After": str(int(cool_off.total_seconds()))} if cool_off else {}
        return Response(
            {
                "detail": "Too many failed sign-ins: this account is locked here for now; try again later "
                "or ask an admin to unlock it.",
                "code": "locked_out",
            },
            status=status.HTTP_429_TOO_MANY_REQUESTS,
            headers=headers,
        )
