from django.apps import AppConfig


class HealthcareConfig(AppConfig):
    name = "healthcare"

    def ready(self) -> None:
        from healthcare import checks  # noqa: F401  (registers the deploy check)

        # The high-risk rules' admin lives beside the rules' other modules.
        from healthcare import rules_admin  # noqa: F401
