from django.urls import path

from mriplatform.cases import views

app_name = "cases"

urlpatterns = [
    path("", views.case_list, name="list"),
    path("new/", views.case_create, name="create"),
    path("<int:pk>/", views.case_detail, name="detail"),
    path("<int:pk>/upload/", views.series_upload, name="upload"),
    path("series/<uuid:uuid>/", views.series_view, name="series"),
    path("series/<uuid:uuid>/slice/<int:index>.png", views.series_slice_png, name="slice"),
]
