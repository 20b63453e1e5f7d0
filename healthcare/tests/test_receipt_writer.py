"""The data plane's receipt writer on PostgreSQL: concurrent calls share a batch, and a
row that cannot be stored fails only its own call."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import psycopg
import pytest
from django.db import connection

from accounts.models import Organization
from billing.models import Tier
from gateway.dataplane.receipts import PgReceiptWriter, _conninfo
from gateway.tests.conftest import seed_catalogue
from healthcare.models import Receipt
from healthcare.receipts import receipt_issue
from healthcare.store import receipt_values

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def writer():
    if connection.vendor != "postgresql":
        pytest.skip("the writer is PostgreSQL's (DATABASE_URL)")
    return PgReceiptWriter(_conninfo(connection.settings_dict), connections=2)


@pytest.fixture
def organization():
    seed_catalogue()  # a transactional test starts from an empty database
    return Organization.objects.create(
        name="H", slug=f"h-{uuid.uuid4().hex[:8]}", tier=Tier.objects.get(slug="healthcare")
    )


def _values(org: Organization, n: int):
    return [
        receipt_values(
            receipt_issue(
                trace_id=f"tr_{uuid.uuid4().hex}",
                org_id=str(org.pk),
                request_hash="b" * 64,
                model="gpt-4o-mini",
                outcome="ALLOWED",
            ),
            api_key_id=None,
            high_risk=False,
        )
        for _ in range(n)
    ]


def test_concurrent_writes_are_all_stored(writer, organization):
    values = _values(organization, 200)

    async def run():
        try:
            return await asyncio.gather(*(writer.write(v) for v in values))
        finally:
            await writer.aclose()

    asyncio.run(run())
    stored = set(
        Receipt.objects.filter(organization=organization).values_list("trace_id", flat=True)
    )
    assert stored == {v.trace_id for v in values}


def test_a_bad_row_fails_only_its_own_call(writer, organization):
    good = _values(organization, 20)
    # The same attestation id twice: the database refuses the second.
    duplicate = dataclasses.replace(good[0], trace_id="tr_" + "d" * 32)

    async def run():
        try:
            return await asyncio.gather(
                *(writer.write(v) for v in [*good, duplicate]), return_exceptions=True
            )
        finally:
            await writer.aclose()

    results = asyncio.run(run())

    failures = [r for r in results if isinstance(r, Exception)]
    assert len(failures) == 1
    stored = set(
        Receipt.objects.filter(organization=organization).values_list("trace_id", flat=True)
    )
    assert stored == {v.trace_id for v in good}


def test_an_unreachable_database_fails_the_call(organization, settings):
    settings.AQTA_RECEIPT_WRITE_TIMEOUT = 2.0
    writer = PgReceiptWriter("host=127.0.0.1 port=1 dbname=x connect_timeout=1", connections=1)

    async def run():
        try:
            await writer.write(_values(organization, 1)[0])
        finally:
            await writer.aclose()

    with pytest.raises(psycopg.OperationalError):
        asyncio.run(run())
    assert not Receipt.objects.filter(organization=organization).exists()
