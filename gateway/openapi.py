"""How /api's authentication classes appear in the OpenAPI schema (drf-spectacular).

Imported by the analytics API so the schema knows them wherever /api is documented; the
extensions describe ``accounts.authentication`` and would sit as well beside it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import build_bearer_security_scheme_object


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        scheme = build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix="Bearer", bearer_format="sk-aqta-…"
        )
        scheme["description"] = (
            "An API key of the organisation: `Authorization: Bearer sk-aqta-…` "
            "(the British `Authorisation:` header works too)."
        )
        return scheme


class DashboardSessionScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.SessionAuthentication"
    name = "sessionCookie"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": (
                "The dashboard session; writes also need the X-CSRFToken header. "
                "X-Aqta-Organization picks one of the user's organisations."
            ),
        }
