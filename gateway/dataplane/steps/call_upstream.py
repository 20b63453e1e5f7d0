"""Step 6: the provider call. The route's deployments are tried in order, skipping open
circuits: connect errors, timeouts, 429/5xx (after ``upstream``'s retries) and credential
errors fall back to the next deployment; a request the provider finds invalid
(400/413/422) is the client's and is answered as such, without fallback."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from aqta import metrics
from aqta.errors import AqtaError, ErrorCode
from gateway.dataplane.call import Call, Target
from gateway.dataplane.catalog import Deployment
from gateway.dataplane.runtime import Runtime
from gateway.dataplane.upstream import open_response, provider_error

CLIENT_FAULTS = frozenset({400, 413, 422})


@dataclass(frozen=True, slots=True)
class Opened:
    """A provider's 200 response, headers in, body still to read, and who sent it."""

    response: aiohttp.ClientResponse
    target: Target


async def call_upstream(rt: Runtime, call: Call) -> Opened:
    assert call.route is not None and call.body is not None
    failure: AqtaError | None = None
    tried = 0
    for target in call.route.targets:
        name = target.deployment.name
        if not await rt.breaker.available(name):
            continue
        tried += 1
        request = target.adapter.build_request(target.deployment, call.body, call.stream)
        try:
            response = await open_response(
                rt.session, request, provider=name, retries=rt.config.upstream_retries
            )
        except AqtaError as error:
            metrics.UPSTREAM_ERRORS.labels(name, error.code).inc()
            await rt.breaker.failure(name)
            failure = error
            continue
        if response.status == 200:
            await rt.breaker.success(name)
            call.deployment = name
            return Opened(response, target)
        failure = await _refused(rt, target, response)
    if tried == 0:
        raise AqtaError(
            "Every deployment of this model is failing; retry shortly.",
            code=ErrorCode.PROVIDER_UNAVAILABLE,
            retry_after=rt.config.breaker_open_seconds,
        )
    assert failure is not None
    raise failure


async def _refused(rt: Runtime, target: Target, response: aiohttp.ClientResponse) -> AqtaError:
    """The error a non-200 answer means: raised at once if it is the client's fault,
    returned (and counted against the deployment) if the next deployment may do better."""
    deployment = target.deployment
    raw = await response.read()
    response.release()
    metrics.UPSTREAM_ERRORS.labels(deployment.name, str(response.status)).inc()
    message = scrub(target.adapter.error_message(response.status, raw), deployment)
    if response.status in CLIENT_FAULTS:
        raise AqtaError(
            f"{deployment.provider} refused the request: {message}",
            code=ErrorCode.INVALID_REQUEST,
        )
    await rt.breaker.failure(deployment.name)
    return provider_error(deployment.name, message, response.status)


def scrub(message: str, deployment: Deployment) -> str:
    """A provider's error text never carries the deployment's own key back to a client."""
    key = deployment.endpoint.api_key
    return message.replace(key, "[redacted]") if key else message
