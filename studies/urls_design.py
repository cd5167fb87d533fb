"""URL patterns for the design pages of reader studies."""

urlpatterns: list = []
