from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "mriplatform.accounts"
    label = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from mriplatform.accounts import roles, signals  # noqa: F401  (connects receivers)

        post_migrate.connect(roles.sync_role_groups, dispatch_uid="accounts.sync_role_groups")
