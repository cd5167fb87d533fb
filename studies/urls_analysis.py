"""URL patterns for the analysis pages of reader studies."""

urlpatterns: list = []
