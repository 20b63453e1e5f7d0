from django.apps import AppConfig


class HealthcareConfig(AppConfig):
    name = "healthcare"

    def ready(self) -> None:
        # The high-risk rules' admin lives beside the rules' other modules.
        from healthcare import (
            checks,  # noqa: F401  (registers the deploy check)
            rules_admin,  # noqa: F401
        )
