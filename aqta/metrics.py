"""Prometheus metrics. Several server workers are separate processes, so the multiprocess
mode is used when ``PROMETHEUS_MULTIPROC_DIR`` is set (``make run`` and deployments set it).

Label values come from bounded sets only (catalogue models, statuses, policy and error
codes, deployment names): a label holding client text would grow a series per distinct
value and put that text in every scrape.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "aqta_requests_total", "Calls to /v1/chat/completions.", ["model", "status", "http_status"]
)
LATENCY = Histogram(
    "aqta_request_latency_seconds",
    "Gateway latency per call (streams: until the last byte).",
    ["stream"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
TOKENS = Counter("aqta_tokens_total", "Tokens used.", ["model", "kind"])
COST = Counter("aqta_cost_eur_total", "Cost of calls in EUR.", ["model"])
POLICY_REFUSALS = Counter("aqta_policy_refusals_total", "Calls refused by a policy.", ["policy"])
UPSTREAM_ERRORS = Counter(
    "aqta_upstream_errors_total", "Failed provider calls.", ["provider", "status"]
)
ERRORS = Counter("aqta_errors_total", "Calls answered with an error.", ["code"])
REDIS_ERRORS = Counter("aqta_redis_errors_total", "Redis operations that failed.")
RECEIPT_WRITE_ERRORS = Counter(
    "aqta_receipt_write_errors_total",
    "Healthcare receipts that could not be stored (the call was answered 503).",
)
PRICE_MISSING = Counter(
    "aqta_price_missing_total",
    "Calls refused because no price (or no USD/EUR rate) was valid for them.",
    ["model", "missing"],
)
DEAD_LETTERS = Counter(
    "aqta_trace_dead_letters_total",
    "Trace records that could not be stored and were parked as dead letters.",
    ["source"],
)
