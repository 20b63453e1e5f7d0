"""Tiers, the model catalogue with dated prices, and the USD→EUR rate.

All of it is data (seeded by a migration, edited in the admin), never constants in
code. Prices and rates carry validity periods so that a price change never rewrites
what an earlier call cost.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Analytics(models.TextChoices):
    NONE = "none", "No analytics"
    BASIC = "basic", "Analytics"
    ADVANCED = "advanced", "Advanced analytics"


class Tier(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=60)
    monthly_price_eur = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, help_text="Empty = custom pricing."
    )
    monthly_request_quota = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="Requests per calendar month; empty = set per organisation.",
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        help_text="Default per-key requests/minute."
    )
    all_models = models.BooleanField(
        default=True, help_text="Off: only models marked cost-effective may be called."
    )
    analytics = models.CharField(max_length=10, choices=Analytics.choices, default=Analytics.NONE)
    custom_rate_limits = models.BooleanField(
        default=False, help_text="Keys may carry a rate limit above the tier default."
    )
    audit_trail = models.BooleanField(default=False)
    bias_detection = models.BooleanField(default=False)
    compliance_reports = models.BooleanField(default=False)
    receipts = models.BooleanField(default=False)
    retention_days = models.PositiveIntegerField(help_text="Default retention of traces.")
    max_retention_days = models.PositiveIntegerField(
        help_text="Longest retention an organisation on this tier may choose."
    )
    loop_guard_threshold = models.PositiveIntegerField(
        default=10, help_text="Identical requests from one key allowed within the window."
    )
    loop_guard_window_seconds = models.PositiveIntegerField(default=60)
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "slug"]

    def __str__(self) -> str:
        return self.name

    @property
    def compliance(self) -> bool:
        return self.audit_trail or self.compliance_reports


class Provider(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    GOOGLE = "google", "Google Gemini"
    PERPLEXITY = "perplexity", "Perplexity"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible (self-hosted)"


class LanguageModel(models.Model):
    """A model clients may ask for by ``model_id`` (the OpenAI ``model`` field)."""

    provider = models.CharField(max_length=20, choices=Provider.choices)
    model_id = models.CharField(max_length=120, unique=True)
    display_name = models.CharField(max_length=120, blank=True)
    cost_effective = models.BooleanField(
        default=False, help_text="Allowed on tiers that are limited to cost-effective models."
    )
    context_window = models.PositiveIntegerField(null=True, blank=True)
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    endpoint = models.ForeignKey(
        "gateway.ProviderEndpoint",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        help_text="Empty = the provider's default endpoint (admin or environment).",
    )
    upstream_model_id = models.CharField(
        max_length=120, blank=True, help_text="Model id sent upstream; empty = model_id."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["provider", "model_id"]

    def __str__(self) -> str:
        return self.model_id


class ModelAlias(models.Model):
    """Another name clients may use for a model (e.g. ``claude-3-5-sonnet`` → the dated id).

    The alias shares its model's prices, deployments and tier rules."""

    alias = models.CharField(max_length=120, unique=True)
    model = models.ForeignKey(LanguageModel, on_delete=models.CASCADE, related_name="aliases")

    class Meta:
        ordering = ["alias"]

    def __str__(self) -> str:
        return f"{self.alias} → {self.model}"


class ModelPrice(models.Model):
    """List price of one model for a period, in USD per 1M tokens.

    Token counts follow OpenAI's semantics: ``cached`` and ``cache-write`` tokens are
    part of the prompt and are charged at their own rates instead of the input rate.
    """

    model = models.ForeignKey(LanguageModel, on_delete=models.CASCADE, related_name="prices")
    input_usd_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    output_usd_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    cached_input_usd_per_mtok = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True
    )
    cache_write_usd_per_mtok = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True
    )
    long_context_threshold_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Prompts above this many tokens use the long rates."
    )
    long_input_usd_per_mtok = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True
    )
    long_output_usd_per_mtok = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True
    )
    request_fee_low_usd = models.DecimalField(
        max_digits=10,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Per-request fee (the only one for flat fees; Perplexity: low search context).",
    )
    request_fee_medium_usd = models.DecimalField(
        max_digits=10, decimal_places=6, null=True, blank=True
    )
    request_fee_high_usd = models.DecimalField(
        max_digits=10, decimal_places=6, null=True, blank=True
    )
    valid_from = models.DateTimeField()
    valid_to = models.DateTimeField(null=True, blank=True, help_text="Empty = still valid.")

    class Meta:
        ordering = ["model", "-valid_from"]
        constraints = [
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gt=models.F("valid_from")),
                name="model_price_period_valid",
            ),
            models.UniqueConstraint(
                fields=["model"],
                condition=Q(valid_to__isnull=True),
                name="one_open_price_per_model",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} from {self.valid_from:%Y-%m-%d}"


# The rate fields of a price period, in the order the admin and the price import show them.
PRICE_FIELDS = (
    "input_usd_per_mtok",
    "output_usd_per_mtok",
    "cached_input_usd_per_mtok",
    "cache_write_usd_per_mtok",
    "long_context_threshold_tokens",
    "long_input_usd_per_mtok",
    "long_output_usd_per_mtok",
    "request_fee_low_usd",
    "request_fee_medium_usd",
    "request_fee_high_usd",
)


class ExchangeRate(models.Model):
    """How many EUR one USD buys during a period."""

    base = models.CharField(max_length=3, default="USD")
    quote = models.CharField(max_length=3, default="EUR")
    rate = models.DecimalField(max_digits=12, decimal_places=6)
    valid_from = models.DateTimeField()
    valid_to = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["base", "quote", "-valid_from"]
        constraints = [
            models.CheckConstraint(condition=Q(rate__gt=0), name="exchange_rate_positive"),
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gt=models.F("valid_from")),
                name="exchange_rate_period_valid",
            ),
            models.UniqueConstraint(
                fields=["base", "quote"],
                condition=Q(valid_to__isnull=True),
                name="one_open_rate_per_pair",
            ),
        ]

    def __str__(self) -> str:
        return f"1 {self.base} = {self.rate} {self.quote} from {self.valid_from:%Y-%m-%d}"
