from django.urls import path

from fidelity import views

app_name = "fidelity"

urlpatterns = [
    path("", views.run_list, name="list"),
    path("known-truth-study/", views.known_truth_study, name="known-truth-study"),
    path("<int:pk>/", views.run_detail, name="detail"),
    path("<int:pk>/progress/", views.run_progress, name="progress"),
    path("<int:pk>/report.pdf", views.run_report_pdf, name="report-pdf"),
]
