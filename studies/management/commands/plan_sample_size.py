"""``manage.py plan_sample_size PILOT``: the readers x cases table for a new MRMC study from
a closed pilot study's finding questions (read-only: nothing is saved; the planning page
saves plans with a study)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from studies import analysis as sa
from studies import planning_service
from studies.models import Study


class Command(BaseCommand):
    help = "Print the sample-size table (Hillis-Obuchowski-Berbaum 2011) from a closed pilot."

    def add_arguments(self, parser) -> None:
        parser.add_argument("pilot", type=int, help="primary key of the closed pilot study")
        parser.add_argument("--question", help="finding question key (default: every one)")
        parser.add_argument("--effect", type=float, help="AUC difference (default: observed)")
        parser.add_argument("--power", type=float, default=0.8)
        parser.add_argument("--alpha", type=float, default=0.05)

    def handle(self, *args, **options) -> None:
        try:
            pilot = Study.objects.get(pk=options["pilot"], status=Study.Status.CLOSED)
        except Study.DoesNotExist as exc:
            raise CommandError(f"no closed study with id {options['pilot']}") from exc
        questions = planning_service.pilot_questions(pilot)
        if options["question"]:
            if options["question"] not in questions:
                raise CommandError(f"question must be one of {questions}")
            questions = [options["question"]]
        for question in questions:
            try:
                table = planning_service.pilot_roc_table(pilot, question)
                comp = sa.or_components_from_pilot(table)
                plan = planning_service.compute_plan(
                    comp, options["effect"], options["alpha"], options["power"]
                )
            except (planning_service.PlanningError, sa.AnalysisError) as exc:
                self.stdout.write(f"{question}: not computed ({exc})")
                continue
            self.stdout.write(
                f"{question}: AUC difference {plan['effect']:.4f}, {comp.source}; "
                f"cases for power {options['power']:g} at alpha {options['alpha']:g}"
            )
            self.stdout.write("  readers  cases RRRC (power)  cases FRRC (power)")
            for row in plan["rows"]:
                rrrc = "not reachable" if row["cases_rrrc"] is None else str(row["cases_rrrc"])
                frrc = "not reachable" if row["cases_frrc"] is None else str(row["cases_frrc"])
                self.stdout.write(
                    f"  {row['readers']:>7}  {rrrc:>10} ({row['power_rrrc']:.3f})"
                    f"  {frrc:>10} ({row['power_frrc']:.3f})"
                )
            for warning in plan["warnings"]:
                self.stdout.write(f"  warning: {warning}")
