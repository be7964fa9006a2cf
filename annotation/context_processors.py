from annotation import roles


def user_roles(request):
    """The signed-in user's roles for the nav in base.html, on every page (403 pages included)."""
    return {"roles": sorted(roles.roles_of(getattr(request, "user", None)))}
