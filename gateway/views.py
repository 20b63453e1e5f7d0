"""Operations endpoints: liveness, readiness and Prometheus metrics.

``/metrics`` describes traffic, errors and providers, so it is not public: with
``AQTA_METRICS_TOKEN`` set it answers only ``Authorization: Bearer <token>``; without one,
only clients on the loopback interface (Prometheus or an agent on the same host).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from aqta import redis as aqta_redis
from aqta.errors import AqtaError, ErrorCode, json_error
from gateway.models import TraceDeadLetter


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as error:
        checks["database"] = f"error: {type(error).__name__}"
    if aqta_redis.enabled():
        try:
            aqta_redis.sync_client().ping()
            checks["redis"] = "ok"
        except Exception as error:
            checks["redis"] = f"error: {type(error).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", **checks}, status=200 if ready else 503
    )


class DeadLetterCollector:
    """Dead letters waiting, counted in the database at each scrape: the table is shared,
    so this is right whichever process or host parked them."""

    def collect(self) -> Iterator[Metric]:
        try:
            waiting = TraceDeadLetter.objects.count()
        except DatabaseError:
            return  # the other metrics still answer while the database is down
        gauge = GaugeMetricFamily(
            "aqta_trace_dead_letters_pending",
            "Trace records parked as dead letters, waiting to be replayed or discarded.",
        )
        gauge.add_metric([], waiting)
        yield gauge


def _loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _metrics_refusal(request: HttpRequest) -> AqtaError | None:
    token = settings.AQTA_METRICS_TOKEN
    if not token:
        if _loopback(request.META.get("REMOTE_ADDR", "")):
            return None
        return AqtaError(
            "Metrics are served to local clients only.", code=ErrorCode.PERMISSION_DENIED
        )
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    # compare_digest takes as long for a wrong token as for a right one of its length.
    if scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), token.encode()
    ):
        return None
    return AqtaError("A valid metrics bearer token is required.", code=ErrorCode.NOT_AUTHENTICATED)


def metrics(request: HttpRequest) -> HttpResponse:
    refusal = _metrics_refusal(request)
    if refusal is not None:
        response = json_error(refusal)
        if refusal.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    dead_letters = CollectorRegistry()
    dead_letters.register(DeadLetterCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    return HttpResponse(body + generate_latest(dead_letters), content_type=CONTENT_TYPE_LATEST)
