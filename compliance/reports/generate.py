"""Creating and executing a compliance report job (docs/reports.md)."""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import date

import orjson
from django.db import DatabaseError, transaction

from accounts.models import Organization, User
from compliance.jobs import Lease, LeaseLost, job_finish, job_start, leased, progress_set
from compliance.models import ComplianceReport, JobStatus, ReportFormat
from compliance.reports.collect import report_collect
from compliance.reports.signing import report_sign
from compliance.services import audit_event_record

logger = logging.getLogger("aqta.compliance")
ACTOR = "compliance reports"


def generator_name() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"Aqta {version('aqta')}"
    except PackageNotFoundError:
        return "Aqta"


def report_create(
    *,
    organization: Organization,
    actor: User | None,
    actor_label: str,
    start: date,
    end: date,
    format: str,
) -> ComplianceReport:
    with transaction.atomic():
        report = ComplianceReport.objects.create(
            organization=organization,
            period_start=start,
            period_end=end,
            format=format,
            created_by=actor,
            step="Queued",
        )
        audit_event_record(
            action="report.requested",
            organization=organization,
            actor=actor,
            actor_label=actor_label,
            target=str(report.pk),
            data={"period": [start.isoformat(), end.isoformat()], "format": format},
        )
    return report


def public_id(report: ComplianceReport) -> str:
    return f"rpt_{report.pk.hex}"


def _execute(report: ComplianceReport, lease: Lease) -> None:
    job_start(report)
    document = report.document
    if document is None:  # a second delivery keeps what the first signed
        progress_set(report, progress=10, step="Collecting usage, policy and audit records")
        content = report_collect(
            organization=report.organization,
            start=report.period_start,
            end=report.period_end,
            report_id=public_id(report),
            generator=generator_name(),
        )
        lease.check()
        progress_set(report, progress=60, step="Signing")
        document = report_sign(content)
        integrity = document["integrity"]
        ComplianceReport.objects.filter(pk=report.pk).update(
            document=document,
            content_sha256=integrity["content_sha256"],
            signature=integrity["signature"],
            key_id=integrity["key_id"],
        )
        report.document = document
    lease.check()
    if report.format == ReportFormat.PDF and not report.pdf_sha256:
        from compliance.reports.pdf import report_pdf

        progress_set(report, progress=70, step="Rendering the PDF")
        integrity = document["integrity"]
        pdf = report_pdf(
            document["report"],
            content_sha256=integrity["content_sha256"],
            signature=integrity["signature"],
            key_id=integrity["key_id"],
            attachment=orjson.dumps(document, option=orjson.OPT_INDENT_2),
        )
        report.pdf_sha256 = hashlib.sha256(pdf).hexdigest()
        ComplianceReport.objects.filter(pk=report.pk).update(pdf=pdf, pdf_sha256=report.pdf_sha256)
    with transaction.atomic():
        if job_finish(report, status=JobStatus.COMPLETED, step="Ready"):
            audit_event_record(
                action="report.ready",
                organization=report.organization,
                actor_label=ACTOR,
                target=str(report.pk),
                data={
                    "period": [report.period_start.isoformat(), report.period_end.isoformat()],
                    "format": report.format,
                    "content_sha256": document["integrity"]["content_sha256"],
                    "pdf_sha256": report.pdf_sha256 or None,
                },
            )


def report_execute(report_id: uuid.UUID | str) -> str:
    """Generate (or finish generating) one report; what became of it."""
    report = (
        ComplianceReport.objects.select_related("organization__tier").filter(pk=report_id).first()
    )
    if report is None:
        return "missing"
    if report.finished:
        return "finished"
    with leased(ComplianceReport, report.pk) as lease:
        report.refresh_from_db()
        if report.status in (JobStatus.COMPLETED, JobStatus.FAILED):
            return "finished"
        try:
            _execute(report, lease)
        except LeaseLost:
            return "lost"
        except DatabaseError:
            raise
        except Exception as error:
            logger.exception("report %s failed", report.pk)
            if job_finish(
                report,
                status=JobStatus.FAILED,
                step="Failed",
                error=f"{type(error).__name__}: {error}"[:2000],
            ):
                audit_event_record(
                    action="report.failed",
                    organization=report.organization,
                    actor_label=ACTOR,
                    target=str(report.pk),
                    data={"error": str(error)[:500]},
                )
            return "failed"
    return "completed"
