from __future__ import annotations

import logging

import pytest

from accounts import keys
from accounts.models import ApiKey
from accounts.selectors import api_key_get_by_secret
from accounts.services import api_key_create, api_key_revoke


def test_a_generated_key_has_the_prefix_a_base62_body_and_a_valid_checksum():
    secret = keys.generate()
    assert secret.startswith("sk-aqta-")
    assert len(secret) == len("sk-aqta-") + 40 + 6
    assert set(secret[len("sk-aqta-") :]) <= set(keys.ALPHABET)
    assert keys.is_well_formed(secret)


def test_generated_keys_differ():
    assert len({keys.generate() for _ in range(200)}) == 200


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:-1],  # truncated
        lambda s: s + "x",  # too long
        lambda s: "sk-other" + s[8:],  # someone else's prefix
        lambda s: s[:20] + ("A" if s[20] != "A" else "B") + s[21:],  # one typo
        lambda s: s[:-6] + ("000000" if s[-6:] != "000000" else "000001"),  # bad checksum
        lambda s: s[:12] + "-" + s[13:],  # not base62
        lambda s: "",
    ],
)
def test_a_malformed_or_mistyped_key_is_rejected_without_a_lookup(
    mangle, db, django_assert_num_queries
):
    bad = mangle(keys.generate())
    assert not keys.is_well_formed(bad)
    with django_assert_num_queries(0):
        assert api_key_get_by_secret(secret=bad) is None


def test_the_digest_is_keyed_by_the_server_side_pepper(settings):
    secret = keys.generate()
    first = keys.digest(secret)
    settings.AQTA_API_KEY_PEPPER = "another-pepper"
    assert keys.digest(secret) != first
    assert len(first) == 64
    assert secret not in first


@pytest.mark.django_db
def test_the_secret_is_stored_nowhere_and_never_logged(org, user, caplog):
    caplog.set_level(logging.DEBUG)
    api_key, secret = api_key_create(organization=org, created_by=user, name="ci")
    api_key_get_by_secret(secret=secret)
    api_key_revoke(api_key=api_key, revoked_by=user)

    row = ApiKey.objects.filter(pk=api_key.pk).values().get()
    body = secret[len("sk-aqta-") :]
    assert all(body not in str(value) for value in row.values())
    assert row["digest"] == keys.digest(secret)
    assert row["prefix"] == secret[:12] and row["last4"] == secret[-4:]
    assert body not in caplog.text


@pytest.mark.django_db
def test_lookup_finds_an_active_key_by_digest_and_refuses_revoked_and_expired(org, user):
    from datetime import timedelta

    import time_machine
    from django.utils import timezone

    api_key, secret = api_key_create(organization=org, created_by=user, name="a")
    assert api_key_get_by_secret(secret=secret) == api_key
    _, expiring_secret = api_key_create(
        organization=org, created_by=user, name="b", expires_at=timezone.now() + timedelta(hours=1)
    )
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        assert api_key_get_by_secret(secret=expiring_secret) is None
    api_key_revoke(api_key=api_key, revoked_by=user)
    assert api_key_get_by_secret(secret=secret) is None
    assert api_key_get_by_secret(secret=keys.generate()) is None
