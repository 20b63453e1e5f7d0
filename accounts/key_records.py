"""What the data plane needs to know about a key, as one cacheable record.

The /v1 path never queries the database per request: it keeps these records in process
memory for ``LOCAL_TTL`` seconds and in Redis (shared by every worker and host) until the
key, its organisation or the organisation's tier changes. Changes delete the Redis copy
when their transaction commits, so a revocation is visible everywhere within
``LOCAL_TTL`` seconds.

Redis unavailable, a change is still stored (the database is the truth, and the gateway
reads key records from it while Redis is away); the invalidation is logged as lost and
counted in ``aqta_redis_errors_total``. Revoking an already revoked key sends it again.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from decimal import Decimal

import orjson
from django.db import transaction
from redis.exceptions import RedisError

from accounts import keys
from accounts.models import ApiKey, Organization
from aqta import redis as aqta_redis
from aqta.metrics import REDIS_ERRORS

logger = logging.getLogger("aqta.key_records")

LOCAL_TTL = 1.0
REDIS_TTL = 300
REDIS_PREFIX = "aqta:key:"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    org_id: str
    tier: str
    rate_limit_per_minute: int
    monthly_request_quota: int | None
    org_budget_eur: str | None
    key_budget_eur: str | None
    all_models: bool
    allowed_models: tuple[str, ...]
    content_logging: bool
    response_cache: bool
    loop_threshold: int
    loop_window_seconds: int
    expires_at: float | None
    # Healthcare: issue a receipt of every call; the organisation's enabled high-risk rules
    # as (name, category, pattern, scope, action) tuples (``healthcare.highrisk``).
    receipts: bool = False
    high_risk_rules: tuple[tuple[str, str, str, str, str], ...] = ()

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> KeyRecord:
        data = orjson.loads(raw)
        data["allowed_models"] = tuple(data["allowed_models"])
        data["high_risk_rules"] = tuple(tuple(rule) for rule in data.get("high_risk_rules", ()))
        return cls(**data)

    @property
    def org_budget(self) -> Decimal | None:
        return Decimal(self.org_budget_eur) if self.org_budget_eur is not None else None

    @property
    def key_budget(self) -> Decimal | None:
        return Decimal(self.key_budget_eur) if self.key_budget_eur is not None else None


def key_record_build(api_key: ApiKey) -> KeyRecord:
    org = api_key.organization
    tier = org.tier
    return KeyRecord(
        key_id=str(api_key.pk),
        org_id=str(org.pk),
        tier=tier.slug,
        rate_limit_per_minute=(
            api_key.rate_limit_per_minute or org.rate_limit_per_minute or tier.rate_limit_per_minute
        ),
        monthly_request_quota=(
            org.monthly_request_quota
            if org.monthly_request_quota is not None
            else tier.monthly_request_quota
        ),
        org_budget_eur=str(org.monthly_budget_eur) if org.monthly_budget_eur is not None else None,
        key_budget_eur=(
            str(api_key.monthly_budget_eur) if api_key.monthly_budget_eur is not None else None
        ),
        all_models=tier.all_models,
        allowed_models=tuple(api_key.allowed_models or ()),
        content_logging=org.content_logging,
        response_cache=org.response_cache,
        loop_threshold=org.loop_guard_threshold or tier.loop_guard_threshold,
        loop_window_seconds=org.loop_guard_window_seconds or tier.loop_guard_window_seconds,
        expires_at=api_key.expires_at.timestamp() if api_key.expires_at else None,
        receipts=tier.receipts,
        high_risk_rules=_high_risk_rules(org) if tier.receipts else (),
    )


def _high_risk_rules(org: Organization) -> tuple[tuple[str, str, str, str, str], ...]:
    rules = org.high_risk_rules.filter(enabled=True).order_by("name")
    return tuple(
        (r.name, r.category, r.pattern, r.scope, r.action)
        for r in rules.only("name", "category", "pattern", "scope", "action")
    )


def key_record_load(digest: str) -> KeyRecord | None:
    """From the database (sync). None for unknown or revoked keys."""
    api_key = (
        ApiKey.objects.select_related("organization__tier")
        .filter(digest=digest, revoked_at__isnull=True)
        .first()
    )
    return key_record_build(api_key) if api_key is not None else None


REVOKED_TTL = 86_400


def revoked_marker(org_id: str, key_id: str) -> str:
    """Checked by the policy script on every call: revocation cannot lose a cache race."""
    return f"aqta:rv:{{{org_id}}}:{key_id}"


def _forget(digests: list[str], revoked: str | None = None) -> None:
    if not aqta_redis.enabled() or not digests:
        return
    try:
        client = aqta_redis.sync_client()
        with client.pipeline(transaction=False) as pipe:
            if revoked:
                pipe.set(revoked, 1, ex=REVOKED_TTL)
            pipe.delete(*(REDIS_PREFIX + d for d in digests))
            pipe.execute()
    except (RedisError, OSError) as error:
        # Runs after the commit: the change is stored, and failing the request now would
        # only tell the client it was not. Cached copies expire within REDIS_TTL.
        REDIS_ERRORS.inc()
        logger.error(
            "Redis unavailable (%s): key records of %d key(s) not invalidated%s; cached "
            "copies expire within %d s (revoke again once Redis is back to mark it now)",
            error,
            len(digests),
            " and the revocation marker not set" if revoked else "",
            REDIS_TTL,
        )


def key_records_invalidate(
    *, api_key: ApiKey | None = None, organization: Organization | None = None
) -> None:
    """Drop cached records (and mark a revoked key) once the current transaction commits."""
    if api_key is not None:
        digests = [api_key.digest]
        if api_key.revoked_at is not None:
            marker = revoked_marker(str(api_key.organization_id), str(api_key.pk))
            transaction.on_commit(lambda: _forget(digests, marker))
            return
    elif organization is not None:
        digests = list(
            ApiKey.objects.filter(organization=organization).values_list("digest", flat=True)
        )
    else:
        return
    transaction.on_commit(lambda: _forget(digests))


def digest_for(secret: str) -> str | None:
    """The digest of a well-formed secret, or None (rejected before any look-up)."""
    return keys.digest(secret) if keys.is_well_formed(secret) else None
