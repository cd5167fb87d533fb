"""URL patterns of the statistician's pages (names join the ``studies`` namespace)."""

from django.urls import path

from studies.views import analysis, planning

urlpatterns = [
    path("<int:pk>/plan/", planning.study_plan, name="plan"),
    path("<int:pk>/plan/<int:plan_pk>.pdf", planning.plan_pdf, name="plan-pdf"),
    path("analysis/", analysis.index, name="analysis-index"),
    path("<int:pk>/analysis/", analysis.study_analysis, name="analysis-study"),
    path("analysis/runs/<int:pk>/", analysis.run_detail, name="analysis-run"),
    path("analysis/runs/<int:pk>/status/", analysis.run_status, name="analysis-run-status"),
    path("analysis/runs/<int:pk>/again/", analysis.run_again, name="analysis-run-again"),
    path(
        "analysis/runs/<int:pk>/<str:name>",
        analysis.run_download,
        name="analysis-run-download",
    ),
]
