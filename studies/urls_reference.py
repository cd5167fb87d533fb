"""URL patterns of a study's reference standard, under /studies/<pk>/reference/ (names join
the ``studies`` namespace)."""

from django.urls import path

from studies.views import reference as views

urlpatterns = [
    path("reference/", views.reference_list, name="reference_list"),
    path("<int:pk>/reference/", views.reference_status_view, name="reference"),
    path("<int:pk>/reference/import/", views.reference_import, name="reference_import"),
    path(
        "<int:pk>/reference/import/template.csv",
        views.reference_template,
        name="reference_template",
    ),
    path(
        "<int:pk>/reference/cases/<int:case_pk>/read/",
        views.reference_read,
        name="reference_read",
    ),
    path(
        "<int:pk>/reference/cases/<int:case_pk>/consensus/",
        views.reference_consensus,
        name="reference_consensus",
    ),
    path("<int:pk>/reference/adjudicate/", views.adjudication_queue, name="adjudicate"),
    path(
        "<int:pk>/reference/adjudicate/<int:case_pk>/<slug:key>/",
        views.adjudicate_cell,
        name="adjudicate_cell",
    ),
]
