from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from mriplatform.cases.models import Series
from mriplatform.cases.permissions import manageable_cases, visible_cases
from mriplatform.jobs import lease, services
from mriplatform.jobs.models import ReconJob
from mriplatform.jobs.serializers import ReconJobSerializer, SubmitSerializer
from mriplatform.protocols.api import HasRole


class ReconJobViewSet(viewsets.ReadOnlyModelViewSet):
    """Reconstruction jobs with live progress. POST /submit/ queues series x protocols."""

    serializer_class = ReconJobSerializer
    permission_classes = [HasRole]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user, no reaping
            return ReconJob.objects.none()
        lease.reap_lost_jobs()  # running jobs whose worker was lost show as failed
        qs = ReconJob.objects.filter(input_series__case__in=visible_cases(self.request.user))
        status_filter = self.request.query_params.get("status")
        if status_filter:
            if status_filter not in ReconJob.Status.values:
                raise ValidationError({"status": [f"one of {', '.join(ReconJob.Status.values)}"]})
            qs = qs.filter(status=status_filter)
        return qs.select_related("input_series")

    @extend_schema(request=SubmitSerializer, responses={201: ReconJobSerializer(many=True)})
    @action(detail=False, methods=["post"])
    def submit(self, request):
        raw = Series.objects.filter(case__in=manageable_cases(request.user))
        serializer = SubmitSerializer(data=request.data, series_queryset=raw)
        serializer.is_valid(raise_exception=True)
        created, existing = services.submit_jobs(
            serializer.validated_data["series"],
            serializer.validated_data["protocols"],
            request.user,
            request=request,
        )
        return Response(
            {
                "created": ReconJobSerializer(created, many=True).data,
                "existing": ReconJobSerializer(existing, many=True).data,
            },
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(request=None, responses={202: ReconJobSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        job = self.get_object()
        if not manageable_cases(request.user).filter(pk=job.input_series.case_id).exists():
            return Response({"detail": "not your site's case"}, status=403)
        if not services.retry_job(job, request.user, request=request):
            return Response({"detail": "only failed jobs can be retried"}, status=409)
        job.refresh_from_db()
        return Response(ReconJobSerializer(job).data, status=202)
