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
DEAD_LETTERS = Counter(
    "aqta_trace_dead_letters_total",
    "Trace records that could not be stored and were parked as dead letters.",
    ["source"],
)


UNKNOWN_MODEL = "unknown"


def observe(call, record: dict) -> None:
    # The catalogue's model id (an alias counts as its model), never the requested name.
    model = call.model.model_id if call.model is not None else UNKNOWN_MODEL
    REQUESTS.labels(model, record["status"], str(record["http_status"])).inc()
    LATENCY.labels("true" if record["stream"] else "false").observe(record["latency_ms"] / 1000)
    if record["prompt_tokens"]:
        TOKENS.labels(model, "prompt").inc(record["prompt_tokens"])
    if record["completion_tokens"]:
        TOKENS.labels(model, "completion").inc(record["completion_tokens"])
    if call.cost_eur:
        COST.labels(model).inc(float(call.cost_eur))
