"""Throttling for control-plane endpoints, on django-ratelimit's shared-cache counters."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django_ratelimit.core import get_usage
from rest_framework.request import Request

from aqta.errors import AqtaError, ErrorCode

# One IPv6 subscriber usually holds a whole /64: count it as one address.
IPV6_PREFIX = 64

# A fixed key, or a function of (group, request), as django-ratelimit takes it.
ThrottleKey = str | Callable[[str, HttpRequest | Request], str]


def client_ip(group: str, request: HttpRequest | Request) -> str:
    """The per-IP throttle key: the client's address, an IPv6 one by its /64.

    Without an address (a server on a Unix socket that sets none) the request is refused
    with 403, like allauth's own limits do, rather than sharing one bucket with everyone
    else or escaping the limit.
    """
    raw = request.META.get("REMOTE_ADDR") or ""
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        raise PermissionDenied("Unable to determine the client's IP address.") from None
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


def throttle(request: HttpRequest | Request, *, group: str, rate: str, key: ThrottleKey) -> None:
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
            code=ErrorCode.RATE_LIMIT_EXCEEDED,
            retry_after=max(1, int(usage["time_left"])),
        )
