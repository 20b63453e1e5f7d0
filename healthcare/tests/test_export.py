"""GET /api/health/receipts/export: JSON Lines, CSV and FHIR, streamed in constant memory,
and the exported receipts verified by the public CLI."""

from __future__ import annotations

import base64
import csv
import io
import json
import tracemalloc
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.R4B.bundle import Bundle

from compliance.models import AuditEvent
from healthcare import export
from healthcare.signing import issuer_key
from healthcare.tests.factories import WHEN, raw_sql, receipt_make, receipts_bulk
from healthcare.tests.test_receipts import run_cli_file

EXPORT = "/api/health/receipts/export"


def body(response) -> bytes:
    assert response.streaming, "an export is streamed"
    return b"".join(response.streaming_content)


def export_of(client, export_format: str, **params) -> bytes:
    response = client.get(EXPORT, {"format": export_format, **params})
    assert response.status_code == 200, response.content
    return body(response)


@pytest.fixture
def receipts(healthcare_org, api_key):
    key = api_key[0].pk
    return [
        receipt_make(healthcare_org, timestamp=WHEN, cost_prevented_eur=0.000015, api_key_id=key),
        receipt_make(
            healthcare_org,
            timestamp=WHEN + timedelta(seconds=1),
            outcome="ALLOWED",
            policy_applied=[],
            cost_prevented_eur=0,
        ),
        receipt_make(
            healthcare_org,
            timestamp=WHEN + timedelta(days=1),
            outcome="SUPPRESSED",
            policy_applied=["Größe-Limit", "données", "日本"],
            cost_prevented_eur=Decimal("0.000001"),
            high_risk=True,
        ),
    ]


# --- JSON Lines ------------------------------------------------------------------------------


def test_jsonl_is_every_stored_receipt_exactly_in_chain_order(receipts, key_client):
    response = key_client.get(EXPORT, {"format": "jsonl"})

    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="aqta-receipts-')
    assert response["Cache-Control"] == "no-store"
    text = body(response).decode("utf-8")
    assert text.endswith("\n")
    assert text.splitlines() == [row.document for row in receipts]
    assert '"cost_prevented_eur":0.000015' in text and "e-0" not in text


def test_jsonl_is_the_default_format(receipts, key_client):
    response = key_client.get(EXPORT)
    assert body(response).decode().splitlines() == [row.document for row in receipts]


def test_every_exported_line_verifies_with_the_public_cli(receipts, key_client, tmp_path):
    lines = export_of(key_client, "jsonl").decode("utf-8").splitlines()
    public_key = issuer_key().public_key
    assert len(lines) == 3
    for n, line in enumerate(lines):
        path = tmp_path / f"receipt-{n}.json"
        path.write_bytes(line.encode("utf-8"))
        result = run_cli_file(path, key=public_key)
        assert result.returncode == 0, (line, result.stdout, result.stderr)


def _tampered(line: str) -> list[tuple[str, str]]:
    document = json.loads(line)
    signature = document["signature"]
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return [
        ("outcome", line.replace('"outcome":"BLOCKED"', '"outcome":"ALLOWED"')),
        ("cost", line.replace('"cost_prevented_eur":0.000015', '"cost_prevented_eur":0.000016')),
        ("model", line.replace('"model":"gpt-4o-mini"', '"model":"gpt-4o"')),
        ("signature", line.replace(signature, flipped)),
        ("timestamp", line.replace("10:15:30.123456", "10:15:31.123456")),
    ]


def test_tampered_copies_of_an_exported_line_fail_the_public_cli(receipts, key_client, tmp_path):
    line = export_of(key_client, "jsonl").decode("utf-8").splitlines()[0]
    public_key = issuer_key().public_key
    for name, copy in _tampered(line):
        assert copy != line, name
        path = tmp_path / f"{name}.json"
        path.write_text(copy, encoding="utf-8")
        result = run_cli_file(path, key=public_key)
        assert result.returncode == 1, (name, result.stdout, result.stderr)


def test_a_stored_line_break_does_not_split_a_line(healthcare_org, key_client):
    row = receipt_make(healthcare_org)
    receipt_make(healthcare_org)
    broken = row.document.replace(",", ",\n", 1)
    raw_sql("UPDATE healthcare_receipt SET document = %s WHERE id = %s", [broken, row.pk])

    lines = export_of(key_client, "jsonl").decode().splitlines()

    assert len(lines) == 2 and json.loads(lines[0])["attestation_id"] == str(row.attestation_id)


# --- CSV -------------------------------------------------------------------------------------


def test_csv_has_the_chain_fields_and_the_signed_numbers(receipts, key_client, api_key):
    response = key_client.get(EXPORT, {"format": "csv"})
    assert response["Content-Type"] == "text/csv; charset=utf-8"

    table = list(csv.DictReader(io.StringIO(body(response).decode("utf-8"))))

    assert list(table[0]) == list(export.COLUMNS)
    assert [int(r["sequence"]) for r in table] == [1, 2, 3]
    first, _, third = table
    row = receipts[0]
    assert first["id"] == str(row.pk) and first["attestation_id"] == str(row.attestation_id)
    assert first["prev_hash"] == "0" * 64 and first["chain_hash"] == row.chain_hash
    assert table[1]["prev_hash"] == row.chain_hash
    assert first["cost_prevented_eur"] == "0.000015"
    assert third["cost_prevented_eur"] == "0.000001"
    assert first["api_key"] == str(api_key[0].pk) and third["api_key"] == ""
    assert third["policy_applied"] == "Größe-Limit; données; 日本"
    assert third["high_risk"] == "true" and first["high_risk"] == "false"
    assert first["issued_at"] == "2026-04-23T10:15:30.123456+00:00"
    assert [r["receipt"] for r in table] == [r.document for r in receipts]


def test_csv_cells_cannot_run_as_formulas(healthcare_org, key_client):
    receipt_make(healthcare_org, model="=HYPERLINK(1)", policy_applied=["+cmd"])
    row = next(csv.DictReader(io.StringIO(export_of(key_client, "csv").decode())))
    assert row["model"] == "'=HYPERLINK(1)"


# --- FHIR ------------------------------------------------------------------------------------


def test_fhir_is_a_valid_r4_bundle_of_audit_events(receipts, key_client, api_key, healthcare_org):
    response = key_client.get(EXPORT, {"format": "fhir"})
    assert response["Content-Type"] == "application/fhir+json; charset=utf-8"
    data = body(response)

    bundle = Bundle.model_validate_json(data)

    assert bundle.type == "collection" and bundle.entry is not None and len(bundle.entry) == 3
    events: list[Any] = [entry.resource for entry in bundle.entry]
    assert all(isinstance(event, FhirAuditEvent) for event in events)
    by_id = {event.id: event for event in events}
    blocked, allowed, suppressed = (by_id[str(r.attestation_id)] for r in receipts)
    assert (blocked.outcome, allowed.outcome, suppressed.outcome) == ("4", "0", "4")
    assert [s.code for s in blocked.subtype] == ["BLOCKED"]
    assert blocked.type.code == "rest" and blocked.action == "E"
    assert blocked.recorded.isoformat() == "2026-04-23T10:15:30.123456+00:00"
    assert blocked.source.site == "Aqta gateway"
    assert blocked.source.observer.identifier.value == receipts[0].key_id
    requestor = [agent for agent in blocked.agent if agent.requestor]
    assert [a.who.identifier.value for a in requestor] == [str(api_key[0].pk)]
    assert str(healthcare_org.pk) in [a.who.identifier.value for a in blocked.agent]
    assert [a.requestor for a in allowed.agent] == [True]  # no key: the organisation asked
    entity = blocked.entity[0]
    assert entity.what.identifier.value == receipts[0].trace_id
    signed = next(d for d in entity.detail if d.type == "ATTESTATION-v1")
    assert signed.valueBase64Binary == receipts[0].document.encode()  # the library decodes it
    raw = json.loads(data)["entry"][0]["resource"]["entity"][0]["detail"][0]
    assert base64.b64decode(raw["valueBase64Binary"]).decode() == receipts[0].document
    sequence = next(d for d in entity.detail if d.type == "chain.sequence")
    assert sequence.valueString == "1"


@pytest.mark.parametrize("export_format", ["jsonl", "csv", "fhir"])
def test_an_empty_export_is_well_formed(healthcare_org, key_client, export_format):
    data = export_of(key_client, export_format)
    if export_format == "jsonl":
        assert data == b""
    elif export_format == "csv":
        assert data.decode().splitlines() == [",".join(export.COLUMNS)]
    else:
        bundle = Bundle.model_validate_json(data)
        assert bundle.type == "collection" and not bundle.entry
        assert "entry" not in json.loads(data)  # FHIR has no empty arrays


# --- Filters, errors, audit ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"start": "2026-04-24"}, [2]),
        ({"end": "2026-04-23"}, [0, 1]),
        ({"start": "2026-04-23T10:15:31Z", "end": "2026-04-23T10:15:32Z"}, [1]),
        ({"outcome": "ALLOWED"}, [1]),
        ({"high_risk": "true"}, [2]),
    ],
)
def test_export_filters(receipts, key_client, params, expected):
    lines = export_of(key_client, "jsonl", **params).decode().splitlines()
    assert lines == [receipts[n].document for n in expected]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"format": "xml"}, "format"),
        ({"format": "json"}, "format"),
        ({"start": "nope"}, "start"),
        ({"start": "2026-05-01", "end": "2026-04-01"}, "start"),
        ({"model": "\x00"}, "model"),
    ],
)
def test_bad_export_parameters_are_a_json_400(healthcare_org, key_client, params, param):
    response = key_client.get(EXPORT, params)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["param"] == param
    assert not AuditEvent.objects.filter(action="receipt.exported").exists()


def test_exports_are_audited(receipts, key_client, api_key):
    export_of(key_client, "fhir", start="2026-04-23", outcome="BLOCKED")
    event = AuditEvent.objects.get(action="receipt.exported")
    assert event.actor_label == f"api_key:{api_key[0].masked}"
    assert event.target == "fhir"
    assert event.data["format"] == "fhir" and event.data["outcome"] == "BLOCKED"
    assert event.data["start"].startswith("2026-04-23")


def test_another_organisations_receipts_are_never_exported(receipts, other_org, key_client):
    receipt_make(other_org)
    lines = export_of(key_client, "jsonl").decode().splitlines()
    assert lines == [row.document for row in receipts]


def test_the_export_stops_where_the_chain_was_when_it_began(
    healthcare_org, key_client, monkeypatch
):
    monkeypatch.setattr(export, "PAGE", 2)
    rows = [receipt_make(healthcare_org) for _ in range(5)]
    response = key_client.get(EXPORT, {"format": "jsonl"})
    chunks = iter(response.streaming_content)
    first = next(chunks)
    later = [receipt_make(healthcare_org) for _ in range(3)]  # linked during the export
    text = (first + b"".join(chunks)).decode()

    assert text.splitlines() == [row.document for row in rows]
    assert later[-1].sequence == 8


def test_under_asgi_the_export_is_an_async_stream(receipts, api_key, monkeypatch):
    monkeypatch.setattr(export, "PAGE", 2)
    client = AsyncClient()

    async def fetch() -> tuple[bool, bytes]:
        headers = {"Authorization": f"Bearer {api_key[1]}"}
        response: Any = await client.get(EXPORT, {"format": "jsonl"}, headers=headers)
        parts = [part async for part in response.streaming_content]
        return response.is_async, b"".join(parts)

    is_async, data = async_to_sync(fetch)()

    assert is_async  # Django would otherwise collect a sync iterator in full first
    assert data.decode().splitlines() == [row.document for row in receipts]


# --- Size ------------------------------------------------------------------------------------

ROWS = 100_000


def _stream(client, export_format: str, marker: bytes) -> tuple[int, int, int]:
    """(bytes, occurrences of ``marker``, peak traced memory) of one export, read as a
    client would: chunk by chunk, keeping none."""
    response = client.get(EXPORT, {"format": export_format})
    assert response.status_code == 200
    size = count = 0
    tracemalloc.start()
    try:
        for chunk in response.streaming_content:
            size += len(chunk)
            count += chunk.count(marker)  # chunks end between rows, never inside one
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return size, count, peak


BOUND = 16 * 2**20  # what one page of rows and its output take, with room to spare


def test_100k_receipts_stream_in_bounded_memory(healthcare_org, key_client):
    assert receipts_bulk(healthcare_org, ROWS) == ROWS

    for export_format, marker, expected in [
        ("jsonl", b"\n", ROWS),
        ("csv", b"\r\n", ROWS + 1),  # and the header
        ("fhir", b'"resourceType":"AuditEvent"', ROWS),
    ]:
        size, count, peak = _stream(key_client, export_format, marker)
        assert count == expected, export_format
        # Each format is 55 to 150 MB for these rows: holding it would show.
        assert size > 50_000_000, export_format
        assert peak < BOUND, f"{export_format}: peak {peak / 2**20:.1f} MiB for {size >> 20} MiB"
