"""The fidelity lab on the platform: fidelity runs (protocols x cases x lesion sizes) on
Celery and their report for coordinators and site administrators (never readers)."""
