"""URL patterns of the reader's pages under /read/ (namespace ``reading``)."""

app_name = "reading"

urlpatterns: list = []
