"""URL patterns of the reader's pages under /read/ (namespace ``reading``).

Only opaque aliases and image tokens appear: nothing names a study, case, arm or file."""

from django.urls import path

from studies.views import reading as views

app_name = "reading"

urlpatterns = [
    path("", views.worklist, name="worklist"),
    path("s/<str:token>/", views.series, name="series"),
    path("i/<str:token>/<int:index>/", views.image, name="image"),
    path("<str:alias>/", views.read, name="read"),
    path("<str:alias>/answers/", views.answers, name="answers"),
    path("<str:alias>/submit/", views.submit, name="submit"),
    path("<str:alias>/finish/", views.finish, name="finish"),
    path("<str:alias>/image-error/", views.image_error, name="image_error"),
]
