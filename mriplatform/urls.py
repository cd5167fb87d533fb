"""Top-level URL configuration."""

from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("", include("mriplatform.accounts.urls")),
    path("workers/", include("mriplatform.workers.urls")),
    path("cases/", include("mriplatform.cases.urls")),
    path("protocols/", include("mriplatform.protocols.urls")),
    path("jobs/", include("mriplatform.jobs.urls")),
    path("studies/", include("studies.urls")),
    path("read/", include("studies.urls_reading")),
    path("fidelity/", include("fidelity.urls")),
    path("api/", include(("mriplatform.api_urls", "api"))),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "api/docs/",
        login_required(SpectacularSwaggerView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
]

# The Django admin is for superusers only: it is not limited to one site and can grant
# roles, so site administrators work through the platform's own pages.
admin.site.has_permission = lambda request: request.user.is_active and request.user.is_superuser
admin.site.site_header = "ReconTrial administration"
admin.site.site_title = "ReconTrial"
