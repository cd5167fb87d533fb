"""Views of the studies app, one module per user journey."""
