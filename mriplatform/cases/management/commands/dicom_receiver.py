"""Run the DICOM C-STORE receiver (a service of its own in docker-compose)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from mriplatform.accounts.models import Institution
from mriplatform.cases.receiver import Receiver


class Command(BaseCommand):
    help = "Receive MR studies over DICOM (C-STORE SCP) into de-identified cases."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=11112)
        parser.add_argument("--host", default="0.0.0.0")
        parser.add_argument("--ae-title", default="RECONTRIAL")
        parser.add_argument(
            "--institution", required=True, help="code of the site the received cases belong to"
        )
        parser.add_argument(
            "--allow-aet",
            action="append",
            default=[],
            help="calling AE title allowed to send (repeat; default: the DICOM_ALLOWED_AETS "
            "setting, comma-separated)",
        )
        parser.add_argument(
            "--allow-host",
            action="append",
            default=[],
            help="sender IP address allowed (repeat; default: the DICOM_ALLOWED_HOSTS setting)",
        )

    def handle(self, *args, **options):
        try:
            institution = Institution.objects.get(code=options["institution"])
        except Institution.DoesNotExist:
            raise CommandError(f"no institution with code {options['institution']!r}") from None
        aets = options["allow_aet"] or settings.DICOM_ALLOWED_AETS
        hosts = options["allow_host"] or settings.DICOM_ALLOWED_HOSTS
        if not aets and not hosts:
            self.stderr.write(
                "WARNING: no --allow-aet/--allow-host: any DICOM node that can reach this "
                "port may send studies"
            )
        receiver = Receiver(institution, allowed_aets=aets, allowed_hosts=hosts)
        ae = receiver.application_entity(options["ae_title"])
        self.stdout.write(
            f"DICOM receiver {options['ae_title']} listening on "
            f"{options['host']}:{options['port']} for {institution}"
        )
        ae.start_server(
            (options["host"], options["port"]), block=True, evt_handlers=receiver.handlers()
        )
