"""Create the demo site, its users (one per role) and whatever demo data the apps provide."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from mriplatform.accounts.models import Institution, User
from mriplatform.accounts.roles import Role, assign_role

# username -> (roles, is_superuser). Passwords are "<username>-demo-pass": printed by
# the demo script; a demo is not a deployment.
DEMO_USERS: dict[str, tuple[tuple[str, ...], bool]] = {
    "admin": ((Role.SITE_ADMIN,), True),
    "coordinator": ((Role.COORDINATOR,), False),
    "reader1": ((Role.READER,), False),
    "reader2": ((Role.READER,), False),
    "statistician": ((Role.STATISTICIAN,), False),
}


def demo_password(username: str) -> str:
    return f"{username}-demo-pass"


class Command(BaseCommand):
    help = "Create demo users (one per role) and demo data. Refuses to run in production."

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-data",
            action="store_true",
            help="only the users: no demo cases, protocols or jobs",
        )
        parser.add_argument("--slices", type=int, default=8, help="slices per demo case")

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            self.stderr.write("setup_demo refuses to run with DJANGO_ENV=production")
            raise SystemExit(2)
        with transaction.atomic():
            site, _ = Institution.objects.get_or_create(
                code="demo", defaults={"name": "Demo University Hospital", "country": "—"}
            )
            for username, (roles, superuser) in DEMO_USERS.items():
                user, created = User.objects.get_or_create(
                    username=username, defaults={"institution": site, "email": ""}
                )
                if created:
                    user.set_password(demo_password(username))
                    user.is_superuser = superuser
                    user.is_staff = superuser
                    user.save()
                for role in roles:
                    assign_role(user, role)
        if not options["no_data"]:
            self._demo_data(site, User.objects.get(username="admin"), options["slices"])
        for username, (roles, _) in DEMO_USERS.items():
            self.stdout.write(
                f"  {username:<13} password {demo_password(username):<26} "
                f"({', '.join(Role(r).label for r in roles)})"
            )

    def _demo_data(self, site, admin, n_slices: int) -> None:
        """Demo cases, one protocol per classical method, and their jobs on the worker."""
        from mriplatform.cases.demo import create_demo_cases
        from mriplatform.jobs.services import submit_jobs
        from mriplatform.protocols.demo import create_demo_protocols
        from studies.demo import KNEE_ARMS, create_demo_studies

        cases = create_demo_cases(site, admin, n_slices=n_slices)
        protocols = create_demo_protocols(admin)
        raw = [s for case in cases for s in case.series.all() if s.is_raw]
        # The demo reader study's reconstructions first (their own, earlier messages on the
        # FIFO recon queue), so that the study opens before the other methods are done.
        study_arms = [p for p in protocols if p.name in KNEE_ARMS]
        created, _ = submit_jobs(raw, study_arms, admin)
        more, _ = submit_jobs(raw, [p for p in protocols if p not in study_arms], admin)
        self.stderr.write(
            f"demo data: {len(cases)} cases, {len(protocols)} protocols, "
            f"{len(created) + len(more)} new reconstruction jobs queued "
            f"(the {len(created)} of the demo reader study first)"
        )

        studies = create_demo_studies(site, cases)
        self.stderr.write(
            "demo studies: "
            + "; ".join(f"{s.title} ({s.get_status_display().lower()})" for s in studies)
            + " (the knee study opens once its reconstructions are done)"
        )
