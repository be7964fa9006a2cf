"""DRF permission classes for the three roles (see annotation/roles.py)."""

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
