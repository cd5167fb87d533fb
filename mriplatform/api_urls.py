"""REST API routes (DRF); the OpenAPI schema is served at /api/schema/."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from mriplatform.cases.api import CaseViewSet, SeriesViewSet
from mriplatform.jobs.api import ReconJobViewSet
from mriplatform.protocols.api import ProtocolViewSet, methods
from studies.api import StudyReadsCsvView, StudyReadsView

router = DefaultRouter()
router.register("cases", CaseViewSet, basename="case")
router.register("series", SeriesViewSet, basename="series")
router.register("protocols", ProtocolViewSet, basename="protocol")
router.register("jobs", ReconJobViewSet, basename="job")

urlpatterns = [
    path("methods/", methods, name="methods"),
    path("studies/<int:pk>/reads/", StudyReadsView.as_view(), name="study-reads"),
    path("studies/<int:pk>/reads.csv", StudyReadsCsvView.as_view(), name="study-reads-csv"),
    path("", include(router.urls)),
]
