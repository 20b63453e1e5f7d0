from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import Q
from django.utils import timezone

from aqta.errors import AqtaError, ErrorCode
from billing.models import ExchangeRate, LanguageModel, ModelPrice, Tier


def tier_get(*, slug: str) -> Tier:
    try:
        return Tier.objects.get(slug=slug)
    except Tier.DoesNotExist:
        slugs = ", ".join(Tier.objects.values_list("slug", flat=True))
        raise AqtaError(
            f"Unknown tier {slug!r}; choose one of: {slugs}.",
            code=ErrorCode.INVALID_PARAMETER,
            param="tier",
        ) from None


def _valid_at(at: datetime) -> Q:
    return Q(valid_from__lte=at) & (Q(valid_to__isnull=True) | Q(valid_to__gt=at))


def model_price_at(*, model: LanguageModel, at: datetime | None = None) -> ModelPrice | None:
    at = at or timezone.now()
    return model.prices.filter(_valid_at(at)).order_by("-valid_from").first()


def usd_eur_rate_at(*, at: datetime | None = None) -> Decimal:
    at = at or timezone.now()
    row = (
        ExchangeRate.objects.filter(_valid_at(at), base="USD", quote="EUR")
        .order_by("-valid_from")
        .first()
    )
    if row is None:
        raise AqtaError(
            "No USD→EUR exchange rate is valid at this time; add one in the admin.",
            code=ErrorCode.EXCHANGE_RATE_MISSING,
        )
    return row.rate


def models_for_tier(*, tier: Tier) -> list[LanguageModel]:
    qs = LanguageModel.objects.filter(is_active=True)
    if not tier.all_models:
        qs = qs.filter(cost_effective=True)
    return list(qs)


def model_ids_known(*, model_ids: list[str]) -> set[str]:
    return set(
        LanguageModel.objects.filter(model_id__in=model_ids).values_list("model_id", flat=True)
    )
