from django.apps import AppConfig


class HealthcareConfig(AppConfig):
    name = "healthcare"

    def ready(self) -> None:
        from healthcare import checks  # noqa: F401  (registers the deploy check)
