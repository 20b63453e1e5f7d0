"""The model catalogue as the data plane sees it: models, their dated prices, the USD→EUR
rate and where each model is served. Loaded from the database off the event loop and
refreshed every ``AQTA_CATALOG_REFRESH_SECONDS``; requests read it from memory only.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils import timezone

from billing import pricing
from billing.models import ExchangeRate, LanguageModel, ModelAlias, ModelPrice, Provider
from billing.pricing import Usage
from gateway import crypto
from gateway.models import ModelDeployment, ProviderEndpoint

logger = logging.getLogger("aqta.gateway")

# Environment names per provider: <NAME>_API_KEY and <NAME>_BASE_URL.
ENV_NAMES: dict[str, str] = {
    Provider.OPENAI: "OPENAI",
    Provider.ANTHROPIC: "ANTHROPIC",
    Provider.GOOGLE: "GEMINI",
    Provider.PERPLEXITY: "PERPLEXITY",
    Provider.OPENAI_COMPATIBLE: "OPENAI_COMPATIBLE",
}
DEFAULT_BASE_URLS: dict[str, str] = {
    Provider.OPENAI: "https://api.openai.com/v1",
    Provider.ANTHROPIC: "https://api.anthropic.com",
    Provider.GOOGLE: "https://generativelanguage.googleapis.com",
    Provider.PERPLEXITY: "https://api.perplexity.ai",
}


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    provider: str
    base_url: str
    api_key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Deployment:
    """One way to serve a model: a provider endpoint and the model id it knows it by."""

    name: str
    provider: str
    endpoint: Endpoint
    upstream_model_id: str
    max_output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class PricePeriod:
    starts: float
    ends: float | None
    price: ModelPrice


@dataclass(frozen=True, slots=True)
class ModelEntry:
    model_id: str
    provider: str
    cost_effective: bool
    upstream_model_id: str
    max_output_tokens: int | None
    endpoint: Endpoint | None
    prices: tuple[PricePeriod, ...]
    deployments: tuple[Deployment, ...] = ()

    def price_at(self, at: float) -> ModelPrice | None:
        for period in self.prices:
            if period.starts <= at and (period.ends is None or at < period.ends):
                return period.price
        return None


@dataclass(frozen=True, slots=True)
class Catalog:
    models: dict[str, ModelEntry]
    rates: tuple[tuple[float, float | None, Decimal], ...]

    def usd_eur_at(self, at: float) -> Decimal | None:
        for starts, ends, rate in self.rates:
            if starts <= at and (ends is None or at < ends):
                return rate
        return None

    def cost_eur(self, model: ModelEntry, usage: Usage, at: float) -> Decimal:
        """EUR cost with the price and rate valid at ``at`` (raises 503 without either)."""
        price, rate = model.price_at(at), self.usd_eur_at(at)
        return pricing.cost_eur(price, rate, usage, model_id=model.model_id, at=at)

    def price_check(self, model: ModelEntry, at: float) -> None:
        """Refuse (503, logged and counted) a call that could not be priced afterwards."""
        if model.price_at(at) is None or self.usd_eur_at(at) is None:
            self.cost_eur(model, Usage(), at)


def env_endpoint(provider: str) -> Endpoint | None:
    name = ENV_NAMES.get(provider)
    if name is None:
        return None
    key = os.environ.get(f"{name}_API_KEY", "")
    base_url = os.environ.get(f"{name}_BASE_URL", "") or DEFAULT_BASE_URLS.get(provider, "")
    if not base_url or not (key or os.environ.get(f"{name}_BASE_URL")):
        return None
    return Endpoint(name=f"env-{provider}", provider=provider, base_url=base_url, api_key=key)


def _endpoint(row: ProviderEndpoint) -> Endpoint:
    key = crypto.decrypt(row.api_key_encrypted) if row.api_key_encrypted else ""
    return Endpoint(name=row.name, provider=row.provider, base_url=row.base_url, api_key=key)


def _entry(
    model: LanguageModel,
    endpoints: dict[int, Endpoint],
    defaults: dict[str, Endpoint],
    prices: dict[int, list[PricePeriod]],
    explicit: dict[int, list[Deployment]],
) -> ModelEntry:
    own = endpoints.get(model.endpoint_id) if model.endpoint_id else None
    endpoint = own or defaults.get(model.provider) or env_endpoint(model.provider)
    upstream = model.upstream_model_id or model.model_id
    deployments = tuple(
        Deployment(d.name, d.provider, d.endpoint, d.upstream_model_id, model.max_output_tokens)
        for d in explicit.get(model.pk, ())
    )
    if not deployments and endpoint is not None:
        # No deployments configured: the model's own endpoint, named after its provider.
        deployments = (
            Deployment(model.provider, model.provider, endpoint, upstream, model.max_output_tokens),
        )
    return ModelEntry(
        model_id=model.model_id,
        provider=model.provider,
        cost_effective=model.cost_effective,
        upstream_model_id=upstream,
        max_output_tokens=model.max_output_tokens,
        endpoint=endpoint,
        prices=tuple(prices.get(model.pk, ())),
        deployments=deployments,
    )


def catalog_load() -> Catalog:
    """Build the catalogue from the database (sync: call it off the event loop)."""
    endpoints = {row.pk: _endpoint(row) for row in ProviderEndpoint.objects.filter(is_active=True)}
    defaults = {
        row.provider: endpoints[row.pk]
        for row in ProviderEndpoint.objects.filter(is_active=True, is_default=True)
    }
    prices: dict[int, list[PricePeriod]] = {}
    for price in ModelPrice.objects.order_by("-valid_from"):
        prices.setdefault(price.model_id, []).append(
            PricePeriod(
                price.valid_from.timestamp(),
                price.valid_to.timestamp() if price.valid_to else None,
                price,
            )
        )
    explicit: dict[int, list[Deployment]] = {}
    for deployment in ModelDeployment.objects.filter(
        is_active=True, endpoint__is_active=True
    ).order_by("model_id", "priority", "pk"):
        endpoint = endpoints[deployment.endpoint_id]
        explicit.setdefault(deployment.model_id, []).append(
            Deployment(
                name=deployment.name,
                provider=endpoint.provider,
                endpoint=endpoint,
                upstream_model_id=deployment.upstream_model_id,
                max_output_tokens=None,
            )
        )
    models: dict[str, ModelEntry] = {}
    for model in LanguageModel.objects.filter(is_active=True):
        models[model.model_id] = _entry(model, endpoints, defaults, prices, explicit)
    for alias in ModelAlias.objects.select_related("model"):
        target = models.get(alias.model.model_id)
        if target is not None and alias.alias not in models:
            models[alias.alias] = target
    rates = tuple(
        (r.valid_from.timestamp(), r.valid_to.timestamp() if r.valid_to else None, r.rate)
        for r in ExchangeRate.objects.filter(base="USD", quote="EUR").order_by("-valid_from")
    )
    return Catalog(models=models, rates=rates)


def now() -> float:
    return timezone.now().timestamp()
