"""Study pages: design (see studies/urls_design.py)."""
