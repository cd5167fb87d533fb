"""Study pages: analysis (see studies/urls_analysis.py)."""
