"""API token authentication in one statement.

DRF's :class:`~rest_framework.authentication.TokenAuthentication` reads the token and then its user, and the
permission check that follows reads the user's roles: three queries in front of every annotator request, a
good share of the queue's cost (docs/benchmarks/queue.md). This subclass reads the token, the user and
their roles with one statement (:data:`annotation.services.queue_sql.TOKEN_USER`) and hands the roles to
:mod:`annotation.roles`, so permission checks need no query. Every refusal is DRF's own (same messages,
same 401 with ``WWW-Authenticate: Token``): only ``authenticate_credentials`` is replaced.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from annotation import roles
from annotation.services import queue_sql


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key):
        found = queue_sql.token_user(key, roles.ROLES)
        if found is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token, held = found
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        roles.remember(token.user, {role for role, has in zip(roles.ROLES, held, strict=True) if has})
        return token.user, token
