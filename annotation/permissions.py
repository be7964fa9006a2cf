"""Who may do what: DRF permission classes for the three roles (see annotation/roles.py), and the
authentication backend that enforces the login lockout (django-axes, see config/settings.py).

tests/system/test_permission_matrix.py checks every route and method for every role against a table.
"""

from axes.backends import AxesStandaloneBackend
from rest_framework.permissions import SAFE_METHODS, BasePermission

from annotation import roles


class IsAnnotator(BasePermission):
    message = "Only annotators use the queue."

    def has_permission(self, request, view):
        return roles.is_annotator(request.user)


class IsReviewer(BasePermission):
    """Reviewers and admins."""

    message = "Only reviewers and admins may see this."

    def has_permission(self, request, view):
        return roles.is_reviewer(request.user)


class IsAdminRole(BasePermission):
    message = "Only admins may do this."

    def has_permission(self, request, view):
        return roles.is_admin(request.user)


class ReviewerReadAdminWrite(BasePermission):
    """Reviewers (and admins) read; only admins write."""

    message = "Reviewers may read this; only admins may change it."

    def has_permission(self, request, view):
        if request.method in SAFE_METHODS:
            return roles.is_reviewer(request.user)
        return roles.is_admin(request.user)


class AuthenticatedReadAdminWrite(BasePermission):
    """Any signed-in user reads (the taxonomy); only admins write."""

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or roles.is_admin(request.user)


class LoginLockoutBackend(AxesStandaloneBackend):
    """django-axes' lockout check, first of ``AUTHENTICATION_BACKENDS``.

    Every sign-in from outside comes with its request (the login page, the Django admin, the
    token endpoint) and is checked: a locked-out username + address is refused before any
    password is compared. A call without a request (``Client.login`` in tests, a shell) has no
    client address to count against, and axes cannot record its failures either, so it is left
    to the next backend instead of failing with axes' "request required" error.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
