"""URL patterns for the reference pages of reader studies."""

urlpatterns: list = []
