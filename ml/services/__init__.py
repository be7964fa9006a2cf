"""Django-side services of the ML jobs: the model registry and the runs (see ml/models.py)."""
