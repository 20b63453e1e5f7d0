"""Query parameters and response shapes of the audit-trail API (``compliance.api``)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from gateway.analytics.serializers import InstantField, choice

DEFAULT_PAGE = 50
MAX_PAGE = 500
FORMATS = ("json", "csv", "jsonl")


@extend_schema_field(
    {"type": "string", "description": "The `next` link's cursor, from the previous page."}
)
class SequenceCursorField(serializers.Field):
    """An opaque cursor: the sequence of the last event of the previous page."""

    default_error_messages = {"invalid": "cursor is not valid; follow the previous page's next."}

    @staticmethod
    def encode(sequence: int) -> str:
        return base64.urlsafe_b64encode(f"seq:{sequence}".encode()).decode().rstrip("=")

    def to_internal_value(self, data: Any) -> int:
        text = str(data)
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        except (binascii.Error, ValueError):
            self.fail("invalid")
        prefix, _, number = raw.partition(":")
        if prefix != "seq" or not number.isdigit() or len(number) > 19:
            self.fail("invalid")
        return int(number)

    def to_representation(self, value: Any) -> str:
        return str(value)


class AuditTrailQuery(serializers.Serializer):
    start = InstantField(required=False, help_text="Recorded at or after (inclusive).")
    end = InstantField(
        end=True,
        required=False,
        help_text="Recorded before: a date-time is exclusive, a date inclusive.",
    )
    action = serializers.CharField(
        required=False,
        max_length=65,
        help_text="An action (`auth.login`), or a prefix ending in `*` (`auth.*`).",
    )
    actor = serializers.CharField(
        required=False,
        max_length=254,
        help_text="Who: an email address, or an API key as `api_key:sk-aqta-…abcd` (any case).",
    )
    target = serializers.CharField(
        required=False, max_length=200, help_text="What it was done to (an id, an email…)."
    )
    limit = serializers.IntegerField(min_value=1, max_value=MAX_PAGE, default=DEFAULT_PAGE)
    cursor = SequenceCursorField(required=False)
    verify = serializers.BooleanField(
        default=False,
        help_text="Also walk the chains (audit, and receipts if any) and their signed "
        "checkpoints, and report the first break.",
    )
    format = choice(list(FORMATS), default="json")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("start"), attrs.get("end")
        if start is not None and end is not None and start >= end:
            raise serializers.ValidationError({"start": "start must be before end."})
        return attrs


# Some response fields share a name with a Serializer attribute (`data`): the names are
# the API's (see gateway.analytics.serializers), hence the ignores marked "field".


@extend_schema_serializer(component_name="AuditEvent")
class AuditEventOutput(serializers.Serializer):
    id = serializers.IntegerField()
    scope = serializers.CharField(help_text="The chain: the organisation's id.")
    sequence = serializers.IntegerField(help_text="Its place in the chain, from 1.")
    created_at = serializers.CharField(help_text="ISO 8601, as hashed.")
    action = serializers.CharField()
    actor = serializers.CharField(help_text="Email, `api_key:…`, `cli`, `retention`, or empty.")
    target = serializers.CharField()
    ip = serializers.CharField(allow_null=True)
    user_agent = serializers.CharField()
    data = serializers.JSONField()  # type: ignore[assignment]  # field
    prev_hash = serializers.CharField()
    hash = serializers.CharField(help_text="SHA-256 over prev_hash and the event (docs/audit.md).")


@extend_schema_serializer(component_name="ChainBreak")
class BreakOutput(serializers.Serializer):
    sequence = serializers.IntegerField(allow_null=True)
    event_id = serializers.IntegerField(allow_null=True, required=False)
    receipt_id = serializers.IntegerField(allow_null=True, required=False)
    reason = serializers.CharField()


@extend_schema_serializer(component_name="ChainCheckpointSummary")
class CheckpointOutput(serializers.Serializer):
    length = serializers.IntegerField()
    last_hash = serializers.CharField()
    signed_at = serializers.DateTimeField()
    key_id = serializers.CharField()
    document = serializers.CharField(help_text="The signed checkpoint (RFC 8785 JSON).")


@extend_schema_serializer(component_name="ChainReport")
class ChainReportOutput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["audit", "receipts"])
    scope = serializers.CharField()
    valid = serializers.BooleanField()
    length = serializers.IntegerField()
    checked = serializers.IntegerField()
    first_break = BreakOutput(allow_null=True)
    breaks = BreakOutput(many=True)
    checkpoint = CheckpointOutput(allow_null=True, help_text="The newest signed checkpoint.")


@extend_schema_serializer(component_name="AuditVerification")
class VerificationOutput(serializers.Serializer):
    valid = serializers.BooleanField()
    chains = ChainReportOutput(many=True)


@extend_schema_serializer(component_name="AuditTrail")
class AuditTrailOutput(serializers.Serializer):
    object = serializers.CharField(default="audit_trail")
    data = AuditEventOutput(many=True, help_text="This page, newest first.")  # type: ignore[assignment]  # field
    has_more = serializers.BooleanField()
    next = serializers.URLField(allow_null=True, help_text="The next page, or null.")
    verification = VerificationOutput(required=False, help_text="With `verify=true`.")
