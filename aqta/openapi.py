"""The error envelope as it appears in the OpenAPI schema, and the errors each /api
operation documents.

Every error body is ``{"error": {"message", "type", "code", "param"?, "retry_after"?}}``
(``aqta.errors``); operations list the statuses they can answer with it, so a client
generated from the schema knows them and schema-driven tests can hold the API to them.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_serializer
from rest_framework import serializers

JSON = "application/json"


@extend_schema_serializer(component_name="Error")
class ErrorOutput(serializers.Serializer):
    @extend_schema_serializer(component_name="ErrorBody")
    class Body(serializers.Serializer):
        message = serializers.CharField()
        type = serializers.CharField(help_text="OpenAI-style type, e.g. invalid_request_error.")
        code = serializers.CharField(help_text="Machine-readable, e.g. invalid_parameter.")
        param = serializers.CharField(
            required=False, help_text="The parameter at fault: name, a.b, or items[1]."
        )
        retry_after = serializers.IntegerField(
            required=False, help_text="Seconds to wait (429, 503); also the Retry-After header."
        )

    error = Body()


# What each status means across /api; an operation may say more of its own.
DESCRIPTIONS: dict[int, str] = {
    400: "Invalid input (`invalid_parameter` / `missing_parameter` naming `param`, "
    "`invalid_json`).",
    401: "No, or an invalid, API key or session (`not_authenticated`, `invalid_api_key`).",
    403: "Not allowed (`permission_denied`, `csrf_failed` for a session write without "
    "X-CSRFToken, `tier_feature_unavailable`).",
    404: "No such object in this organisation (`not_found`), also for another "
    "organisation's id or an X-Aqta-Organization the caller is not a member of.",
    409: "Conflict (`email_taken`).",
    413: "Request body too large (`request_too_large`).",
    415: "Unsupported content type (`unsupported_media_type`).",
    429: "Throttled (`rate_limit_exceeded`, with `retry_after`).",
    503: "A service Aqta depends on is unavailable (`service_unavailable`, with `retry_after`).",
}


def error_responses(*statuses: int, **descriptions: str) -> dict:
    """``{(status, JSON): OpenApiResponse(Error)}`` for ``statuses`` (plus 503 always);
    ``descriptions`` override by status, e.g. ``s401="..."``."""
    documented = dict.fromkeys((*statuses, 503))
    return {
        (status, JSON): OpenApiResponse(
            ErrorOutput, description=descriptions.get(f"s{status}", DESCRIPTIONS[status])
        )
        for status in documented
    }


ORGANIZATION_PARAMETER = OpenApiParameter(
    "X-Aqta-Organization",
    str,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "With the dashboard session: which of the user's organisations (its id). "
        "Ignored with an API key, which belongs to one."
    ),
)
