"""Analytics benchmark: /api/analytics/* over 1,000,000 traces in PostgreSQL.

``python -m bench.analytics`` drops and recreates its own database (``aqta_bench_analytics``),
migrates it, creates three Pro organisations (6, 3 and 1 keys; 60 %, 30 % and 10 % of the
traffic), seeds the traces over the last 90 days in PostgreSQL itself (INSERT … SELECT over
generate_series: no round trip per row), runs ``rollups_refresh`` (the first, full backfill,
then a steady-state run as beat does every minute), then calls each analytics endpoint through
Django's test client (the whole stack: middleware, API-key authentication, DRF, rendering)
as the largest organisation, warm, and prints a Markdown table of p50/p95 per call.
It also writes the table to ``bench/analytics_results.md``.

Needs PostgreSQL at 127.0.0.1:5432 (trust auth, user ``postgres``); no Redis (the cache is
in-process, Celery eager). ``--traces N`` seeds another amount, ``--calls N`` times N calls.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "analytics_results.md"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_NAME = "aqta_bench_analytics"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
GOAL_MS = 200.0
DAYS = 90
SEED_CHUNK = 250_000
# (organisation, keys, share of the traffic)
ORGS = [("Northwind", 6, 0.6), ("Globex", 3, 0.3), ("Initech", 1, 0.1)]
MODELS = [
    "gpt-4o",
    "gpt-4o-mini",
    "claude-3-5-sonnet-20241022",
    "claude-3-haiku-20240307",
    "gemini-2.0-flash",
    "sonar",
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def recreate_database() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")


def configure_django() -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="aqta.settings",
        DATABASE_URL=DATABASE_URL,
        SECRET_KEY=secrets.token_urlsafe(32),
        AQTA_API_KEY_PEPPER=secrets.token_urlsafe(32),
        AQTA_ENCRYPTION_KEYS="dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktMzJieXQ=",
        ALLOWED_HOSTS="testserver,127.0.0.1,localhost",
        AQTA_STAFF_REQUIRE_MFA="false",
        LOG_LEVEL="WARNING",
    )
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def create_organisations() -> list[tuple]:
    """[(organization, [(ApiKey, secret), ...], share)]"""
    from accounts.services import api_key_create, organization_create
    from accounts.tests.factories import UserFactory
    from billing.selectors import tier_get

    created = []
    for name, keys, share in ORGS:
        owner = UserFactory.create(email=f"owner@{name.lower()}.test")
        org = organization_create(name=name, owner=owner, tier=tier_get(slug="pro"))
        org_keys = [
            api_key_create(organization=org, created_by=owner, name=f"{name} key {i + 1}")
            for i in range(keys)
        ]
        created.append((org, org_keys, share))
    return created


SEED_SQL = """
INSERT INTO gateway_trace (
    id, created_at, organization_id, api_key_id, model, provider, status, http_status,
    error_code, policy, prompt_tokens, completion_tokens, cached_tokens, cost_eur,
    cost_prevented_eur, latency_ms, ttfb_ms, stream, cached, loop_detected,
    client_disconnected, request_sha256
)
SELECT
    gen_random_uuid(), d.ts, o.org_id, k.key_id, m.model, m.provider,
    CASE WHEN d.r_status < 0.02 THEN 'blocked' WHEN d.r_status < 0.03 THEN 'suppressed'
         ELSE 'passed' END,
    CASE WHEN d.r_status < 0.03 THEN 429 WHEN d.r_status < 0.05 THEN 502 ELSE 200 END,
    CASE WHEN d.r_status < 0.02 THEN 'rate_limit_exceeded'
         WHEN d.r_status < 0.03 THEN 'loop_detected'
         WHEN d.r_status < 0.05 THEN 'provider_error' ELSE '' END,
    CASE WHEN d.r_status < 0.02 THEN 'rate_limit' WHEN d.r_status < 0.03 THEN 'loop_guard'
         ELSE '' END,
    CASE WHEN d.r_status < 0.03 THEN 0 ELSE d.prompt END,
    CASE WHEN d.r_status < 0.05 THEN 0 ELSE d.completion END,
    0,
    CASE WHEN d.r_status < 0.03 THEN 0
         ELSE round((d.prompt * m.eur_in + d.completion * m.eur_out) / 1000000, 8) END,
    CASE WHEN d.r_status >= 0.02 AND d.r_status < 0.03
         THEN round((d.prompt * m.eur_in + d.completion * m.eur_out) / 1000000, 8) ELSE 0 END,
    CASE WHEN d.r_status < 0.03 THEN 1 + floor(d.r_latency * 3)::int
         ELSE floor(exp(5.3 + d.r_latency * 2.8))::int END,
    NULL, d.r_latency < 0.5, false, d.r_status >= 0.02 AND d.r_status < 0.03, false, ''
FROM (
    SELECT %(now)s::timestamptz - random() * %(days)s * interval '1 day' AS ts,
           random() AS r_org, random() AS r_key, floor(random() * %(models)s)::int AS r_model,
           random() AS r_status, random() AS r_latency,
           20 + floor(random() * 2000)::int AS prompt, floor(random() * 800)::int AS completion
    FROM generate_series(1, %(rows)s)
) AS d
JOIN bench_orgs o ON d.r_org >= o.lo AND d.r_org < o.hi
JOIN bench_keys k ON k.org_ix = o.ix AND k.ix = floor(d.r_key * o.nkeys)::int
JOIN bench_models m ON m.ix = d.r_model
"""


def seed_traces(organisations: list[tuple], total: int, now: datetime) -> float:
    from django.db import connection

    from billing.models import LanguageModel
    from billing.selectors import model_price_at, usd_eur_rate_at

    rate = usd_eur_rate_at()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE bench_orgs (ix int, org_id uuid, lo float, hi float, nkeys int);"
            "CREATE TEMP TABLE bench_keys (org_ix int, ix int, key_id uuid);"
            "CREATE TEMP TABLE bench_models (ix int, model text, provider text,"
            " eur_in numeric, eur_out numeric)"
        )
        low = 0.0
        for ix, (org, keys, share) in enumerate(organisations):
            high = 1.0 if ix == len(organisations) - 1 else low + share
            cursor.execute(
                "INSERT INTO bench_orgs VALUES (%s, %s, %s, %s, %s)",
                [ix, org.pk, low, high, len(keys)],
            )
            for key_ix, (api_key, _) in enumerate(keys):
                cursor.execute(
                    "INSERT INTO bench_keys VALUES (%s, %s, %s)", [ix, key_ix, api_key.pk]
                )
            low = high
        for ix, model_id in enumerate(MODELS):
            model = LanguageModel.objects.get(model_id=model_id)
            price = model_price_at(model=model)
            assert price is not None, model_id
            cursor.execute(
                "INSERT INTO bench_models VALUES (%s, %s, %s, %s, %s)",
                [
                    ix,
                    model_id,
                    model.provider,
                    price.input_usd_per_mtok * rate,
                    price.output_usd_per_mtok * rate,
                ],
            )
        done = 0
        while done < total:
            rows = min(SEED_CHUNK, total - done)
            params: dict[str, datetime | int] = {
                "now": now,
                "days": DAYS,
                "models": len(MODELS),
                "rows": rows,
            }
            cursor.execute(SEED_SQL, params)
            done += rows
            log(f"  seeded {done:,} traces ({time.perf_counter() - started:.0f} s)")
        cursor.execute("ANALYZE gateway_trace")
    return time.perf_counter() - started


def vacuum_analyze(*tables: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE {table}")


@dataclass
class Case:
    name: str
    url: str | Callable[[], str]


def cases(client, organisations: list[tuple], now: datetime) -> list[Case]:
    _, keys, _ = organisations[0]
    key_id = keys[1][0].pk
    d7, d30, d90 = ((now - timedelta(days=n)).strftime("%Y-%m-%dT%H:%M:%SZ") for n in (7, 30, 90))

    def deep_cursor() -> str:
        url = f"/api/analytics/requests?start={d30}&limit=50"
        for _ in range(20):  # page 21
            url = client.get(url).json()["next"]
        return url

    return [
        Case("requests: 7 days, by day, 50 traces (defaults)", "/api/analytics/requests"),
        Case("requests: 7 days, by hour", f"/api/analytics/requests?start={d7}&group_by=hour"),
        Case("requests: 90 days, by model", f"/api/analytics/requests?start={d90}&group_by=model"),
        Case(
            "requests: 30 days, by key, one model",
            f"/api/analytics/requests?start={d30}&group_by=key&model=gpt-4o",
        ),
        Case(
            "requests: 30 days, one key, 500 traces",
            f"/api/analytics/requests?start={d30}&api_key={key_id}&limit=500",
        ),
        Case(
            "requests: 90 days, error_code=loop_detected (1 %)",
            f"/api/analytics/requests?start={d90}&error_code=loop_detected&group_by=model",
        ),
        Case("requests: 30 days, page 21 (cursor)", deep_cursor),
        Case("requests: CSV, 500 traces", "/api/analytics/requests?format=csv&limit=500"),
        Case("costs: month to date, by day (defaults)", "/api/analytics/costs"),
        Case("costs: 90 days, by model", f"/api/analytics/costs?start={d90}&group_by=model"),
        Case("costs: 90 days, by key", f"/api/analytics/costs?start={d90}&group_by=key"),
        Case("costs: 90 days, by provider", f"/api/analytics/costs?start={d90}&group_by=provider"),
        Case("costs: CSV, 90 days by day", f"/api/analytics/costs?format=csv&start={d90}"),
    ]


def time_case(client, case: Case, calls: int) -> dict:
    url = case.url() if callable(case.url) else case.url
    for _ in range(3):  # warm-up: connection, caches, plans
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"{case.name}: HTTP {response.status_code} {response.content[:300]!r}")
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    samples.sort()
    return {
        "name": case.name,
        "p50": statistics.median(samples),
        "p95": samples[min(len(samples) - 1, round(0.95 * len(samples)) - 1)],
        "max": samples[-1],
        "bytes": len(response.content),
    }


def raw_scan_ms(org, now: datetime) -> float:
    """What the 90-day summary costs computed from the raw traces instead (for comparison)."""
    from django.db import connection

    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute(
            "SELECT count(*), sum(cost_eur), percentile_cont(0.95) WITHIN GROUP (ORDER BY "
            "latency_ms) FROM gateway_trace WHERE organization_id = %s AND created_at >= %s",
            [org.pk, now - timedelta(days=DAYS)],
        )
        cursor.fetchall()
        return (time.perf_counter() - started) * 1000


def table_sizes() -> dict[str, tuple[int, str]]:
    from django.db import connection

    sizes = {}
    with connection.cursor() as cursor:
        for table in ("gateway_trace", "gateway_hourlyrollup", "gateway_dailyrollup"):
            # Table names from the tuple above, not input.
            cursor.execute(
                f"SELECT count(*), pg_size_pretty(pg_total_relation_size('{table}')) FROM {table}"  # noqa: S608
            )
            sizes[table] = cursor.fetchone()
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traces", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()

    log(f"recreating {DB_NAME} and migrating")
    recreate_database()
    configure_django()
    from django.core.management import call_command
    from django.test import Client

    from gateway.analytics import rollups

    call_command("migrate", verbosity=0)
    organisations = create_organisations()
    now = datetime.now(UTC)
    log(f"seeding {args.traces:,} traces over {DAYS} days")
    seed_seconds = seed_traces(organisations, args.traces, now)

    log("rollups_refresh: first run (backfill)")
    backfill = rollups.rollups_refresh()
    vacuum_analyze("gateway_hourlyrollup", "gateway_dailyrollup")
    log("rollups_refresh: steady-state run")
    steady = rollups.rollups_refresh()

    org, keys, _ = organisations[0]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {keys[0][1]}")
    results = []
    for case in cases(client, organisations, now):
        results.append(time_case(client, case, args.calls))
        log(f"  {case.name}: p50 {results[-1]['p50']:.1f} ms, p95 {results[-1]['p95']:.1f} ms")
    raw = min(raw_scan_ms(org, now) for _ in range(3))
    sizes = table_sizes()

    lines = [
        f"Analytics over {sizes['gateway_trace'][0]:,} traces ({sizes['gateway_trace'][1]}), "
        f"{DAYS} days, 3 organisations / 10 keys / {len(MODELS)} models; calls as "
        f"{org.name} ({ORGS[0][2]:.0%} of the traces), {args.calls} timed calls each after 3 "
        "warm-up calls, Django test client (whole stack, API-key auth).",
        "",
        f"- seeding: {seed_seconds:.1f} s",
        f"- rollups_refresh, first run (backfill): {backfill['seconds']:.1f} s → "
        f"{sizes['gateway_hourlyrollup'][0]:,} hourly rows ({sizes['gateway_hourlyrollup'][1]}), "
        f"{sizes['gateway_dailyrollup'][0]:,} daily rows ({sizes['gateway_dailyrollup'][1]})",
        f"- rollups_refresh, steady state (last 2 h + the current hour): "
        f"{steady['seconds'] * 1000:.0f} ms",
        f"- for comparison, a 90-day summary of {org.name} scanning the raw traces: {raw:.0f} ms",
        "",
        "| endpoint and query | p50 ms | p95 ms | max ms | bytes | < 200 ms |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for r in results:
        verdict = "pass" if r["p95"] < GOAL_MS else "**fail**"
        lines.append(
            f"| {r['name']} | {r['p50']:.1f} | {r['p95']:.1f} | {r['max']:.1f} | "
            f"{r['bytes']:,} | {verdict} |"
        )
    table = "\n".join(lines)
    print(table)
    RESULTS.write_text(table + "\n")


if __name__ == "__main__":
    main()
