"""Study pages: reading (see studies/urls_reading.py)."""
