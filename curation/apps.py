from django.apps import AppConfig


class CurationConfig(AppConfig):
    name = "curation"
    verbose_name = "Curation"

    def ready(self):
        from curation import receivers  # noqa: F401  (connects the signal receivers)
