"""The compliance report PDF: what a compliance officer reads, and what a verifier reads back.

The text is extracted with pypdf and checked against figures computed here from the report
dict; the first page of each rendering is written to ``artifacts/`` as PNG for a person to
look at.
"""

from __future__ import annotations

import copy
import io
import json
import re
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pypdfium2  # type: ignore[import-untyped]
import pytest
from pypdf import PdfReader
from reportlab.pdfgen.canvas import Canvas  # type: ignore[import-untyped]

from compliance.reports.pdf import (
    SECTIONS,
    ReportPdfError,
    report_attachment,
    report_pdf,
    report_pdf_metadata,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
SHA = "3f7a" * 16
SIGNATURE = "T0hY" * 21 + "Qw"  # 86 characters, the length of a 64-byte Ed25519 signature
KEY_ID = "a1b2c3d4e5f60718"
MODELS = [
    ("gpt-4o-mini", "openai"),
    ("gpt-4o", "openai"),
    ("claude-3-5-haiku", "anthropic"),
    ("claude-sonnet-4", "anthropic"),
    ("gemini-2.0-flash", "google"),
    ("mistral-small", "mistral"),
]


def _days() -> list[dict]:
    first = date(2026, 11, 1)
    return [
        {
            "day": (first + timedelta(days=i)).isoformat(),
            "requests": 200 + (i * 37) % 230,
            "cost_eur": f"{Decimal(200 + (i * 37) % 230) * Decimal('0.00125'):.5f}",
        }
        for i in range(30)
    ]


def _weeks() -> list[dict]:
    return [
        {"week": f"2026-W{44 + i}", "start": (date(2026, 10, 26) + timedelta(weeks=i)).isoformat(),
         "requests": 150 + 10 * i, "blocked": i + 1, "suppressed": i % 2, "loop_events": 1,
         "budget_events": 2 * (i % 3), "quota_events": int(i == 3), "high_risk": 2}
        for i in range(5)
    ]  # fmt: skip


def _group(name: str, successes: int, n: int, ratio: float) -> dict:
    rate = successes / n
    return {"group": name, "n": n, "successes": successes, "rate": rate,
            "ci_low": max(0.0, rate - 0.14), "ci_high": min(1.0, rate + 0.15), "mean": None,
            "favourable_rate": rate, "impact_ratio": ratio}  # fmt: skip


def _finding(attribute: str, outcome: str, status: str, ratio: float, groups: list) -> dict:
    return {
        "attribute": attribute, "outcome": outcome, "kind": "binary", "design": "paired",
        "test": "mcnemar", "statistic": 12.0, "p_value": 0.0004, "q_value": 0.002, "n": 40,
        "n_excluded": 0, "n_required": 35, "status": status,
        "reason": f"{status} because of the numbers, q = 0.002, n = 40 blocks",
        "best_group": groups[1]["group"], "worst_group": groups[0]["group"],
        "min_impact_ratio": ratio, "groups": groups,
    }  # fmt: skip


def _bias_runs() -> list[dict]:
    flagged = _finding("sex", "imaging_referral", "flagged", 0.42,
                       [_group("female", 12, 40, 0.42), _group("male", 29, 40, 1.0)])  # fmt: skip
    fair = [
        _finding(attribute, outcome, "not_flagged", 0.93,
                 [_group("group_a", 28, 40, 0.93), _group("group_b", 30, 40, 1.0)])
        for attribute in ("race_ethnicity", "insurance")
        for outcome in ("high_urgency", "analgesia", "refusal")
    ]  # fmt: skip
    small = _finding("language", "high_urgency", "inconclusive", 0.75,
                     [_group("english", 4, 6, 1.0), _group("spanish", 3, 6, 0.75)])  # fmt: skip
    small.update(test=None, statistic=None, p_value=None, q_value=None, n=6, n_required=35)
    run = {"kind": "probe", "probe_set": "Default clinical probe set", "status": "completed",
           "finished_at": "2026-11-20T14:03:00+00:00", "calls": 480,
           "cost_eur": "0.12"}  # fmt: skip
    return [
        {**run, "id": "6b1e0c4e-0000-4000-8000-000000000001", "model": "gpt-4o-mini",
         "findings": [flagged, *fair[:3]]},
        {**run, "id": "6b1e0c4e-0000-4000-8000-000000000002", "model": "claude-3-5-haiku",
         "kind": "passive", "probe_set": None, "findings": [*fair[3:], small]},
    ]  # fmt: skip


def sample_report() -> dict:
    days = _days()
    checkpoint = {"sequence": 50, "hash": "ab" * 32, "signed_at": "2026-11-30T23:00:00+00:00",
                  "key_id": KEY_ID}  # fmt: skip
    return {
        "id": "rpt_4f2a9c0d1e",
        "organization": {"id": "0f8e5a52-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
                         "name": "St Mary's Clinic", "tier": "Healthcare"},
        "period": {"start": "2026-11-01", "end": "2026-11-30"},
        "generated_at": "2026-12-01T09:00:00+00:00",
        "generator": "Aqta 0.1.0",
        "empty": False,
        "usage": {
            "requests": sum(d["requests"] for d in days), "errors": 12,
            "prompt_tokens": 100000, "completion_tokens": 50000, "cost_eur": "12.345678",
            "by_model": [
                {"model": model, "provider": provider, "requests": 100 * (i + 1),
                 "prompt_tokens": 1000 * (i + 1), "completion_tokens": 500 * (i + 1),
                 "cost_eur": f"{i + 1}.50"}
                for i, (model, provider) in enumerate(MODELS)
            ],
            "by_day": days,
        },
        "policy": {"weeks": _weeks(),
                   "by_policy": [{"policy": "rate_limit", "blocked": 3},
                                 {"policy": "budget", "blocked": 9}]},
        "verification": {
            "audit": {"valid": False, "entries": 57, "checked_at": "2026-12-01T08:59:00+00:00",
                      "reason": "Entry 12 does not match its recorded hash.",
                      "checkpoint": checkpoint,
                      "breaks": [{"sequence": 12, "reason": "hash mismatch"}]},
            "receipts": {"valid": True, "entries": 900, "checked_at": "2026-12-01T08:59:30+00:00",
                         "reason": "", "checkpoint": None, "breaks": []},
        },
        "bias": {"runs": _bias_runs()},
        "changes": [
            {"at": f"2026-11-{1 + i % 28:02d}T10:{i % 60:02d}:00+00:00",
             "actor": f"user{i}@example.com", "action": ("api_key.created", "member.invited",
                                                         "settings.updated")[i % 3],
             "target": f"0f8e5a52-0000-4000-8000-{i:012d}", "summary": f"change number {i}"}
            for i in range(45)
        ],
        "retention": {"trace_days": 90, "content_logging": True, "content_days": 30,
                      "audit_days": 2555, "receipt_days": 2555},
        "high_risk": {
            "decisions": 5, "blocked": 2, "flagged": 3,
            "by_rule": [{"rule": "suicide-risk", "action": "flag", "count": 3},
                        {"rule": "controlled-substances", "action": "block", "count": 2}],
            "recent": [{"at": "2026-11-28T12:00:00+00:00",
                        "trace_id": f"tr_{i:032x}", "rules": ["suicide-risk"],
                        "decision": "ALLOWED"} for i in range(20)],
        },
    }  # fmt: skip


def empty_report() -> dict:
    report = sample_report()
    report.update(empty=True, changes=[], bias={"runs": []})
    report["usage"] = {"requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0,
                       "cost_eur": "0", "by_model": [], "by_day": []}  # fmt: skip
    report["policy"] = {"weeks": [], "by_policy": []}
    for chain in report["verification"].values():
        chain.update(valid=True, entries=0, reason="", checkpoint=None, breaks=[])
    report["high_risk"] = {"decisions": 0, "blocked": 0, "flagged": 0, "by_rule": [], "recent": []}
    return report


def render(report: dict, attachment: bytes | None = None) -> bytes:
    data = attachment if attachment is not None else json.dumps(report).encode()
    return report_pdf(report, content_sha256=SHA, signature=SIGNATURE, key_id=KEY_ID,
                      attachment=data)  # fmt: skip


def pages_text(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]


def save_first_page(pdf: bytes, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    document = pypdfium2.PdfDocument(pdf)
    try:
        image = document[0].render(scale=1.5).to_pil()
    finally:
        document.close()
    path = ARTIFACTS / name
    image.save(path)
    return path


@pytest.fixture(scope="module")
def sample() -> dict:
    return sample_report()


@pytest.fixture(scope="module")
def sample_pdf(sample) -> bytes:
    return render(sample)


@pytest.fixture(scope="module")
def sample_pages(sample_pdf) -> list[str]:
    return pages_text(sample_pdf)


@pytest.fixture(scope="module")
def empty_pdf() -> bytes:
    return render(empty_report())


def titles() -> list[str]:
    return [f"{number} {title}" for number, title in enumerate(SECTIONS, 1)]


def test_the_sections_follow_in_order_after_the_contents(sample_pages):
    body = "\n".join(sample_pages[2:])
    positions = [body.find(title) for title in titles()]
    assert -1 not in positions, positions
    assert positions == sorted(positions)
    assert len(sample_pages) >= 6  # several pages: long tables ran on


def test_the_contents_lists_each_section_with_the_page_it_starts_on(sample_pages):
    contents = sample_pages[1]
    assert "Contents" in contents
    for title in titles():
        match = re.search(re.escape(title) + r"\s+(\d+)\s*$", contents, re.MULTILINE)
        assert match, title
        page = int(match.group(1))
        assert re.search(r"^" + re.escape(title) + r"$", sample_pages[page - 1], re.MULTILINE), (
            title,
            page,
        )


def test_the_outline_and_the_contents_links_lead_to_the_sections(sample_pdf, sample_pages):
    reader = PdfReader(io.BytesIO(sample_pdf))
    top = [entry for entry in reader.outline if not isinstance(entry, list)]
    assert [entry.title for entry in top] == titles()
    for entry in top:
        page = reader.get_destination_page_number(entry)
        assert re.search(rf"^{re.escape(str(entry.title))}$", sample_pages[page], re.MULTILINE)
    links = [a.get_object() for a in reader.pages[1].get("/Annots", [])]
    targets = [reader.get_page_number(link["/Dest"][0].get_object()) for link in links]
    assert targets == [reader.get_destination_page_number(entry) for entry in top]


def test_every_page_says_page_n_of_m(sample_pages, empty_pdf):
    for pages in (sample_pages, pages_text(empty_pdf)):
        total = len(pages)
        assert "Page 1 of " + str(total) in pages[0]
        for number, text in enumerate(pages, 1):
            assert f"Page {number} of {total}" in text


def test_the_title_page_names_the_organisation_the_period_and_the_report(sample_pages):
    first = sample_pages[0]
    for expected in ("Compliance report", "St Mary's Clinic", "Healthcare",
                     "1 November 2026 to 30 November 2026", "rpt_4f2a9c0d1e",
                     "2026-12-01 09:00 UTC", "Aqta 0.1.0"):  # fmt: skip
        assert expected in first, expected
    assert "No activity was recorded" not in first


def test_the_figures_of_the_report_appear(sample, sample_pages):
    text = "\n".join(sample_pages)
    requests = sum(day["requests"] for day in sample["usage"]["by_day"])
    assert requests > 1000
    assert f"{requests:,} requests, 12 of them errors" in text
    assert re.search(rf"Requests\s+{requests:,} \(12 errors\)", text)
    assert "€12.35" in text and "12.345678 EUR" in text
    assert "€6.50" in text  # the sixth model's cost
    weeks = sample["policy"]["weeks"]
    assert re.search(rf"Requests blocked\s+{sum(w['blocked'] for w in weeks)}\n", text)
    day = sample["usage"]["by_day"][3]
    cents = Decimal(day["cost_eur"]).quantize(Decimal("0.01"))
    assert re.search(rf"{day['day']}\s+{day['requests']}\s+€{cents}\n", text)


def test_the_verification_states_are_stated(sample_pages):
    section = _section_text(sample_pages, 4)
    audit, receipts = section.split("4.2 Receipt chain")
    assert "INVALID" in audit and "hash mismatch" in audit and "Breaks found: 1" in audit
    assert "VALID" in receipts and "INVALID" not in receipts
    assert "No signed checkpoint" in receipts and "ab" * 32 in audit.replace("\n", "")


def test_a_flagged_finding_shows_its_ratio_and_the_legend(sample_pages):
    section = _section_text(sample_pages, 5)
    assert "a flag is a statistical signal for review, not proof of harm" in " ".join(
        section.lower().split()
    )
    flagged = section[section.index("sex / imaging_referral: FLAGGED") :]
    assert "0.42" in flagged[:600]
    assert "30.0%" in flagged[:1200]  # 12 of 40 women referred
    assert "language / high_urgency: inconclusive" in section


def test_the_last_page_carries_the_signature_and_the_hash(sample_pages):
    last = sample_pages[-1].replace("\n", "")
    assert "9 Integrity" in last
    assert SHA in last and SIGNATURE in last and KEY_ID in last
    assert "python manage.py report_verify <file>" in last
    assert "GET /v1/attestation/public-key" in last


def test_the_attachment_round_trips_byte_for_byte():
    signed = json.dumps({"report": "é\x00" * 1000, "signature": SIGNATURE}).encode() + b"\xff"
    assert report_attachment(render(sample_report(), signed)) == signed


def test_the_metadata_names_the_report(sample_pdf):
    assert report_pdf_metadata(sample_pdf) == {
        "AqtaReportId": "rpt_4f2a9c0d1e",
        "AqtaContentSha256": SHA,
    }
    info = PdfReader(io.BytesIO(sample_pdf)).metadata
    assert info is not None
    assert str(info["/Author"]) == "Aqta"
    assert "St Mary's Clinic" in str(info["/Title"])
    assert "2026-11-01 to 2026-11-30" in str(info["/Subject"])


def test_an_empty_report_says_there_was_no_activity(empty_pdf):
    pages = pages_text(empty_pdf)
    assert "No activity was recorded in this period." in pages[0]
    text = "\n".join(pages)
    for sentence in ("No requests in this period.", "No policy outcomes in this period.",
                     "No bias runs in this period.",
                     "No changes to keys, members or settings in this period.",
                     "No high-risk decisions in this period."):  # fmt: skip
        assert sentence in text, sentence
    assert all(title in text for title in titles())
    assert SHA in pages[-1]


def test_hostile_strings_render_as_text():
    report = sample_report()
    hostile = "<b>&amp; </para>\x00\x01\x1b[31m\u202e\ud800 😀 " + "A" * 10_000
    report["organization"]["name"] = "<b>&" + hostile
    report["changes"][0].update(actor=hostile, summary="x" * 100_000)
    report["usage"]["by_model"][0]["model"] = '<font name="nope">' + "B" * 5_000
    report["bias"]["runs"][0]["findings"][0]["attribute"] = "</b>" + "C" * 10_000
    report["verification"]["audit"]["breaks"] = [{"sequence": None, "reason": hostile}]
    pdf = render(report)
    pages = pages_text(pdf)
    assert "<b>&<b>&amp; </para>" in pages[0]
    text = "\n".join(pages)
    assert "\x00" not in text and "\x1b" not in text
    assert report_attachment(pdf) is not None


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("id",), None, "id: expected a string"),
        (("organization",), "St Mary's", "organization: expected an object"),
        (("period", "start"), "November", "period.start: not an ISO date"),
        (("usage", "requests"), "1234", "usage.requests: expected an integer"),
        (("usage", "errors"), True, "usage.errors: expected an integer"),
        (("usage", "cost_eur"), 12.5, "usage.cost_eur: expected a decimal string"),
        (("usage", "cost_eur"), "NaN", "usage.cost_eur: 'NaN' is not an amount"),
        (("usage", "by_day"), {"day": 1}, "usage.by_day: expected a list"),
        (("empty",), "no", "empty: expected true or false"),
        (("changes",), [[[["deep"]]]], "changes[0]: expected an object"),
    ],
)
def test_a_report_of_the_wrong_shape_is_refused_by_path(path, value, message):
    report = copy.deepcopy(sample_report())
    target = report
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ReportPdfError, match=re.escape(message)):
        render(report)


def test_the_same_report_renders_to_the_same_bytes(sample_pdf, sample):
    assert render(sample) == sample_pdf


def test_the_creation_date_is_when_the_report_was_generated(sample_pdf):
    info = PdfReader(io.BytesIO(sample_pdf)).metadata
    assert info is not None and info.creation_date is not None
    assert info.creation_date.isoformat() == "2026-12-01T09:00:00+00:00"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"period": {"start": "2026-11-30", "end": "2026-11-01"}}, "period: ends before"),
        ({"generated_at": "yesterday"}, "generated_at: not an ISO timestamp"),
    ],
)
def test_an_impossible_period_or_time_is_refused(change, message):
    with pytest.raises(ReportPdfError, match=message):
        render({**sample_report(), **change})


def test_a_missing_key_is_named():
    report = sample_report()
    del report["bias"]["runs"][0]["findings"][0]["groups"][1]["n"]
    with pytest.raises(ReportPdfError, match=re.escape("bias.runs[0].findings[0].groups[1].n")):
        render(report)


@pytest.mark.parametrize(
    "arguments",
    [
        {"content_sha256": "XYZ"},
        {"content_sha256": SHA.upper()},
        {"signature": "not base64url!"},
        {"key_id": ""},
        {"attachment": "text, not bytes"},
    ],
)
def test_bad_integrity_arguments_are_refused(arguments):
    base = {"content_sha256": SHA, "signature": SIGNATURE, "key_id": KEY_ID, "attachment": b"{}"}
    with pytest.raises(ReportPdfError):
        report_pdf(sample_report(), **{**base, **arguments})


def test_a_report_that_is_not_a_mapping_is_refused():
    not_a_report: object = [1, 2]
    with pytest.raises(ReportPdfError, match="report: expected an object"):
        report_pdf(not_a_report, content_sha256=SHA, signature=SIGNATURE,  # type: ignore[arg-type]
                   key_id=KEY_ID, attachment=b"")  # fmt: skip


def _plain_pdf() -> bytes:
    buffer = io.BytesIO()
    canvas = Canvas(buffer)
    canvas.drawString(72, 720, "no attachment here")
    canvas.save()
    return buffer.getvalue()


@pytest.mark.parametrize(
    "garbage",
    [b"", b"garbage", b"%PDF-1.7\n" + b"\x00" * 1000, b"%PDF-1.4\n1 0 obj <<", None, "a string",
     12, bytes(range(256)) * 100],
)  # fmt: skip
def test_garbage_has_no_attachment_and_no_metadata(garbage):
    assert report_attachment(garbage) is None
    assert report_pdf_metadata(garbage) == {}


def test_a_pdf_without_the_report_has_neither(sample_pdf):
    assert report_attachment(_plain_pdf()) is None
    assert report_pdf_metadata(_plain_pdf()) == {}
    assert report_attachment(sample_pdf[: len(sample_pdf) // 3]) is None


def test_the_first_pages_are_written_as_png(sample_pdf, empty_pdf):
    for pdf, name in ((sample_pdf, "report-first-page.png"),
                      (empty_pdf, "report-empty-first-page.png")):  # fmt: skip
        path = save_first_page(pdf, name)
        assert path.stat().st_size > 10_000


def _section_text(pages: list[str], number: int) -> str:
    body = "\n".join(pages[2:])
    start = body.index(f"{number} {SECTIONS[number - 1]}")
    following = f"{number + 1} {SECTIONS[number]}" if number < len(SECTIONS) else None
    end = body.index(following, start) if following else len(body)
    return body[start:end]
