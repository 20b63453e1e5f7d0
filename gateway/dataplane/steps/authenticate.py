"""Step 1: the API key. A digest of the bearer token finds the cached key record; one
answer (401 ``invalid_api_key``) for a missing, unknown, malformed or expired key."""

from __future__ import annotations

import time

from accounts.key_records import KeyRecord, digest_for
from aqta.errors import AqtaError, ErrorCode
from gateway.dataplane import http
from gateway.dataplane.keycache import KeyCache

INVALID_KEY = AqtaError("Invalid API key provided.", code=ErrorCode.INVALID_API_KEY)


async def authenticate(keys: KeyCache, scope: http.Scope) -> KeyRecord:
    token = http.bearer(scope)
    digest = digest_for(token) if token else None
    record = await keys.get(digest) if digest else None
    if record is None or (record.expires_at is not None and record.expires_at <= time.time()):
        raise INVALID_KEY
    return record


async def authenticate_unrevoked(keys: KeyCache, scope: http.Scope) -> KeyRecord:
    """For endpoints without admission (which checks revocation in its Lua script): a key
    revoked on another host is refused at once rather than when its cache entry ends."""
    record = await authenticate(keys, scope)
    if keys.redis is not None and await keys.revoked(record):
        raise INVALID_KEY
    return record
