"""Query parameters and response shapes of the analytics API (``gateway.analytics.api``)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.utils.serializer_helpers import ReturnList

from gateway.analytics import rollups
from gateway.models import Trace

MAX_RANGE = timedelta(days=400)
MAX_HOURLY_RANGE = timedelta(days=31)
DEFAULT_REQUESTS_RANGE = timedelta(days=7)


# --- Query fields ---------------------------------------------------------------------------


@extend_schema_field(
    {
        "type": "string",
        "description": "ISO 8601 date (a whole UTC day) or date-time (UTC if no offset).",
        "example": "2025-03-01",
    }
)
class InstantField(serializers.Field):
    """A date or date-time; a date is its UTC midnight, or the next one for an end."""

    default_error_messages = {
        "invalid": "Use an ISO 8601 date (2025-03-01) or date-time (2025-03-01T12:00:00Z).",
        "out_of_range": "Use an instant between 1970-01-01 and 9998-12-31.",
    }
    # Traces are never older, and arithmetic on the range (a default start 7 days back,
    # the next hour or day) must never leave what datetime can represent.
    EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
    LATEST = datetime(9999, 1, 1, tzinfo=UTC)

    def __init__(self, *, end: bool = False, **kwargs: Any) -> None:
        self.end = end
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> datetime:
        text = str(data).strip()
        # An unencoded "+" of a UTC offset reaches the query string as a space.
        text = text.replace(" ", "+") if "T" in text else text
        try:
            day = parse_date(text)
            moment = None if day else parse_datetime(text)
        except ValueError:
            self.fail("invalid")
        bound = day or moment
        if bound is None:
            self.fail("invalid")
        try:
            value = rollups.instant(bound, end=self.end)  # `end` moves a date only
        except OverflowError:  # the day after 9999-12-31, or an offset past either end
            self.fail("out_of_range")
        if not self.EARLIEST <= value <= self.LATEST:
            self.fail("out_of_range")
        return value

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


@extend_schema_field(
    {"type": "string", "description": "The `next` link's cursor, from the previous page."}
)
class CursorField(serializers.Field):
    default_error_messages = {"invalid": "cursor is not valid; follow the previous page's next."}

    @staticmethod
    def encode(trace: Trace) -> str:
        raw = f"{trace.created_at.isoformat()}|{trace.pk}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def to_internal_value(self, data: Any) -> tuple[datetime, uuid.UUID]:
        try:
            text = str(data)
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            created, trace_id = raw.split("|")
            moment = datetime.fromisoformat(created)
            if moment.tzinfo is None:
                raise ValueError(raw)
            return moment, uuid.UUID(trace_id)
        except ValueError:
            self.fail("invalid")

    def to_representation(self, value: Any) -> str:
        return str(value)


def choice(choices: list[str], **kwargs: Any) -> serializers.ChoiceField:
    listed = ", ".join(choices)
    message = f'"{{input}}" is not one of: {listed}.'
    return serializers.ChoiceField(
        choices=choices, error_messages={"invalid_choice": message}, **kwargs
    )


class RangeQuery(serializers.Serializer):
    start = InstantField(required=False, help_text="Start (inclusive).")
    end = InstantField(
        end=True, required=False, help_text="End: a date-time is exclusive, a date inclusive."
    )

    default_range = DEFAULT_REQUESTS_RANGE

    def default_start(self, end: datetime) -> datetime:
        return end - self.default_range

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["end"] = end = attrs.get("end") or timezone.now()
        attrs["start"] = start = attrs.get("start") or self.default_start(end)
        if start >= end:
            raise serializers.ValidationError({"start": "start must be before end."})
        if end - start > MAX_RANGE:
            raise serializers.ValidationError(
                {"start": f"start to end spans more than {MAX_RANGE.days} days."}
            )
        if attrs.get("group_by") == "hour" and end - start > MAX_HOURLY_RANGE:
            raise serializers.ValidationError(
                {
                    "group_by": f"group_by=hour covers at most {MAX_HOURLY_RANGE.days} days; "
                    "use day for longer ranges."
                }
            )
        return attrs


# --- Output shapes --------------------------------------------------------------------------

# Some response fields share a name with an attribute of Serializer (`errors`, `data`) or
# Field (`label`). The names are the API's; the stubs see a clash, but DRF's metaclass moves
# declared fields off the class, so nothing is shadowed: hence the ignores marked "field".


@extend_schema_serializer(component_name="UsageStats")
class StatsOutput(serializers.Serializer):
    requests = serializers.IntegerField()
    errors = serializers.IntegerField(  # type: ignore[assignment]  # field
        help_text="HTTP status ≥ 400, blocked or suppressed."
    )
    blocked = serializers.IntegerField(help_text="Refused by a policy (blocked or suppressed).")
    error_rate = serializers.FloatField(help_text="errors / requests (0 to 1).")
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    tokens = serializers.IntegerField()
    cost_eur = serializers.DecimalField(max_digits=18, decimal_places=8)
    p50_ms = serializers.IntegerField(
        allow_null=True, help_text="Median latency, estimated within its histogram bucket."
    )
    p95_ms = serializers.IntegerField(allow_null=True)


class KeyLabelOutput(serializers.Serializer):
    key = serializers.CharField(help_text="ISO hour or day, model id, API key id or provider.")
    label = serializers.CharField()  # type: ignore[assignment]  # field


@extend_schema_serializer(component_name="UsageGroup")
class GroupOutput(KeyLabelOutput, StatsOutput):
    pass


@extend_schema_serializer(component_name="Trace")
class TraceOutput(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", help_text="tr_ + 32 hex digits.")
    api_key = serializers.UUIDField(source="api_key_id", allow_null=True)

    class Meta:
        model = Trace
        fields = [
            "id",
            "created_at",
            "api_key",
            "model",
            "provider",
            "status",
            "http_status",
            "error_code",
            "policy",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "cost_eur",
            "cost_prevented_eur",
            "latency_ms",
            "ttfb_ms",
            "stream",
            "cached",
            "loop_detected",
            "client_disconnected",
        ]


@extend_schema_serializer(component_name="CostRow")
class CostRowOutput(serializers.Serializer):
    key = serializers.CharField(help_text="Day, model id, API key id or provider.")
    label = serializers.CharField()  # type: ignore[assignment]  # field
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()  # type: ignore[assignment]  # field
    tokens = serializers.IntegerField()
    cost_eur = serializers.DecimalField(max_digits=18, decimal_places=8)


@extend_schema_serializer(component_name="MonthStatus")
class MonthOutput(serializers.Serializer):
    month = serializers.CharField(help_text="YYYY-MM (UTC).")
    requests = serializers.IntegerField(help_text="Admitted requests month-to-date.")
    quota = serializers.IntegerField(allow_null=True, help_text="Null: no monthly quota.")
    cost_eur = serializers.DecimalField(max_digits=18, decimal_places=8)
    budget_eur = serializers.DecimalField(
        max_digits=12, decimal_places=2, allow_null=True, help_text="Null: no budget."
    )
    projected_cost_eur = serializers.DecimalField(max_digits=18, decimal_places=2)
    projected_requests = serializers.IntegerField()
    rate_limit_per_minute = serializers.IntegerField()


def represent_many(serializer: type[serializers.Serializer], items: Iterable[Any]) -> ReturnList:
    """``serializer(items, many=True).data``: the stubs type a ``many=True`` serializer as a
    single one (its ``data`` a dict), while DRF builds a ListSerializer (a list)."""
    return cast(ReturnList, serializer(items, many=True).data)
