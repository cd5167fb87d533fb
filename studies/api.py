"""REST API of reader studies: the tidy reads of a closed study, as JSON and as CSV.

Who may export: statisticians of the study's site (:func:`studies.permissions.
analysable_studies`) and the study's coordinators, both only once the study is closed for
analysis (the export is unblinded: it names the arms' protocols). Other studies answer
404, a visible study that is not closed 409. Every export is audited.
"""

from __future__ import annotations

from django.db.models import Q
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from mriplatform.audit.services import record
from studies.export import tidy_csv, tidy_records
from studies.models import Study
from studies.permissions import analysable_studies, managed_studies
from studies.serializers import TidyReadSerializer

NOT_CLOSED = "the study is not closed for analysis: its reads cannot be exported yet"


def _exportable_study(request, pk: int) -> Study | Response:
    """The study if ``request.user`` may export it, else the 404 / 409 response."""
    user = request.user
    visible = Q(pk__in=analysable_studies(user).values("pk")) | Q(
        pk__in=managed_studies(user).values("pk")
    )
    study = Study.objects.filter(visible, pk=pk).first()
    if study is None:
        raise NotFound("no such study")
    if study.status != Study.Status.CLOSED:
        return Response({"detail": NOT_CLOSED}, status=409)
    return study


class _ReadsView(APIView):
    permission_classes = [permissions.IsAuthenticated]
    export_format = ""

    def _study(self, request, pk: int) -> Study | Response:
        study = _exportable_study(request, pk)
        if isinstance(study, Study):
            record(
                request.user,
                "study.export_reads",
                study,
                request=request,
                details={"format": self.export_format},
            )
        return study


class StudyReadsView(_ReadsView):
    export_format = "json"

    @extend_schema(
        operation_id="studies_reads_list",
        responses={
            200: TidyReadSerializer(many=True),
            404: OpenApiResponse(description="No such study, or not yours to analyse"),
            409: OpenApiResponse(description="The study is not closed for analysis"),
        },
    )
    def get(self, request, pk: int):
        """The tidy long-format reads of a closed study: one row per reader, read and
        question (the input of the statistics module)."""
        study = self._study(request, pk)
        if isinstance(study, Response):
            return study
        return Response(tidy_records(study))


class StudyReadsCsvView(_ReadsView):
    export_format = "csv"

    @extend_schema(
        operation_id="studies_reads_csv",
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            404: OpenApiResponse(description="No such study, or not yours to analyse"),
            409: OpenApiResponse(description="The study is not closed for analysis"),
        },
    )
    def get(self, request, pk: int):
        """The same tidy reads as a CSV download (``study-<id>-reads.csv``)."""
        study = self._study(request, pk)
        if isinstance(study, Response):
            return study
        response = HttpResponse(tidy_csv(study), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="study-{study.pk}-reads.csv"'
        return response
