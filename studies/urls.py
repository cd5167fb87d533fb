"""Study URLs under /studies/: design (coordinators), reference standard, analysis.

The reader's pages live under /read/ (``studies.urls_reading``, namespace ``reading``) so
that nothing in a reader's URLs names a study, case or arm.
"""

from django.urls import include, path

app_name = "studies"

urlpatterns = [
    path("", include("studies.urls_design")),
    path("", include("studies.urls_reference")),
    path("", include("studies.urls_analysis")),
]
