"""/api/analytics/requests and /costs, and the OpenAPI schema and docs of /api."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.staticfiles import finders
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import api_key_create, organization_create
from accounts.tests.factories import UserFactory
from billing.selectors import tier_get
from gateway.analytics import rollups
from gateway.tests.analytics_data import make_trace, store

pytestmark = pytest.mark.django_db

REQUESTS = "/api/analytics/requests"
COSTS = "/api/analytics/costs"


def _error(response) -> dict:
    error: dict = response.json()["error"]
    return error


def _client(secret: str, header: str = "HTTP_AUTHORIZATION") -> APIClient:
    client = APIClient()
    client.credentials(**{header: f"Bearer {secret}"})
    return client


@pytest.fixture
def traffic(org, api_key):
    """Five calls in the last hours (one refused, one failed) and one three days ago."""
    key = api_key[0]
    now = timezone.now()
    traces = store(
        make_trace(org, key, now - timedelta(hours=1), latency_ms=300),
        make_trace(org, key, now - timedelta(hours=2), model="gpt-4o", cost_eur=Decimal("0.02")),
        make_trace(org, key, now - timedelta(hours=3), http_status=502,
                   error_code="provider_error"),
        make_trace(
            org, key, now - timedelta(hours=4), status="blocked", http_status=429,
            error_code="rate_limit_exceeded", cost_eur=Decimal(0), latency_ms=2,
        ),
        make_trace(org, key, now - timedelta(hours=5)),
        make_trace(
            org, key, now - timedelta(days=3), provider="anthropic",
            model="claude-3-haiku-20240307",
        ),
    )  # fmt: skip
    rollups.rollups_refresh()
    return traces


@pytest.fixture
def other_org():
    stranger = UserFactory.create()
    other = organization_create(name="Other", owner=stranger, tier=tier_get(slug="pro"))
    their_key, secret = api_key_create(organization=other, created_by=stranger, name="theirs")
    store(make_trace(other, their_key, timezone.now() - timedelta(hours=1)))
    rollups.rollups_refresh()
    return other, their_key, secret


# --- Requests -------------------------------------------------------------------------------


def test_requests_lists_traces_newest_first_with_aggregates(key_client, traffic):
    response = key_client.get(REQUESTS)

    assert response.status_code == 200
    body = response.json()
    assert [t["id"] for t in body["data"]] == ["tr_" + t.id.hex for t in traffic]
    assert body["data"][1]["cost_eur"] == "0.02000000" and body["has_more"] is False
    summary = body["summary"]
    assert summary["requests"] == 6 and summary["errors"] == 2 and summary["blocked"] == 1
    assert summary["error_rate"] == round(2 / 6, 4) and summary["tokens"] == 6 * 150
    assert summary["cost_eur"] == "0.02040000"
    assert summary["p50_ms"] is not None and summary["p95_ms"] >= summary["p50_ms"]
    aggregates = body["aggregates"]
    assert aggregates["group_by"] == "day" and len(aggregates["data"]) in (8, 9)
    assert sum(day["requests"] for day in aggregates["data"]) == 6


def test_requests_are_grouped_by_model_key_or_hour(key_client, api_key, traffic):
    by_model = key_client.get(REQUESTS, {"group_by": "model"}).json()["aggregates"]["data"]
    assert (by_model[0]["key"], by_model[0]["requests"]) == ("gpt-4o-mini", 4)
    assert {g["label"] for g in by_model} == {"GPT-4o mini", "GPT-4o", "Claude 3 Haiku"}

    [by_key] = key_client.get(REQUESTS, {"group_by": "key"}).json()["aggregates"]["data"]
    assert by_key["key"] == str(api_key[0].pk) and by_key["requests"] == 6

    start = (timezone.now() - timedelta(hours=6)).isoformat()
    hours = key_client.get(REQUESTS, {"group_by": "hour", "start": start}).json()
    assert len(hours["aggregates"]["data"]) in (7, 8)
    assert sum(h["requests"] for h in hours["aggregates"]["data"]) == 5
    assert hours["aggregates"]["data"][0]["key"].endswith("+00:00")


def test_requests_filter_the_traces(key_client, traffic):
    blocked = key_client.get(REQUESTS, {"status": "blocked"}).json()["data"]
    assert [t["error_code"] for t in blocked] == ["rate_limit_exceeded"]
    failed = key_client.get(REQUESTS, {"error_code": "provider_error"}).json()["data"]
    assert [t["http_status"] for t in failed] == [502]
    by_provider = key_client.get(REQUESTS, {"provider": "anthropic", "model": ""}).json()
    assert len(by_provider["data"]) == 1 and by_provider["summary"]["requests"] == 1
    since = (timezone.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert len(key_client.get(REQUESTS, {"start": since}).json()["data"]) == 5


def test_requests_are_paginated_with_a_cursor(key_client, traffic):
    first = key_client.get(REQUESTS, {"limit": 4}).json()
    assert len(first["data"]) == 4 and first["has_more"] is True
    second = key_client.get(first["next"]).json()

    assert second["has_more"] is False and second["next"] is None
    ids = [t["id"] for t in first["data"] + second["data"]]
    assert ids == ["tr_" + t.id.hex for t in traffic]
    query = parse_qs(urlsplit(first["next"]).query)
    assert {"start", "end", "cursor", "limit"} <= set(query)


def test_the_british_authorisation_header_works(api_key, traffic):
    response = _client(api_key[1], "HTTP_AUTHORISATION").get(REQUESTS)

    assert response.status_code == 200 and len(response.json()["data"]) == 6


def test_the_dashboard_session_works(session_client, traffic):
    requests = session_client.get(REQUESTS)
    start = (timezone.now() - timedelta(days=5)).isoformat()
    costs = session_client.get(COSTS, {"group_by": "model", "start": start})

    assert requests.status_code == 200 and len(requests.json()["data"]) == 6
    assert costs.status_code == 200 and costs.json()["total"]["requests"] == 6


def test_anonymous_callers_and_bad_keys_get_401(api_client, traffic):
    assert _error(api_client.get(REQUESTS))["code"] == "not_authenticated"
    response = _client("sk-aqta-" + "x" * 46).get(COSTS)
    assert response.status_code == 401 and _error(response)["code"] == "invalid_api_key"


# --- Costs ------------------------------------------------------------------------------------


def test_costs_by_model_with_the_month_against_quota_and_budget(key_client, org, traffic):
    org.monthly_budget_eur = Decimal("25.00")
    org.save()
    start = (timezone.now() - timedelta(days=5)).date().isoformat()

    body = key_client.get(COSTS, {"group_by": "model", "start": start}).json()

    assert body["currency"] == "EUR" and body["group_by"] == "model"
    assert body["data"][0] == {
        "key": "gpt-4o",
        "label": "GPT-4o",
        "requests": 1,
        "errors": 0,
        "tokens": 150,
        "cost_eur": "0.02000000",
    }
    assert body["total"] == {
        "requests": 6,
        "errors": 2,
        "tokens": 900,
        "cost_eur": "0.02040000",
    }
    month = body["month"]
    assert month["month"] == timezone.now().strftime("%Y-%m")
    assert month["budget_eur"] == "25.00" and month["quota"] == 1_000_000
    assert Decimal(month["projected_cost_eur"]) >= Decimal(month["cost_eur"]).quantize(
        Decimal("0.01")
    )
    assert month["rate_limit_per_minute"] == 1000


@pytest.mark.parametrize("group_by", ["day", "model", "key", "provider"])
def test_costs_group_by_each_dimension(key_client, traffic, group_by):
    start = (timezone.now() - timedelta(days=5)).isoformat()
    body = key_client.get(COSTS, {"group_by": group_by, "start": start}).json()

    assert sum(row["requests"] for row in body["data"]) == 6
    assert all(row["label"] for row in body["data"])


def test_costs_ending_in_an_earlier_month_start_at_its_first_day(key_client):
    body = key_client.get(COSTS, {"end": "2025-01-31"}).json()

    assert body["start"] == "2025-01-01T00:00:00Z" and body["end"] == "2025-02-01T00:00:00Z"
    assert len(body["data"]) == 31


def test_costs_default_to_this_month(key_client, traffic):
    body = key_client.get(COSTS).json()

    first = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    assert body["start"].startswith(first.strftime("%Y-%m-%dT00:00:00"))
    assert len(body["data"]) == timezone.now().day  # every day so far, empty ones too


def test_embedded_reads_refresh_stale_rollups_as_no_beat_runs(key_client, org, api_key, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # no broker, hence no beat
    store(make_trace(org, api_key[0], timezone.now() - timedelta(minutes=1)))

    assert key_client.get(COSTS).json()["total"]["requests"] == 1
    store(make_trace(org, api_key[0], timezone.now()))
    assert key_client.get(COSTS).json()["total"]["requests"] == 1  # refreshed a moment ago


def test_with_celery_beat_reads_leave_the_rollups_to_it(key_client, org, api_key, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    store(make_trace(org, api_key[0], timezone.now() - timedelta(minutes=1)))

    assert key_client.get(COSTS).json()["total"]["requests"] == 0


# --- Tiers and isolation ----------------------------------------------------------------------


def test_free_tier_gets_403_naming_the_tier_needed(org, key_client, traffic):
    org.tier = tier_get(slug="free")
    org.save()

    for path in (REQUESTS, COSTS):
        response = key_client.get(path)
        assert response.status_code == 403
        assert _error(response) == {
            "message": "Analytics needs the Starter tier or above; this organisation is on Free.",
            "type": "permission_error",
            "code": "tier_feature_unavailable",
        }


def test_starter_tier_has_analytics(org, key_client, traffic):
    org.tier = tier_get(slug="starter")
    org.save()

    assert key_client.get(COSTS).status_code == 200


def test_another_organisations_data_never_shows(key_client, traffic, other_org):
    _, _, their_secret = other_org

    mine = key_client.get(REQUESTS).json()
    assert len(mine["data"]) == 6 and mine["summary"]["requests"] == 6
    theirs = _client(their_secret).get(REQUESTS).json()
    assert len(theirs["data"]) == 1 and theirs["summary"]["requests"] == 1


def test_another_organisations_key_id_as_a_filter_gives_no_data(key_client, traffic, other_org):
    _, their_key, _ = other_org

    body = key_client.get(REQUESTS, {"api_key": str(their_key.pk), "group_by": "key"}).json()

    assert body["data"] == [] and body["summary"]["requests"] == 0
    assert body["aggregates"]["data"] == []


def test_a_session_user_cannot_pick_an_organisation_they_are_not_in(
    session_client, traffic, other_org
):
    other, _, _ = other_org

    response = session_client.get(REQUESTS, HTTP_X_AQTA_ORGANIZATION=str(other.pk))

    assert response.status_code == 404


# --- CSV --------------------------------------------------------------------------------------


def _rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_requests_as_csv_are_the_page_of_traces(key_client, traffic):
    response = key_client.get(REQUESTS, {"format": "csv", "limit": 4})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    header, *rows = _rows(response)
    assert header[:4] == ["id", "created_at", "api_key", "model"]
    assert [row[0] for row in rows] == ["tr_" + t.id.hex for t in traffic[:4]]
    assert 'rel="next"' in response["Link"] and "format=csv" in response["Link"]


def test_costs_as_csv_are_the_grouped_rows(key_client, traffic):
    start = (timezone.now() - timedelta(days=5)).isoformat()
    response = key_client.get(COSTS, {"format": "csv", "group_by": "provider", "start": start})

    assert response["Content-Type"].startswith("text/csv")
    header, *rows = _rows(response)
    assert header == ["key", "label", "requests", "errors", "tokens", "cost_eur"]
    assert {row[0]: int(row[2]) for row in rows} == {"openai": 5, "anthropic": 1}


def test_csv_has_a_header_even_without_rows(key_client):
    response = key_client.get(COSTS, {"format": "csv", "group_by": "model"})

    assert _rows(response) == [["key", "label", "requests", "errors", "tokens", "cost_eur"]]


def test_csv_of_an_invalid_request_is_still_a_json_error(key_client):
    response = key_client.get(REQUESTS, {"format": "csv", "start": "yesterday"})

    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert _error(response)["param"] == "start"


@pytest.mark.parametrize("path", [REQUESTS, COSTS])
def test_options_with_format_csv_describes_the_endpoint_in_json(key_client, path):
    response = key_client.options(f"{path}?format=csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json()["name"]


def test_csv_cells_that_look_like_formulas_are_neutralised(key_client, org, api_key):
    store(make_trace(org, api_key[0], timezone.now() - timedelta(minutes=5), model="=HYPERLINK(1)"))

    header, row = _rows(key_client.get(REQUESTS, {"format": "csv"}))

    assert row[header.index("model")] == "'=HYPERLINK(1)"


# --- Bad parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        (REQUESTS, {"start": "03/01/2025"}, "start"),
        (REQUESTS, {"end": "2025-02-30"}, "end"),
        (REQUESTS, {"start": "2025-03-10", "end": "2025-03-01"}, "start"),
        (COSTS, {"start": "2023-01-01", "end": "2025-03-01"}, "start"),
        (REQUESTS, {"group_by": "week"}, "group_by"),
        (COSTS, {"group_by": "hour"}, "group_by"),
        (REQUESTS, {"group_by": "hour", "start": "2025-01-01", "end": "2025-03-01"}, "group_by"),
        (REQUESTS, {"limit": "0"}, "limit"),
        (REQUESTS, {"limit": "501"}, "limit"),
        (REQUESTS, {"cursor": "not-a-cursor"}, "cursor"),
        (REQUESTS, {"api_key": "not-a-uuid"}, "api_key"),
        (REQUESTS, {"status": "failed"}, "status"),
        (COSTS, {"format": "xml"}, "format"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(key_client, path, params, param):
    response = key_client.get(path, params)

    assert response.status_code == 400
    error = _error(response)
    assert error["param"] == param and error["code"] == "invalid_parameter"
    assert error["type"] == "invalid_request_error"


def test_unknown_group_by_lists_the_choices(key_client):
    message = _error(key_client.get(REQUESTS, {"group_by": "week"}))["message"]

    assert message == 'group_by: "week" is not one of: hour, day, model, key, provider.'


def test_an_offset_sent_unencoded_still_parses(key_client, traffic):
    start = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00")

    response = key_client.get(f"{REQUESTS}?start={start}")  # "+" arrives as a space

    assert response.status_code == 200 and len(response.json()["data"]) == 5


# --- Schema and docs --------------------------------------------------------------------------


def test_the_schema_documents_the_analytics_endpoints(api_client):
    response = api_client.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = response.json()
    requests = schema["paths"]["/api/analytics/requests"]["get"]
    costs = schema["paths"]["/api/analytics/costs"]["get"]
    params = {p["name"] for p in requests["parameters"]}
    assert {"start", "end", "api_key", "model", "provider", "status", "error_code"} <= params
    assert {"group_by", "limit", "cursor", "format"} <= params
    assert set(requests["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    assert requests["responses"]["403"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert {"month", "data", "total"} <= set(
        schema["components"]["schemas"]["AnalyticsCosts"]["properties"]
    )
    assert costs["security"] == [{"apiKey": []}, {"sessionCookie": []}]
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert "/api/keys" in schema["paths"]


def test_the_docs_page_renders_with_local_assets(api_client):
    response = api_client.get("/api/docs/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn.jsdelivr.net" not in page and "unpkg.com" not in page
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
