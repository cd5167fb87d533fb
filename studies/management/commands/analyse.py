"""``manage.py analyse STUDY``: the statistician's report of a closed study, written
synchronously (the same files the web run writes: report.html, report.pdf, reads.csv,
parameters.json, results.json, bundle.zip)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from mriplatform.audit.services import record
from studies import analysis_service, report
from studies.models import Study
from studies.services import StudyError


class Command(BaseCommand):
    help = "Analyse a study closed for analysis and write its report, CSV and bundle."

    def add_arguments(self, parser) -> None:
        parser.add_argument("study", type=int, help="primary key of the study")
        parser.add_argument(
            "--output", type=Path, help="folder to write into (default: ./analysis-study-<pk>)"
        )
        parser.add_argument(
            "--analyses",
            nargs="+",
            choices=list(report.ANALYSES),
            help="analyses to run (default: all)",
        )
        parser.add_argument("--seed", type=int, help="bootstrap seed (default: the study's seed)")
        parser.add_argument("--n-boot", type=int, help="bootstrap resamples (default: 2000)")
        parser.add_argument("--reference", help="reference arm label (default: the study's)")
        parser.add_argument("--margin", type=float, help="interchangeability margin")

    def handle(self, *args, **options) -> None:
        try:
            study = Study.objects.get(pk=options["study"])
        except Study.DoesNotExist as exc:
            raise CommandError(f"no study with id {options['study']}") from exc
        requested = {
            "analyses": options["analyses"],
            "seed": options["seed"],
            "n_boot": options["n_boot"],
            "reference": options["reference"],
            "margin": options["margin"],
        }
        out = options["output"] or Path(f"analysis-study-{study.pk}")
        try:
            params = analysis_service.analysis_parameters(study, requested)
            results = analysis_service.write_study_report(
                study, params, out, lambda f, m: self.stderr.write(f"{100 * f:5.1f}% {m}")
            )
        except (StudyError, report.ReportError) as exc:
            raise CommandError(str(exc)) from exc
        details = {"output": str(out), "analyses": params["analyses"], "seed": params["seed"]}
        record(None, "study.analysis.command", study, details=details)
        for name, section in results["analyses"].items():
            reason = f" ({section['reason']})" if section["status"] == "skipped" else ""
            self.stdout.write(f"{name}: {section['status']}{reason}")
        self.stdout.write(self.style.SUCCESS(f"report written to {out.resolve()}"))
