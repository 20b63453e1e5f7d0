from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ComplianceConfig(AppConfig):
    name = "compliance"
    default = True

    def ready(self) -> None:
        from compliance import checks  # noqa: F401  (registers the deploy check)


class AuditedAdminConfig(admin_apps.AdminConfig):
    """``django.contrib.admin`` with a site that audits every change (compliance.admin_audit)."""

    default = False
    default_site = "compliance.admin_audit.AuditedAdminSite"
