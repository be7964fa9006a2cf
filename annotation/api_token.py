"""``POST /api/auth/token/``: DRF's token view, with usernames as long as the user model allows.

DRF's ``AuthTokenSerializer`` takes a username of any length and passes it to ``authenticate``; on a failure
django-axes records it in a 255-character column, so a longer username was a 500 (``DataError``, found by
tests/system/test_api_fuzz.py). The login form refuses such usernames itself (``AuthenticationForm`` uses the
model's ``max_length``); this serializer does the same, a 400 before anything is authenticated.

A successful sign-in here is a sign-in as on the login page (Django's ``user_logged_in`` signal, which
django-axes listens to): it clears the failure count, so four wrong passwords, the right one and a wrong one
are not a lockout (before, the count only ever grew here and the right password was then refused too).

A locked-out user (django-axes: too many failures for this username and address) gets 429 with code
``locked_out`` and ``Retry-After``, as the login page answers 429. Axes marks the request it was given
during ``authenticate``; here that is DRF's request, which its middleware never sees, so without this
view's check the lockout was a plain 400 "Unable to log in".
"""

from __future__ import annotations

from axes.helpers import get_cool_off
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import parsers, serializers, status
from rest_framework.authtoken import serializers as drf_token
from rest_framework.authtoken.models import Token
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
                description="Locked out after too many failed sign-ins (code locked_out), or too many sign-in "
                "attempts from this address or overall (code rate_limited); see Retry-After.",
            ),
        }
    )
    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
        except ValidationError:
            if not getattr(request, "axes_locked_out", False):
                raise
        else:
            user = serializer.validated_data["user"]
            # A sign-in, as the login page's: its signal clears the failure count (AXES_RESET_ON_SUCCESS)
            # and records the time of the sign-in, so a success between failures starts the count again.
            user_logged_in.send(sender=type(user), request=request, user=user)
            token, _ = Token.objects.get_or_create(user=user)
            return Response({"token": token.key})
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
