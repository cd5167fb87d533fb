from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from mriplatform.cases.models import Case
from mriplatform.cases.permissions import manageable_cases, visible_cases, visible_series
from mriplatform.cases.serializers import (
    CaseSerializer,
    SeriesSerializer,
    UploadSerializer,
    validated_description,
)
from mriplatform.cases.services import IngestError, create_case_with_series, ingest_files
from mriplatform.protocols.api import HasRole


def _files(request) -> list:
    files = request.FILES.getlist("files")
    if not files:
        raise ValidationError({"files": ["send one or more files in the 'files' field"]})
    total = sum(f.size for f in files)
    if total > settings.MAX_UPLOAD_BYTES:
        raise ValidationError({"files": [f"upload exceeds {settings.MAX_UPLOAD_BYTES} bytes"]})
    return files


class CaseViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Cases. POST (multipart: case fields + files) creates a case with its first series;
    POST /{id}/series/ adds a series. Uploads are validated and de-identified first."""

    serializer_class = CaseSerializer
    permission_classes = [HasRole]
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def get_queryset(self):
        return visible_cases(self.request.user).prefetch_related("series")

    @extend_schema(request={"multipart/form-data": CaseSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        institution = request.user.institution
        if institution is None:
            raise PermissionDenied("your account belongs to no site")
        code = serializer.validated_data["subject_code"]
        if Case.objects.filter(institution=institution, subject_code=code).exists():
            raise ValidationError({"subject_code": ["this site already has that subject code"]})
        description = validated_description(request.data)
        try:
            case = create_case_with_series(
                dict(serializer.validated_data),
                institution,
                _files(request),
                request.user,
                description,
                request=request,
            )
        except IngestError as exc:
            raise ValidationError({"files": [str(exc)]}) from None
        return Response(self.get_serializer(case).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request={"multipart/form-data": UploadSerializer}, responses={201: SeriesSerializer}
    )
    @action(detail=True, methods=["post"], url_path="series")
    def upload_series(self, request, pk=None):
        case = self.get_object()
        if not manageable_cases(request.user).filter(pk=case.pk).exists():
            raise PermissionDenied("only the case's site administrators can add series")
        description = validated_description(request.data)
        try:
            series = ingest_files(case, _files(request), request.user, description, request=request)
        except IngestError as exc:
            raise ValidationError({"files": [str(exc)]}) from None
        return Response(SeriesSerializer(series).data, status=status.HTTP_201_CREATED)


class SeriesViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = SeriesSerializer
    permission_classes = [HasRole]
    lookup_field = "uuid"

    def get_queryset(self):
        return visible_series(self.request.user)
