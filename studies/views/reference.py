"""Study pages: reference (see studies/urls_reference.py)."""
