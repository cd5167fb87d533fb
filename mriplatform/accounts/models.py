"""Users, their institution (site) and their roles."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models


class Institution(models.Model):
    """A site taking part in a trial (a hospital or research centre)."""

    name = models.CharField(max_length=200, unique=True)
    code = models.SlugField(
        max_length=32, unique=True, help_text="Short site code used in case identifiers."
    )
    country = models.CharField(max_length=100, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    """A platform user. Roles are Django groups (see :mod:`mriplatform.accounts.roles`)."""

    institution = models.ForeignKey(
        Institution, null=True, blank=True, on_delete=models.PROTECT, related_name="users"
    )

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"

    @property
    def role_names(self) -> list[str]:
        from mriplatform.accounts.roles import Role

        mine = set(self.groups.values_list("name", flat=True))
        return [role.value for role in Role if role.label in mine]

    def has_role(self, role: str) -> bool:
        from mriplatform.accounts.roles import Role

        return self.is_active and self.groups.filter(name=Role(role).label).exists()
