"""GET /api/compliance/audit-trail: tier, scope, filters, pages, verification, exports,
hostile input, and the tamper tests through the API."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tracemalloc
import warnings
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import cast

import pytest
from asgiref.sync import async_to_sync
from django.http import StreamingHttpResponse
from django.test import AsyncClient
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import api_key_create, organization_create
from accounts.tests.factories import UserFactory
from billing.selectors import tier_get
from compliance.checkpoints import checkpoint_run
from compliance.models import AuditChain, AuditEvent
from compliance.services import audit_event_record
from compliance.tests import tamper

pytestmark = pytest.mark.django_db

URL = "/api/compliance/audit-trail"


@pytest.fixture
def clinic(user):
    organization = organization_create(name="Clinic", owner=user, tier=tier_get(slug="healthcare"))
    for n in range(5):
        audit_event_record(action=f"test.{n % 2}", organization=organization, target=f"t{n}")
    return organization


@pytest.fixture
def clinic_key(clinic, user):
    return api_key_create(organization=clinic, created_by=user, name="auditor")


@pytest.fixture
def client(clinic_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {clinic_key[1]}")
    return client


def scope(organization) -> str:
    return str(organization.pk)


def error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    found: dict = body["error"]
    return found


# --- who may read it -----------------------------------------------------------------------


def test_other_tiers_get_403_naming_healthcare(key_client, session_client):
    for caller in (key_client, session_client):
        response = caller.get(URL)
        assert response.status_code == 403
        assert error(response)["code"] == "tier_feature_unavailable"
        assert "Healthcare tier" in error(response)["message"]


def test_anonymous_is_401():
    response = APIClient().get(URL)
    assert response.status_code == 401 and error(response)["code"] == "not_authenticated"


def test_only_the_callers_organisation_is_seen(client, clinic, user):
    other = organization_create(name="Other clinic", owner=UserFactory.create(), tier=clinic.tier)
    audit_event_record(action="test.theirs", organization=other)
    audit_event_record(action="test.global")

    body = client.get(URL, {"limit": 500}).json()

    assert {e["scope"] for e in body["data"]} == {scope(clinic)}
    assert "test.theirs" not in {e["action"] for e in body["data"]}
    session = APIClient()
    session.force_login(user)
    response = session.get(URL, HTTP_X_AQTA_ORGANIZATION=str(other.pk))
    assert response.status_code == 404


# --- the list ------------------------------------------------------------------------------


def test_events_newest_first_with_what_their_hash_covers(client, clinic):
    body = client.get(URL).json()

    assert body["object"] == "audit_trail" and body["has_more"] is False and body["next"] is None
    sequences = [e["sequence"] for e in body["data"]]
    assert sequences == sorted(sequences, reverse=True)
    # The key's creation is the newest event; its own chain fields link to the one before.
    newest, previous = body["data"][0], body["data"][1]
    assert newest["action"] == "api_key.created" and newest["prev_hash"] == previous["hash"]
    event = AuditEvent.objects.get(pk=newest["id"])
    assert newest["hash"] == event.hash and newest["created_at"] == event.created_at.isoformat()


@pytest.mark.parametrize(
    ("query", "actions"),
    [
        ({"action": "test.1"}, ["test.1", "test.1"]),
        ({"action": "test.*"}, ["test.0", "test.1", "test.0", "test.1", "test.0"]),
        ({"target": "t3"}, ["test.1"]),
        ({"action": "nothing.like.it"}, []),
    ],
)
def test_filters(client, query, actions):
    assert [e["action"] for e in client.get(URL, query).json()["data"]] == actions


def test_actor_filter_ignores_case_and_knows_keys(client, clinic_key, user):
    by_key = client.get(URL, {"actor": f"API_KEY:{clinic_key[0].masked}".upper()})
    by_user = client.get(URL, {"actor": user.email.upper()})
    assert by_key.json()["data"] == []  # the key made no change yet
    assert {e["action"] for e in by_user.json()["data"]} == {
        "organization.created",
        "api_key.created",
    }


def test_date_range(client, clinic):
    later = timezone.now() + timedelta(hours=1)
    assert client.get(URL, {"start": later.isoformat()}).json()["data"] == []
    assert len(client.get(URL, {"end": later.isoformat()}).json()["data"]) == 7
    response = client.get(URL, {"start": later.isoformat(), "end": timezone.now().isoformat()})
    assert response.status_code == 400 and error(response)["param"] == "start"


def test_pages_follow_next_without_overlap(client):
    seen: list[int] = []
    url, params = URL, {"limit": 3}
    while url:
        body = client.get(url, params).json()
        seen += [e["sequence"] for e in body["data"]]
        url, params = body["next"], {}
    assert seen == list(range(7, 0, -1))


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"limit": "9" * 40}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "c2VxOi0x"}, "cursor"),  # seq:-1
        ({"cursor": "%00"}, "cursor"),
        ({"action": "a\x00b"}, "action"),
        ({"actor": "x" * 300}, "actor"),
        ({"format": "xml"}, "format"),
        ({"verify": "perhaps"}, "verify"),
        ({"start": "99999-01-01"}, "start"),
    ],
)
def test_hostile_input_is_a_400_naming_the_parameter(client, query, param):
    response = client.get(URL, query)
    assert response.status_code == 400, response.content
    assert error(response)["param"] == param


# --- verification, and the tamper tests through the API ----------------------------------------


def verification(client) -> dict:
    response = client.get(URL, {"verify": "true", "limit": 1})
    assert response.status_code == 200
    found: dict = response.json()["verification"]
    return found


def test_an_intact_trail_verifies_and_the_check_is_recorded(client, clinic):
    checkpoint_run()
    result = verification(client)

    assert result["valid"] is True
    [audit] = result["chains"]
    assert (audit["kind"], audit["scope"], audit["first_break"]) == ("audit", scope(clinic), None)
    assert audit["checkpoint"]["length"] == 7 and audit["checkpoint"]["document"].startswith("{")
    event = AuditEvent.objects.get(action="audit_chain.verified")
    assert event.data == {"valid": True, "reason": ""}


def first_break(client) -> dict:
    result = verification(client)
    assert result["valid"] is False
    broken: dict | None = result["chains"][0]["first_break"]
    assert broken is not None
    return broken


def test_an_edited_event_is_reported_where_it_is(client, clinic):
    victim = AuditEvent.objects.get(chain__scope=scope(clinic), sequence=3)
    tamper.edit_event(scope(clinic), 3, data={"edited": True})

    broken = first_break(client)
    assert (broken["sequence"], broken["event_id"]) == (3, victim.pk)
    assert "altered" in broken["reason"]
    assert AuditEvent.objects.get(action="audit_chain.verified").data["valid"] is False


def test_deleted_newest_events_are_reported(client, clinic):
    checkpoint_run()
    tamper.delete_events(scope(clinic), from_sequence=6)

    broken = first_break(client)
    assert broken["sequence"] == 6 and "the newest events were removed" in broken["reason"]


def test_a_deleted_chain_is_reported(client, clinic):
    checkpoint_run()
    tamper.delete_chain(scope(clinic))

    broken = first_break(client)
    assert broken["sequence"] == 7 and "the chain is gone" in broken["reason"]


def test_a_rehashed_chain_is_reported_by_its_checkpoint(client, clinic):
    checkpoint_run()
    tamper.edit_event(scope(clinic), 2, action="test.innocent")
    tamper.rehash_chain(scope(clinic))

    broken = first_break(client)
    assert broken["sequence"] == 7 and "rewritten" in broken["reason"]


# --- exports ------------------------------------------------------------------------------------


def export(client, fmt: str, **query) -> tuple[str, bytes]:
    response = client.get(URL, {"format": fmt, **query})
    assert response.status_code == 200
    assert response.streaming
    return response["Content-Type"], b"".join(response.streaming_content)


def test_csv_export_every_event_oldest_first_and_recorded(client, clinic):
    audit_event_record(action="test.formula", organization=clinic, target="=HYPERLINK(1)")
    media, body = export(client, "csv", limit=1)

    assert media.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    # Every event, not a page, up to the export's own record.
    assert [int(r["sequence"]) for r in rows] == list(range(1, 10))
    assert rows[-1]["action"] == "data.exported"
    assert rows[-2]["target"] == "'=HYPERLINK(1)"
    assert json.loads(rows[0]["data"])["tier"] == "healthcare"
    [event] = AuditEvent.objects.filter(action="data.exported")
    assert event.target == "audit.trail" and event.data["params"] == {"format": "csv"}


def public_hash(line: dict) -> str:
    """docs/audit.md: recomputed from an exported line alone."""
    payload = {
        "scope": line["scope"],
        "sequence": line["sequence"],
        "organization": line["scope"],
        "actor": line["actor"],
        "action": line["action"],
        "target": line["target"],
        "ip": line["ip"],
        "data": line["data"],
        "created_at": line["created_at"],
    }
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(line["prev_hash"].encode() + body).hexdigest()


def test_jsonl_export_lets_anyone_recompute_the_chain(client, clinic):
    media, body = export(client, "jsonl", action="test.*")
    assert media == "application/x-ndjson"
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert [line["action"] for line in lines] == ["test.0", "test.1", "test.0", "test.1", "test.0"]

    _, everything = export(client, "jsonl")
    chain = [json.loads(line) for line in everything.decode().splitlines()]
    previous = "0" * 64
    for line in chain:
        assert line["prev_hash"] == previous and public_hash(line) == line["hash"]
        previous = line["hash"]
    assert AuditChain.objects.get(scope=scope(clinic)).last_hash in {previous, chain[-1]["hash"]}


def _many_events(organization, count: int) -> None:
    chain = AuditChain.objects.get(scope=scope(organization))
    start, now = chain.length + 1, timezone.now()
    AuditEvent.objects.bulk_create(
        AuditEvent(
            chain=chain,
            sequence=start + n - 1,
            organization=organization,
            actor_label="bulk@example.com",
            action="test.bulk",
            target=f"target-{n}",
            data={"n": n, "padding": "x" * 100},
            created_at=now,
            prev_hash="0" * 64,
            hash=hashlib.sha256(f"{organization.pk}-{start + n}".encode()).hexdigest(),
        )
        for n in range(1, count + 1)
    )
    last = AuditEvent.objects.get(chain=chain, sequence=start + count - 1)
    AuditChain.objects.filter(pk=chain.pk).update(length=last.sequence, last_hash=last.hash)


def _streamed(client) -> tuple[int, int, int]:
    """(bytes, lines, peak traced memory) of a JSON Lines export, consumed as it comes."""
    response = client.get(URL, {"format": "jsonl"})
    tracemalloc.start()
    total = lines = 0
    for chunk in response.streaming_content:
        total += len(chunk)
        lines += chunk.count(b"\n")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return total, lines, peak


def test_a_large_export_streams_in_constant_memory(client, clinic):
    _many_events(clinic, 5_000)
    small, small_lines, small_peak = _streamed(client)
    _many_events(clinic, 25_000)
    large, large_lines, large_peak = _streamed(client)

    # Seven events, the bulk, the exports' own records.
    assert (small_lines, large_lines) == (5_008, 30_009)
    assert large > 5 * small
    # Six times the rows, the same memory: a chunk of events at a time.
    assert large_peak < small_peak * 1.25, (small_peak, large_peak)
    assert large_peak < large / 3


def test_under_asgi_the_export_streams_asynchronously(clinic_key, clinic):
    """Through Django's ASGI handler (the production server's): an asynchronous stream,
    so Django does not read the whole export into a list first."""
    client, auth = AsyncClient(), {"Authorization": f"Bearer {clinic_key[1]}"}

    async def fetch():
        response = await client.get(URL, {"format": "csv"}, headers=auth)
        content = cast(
            AsyncIterator[bytes], cast(StreamingHttpResponse, response).streaming_content
        )
        return response, b"".join([chunk async for chunk in content])

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "must consume … iterators" is a warning
        response, body = async_to_sync(fetch)()

    assert response.status_code == 200 and response.is_async
    # The header, seven events and the export's own record.
    assert body.decode().count("\r\n") == 9


def test_the_endpoint_is_in_the_schema(client):
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/compliance/audit-trail"]["get"]
    assert operation["operationId"] == "compliance_audit_trail"
    assert set(operation["responses"]["200"]["content"]) == {
        "application/json",
        "text/csv",
        "application/x-ndjson",
    }
    names = {p["name"] for p in operation["parameters"]}
    assert {
        "start",
        "end",
        "action",
        "actor",
        "target",
        "limit",
        "cursor",
        "verify",
        "format",
    } <= names
