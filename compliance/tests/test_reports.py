"""Compliance reports end to end: request, the job, the signed JSON, the PDF read back
as text, verification (and tampering), an empty period, and the bad requests."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
import time_machine
from django.core.management import call_command
from pypdf import PdfReader
from rest_framework.test import APIClient

from accounts.models import Membership, Role
from accounts.services import api_key_create, organization_create
from accounts.tests.factories import UserFactory
from billing.selectors import tier_get
from compliance.models import BiasMethod, BiasRun, ComplianceReport, JobStatus
from compliance.reports.signing import report_verify
from compliance.reports.verify import report_file_verify
from compliance.services import audit_event_record
from compliance.tests.jobs import jobs_run
from gateway.models import GatewayEvent, Trace, TraceStatus
from healthcare.signing import issuer_key

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_jobs")]

URL = "/api/compliance/report"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
NOVEMBER = {"start": "2026-11-01", "end": "2026-11-30"}


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


@pytest.fixture
def clinic(user):
    return organization_create(
        name="St Mary's <Clinic> & Co", owner=user, tier=tier_get(slug="healthcare")
    )


@pytest.fixture
def client(clinic, user) -> APIClient:
    _, secret = api_key_create(organization=clinic, created_by=user, name="officer")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def trace(org, day: int, **fields) -> Trace:
    values = {
        "organization": org,
        "created_at": at(day),
        "model": "gpt-4o-mini",
        "provider": "openai",
        "status": TraceStatus.PASSED,
        "http_status": 200,
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "cost_eur": Decimal("0.00012000"),
        **fields,
    }
    return Trace.objects.create(**values)


@pytest.fixture
def november(clinic):
    """A month of activity with known figures."""
    for day in range(1, 29):  # 28 days x 3 passed calls
        for _ in range(3):
            trace(clinic, day)
    trace(clinic, 3, model="claude-sonnet-4-5", provider="anthropic", cost_eur=Decimal("0.5"))
    trace(clinic, 4, status=TraceStatus.BLOCKED, http_status=429, policy="rate_limit", cost_eur=0)
    trace(
        clinic, 11, status=TraceStatus.BLOCKED, http_status=402, policy="budget_guard", cost_eur=0
    )
    trace(
        clinic, 12, status=TraceStatus.SUPPRESSED, http_status=429, policy="loop_guard", cost_eur=0
    )
    flagged = trace(clinic, 20, high_risk=True)
    GatewayEvent.objects.create(
        organization=clinic, kind="loop_detected", created_at=at(12), data={}
    )
    GatewayEvent.objects.create(
        organization=clinic,
        kind="high_risk_detected",
        trace=flagged,
        created_at=at(20),
        data={
            "rules": [{"name": "suicide-risk", "action": "flag", "where": "request"}],
            "blocked": False,
        },
    )
    trace(clinic, 5, created_at=datetime(2026, 10, 31, 23, 59, tzinfo=UTC))  # outside
    BiasRun.objects.create(
        organization=clinic,
        method=BiasMethod.PROBE,
        model="gpt-4o-mini",
        probe_set_name="Default clinical probe set",
        definition={},
        status=JobStatus.COMPLETED,
        finished_at=at(15),
        calls_total=40,
        calls_done=40,
        findings=[
            {
                "attribute": "sex",
                "outcome": "imaging_referral",
                "kind": "binary",
                "design": "paired",
                "test": "mcnemar",
                "statistic": 0.0,
                "p_value": 0.000061,
                "q_value": 0.000122,
                "n": 16,
                "n_excluded": 0,
                "n_required": 10,
                "status": "flagged",
                "reason": "female's favourable rate is 0.25 of male's",
                "best_group": "male",
                "worst_group": "female",
                "min_impact_ratio": 0.25,
                "groups": [
                    {"group": "female", "n": 16, "successes": 4, "rate": 0.25, "ci_low": 0.1,
                     "ci_high": 0.5, "mean": None, "favourable_rate": 0.25, "impact_ratio": 0.25},
                    {"group": "male", "n": 16, "successes": 16, "rate": 1.0, "ci_low": 0.8,
                     "ci_high": 1.0, "mean": None, "favourable_rate": 1.0, "impact_ratio": 1.0},
                ],
            }
        ],
    )  # fmt: skip
    with time_machine.travel(at(9), tick=False):  # recorded then: the hash covers the time
        audit_event_record(
            action="organization.updated",
            organization=clinic,
            actor_label="ada@example.com",
            data={"changes": {"retention_days": [30, 90]}},
        )
    return clinic


def post(client, body, capture) -> dict:
    with jobs_run(capture):
        response = client.post(URL, body, format="json")
    assert response.status_code == 202, response.content
    detail: dict = client.get(f"/api/compliance/reports/{response.json()['id']}").json()
    return detail


def download(client, detail) -> bytes:
    response = client.get(detail["download_url"])
    assert response.status_code == 200
    return b"".join(response.streaming_content) if response.streaming else response.content


def pages_text(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]


def pinned() -> dict[str, str]:
    key = issuer_key()
    return {key.key_id: key.public_key}


def test_json_report_has_the_figures_and_verifies(
    client, november, django_capture_on_commit_callbacks
):
    detail = post(
        client, {"period": NOVEMBER, "format": "json"}, django_capture_on_commit_callbacks
    )

    assert detail["status"] == "completed" and detail["progress"] == 100
    document = json.loads(download(client, detail))
    report = document["report"]
    assert report["period"] == NOVEMBER and report["empty"] is False
    usage = report["usage"]
    assert usage["requests"] == 28 * 3 + 5  # the October trace is outside
    assert Decimal(usage["cost_eur"]) == Decimal("0.00012") * (28 * 3 + 1) + Decimal("0.5")
    assert usage["by_model"][0]["model"] == "gpt-4o-mini"
    weeks = {w["week"]: w for w in report["policy"]["weeks"]}
    assert weeks["2026-W45"]["blocked"] == 1  # 4 November: rate limit (week of 2 November)
    assert weeks["2026-W46"]["budget_events"] == 1 and weeks["2026-W46"]["suppressed"] == 1
    assert weeks["2026-W46"]["loop_events"] == 1
    assert sum(w["requests"] for w in weeks.values()) == usage["requests"]
    assert (
        report["high_risk"]["decisions"] == 1
        and report["high_risk"]["by_rule"][0]["rule"] == "suicide-risk"
    )
    assert report["bias"]["runs"][0]["findings"][0]["status"] == "flagged"
    assert [c["action"] for c in report["changes"]] == ["organization.updated"]
    assert report["verification"]["audit"]["valid"] is True
    assert report["verification"]["receipts"]["valid"] is True
    assert report["retention"]["audit_days"] == 2557

    verdict = report_verify(document, pinned())
    assert verdict.valid, verdict.reason
    assert (
        detail["content_sha256"]
        == hashlib.sha256(__import__("rfc8785").dumps(report)).hexdigest()
        == document["integrity"]["content_sha256"]
    )
    tampered = json.loads(json.dumps(document))
    tampered["report"]["usage"]["requests"] += 1
    assert report_verify(tampered, pinned()).reason == "content_sha256 does not match the content"
    assert not report_verify(document, {}).valid  # only a pinned key makes it valid


def test_pdf_report_reads_back_and_verifies(
    client, november, django_capture_on_commit_callbacks, tmp_path
):
    detail = post(
        client, {"period": "2026-11", "format": "pdf"}, django_capture_on_commit_callbacks
    )
    pdf = download(client, detail)

    assert pdf.startswith(b"%PDF-") and hashlib.sha256(pdf).hexdigest() == detail["pdf_sha256"]
    texts = pages_text(pdf)
    whole = "\n".join(texts)
    assert "St Mary's <Clinic> & Co" in whole
    assert f"Page 1 of {len(texts)}" in texts[0]
    for title in (
        "Usage and cost",
        "Policy outcomes",
        "Bias findings",
        "High-risk decisions",
        "Integrity",
    ):
        assert title in whole
    assert "89" in whole and "0.25" in whole  # requests, the flagged impact ratio
    assert "".join(detail["content_sha256"]) in "".join(texts[-1].split())

    saved = tmp_path / "report.pdf"
    saved.write_bytes(pdf)
    out = io.StringIO()
    call_command("report_verify", str(saved), stdout=out)
    assert out.getvalue().startswith("valid: report " + detail["id"])

    verdict, document = report_file_verify(pdf, pinned())
    assert verdict.valid and document["report"]["id"] == detail["id"]
    _render_first_page(pdf, "report-november-first-page.png")


def test_a_tampered_pdf_fails_verification(
    client, november, django_capture_on_commit_callbacks, tmp_path
):
    detail = post(client, {"period": NOVEMBER}, django_capture_on_commit_callbacks)
    pdf = download(client, detail)
    from compliance.reports.pdf import report_attachment, report_pdf

    attached = report_attachment(pdf)
    assert attached is not None
    document = orjson.loads(attached)
    integrity = document["integrity"]
    document["report"]["usage"]["cost_eur"] = "0.000001"  # re-rendered with the old signature
    forged = report_pdf(
        document["report"],
        content_sha256=integrity["content_sha256"],
        signature=integrity["signature"],
        key_id=integrity["key_id"],
        attachment=orjson.dumps(document),
    )
    saved = tmp_path / "forged.pdf"
    saved.write_bytes(forged)

    verdict, _ = report_file_verify(forged, pinned())
    assert verdict.reason == "content_sha256 does not match the content"
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("report_verify", str(saved), stdout=out)
    assert exit_.value.code == 1 and out.getvalue().startswith("INVALID")


def test_an_empty_period_is_a_valid_report_that_says_so(
    client, clinic, django_capture_on_commit_callbacks
):
    detail = post(
        client,
        {"period": {"start": "2025-01-01", "end": "2025-01-31"}},
        django_capture_on_commit_callbacks,
    )
    pdf = download(client, detail)

    verdict, document = report_file_verify(pdf, pinned())
    assert verdict.valid and document["report"]["empty"] is True
    whole = "\n".join(pages_text(pdf))
    assert "No activity was recorded in this period" in whole
    assert "No requests in this period" in whole


def _render_first_page(pdf: bytes, name: str) -> None:
    import pypdfium2  # type: ignore[import-untyped]

    document = pypdfium2.PdfDocument(pdf)
    image = document[0].render(scale=1.5).to_pil()
    ARTIFACTS.mkdir(exist_ok=True)
    image.save(ARTIFACTS / name)
    assert (ARTIFACTS / name).stat().st_size > 10_000  # a page with content, not a blank


# --- who may ask, and bad requests ------------------------------------------------------------


def test_other_tiers_get_403(key_client):
    response = key_client.post(URL, {"period": "2026-11"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tier_feature_unavailable"


def test_members_read_but_do_not_request(clinic, client, django_capture_on_commit_callbacks):
    detail = post(
        client, {"period": "2026-11", "format": "json"}, django_capture_on_commit_callbacks
    )
    member = UserFactory.create()
    Membership.objects.create(user=member, organization=clinic, role=Role.MEMBER)
    session = APIClient()
    session.force_login(member)
    headers = {"X-Aqta-Organization": str(clinic.pk)}

    refused = session.post(URL, {"period": "2026-11"}, format="json", headers=headers)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert (
        session.get(f"/api/compliance/reports/{detail['id']}", headers=headers).status_code == 200
    )
    assert session.get(detail["download_url"], headers=headers).status_code == 200


def test_another_organisations_report_is_404(client, user, django_capture_on_commit_callbacks):
    other = organization_create(
        name="Other", owner=UserFactory.create(), tier=tier_get(slug="healthcare")
    )
    theirs = ComplianceReport.objects.create(
        organization=other,
        period_start=date(2026, 11, 1),
        period_end=date(2026, 11, 30),
        format="json",
    )
    for path in (
        f"/api/compliance/reports/rpt_{theirs.pk.hex}",
        f"/api/compliance/reports/{theirs.pk}/download",
    ):
        response = client.get(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert client.get("/api/compliance/reports/rpt_nothex").status_code == 404
    listed = client.get("/api/compliance/reports").json()["data"]
    assert str(theirs.pk.hex) not in {r["id"][4:] for r in listed}


def test_download_before_completion_is_a_409(client, clinic):
    queued = ComplianceReport.objects.create(
        organization=clinic,
        period_start=date(2026, 11, 1),
        period_end=date(2026, 11, 30),
        format="pdf",
    )
    response = client.get(f"/api/compliance/reports/rpt_{queued.pk.hex}/download")
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"period": "2026-13"},
        {"period": "26-11"},
        {"period": {"start": "2026-11-30", "end": "2026-11-01"}},
        {"period": {"start": "2026-11-01"}},
        {"period": {"start": "x", "end": "y"}},
        {"period": {"start": "2020-01-01", "end": "2026-01-01"}},
        {"period": "2026-11", "format": "docx"},
        {"period": ["2026-11"]},
        {"period": "2026-11\x00"},
        {"period": {"start": {"deep": [[[[{}]]]]}, "end": "2026-11-30"}},
        {"period": "9" * 100_000},
    ],
)
def test_bad_requests_get_the_envelope(client, body):
    response = client.post(URL, body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert not ComplianceReport.objects.exists()


def test_a_future_period_is_refused(client):
    start = date.today() + timedelta(days=3)
    body = {"period": {"start": start.isoformat(), "end": (start + timedelta(days=1)).isoformat()}}
    response = client.post(URL, body, format="json")
    assert response.status_code == 400 and "not begun" in response.json()["error"]["message"]
