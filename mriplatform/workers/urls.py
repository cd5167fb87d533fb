from django.urls import path

from mriplatform.workers import views

app_name = "workers"

urlpatterns = [
    path("", views.status_page, name="status"),
    path("status.json", views.status_json, name="status-json"),
]
