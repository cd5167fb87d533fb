"""URL patterns of the coordinator's study design pages (names join the ``studies``
namespace)."""

from django.urls import path

from studies.views import design as views

urlpatterns = [
    path("", views.study_list, name="list"),
    path("new/", views.study_create, name="create"),
    path("<int:pk>/", views.study_detail, name="detail"),
    path("<int:pk>/settings/", views.study_edit, name="edit"),
    path("<int:pk>/arms/", views.arm_add, name="arm-add"),
    path("<int:pk>/arms/<int:arm_pk>/remove/", views.arm_remove, name="arm-remove"),
    path("<int:pk>/reference-arm/", views.reference_arm, name="reference-arm"),
    path("<int:pk>/cases/", views.case_add, name="case-add"),
    path("<int:pk>/cases/<int:case_pk>/remove/", views.case_remove, name="case-remove"),
    path("<int:pk>/readers/", views.reader_add, name="reader-add"),
    path("<int:pk>/readers/<int:user_pk>/remove/", views.reader_remove, name="reader-remove"),
    path("<int:pk>/panel/", views.panel_add, name="panel-add"),
    path(
        "<int:pk>/panel/<int:user_pk>/<slug:part>/remove/",
        views.panel_remove,
        name="panel-remove",
    ),
    path("<int:pk>/questions/template/", views.template_apply, name="template-apply"),
    path("<int:pk>/questions/new/", views.question_edit, name="question-add"),
    path("<int:pk>/questions/<int:question_pk>/", views.question_edit, name="question-edit"),
    path(
        "<int:pk>/questions/<int:question_pk>/delete/",
        views.question_delete,
        name="question-delete",
    ),
    path("<int:pk>/open/", views.study_open, name="open"),
    path(
        "<int:pk>/sessions/<int:session_pk>/release/",
        views.session_release,
        name="session-release",
    ),
    path("<int:pk>/close/", views.study_close, name="close"),
]
