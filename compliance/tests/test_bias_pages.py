"""The dashboard's Bias detection pages: the run list, starting a run, and a run's findings
(server-rendered; the browser test is tests/test_browser_compliance.py)."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from statsmodels.stats.proportion import proportion_confint  # type: ignore[import-untyped]

from accounts.models import Membership, Role
from accounts.services import organization_create
from accounts.tests.factories import UserFactory
from billing.selectors import tier_get
from compliance.bias import stats
from compliance.bias.probes import DEFAULT_PROBE_SET, probe_variants
from compliance.models import AuditEvent, BiasMethod, BiasRun, JobStatus, ProbeSet
from compliance.tests.jobs import jobs_run
from compliance.views import finding_cards, percent, ratio_text
from gateway.tests.conftest import seed_catalogue

pytestmark = pytest.mark.django_db

PAGE = "/dashboard/bias/"
PROBE = {
    "method": "probe",
    "model": "gpt-4o-mini",
    "probe_set": "default",
    "repetitions": "2",
    "budget_cap_eur": "3.50",
    "concurrency": "2",
}


def realistic_findings() -> list[dict[str, Any]]:
    """Three findings as ``compliance.bias.analysis`` stores them: race flagged (Black
    patients triaged urgent half as often as White ones), sex not flagged, language
    inconclusive (8 blocks)."""
    race = [{"white": True, "black": i % 2 == 0, "asian": i % 10 != 0} for i in range(60)]
    sex = [{"female": i % 10 != 0, "male": i % 10 != 1} for i in range(400)]
    language = [{"english": i % 2 == 0, "limited_english": i % 3 == 0} for i in range(8)]
    findings = [
        stats.paired_binary("race_ethnicity", "high_urgency", race),
        stats.paired_binary("sex", "high_urgency", sex),
        stats.paired_binary("language", "specialist_referral", language),
    ]
    stats.fdr_adjust(findings)
    data = [stats.finding_dict(f) for f in findings]
    assert [f["status"] for f in data] == ["flagged", "not_flagged", "inconclusive"]
    return data


def completed_run(organization, **fields: Any) -> BiasRun:
    findings = realistic_findings()
    values: dict[str, Any] = {
        "organization": organization,
        "method": BiasMethod.PROBE,
        "model": "gpt-4o-mini",
        "probe_set_name": str(DEFAULT_PROBE_SET["name"]),
        "definition": DEFAULT_PROBE_SET,
        "repetitions": 3,
        "budget_cap_eur": Decimal("5.00"),
        "spent_eur": Decimal("0.41250000"),
        "status": JobStatus.COMPLETED,
        "progress": 100,
        "step": "Completed",
        "calls_total": 270,
        "calls_done": 270,
        "findings": findings,
        "summary": {"findings": 3, "flagged": 1, "not_flagged": 1, "inconclusive": 1},
        "finished_at": timezone.now(),
        **fields,
    }
    return BiasRun.objects.create(**values)


def running_run(organization, **fields: Any) -> BiasRun:
    values: dict[str, Any] = {
        "organization": organization,
        "method": BiasMethod.PROBE,
        "model": "claude-sonnet-4-5",
        "probe_set_name": str(DEFAULT_PROBE_SET["name"]),
        "definition": DEFAULT_PROBE_SET,
        "status": JobStatus.RUNNING,
        "progress": 40,
        "step": "Sent 120 of 270 probes",
        "calls_total": 270,
        "calls_done": 120,
        **fields,
    }
    return BiasRun.objects.create(**values)


@pytest.fixture
def committed(transactional_db) -> None:
    """Committed data, for the tests that run a job: a job takes its lease with
    close_old_connections(), which would close the connection of a test's transaction.
    The catalogue the data migrations seeded is gone after such a test: seed it again."""
    seed_catalogue()


@pytest.fixture
def clinic(user):
    clinic = organization_create(name="Clinic", owner=user, tier=tier_get(slug="healthcare"))
    clinic.content_logging = True
    clinic.save(update_fields=["content_logging"])
    return clinic


@pytest.fixture
def owner(user, clinic) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def member(clinic) -> Client:
    person = UserFactory.create()
    Membership.objects.create(organization=clinic, user=person, role=Role.MEMBER)
    client = Client()
    client.force_login(person)
    return client


def run_ids(html: str) -> list[str]:
    return re.findall(r'data-testid="bias-run-row" data-run-id="([^"]+)"', html)


def field_errors(html: str, name: str) -> list[str]:
    match = re.search(rf'id="field-{name}".*?</div>', html, re.S)
    assert match is not None, f"no field {name}"
    return re.findall(r"<li>(.*?)</li>", match.group(0))


# --- Tier and roles ----------------------------------------------------------------------


def test_healthcare_organisations_see_the_tab(owner):
    html = owner.get("/dashboard/").content.decode()
    assert 'href="/dashboard/bias/" data-testid="nav-bias">Bias</a>' in html
    assert 'aria-current="page" data-testid="nav-bias"' in owner.get(PAGE).content.decode()


def test_other_tiers_have_no_tab_and_get_the_refusal_page(user, org):
    client = Client()
    client.force_login(user)  # `org` is the user's Pro organisation
    assert "/dashboard/bias/" not in client.get("/dashboard/").content.decode()

    response = client.get(PAGE)
    html = response.content.decode()
    assert response.status_code == 403
    assert 'data-testid="forbidden-message"' in html
    assert "Bias detection is part of the Healthcare tier; this organisation is on Pro." in html
    assert client.post(PAGE, PROBE).status_code == 403
    assert client.get(f"{PAGE}{uuid.uuid4()}/").status_code == 403
    assert not BiasRun.objects.exists()


def test_members_read_but_cannot_start(member, clinic):
    run = completed_run(clinic)
    html = member.get(PAGE).content.decode()
    assert 'data-testid="bias-members-note"' in html
    assert "probe-run-form" not in html
    assert run_ids(html) == [str(run.pk)]
    assert member.get(f"{PAGE}{run.pk}/").status_code == 200

    response = member.post(PAGE, PROBE)
    assert response.status_code == 403
    assert "Only owners and admins" in response.content.decode()
    assert BiasRun.objects.count() == 1


def test_a_post_without_the_csrf_token_is_refused(user, clinic):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(PAGE, PROBE).status_code == 403
    assert not BiasRun.objects.exists()


# --- The list ----------------------------------------------------------------------------


def test_the_list_shows_each_run_newest_first(owner, clinic):
    done = completed_run(clinic)
    running = running_run(clinic)
    html = owner.get(PAGE).content.decode()

    assert run_ids(html) == [str(running.pk), str(done.pk)]
    assert "2 runs, newest first." in html
    row = html[html.index(f'data-run-id="{running.pk}"') : html.index(f'data-run-id="{done.pk}"')]
    assert f'data-poll-url="/api/compliance/bias-detection/{running.pk}"' in row
    assert '<progress max="100" value="40"' in row
    assert "Sent 120 of 270 probes" in row
    assert "120 / 270" in row
    rest = html[html.index(f'data-run-id="{done.pk}"') :]
    assert "data-poll-url" not in rest.split("</tr>")[0]
    assert '<span class="badge bad" data-testid="run-flagged">1 flagged</span>' in rest
    assert '<span class="badge warn" data-testid="run-inconclusive">1 inconclusive</span>' in rest
    assert "€0.41" in rest and "of €5.00" in rest


def test_the_list_is_paginated(owner, clinic):
    runs = [running_run(clinic) for _ in range(27)]
    newest = [str(r.pk) for r in sorted(runs, key=lambda r: r.created_at, reverse=True)]
    first = run_ids(owner.get(PAGE).content.decode())
    second = run_ids(owner.get(PAGE, {"page": 2}).content.decode())
    assert len(first) == 25 and len(second) == 2
    assert set(first + second) == set(newest)


def test_the_probe_set_select_offers_the_organisations_sets(owner, clinic, org):
    own = ProbeSet.objects.create(organization=clinic, name="Our triage", definition={})
    ProbeSet.objects.create(organization=org, name="Someone else's", definition={})
    html = owner.get(PAGE).content.decode()
    assert f'<option value="{own.pk}">Our triage</option>' in html
    assert "Someone else" not in html
    assert '<option value="default">Aqta clinical counterfactual probes (default)</option>' in html


# --- Starting a run ----------------------------------------------------------------------


def test_an_owner_starts_a_probe_run_and_it_is_enqueued(
    user, clinic, django_capture_on_commit_callbacks
):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    token = client.get(PAGE).cookies["csrftoken"].value
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(PAGE, {**PROBE, "csrfmiddlewaretoken": token})

    run = BiasRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{PAGE}{run.pk}/"
    assert len(callbacks) == 1  # the task, queued once the transaction commits
    assert (run.method, run.model, run.repetitions, run.concurrency) == (
        "probe",
        "gpt-4o-mini",
        2,
        2,
    )
    assert run.budget_cap_eur == Decimal("3.50")
    assert run.probe_set_name == DEFAULT_PROBE_SET["name"]
    assert run.calls_total == len(probe_variants(DEFAULT_PROBE_SET, 2)) == 180
    assert run.created_by == user
    started = AuditEvent.objects.get(action="bias_run.started")
    assert started.actor == user and started.target == str(run.pk)
    page = client.get(response["Location"]).content.decode()
    assert "Probe run started." in page
    assert f'data-poll-url="/api/compliance/bias-detection/{run.pk}"' in page


def test_an_owner_starts_a_passive_run_which_runs_to_the_end(
    committed, owner, clinic, eager_jobs, django_capture_on_commit_callbacks
):
    with jobs_run(django_capture_on_commit_callbacks):
        response = owner.post(
            PAGE,
            {
                "method": "passive",
                "probe_set": "default",
                "start": "2026-10-01",
                "end": "2026-10-31",
            },
        )
    run = BiasRun.objects.get()
    assert response.status_code == 302
    assert (run.method, str(run.period_start), str(run.period_end)) == (
        "passive",
        "2026-10-01",
        "2026-10-31",
    )
    assert run.status == JobStatus.COMPLETED
    html = owner.get(f"{PAGE}{run.pk}/").content.decode()
    assert 'data-testid="run-no-findings"' in html
    assert "1 Oct 2026 \N{EN DASH} 31 Oct 2026" in html
    assert 'data-poll-url="' not in html


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"repetitions": "0"}, "repetitions", "greater than or equal to 1"),
        ({"repetitions": "101"}, "repetitions", "less than or equal to 100"),
        ({"repetitions": "1" + "0" * 40}, "repetitions", "less than or equal to 100"),
        ({"repetitions": "3\x00"}, "repetitions", "Enter a whole number."),
        ({"model": "gpt-unknown"}, "model", "Select a valid choice."),
        ({"model": ""}, "model", "This field is required."),
        ({"probe_set": str(uuid.UUID(int=7))}, "probe_set", "Select a valid choice."),
        ({"budget_cap_eur": "NaN"}, "budget_cap_eur", "Enter a number."),
        ({"budget_cap_eur": "0"}, "budget_cap_eur", "greater than or equal to 0.01"),
        ({"budget_cap_eur": "1e999999"}, "budget_cap_eur", "no more than 12 digits"),
        ({"concurrency": "17"}, "concurrency", "less than or equal to 16"),
    ],
)
def test_bad_probe_input_is_shown_in_the_form(owner, changes, field, message):
    response = owner.post(PAGE, {**PROBE, **changes})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="form-errors"' in html
    assert any(message in error for error in field_errors(html, field)), field_errors(html, field)
    assert not BiasRun.objects.exists()


def test_a_model_outside_the_tier_is_not_offered_or_accepted(owner, clinic):
    from billing.models import LanguageModel

    LanguageModel.objects.filter(model_id="gpt-4o-mini").update(is_active=False)
    html = owner.get(PAGE).content.decode()
    assert 'value="gpt-4o-mini"' not in html
    response = owner.post(PAGE, PROBE)
    assert "Select a valid choice." in " ".join(field_errors(response.content.decode(), "model"))
    assert not BiasRun.objects.exists()


def test_a_run_over_the_call_limit_is_refused(owner, settings):
    settings.AQTA_BIAS_MAX_CALLS = 100
    html = owner.post(PAGE, PROBE).content.decode()
    assert field_errors(html, "repetitions") == ["This run would send 180 calls; at most 100."]
    assert not BiasRun.objects.exists()


@pytest.mark.parametrize(
    ("dates", "field", "message"),
    [
        ({"start": "2026-11-02", "end": "2026-11-01"}, "end", "before the start date"),
        ({"start": "2025-01-01", "end": "2026-01-02"}, "end", "At most 366 days."),
        ({"start": "2026-02-30", "end": "2026-03-01"}, "start", "Enter a valid date."),
        ({"start": "", "end": "2026-03-01"}, "start", "This field is required."),
        ({"start": "2026-01-01\x00", "end": "2026-03-01"}, "start", "Enter a valid date."),
    ],
)
def test_bad_passive_periods_are_shown_in_the_form(owner, dates, field, message):
    html = owner.post(PAGE, {"method": "passive", "probe_set": "default", **dates}).content.decode()
    assert any(message in error for error in field_errors(html, field)), field_errors(html, field)
    assert not BiasRun.objects.exists()


def test_passive_runs_need_content_logging(owner, clinic):
    clinic.content_logging = False
    clinic.save(update_fields=["content_logging"])
    response = owner.post(
        PAGE,
        {"method": "passive", "probe_set": "default", "start": "2026-11-01", "end": "2026-11-30"},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert re.search(r'class="form-errors".*content logging is off', html, re.S)
    assert not BiasRun.objects.exists()


def test_an_unknown_method_falls_back_to_the_probe_form(owner):
    response = owner.post(PAGE, {**PROBE, "method": "<script>", "repetitions": "0"})
    assert response.status_code == 200
    assert field_errors(response.content.decode(), "repetitions")
    assert not BiasRun.objects.exists()


# --- A run's page ------------------------------------------------------------------------


def wilson(successes: int, n: int) -> str:
    low, high = proportion_confint(successes, n, alpha=0.05, method="wilson")
    return f"{100 * low:.1f} \N{EN DASH} {100 * high:.1f} %"


def group_row(html: str, group: str) -> str:
    match = re.search(rf'<tr data-testid="group-row" data-group="{group}".*?</tr>', html, re.S)
    assert match is not None, f"no row for {group}"
    return match.group(0)


def test_a_completed_run_shows_a_card_per_finding(owner, clinic):
    run = completed_run(clinic)
    response = owner.get(f"{PAGE}{run.pk}/")
    html = response.content.decode()

    assert response.status_code == 200
    statuses = re.findall(
        r'data-testid="finding" data-attribute="(\w+)" data-outcome="\w+" '
        r'data-status="(\w+)"',
        html,
    )
    assert statuses == [
        ("race_ethnicity", "flagged"),
        ("language", "inconclusive"),
        ("sex", "not_flagged"),
    ]
    flagged = '<span class="badge bad" data-testid="finding-status">Flagged</span>'
    assert f"{flagged} Race and ethnicity · Triaged emergent or urgent" in html
    assert '<span class="badge warn" data-testid="finding-status">Inconclusive</span>' in html
    assert '<span class="badge ok" data-testid="finding-status">Not flagged</span>' in html
    assert "black&#x27;s favourable rate is 0.50 of white&#x27;s" in html

    black = group_row(html, "black")
    assert 'data-below="true"' in black
    assert "<td>Black</td>" in black and '<td class="num">60</td>' in black
    assert "50.0 %" in black and wilson(30, 60) in black
    assert '<span class="badge bad" title="Under the four-fifths line">0.50</span>' in black
    white = group_row(html, "white")
    assert "data-below" not in white and wilson(60, 60) in white and ">1.00<" in white
    assert wilson(54, 60) in group_row(html, "asian")
    assert 'data-testid="bias-legend"' in html
    assert "not proof of harm" in html and "synthetic vignettes" in html
    assert "does not prove the model is fair" in html
    assert 'data-poll-url="' not in html


def test_a_running_run_polls_for_its_progress(owner, clinic):
    run = running_run(clinic)
    html = owner.get(f"{PAGE}{run.pk}/").content.decode()
    assert f'data-poll-url="/api/compliance/bias-detection/{run.pk}"' in html
    assert '<progress max="100" value="40"' in html
    assert "Sent 120 of 270 probes" in html
    assert "window.location.reload()" in html
    assert 'data-testid="finding"' not in html


def test_a_failed_run_shows_why(owner, clinic):
    run = running_run(clinic, status=JobStatus.FAILED, error="ValueError: upstream said no")
    html = owner.get(f"{PAGE}{run.pk}/").content.decode()
    assert "The run failed: ValueError: upstream said no" in html


def test_another_organisations_run_is_a_404(owner, org):
    theirs = completed_run(org)
    assert owner.get(f"{PAGE}{theirs.pk}/").status_code == 404
    assert owner.get(f"{PAGE}{uuid.uuid4()}/").status_code == 404
    assert owner.get(f"{PAGE}not-a-run/").status_code == 404


def test_stored_findings_of_any_shape_never_break_the_page(owner, clinic):
    junk = [
        "a string",
        7,
        {"groups": "not a list"},
        {"status": "flagged", "groups": [5, {"impact_ratio": "0.1", "n": "many"}]},
        {"status": "???", "groups": [{"rate": "1e400", "impact_ratio": True, "group": None}]},
    ]
    run = completed_run(clinic, findings=junk, definition={"attributes": []})
    response = owner.get(f"{PAGE}{run.pk}/")
    assert response.status_code == 200
    assert response.content.decode().count('data-testid="finding"') == 3


# --- Formatting --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.5, "0.50"), (0.849057, "0.85"), (0.7996, "0.7996"), (0.8, "0.80"), (1, "1.00")],
)
def test_impact_ratios_never_round_across_the_four_fifths_line(value, text):
    assert ratio_text(value) == text


@pytest.mark.parametrize("value", [None, "0.5", True, float("nan"), float("inf"), [0.5]])
def test_what_is_not_a_number_shows_as_a_dash(value):
    assert ratio_text(value) == "—"
    assert percent(value) == "—"


def test_cards_sort_flags_first_and_use_the_probe_sets_labels():
    cards = finding_cards(list(reversed(realistic_findings())), DEFAULT_PROBE_SET)
    assert [c["status"] for c in cards] == ["flagged", "inconclusive", "not_flagged"]
    assert cards[1]["title"] == "Language · Referred to a specialist"
    rows = {row["group"]: row for row in cards[1]["rows"]}
    assert (
        rows["limited_english"]["label"]
        == DEFAULT_PROBE_SET["attributes"]["language"]["levels"]["limited_english"]["label"]
    )
    assert rows["limited_english"]["below"] is True  # 0.75: highlighted, yet not a flag
