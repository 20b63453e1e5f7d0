"""Query parameters and response shapes of the receipts API (``healthcare.api``).

The signed receipt itself is never passed through a serializer: it is returned as the
stored text (``healthcare.renderers``), so that no number or character is re-written.
The shapes below describe it for the schema.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from gateway.analytics.serializers import CursorField, InstantField, TraceOutput, choice
from healthcare.models import Receipt, ReceiptOutcome
from healthcare.receipts import MAX_TEXT

DEFAULT_PAGE = 50
MAX_PAGE = 500
EXPORT_FORMATS = ("jsonl", "csv", "fhir")


# --- Query parameters -----------------------------------------------------------------------


@extend_schema_field(
    {"type": "string", "description": "The `next` link's cursor, from the previous page."}
)
class ReceiptCursorField(CursorField):
    """The analytics cursor's encoding, over a receipt's (issued_at, id)."""

    @staticmethod
    def encode(receipt: Receipt) -> str:  # type: ignore[override]  # a receipt, not a trace
        raw = f"{receipt.issued_at.isoformat()}|{receipt.pk}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def to_internal_value(self, data: Any) -> tuple[datetime, int]:  # type: ignore[override]
        try:
            text = str(data)
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            issued, receipt_id = raw.split("|")
            moment = datetime.fromisoformat(issued)
            number = int(receipt_id)
            if moment.tzinfo is None or not 0 < number < 2**63:
                raise ValueError(raw)
            return moment, number
        except ValueError:
            self.fail("invalid")


class ReceiptQuery(serializers.Serializer):
    """The filters every receipt read takes; none given: all of the organisation's."""

    start = InstantField(required=False, help_text="Issued at or after (inclusive).")
    end = InstantField(
        end=True,
        required=False,
        help_text="Issued before: a date-time is exclusive, a date inclusive.",
    )
    outcome = choice(list(ReceiptOutcome.values), required=False)
    model = serializers.CharField(required=False, max_length=MAX_TEXT)
    key = serializers.UUIDField(required=False, help_text="Only this API key's receipts.")
    high_risk = serializers.BooleanField(
        required=False, allow_null=True, help_text="true or false: only high-risk, or only not."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("start"), attrs.get("end")
        if start and end and start >= end:
            raise serializers.ValidationError({"start": "start must be before end."})
        return attrs


class ReceiptListQuery(ReceiptQuery):
    limit = serializers.IntegerField(min_value=1, max_value=MAX_PAGE, default=DEFAULT_PAGE)
    cursor = ReceiptCursorField(required=False)


class ExportQuery(ReceiptQuery):
    format = choice(
        list(EXPORT_FORMATS),
        default="jsonl",
        help_text="`jsonl`: one signed receipt per line; `csv`: a table with the chain "
        "fields; `fhir`: a FHIR R4 Bundle of AuditEvent resources.",
    )


# --- Responses ------------------------------------------------------------------------------


@extend_schema_serializer(component_name="ReceiptListItem")
class ReceiptItemOutput(serializers.ModelSerializer):
    api_key = serializers.UUIDField(source="api_key_id", allow_null=True)
    sequence = serializers.IntegerField(
        allow_null=True, help_text="Position in the organisation's receipt chain (from 1)."
    )

    class Meta:
        model = Receipt
        fields = [
            "id",
            "attestation_id",
            "trace_id",
            "outcome",
            "model",
            "api_key",
            "high_risk",
            "issued_at",
            "sequence",
        ]


@extend_schema_serializer(component_name="ReceiptList")
class ReceiptListOutput(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = ReceiptItemOutput(many=True, help_text="This page, newest first.")  # type: ignore[assignment]  # field
    has_more = serializers.BooleanField()
    next = serializers.URLField(allow_null=True, help_text="The next page, or null.")


@extend_schema_serializer(component_name="SignedReceipt")
class SignedReceiptOutput(serializers.Serializer):
    """ATTESTATION-v1 (docs/receipts.md §1), exactly as signed."""

    v = serializers.IntegerField()
    attestation_id = serializers.UUIDField()
    trace_id = serializers.CharField()
    org_id = serializers.CharField()
    request_hash = serializers.CharField()
    model = serializers.CharField()
    outcome = serializers.ChoiceField(choices=ReceiptOutcome.choices)
    policy_applied = serializers.ListField(child=serializers.CharField())
    cost_prevented_eur = serializers.FloatField(help_text="At most 6 decimal places.")
    timestamp = serializers.CharField(help_text="ISO 8601 with its offset, as signed.")
    public_key = serializers.CharField()
    signature = serializers.CharField()


@extend_schema_serializer(component_name="ReceiptChainPosition")
class ChainOutput(serializers.Serializer):
    sequence = serializers.IntegerField(allow_null=True)
    prev_hash = serializers.CharField(allow_blank=True)
    chain_hash = serializers.CharField(allow_blank=True)


@extend_schema_serializer(component_name="ReceiptTrace")
class TraceLinkOutput(serializers.Serializer):
    id = serializers.CharField(help_text="tr_ + 32 hex digits.")
    dashboard_url = serializers.CharField(
        allow_null=True, help_text="The trace's dashboard page (null if the id is not one)."
    )
    analytics = TraceOutput(
        allow_null=True,
        help_text="The trace as /api/analytics/requests lists it; null once it has passed "
        "its retention (receipts are kept longer).",
    )


@extend_schema_serializer(component_name="Receipt")
class ReceiptDetailOutput(serializers.Serializer):
    object = serializers.CharField(default="receipt")
    id = serializers.IntegerField()
    attestation_id = serializers.UUIDField()
    receipt = SignedReceiptOutput(
        allow_null=True,
        help_text="The stored signed receipt, byte for byte; null when the stored copy is "
        "not a JSON object (see document_error).",
    )
    document_error = serializers.CharField(allow_null=True)
    chain = ChainOutput()
    api_key = serializers.UUIDField(allow_null=True)
    high_risk = serializers.BooleanField()
    key_id = serializers.CharField(help_text="The issuer key that signed it.")
    trace = TraceLinkOutput()
    verify_url = serializers.CharField()


@extend_schema_serializer(component_name="ReceiptVerification")
class VerificationOutput(serializers.Serializer):
    object = serializers.CharField(default="receipt.verification")
    id = serializers.IntegerField()
    attestation_id = serializers.UUIDField()
    sequence = serializers.IntegerField(allow_null=True)
    valid = serializers.BooleanField()
    reason = serializers.CharField(allow_blank=True, help_text="Why not; empty when valid.")
    key_id = serializers.CharField(allow_null=True, help_text="The issuer key it names.")
    signature_valid = serializers.BooleanField(
        help_text="Fields and signature under a pinned issuer key, within its validity."
    )
    chain_valid = serializers.BooleanField(help_text="Its place between its neighbours.")
    checked_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="ReceiptDocumentVerification")
class DocumentVerificationOutput(serializers.Serializer):
    object = serializers.CharField(default="receipt.document_verification")
    valid = serializers.BooleanField()
    reason = serializers.CharField(allow_blank=True)
    key_id = serializers.CharField(allow_null=True)
    stored = serializers.BooleanField(
        help_text="This organisation holds a receipt with this attestation_id."
    )
    identical = serializers.BooleanField(
        allow_null=True,
        help_text="The stored copy is the same receipt (same canonical bytes); null when "
        "not stored.",
    )
    id = serializers.IntegerField(allow_null=True, help_text="The stored receipt's id.")
    checked_at = serializers.DateTimeField()
