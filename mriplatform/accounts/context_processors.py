"""Template context: the current user's roles, for showing the right navigation."""

from mriplatform.accounts.roles import Role


def roles(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"user_roles": set()}
    names = set(user.role_names)
    if user.is_superuser:
        names = {r.value for r in Role}
    return {"user_roles": names}
