"""The issuer's public keys, current and retired, with their validity windows.

Private keys never enter the database (``healthcare.signing``). What is kept here is the
list of public keys receipts were signed with, so that receipts signed before a rotation
keep verifying; the rows are append-only on PostgreSQL (a key may only be retired, once).

A key is *registered* the first time a process signs with it, which retires the one
before; ``manage.py rotate_receipt_key`` does the same for a key it generates. Receipts
are accepted within a key's window give or take ``WINDOW_GRACE_SECONDS``: during a rolling
restart, hosts still on the old key keep signing for a while.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from healthcare.models import ReceiptKey
from healthcare.signing import IssuerKey, issuer_key

ALGORITHM = "Ed25519"
WINDOW_GRACE_SECONDS = 3_600
_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class KnownKey:
    key_id: str
    public_key: str
    activated_at: datetime
    retired_at: datetime | None


_cache: tuple[float, dict[str, KnownKey]] | None = None


def register(key: IssuerKey | None = None) -> ReceiptKey:
    """Record ``key`` (the process's by default) as the current key, retiring the others."""
    global _cache
    key = key or issuer_key()
    existing = ReceiptKey.objects.filter(key_id=key.key_id).first()
    if existing is not None:
        return existing
    now = timezone.now()
    try:
        with transaction.atomic():
            ReceiptKey.objects.filter(retired_at__isnull=True).update(retired_at=now)
            row = ReceiptKey.objects.create(
                key_id=key.key_id, public_key=key.public_key, algorithm=ALGORITHM, activated_at=now
            )
    except IntegrityError:  # registered by another process meanwhile
        row = ReceiptKey.objects.get(key_id=key.key_id)
    _cache = None
    return row


def _known() -> dict[str, KnownKey]:
    global _cache
    if _cache is not None and time.monotonic() - _cache[0] < _CACHE_SECONDS:
        return _cache[1]
    register()
    keys = {
        row.key_id: KnownKey(row.key_id, row.public_key, row.activated_at, row.retired_at)
        for row in ReceiptKey.objects.all()
    }
    _cache = (time.monotonic(), keys)
    return keys


def forget() -> None:
    global _cache
    _cache = None


def public_keys() -> frozenset[str]:
    """Every key a receipt of ours may be signed with."""
    return frozenset(k.public_key for k in _known().values())


def key_for(key_id: str | None) -> KnownKey | None:
    return _known().get(key_id) if key_id else None


def published() -> dict[str, object]:
    """``GET /v1/attestation/public-key``: the current key and the earlier ones."""
    current = issuer_key()
    known = sorted(_known().values(), key=lambda k: k.activated_at, reverse=True)
    return {
        "public_key": current.public_key,
        "key_id": current.key_id,
        "algorithm": ALGORITHM,
        "keys": [
            {
                "public_key": k.public_key,
                "key_id": k.key_id,
                "algorithm": ALGORITHM,
                "valid_from": k.activated_at.isoformat(),
                "valid_until": k.retired_at.isoformat() if k.retired_at else None,
                "current": k.key_id == current.key_id,
            }
            for k in known
        ],
    }


def published_now() -> dict[str, object]:
    """:func:`published` from a thread of the data plane (closing its connection after)."""
    from django.db import connections

    try:
        return published()
    finally:
        connections.close_all()
