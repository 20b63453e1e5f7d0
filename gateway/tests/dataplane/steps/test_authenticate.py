"""Step 1, the API key (gateway/dataplane/steps/authenticate.py): one 401
``invalid_api_key`` for a missing, malformed, unknown, expired or revoked key.

Key records are put in the key cache's process memory, as a previous look-up leaves them,
so no test reads the database.
"""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from accounts.key_records import KeyRecord, revoked_marker
from aqta.errors import AqtaError, ErrorCode
from gateway.dataplane.keycache import KeyCache
from gateway.dataplane.steps.authenticate import authenticate, authenticate_unrevoked
from gateway.tests.dataplane.steps.fakes import digest, key_record, run, scope, secret

FOREVER = float("inf")


def cached(keys: KeyCache, token: str, record: KeyRecord | None) -> None:
    """What a look-up of ``token`` left in the cache (None: the key does not exist)."""
    keys.local[digest(token)] = (FOREVER, record)


def refused(keys: KeyCache, request_scope: dict, check=authenticate) -> AqtaError:
    async def scenario() -> None:
        await check(keys, request_scope)

    with pytest.raises(AqtaError) as raised:
        run(scenario)
    return raised.value


def accepted(keys: KeyCache, request_scope: dict, check=authenticate) -> KeyRecord:
    found: list[KeyRecord] = []

    async def scenario() -> None:
        found.append(await check(keys, request_scope))

    run(scenario)
    return found[0]


def assert_invalid_key(error: AqtaError) -> None:
    assert (error.code, error.status, error.type) == (
        ErrorCode.INVALID_API_KEY,
        401,
        "authentication_error",
    )
    assert error.message == "Invalid API key provided."


def test_a_known_key_is_its_record():
    keys, token, record = KeyCache(None), secret(), key_record()
    cached(keys, token, record)
    assert accepted(keys, scope(token)) == record


def test_the_british_spelling_of_the_header_is_read_too():
    keys, token, record = KeyCache(None), secret(), key_record()
    cached(keys, token, record)
    assert accepted(keys, scope(authorisation=f"Bearer {token}")) == record


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": ""},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"authorization": "Bearer"},
        {"authorization": "Bearer sk-aqta-too-short"},
        {"authorization": "Bearer sk-openai-0123456789012345678901234567890123456789"},
    ],
    ids=["no-header", "empty", "basic", "no-token", "malformed", "foreign"],
)
def test_a_missing_or_malformed_key_is_refused_without_a_look_up(headers):
    keys = KeyCache(None)
    assert_invalid_key(refused(keys, scope(**headers)))
    assert keys.local == {}  # nothing was looked up (a look-up is remembered here)


def test_a_checksum_that_does_not_match_is_malformed():
    keys, token = KeyCache(None), secret()
    last = token[-1]
    forged = token[:-1] + ("A" if last != "A" else "B")
    assert_invalid_key(refused(keys, scope(forged)))
    assert keys.local == {}


def test_an_unknown_key_is_refused():
    keys, token = KeyCache(None), secret()
    cached(keys, token, None)
    assert_invalid_key(refused(keys, scope(token)))


def test_an_expired_key_is_refused():
    keys, token = KeyCache(None), secret()
    cached(keys, token, key_record(expires_at=time.time() - 1))
    assert_invalid_key(refused(keys, scope(token)))


def test_a_key_that_expires_later_is_accepted():
    keys, token, record = KeyCache(None), secret(), key_record(expires_at=time.time() + 3600)
    cached(keys, token, record)
    assert accepted(keys, scope(token)) == record


def test_unrevoked_embedded_has_no_markers_to_check():
    keys, token, record = KeyCache(None), secret(), key_record()
    cached(keys, token, record)
    assert accepted(keys, scope(token), authenticate_unrevoked) == record


def test_unrevoked_refuses_a_key_revoked_on_another_host(redis_url):
    """The local copy still has the record; the revocation marker in Redis wins."""
    token, record = secret(), key_record()
    marker = revoked_marker(record.org_id, record.key_id)
    outcome: list[object] = []

    async def scenario() -> None:
        client = Redis.from_url(redis_url)
        keys = KeyCache(client)
        cached(keys, token, record)
        try:
            outcome.append(await authenticate_unrevoked(keys, scope(token)))
            await client.set(marker, 1, ex=60)
            try:
                await authenticate_unrevoked(keys, scope(token))
            except AqtaError as error:
                outcome.append(error)
            outcome.append(await authenticate(keys, scope(token)))  # no marker check here
        finally:
            await client.delete(marker)
            await client.aclose()

    run(scenario)
    assert outcome[0] == record
    assert isinstance(outcome[1], AqtaError)
    assert_invalid_key(outcome[1])
    assert outcome[2] == record
