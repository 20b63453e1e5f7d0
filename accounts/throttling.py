"""Throttling for control-plane endpoints, on django-ratelimit's shared-cache counters."""

from __future__ import annotations

from collections.abc import Callable

from django_ratelimit.core import get_usage

from aqta.errors import AqtaError


def throttle(request, *, group: str, rate: str, key: str | Callable) -> None:
    """Count this request in ``group``; over ``rate`` it is refused with 429.

    Counts are kept per HTTP method set, like django-ratelimit's decorator with
    ``method="POST"``, so a POST counted here and one counted by a decorated page view
    (the HTML login) share one bucket.
    """
    usage = get_usage(
        request, group=group, key=key, rate=rate, method=request.method, increment=True
    )
    if usage is not None and usage["should_limit"]:
        raise AqtaError(
            "Too many requests; slow down and try again shortly.",
            status=429,
            code="rate_limit_exceeded",
            retry_after=max(1, int(usage["time_left"])),
        )
