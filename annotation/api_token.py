"""``POST /api/auth/token/``: DRF's token view, with usernames as long as the user model allows.

DRF's ``AuthTokenSerializer`` takes a username of any length and passes it to ``authenticate``; on a failure
django-axes records it in a 255-character column, so a longer username was a 500 (``DataError``, found by
tests/test_api_fuzz.py). The login form refuses such usernames itself (``AuthenticationForm`` uses the
model's ``max_length``); this serializer does the same, a 400 before anything is authenticated.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers
from rest_framework.authtoken import serializers as drf_token
from rest_framework.authtoken.views import ObtainAuthToken

USERNAME_MAX_LENGTH = get_user_model()._meta.get_field(get_user_model().USERNAME_FIELD).max_length


class AuthTokenSerializer(drf_token.AuthTokenSerializer):  # same name: the schema keeps AuthTokenRequest
    username = serializers.CharField(label="Username", write_only=True, max_length=USERNAME_MAX_LENGTH)


class ObtainTokenView(ObtainAuthToken):
    serializer_class = AuthTokenSerializer
