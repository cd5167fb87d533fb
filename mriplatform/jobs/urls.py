from django.urls import path

from mriplatform.jobs import views

app_name = "jobs"

urlpatterns = [
    path("", views.job_list, name="list"),
    path("status.json", views.job_status_json, name="status-json"),
    path("submit/", views.submit, name="submit"),
    path("<int:pk>/", views.job_detail, name="detail"),
    path("<int:pk>/retry/", views.retry, name="retry"),
]
