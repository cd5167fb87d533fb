from django.urls import path

from mriplatform.protocols import views

app_name = "protocols"

urlpatterns = [
    path("", views.protocol_list, name="list"),
    path("new/", views.protocol_create, name="create"),
    path("method-fields/", views.method_fields, name="method-fields"),
    path("models/", views.external_models, name="models"),
    path("<int:pk>/", views.protocol_detail, name="detail"),
    path("<int:pk>/edit/", views.protocol_edit, name="edit"),
]
