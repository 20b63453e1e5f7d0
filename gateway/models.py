"""Data-plane records: provider endpoints, traces (one per /v1 call) and usage counters.

Traces and counters are never written on the request path: the gateway buffers them and
a flusher bulk-inserts them (see ``gateway/storage.py``).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models

from billing.models import Provider
from gateway import trace_ids


class ProviderEndpoint(models.Model):
    """Where and how to reach a provider: base URL and an API key encrypted at rest."""

    name = models.SlugField(unique=True)
    provider = models.CharField(max_length=20, choices=Provider.choices)
    base_url = models.URLField(help_text="e.g. https://api.openai.com/v1 or http://vllm:8000/v1")
    api_key_encrypted = models.TextField(blank=True, editable=False)
    is_default = models.BooleanField(
        default=False, help_text="Used for models of this provider that name no endpoint."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["provider", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider"],
                condition=models.Q(is_default=True),
                name="one_default_endpoint_per_provider",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_provider_display()})"


class ModelDeployment(models.Model):
    """One entry of a model's ordered fallback list: an endpoint and its model id there.

    A model without deployments is served by its own (or its provider's default) endpoint.
    """

    name = models.SlugField(unique=True, help_text="Shown as aqta.provider when it answers.")
    model = models.ForeignKey(
        "billing.LanguageModel", on_delete=models.CASCADE, related_name="deployments"
    )
    endpoint = models.ForeignKey(ProviderEndpoint, on_delete=models.PROTECT)
    upstream_model_id = models.CharField(max_length=120)
    priority = models.PositiveSmallIntegerField(default=0, help_text="Lower is tried first.")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["model", "priority"]

    def __str__(self) -> str:
        return self.name


class TraceStatus(models.TextChoices):
    PASSED = "passed", "Passed"
    SUPPRESSED = "suppressed", "Suppressed (loop guard)"
    BLOCKED = "blocked", "Blocked"
    # Failed inside the gateway (answered 500): consumed no quota, no budget, no rate slot.
    ERROR = "error", "Gateway error"


class TraceIdField(models.UUIDField):
    """A UUID that also takes the public ``tr_<hex>`` spelling, so every lookup (ORM
    filters, the admin's search, URLs) accepts the id as users see it."""

    def to_python(self, value: Any) -> uuid.UUID | None:
        if isinstance(value, str) and value[:3].lower() == trace_ids.PREFIX:
            value = value[3:]
        parsed: uuid.UUID | None = super().to_python(value)
        return parsed


class Trace(models.Model):
    id = TraceIdField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(db_index=True)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="traces"
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="traces"
    )
    model = models.CharField(max_length=120, blank=True)
    provider = models.CharField(max_length=40, blank=True)
    status = models.CharField(max_length=12, choices=TraceStatus.choices)
    http_status = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=40, blank=True)
    policy = models.CharField(max_length=30, blank=True, help_text="Policy that blocked, if any.")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    cost_eur = models.DecimalField(max_digits=16, decimal_places=8, default=0)
    cost_prevented_eur = models.DecimalField(max_digits=16, decimal_places=8, default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    ttfb_ms = models.PositiveIntegerField(null=True, blank=True)
    stream = models.BooleanField(default=False)
    cached = models.BooleanField(default=False)
    loop_detected = models.BooleanField(default=False)
    high_risk = models.BooleanField(default=False)  # a Healthcare high-risk rule matched
    client_disconnected = models.BooleanField(default=False)
    request_sha256 = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.public_id} {self.model} {self.status}"

    @property
    def public_id(self) -> str:
        """The id as users see it: ``tr_`` + 32 hex digits."""
        return trace_ids.public(self.id)


class TraceContent(models.Model):
    """Prompt and completion, stored only when the organisation turned content logging on."""

    trace = models.OneToOneField(Trace, on_delete=models.CASCADE, primary_key=True)
    request_encrypted = models.TextField()
    response_encrypted = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"content of {self.trace_id}"


class UsageCounter(models.Model):
    """Requests, tokens and cost per organisation, key and calendar month (UTC)."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE)
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.CASCADE, null=True)
    month = models.DateField(help_text="First day of the month.")
    requests = models.PositiveBigIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost_eur = models.DecimalField(max_digits=18, decimal_places=8, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "api_key", "month"], name="one_usage_row_per_key_month"
            )
        ]

    def __str__(self) -> str:
        return f"{self.organization_id} {self.month:%Y-%m}: {self.requests} requests"


class GatewayEvent(models.Model):
    """Something the gateway did that a webhook may announce (e.g. ``loop_detected``)."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE)
    kind = models.CharField(max_length=40, db_index=True)
    trace = models.ForeignKey(Trace, on_delete=models.SET_NULL, null=True, blank=True)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} at {self.created_at:%Y-%m-%d %H:%M:%S}"


# --- Analytics rollups (maintained by gateway.analytics.rollups_refresh) ----------------

# Upper edges (ms) of the latency histogram buckets; a last bucket holds everything above.
# Percentiles are estimated within a bucket, so these edges are the resolution of p50/p95.
LATENCY_BUCKET_EDGES_MS: tuple[int, ...] = (
    10, 25, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000,
    1500, 2000, 3000, 5000, 7500, 10000, 15000, 20000, 30000, 60000, 120000,
)  # fmt: skip


class RollupFields(models.Model):
    """What both rollups count per organisation, key, model and provider."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    model = models.CharField(max_length=120, blank=True)
    provider = models.CharField(max_length=40, blank=True)
    requests = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(
        default=0, help_text="HTTP status ≥ 400 or not passed (blocked and suppressed count)."
    )
    blocked = models.PositiveBigIntegerField(default=0, help_text="Blocked or suppressed.")
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost_eur = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    latency_ms_sum = models.PositiveBigIntegerField(default=0)
    latency_histogram = models.JSONField(
        default=list, help_text="Request counts per LATENCY_BUCKET_EDGES_MS bucket."
    )

    class Meta:
        abstract = True


class HourlyRollup(RollupFields):
    hour = models.DateTimeField(help_text="Start of the hour (UTC).")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "api_key", "model", "provider", "hour"],
                name="one_hourly_rollup_per_group",
            )
        ]
        indexes = [models.Index(fields=["organization", "hour"])]

    def __str__(self) -> str:
        return f"{self.organization_id} {self.hour:%Y-%m-%d %H}h {self.model}: {self.requests}"


class DailyRollup(RollupFields):
    day = models.DateField(help_text="UTC day.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "api_key", "model", "provider", "day"],
                name="one_daily_rollup_per_group",
            )
        ]
        indexes = [models.Index(fields=["organization", "day"])]

    def __str__(self) -> str:
        return f"{self.organization_id} {self.day} {self.model}: {self.requests}"


class RollupWatermark(models.Model):
    """Where the last rollup refresh started; its row lock serialises concurrent refreshes."""

    name = models.CharField(max_length=40, primary_key=True)
    refreshed_from = models.DateTimeField(null=True, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.refreshed_at}"


# --- Dead letters (written by gateway.storage when a record cannot be stored) -----------------


class DeadLetterSource(models.TextChoices):
    STREAM = "stream", "Redis stream"
    LOCAL = "local", "In-process buffer"


class TraceDeadLetter(models.Model):
    """A buffered trace record the flusher could not store while other records could.

    It is parked here, with the error, instead of blocking every record behind it. The
    payload is the record as buffered (JSON text: it may hold what a JSON column would
    refuse, such as NUL); the organisation and trace ids are plain text because either may
    no longer exist, or never have.
    """

    created_at = models.DateTimeField(db_index=True)
    last_attempt_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=1)
    source = models.CharField(max_length=10, choices=DeadLetterSource.choices)
    trace_id = models.CharField(max_length=64, blank=True, db_index=True)
    organization_id = models.CharField(max_length=64, blank=True)
    error = models.TextField()
    payload = models.TextField()
    # The same entry parked twice (a flusher stopped between parking and acknowledging it)
    # stays one row.
    payload_sha256 = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "trace dead letter"

    def __str__(self) -> str:
        return f"dead letter {self.trace_id or self.pk} ({self.source})"
