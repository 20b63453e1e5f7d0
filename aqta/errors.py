"""The one error vocabulary of Aqta: ``{"error": {"message", "type", "code", "param"?}}``.

Both planes raise :class:`AqtaError` (or let a framework exception be translated here),
so a client sees one shape for every failure, and the OpenAI SDK maps the status to its
typed exceptions. Nothing here ever renders a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django_ratelimit.exceptions import Ratelimited
from redis.exceptions import RedisError
from rest_framework import exceptions as drf
from rest_framework.response import Response

logger = logging.getLogger("aqta.errors")

# Error ``type`` per HTTP status, as OpenAI-compatible clients expect them.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "api_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class AqtaError(Exception):
    """An error a client is meant to see, with its status and machine-readable code."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        # A field at fault without a more specific code is an invalid parameter.
        self.code = code or ("invalid_parameter" if param else "invalid_request")
        self.param = param
        self.type = type or ERROR_TYPES.get(status, "invalid_request_error")
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return error_body(
            self.message,
            code=self.code,
            type=self.type,
            param=self.param,
            retry_after=self.retry_after,
        )

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


def error_body(
    message: str,
    *,
    code: str,
    type: str,
    param: str | None = None,
    retry_after: int | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": type, "code": code}
    if param is not None:
        error["param"] = param
    if retry_after is not None:
        error["retry_after"] = retry_after
    return {"error": error}


def not_found(message: str = "Not found.") -> AqtaError:
    return AqtaError(message, status=404, code="not_found")


def service_unavailable() -> AqtaError:
    return AqtaError(
        "A service Aqta depends on is unavailable; try again shortly.",
        status=503,
        code="service_unavailable",
        retry_after=5,
    )


def json_error(error: AqtaError) -> JsonResponse:
    response = JsonResponse(error.body(), status=error.status)
    for name, value in error.headers().items():
        response[name] = value
    return response


# --- DRF --------------------------------------------------------------------------------


def _join(prefix: str, key: object) -> str:
    """``allowed_models`` + 1 → ``allowed_models[1]``; ``limits`` + ``per_minute`` → dotted."""
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)


def _first_field_error(
    detail: Any, prefix: str = "", indexed: bool = False
) -> tuple[str | None, str, str, bool]:
    """(param, message, code, indexed) of the first problem in a ValidationError detail.

    DRF nests details as it nests fields: dicts keyed by field name (serializers, nested
    serializers, DictField), dicts keyed by the *integer* index (ListField and
    ``many=True`` serializers), and lists of messages for one field (older DRF also
    reports a ``many=True`` serializer as a list with one dict per item, ``{}`` for the
    valid ones). ``indexed`` says whether the parameter's last step is a list index.
    """
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == "non_field_errors":
                found = _first_field_error(value, prefix, indexed)
            else:
                found = _first_field_error(value, _join(prefix, key), isinstance(key, int))
            if found[1]:
                return found
    elif isinstance(detail, list):
        if not any(isinstance(item, dict | list) for item in detail):
            if detail:  # the messages of one field
                return _first_field_error(detail[0], prefix, indexed)
        else:
            for index, item in enumerate(detail):  # one entry per item; {} for a valid one
                if item:
                    found = _first_field_error(item, _join(prefix, index), True)
                    if found[1]:
                        return found
    else:
        code = getattr(detail, "code", None) or "invalid"
        return (prefix or None), str(detail), str(code), indexed
    return (prefix or None), "", "invalid", indexed


def _validation_error(exc: drf.ValidationError) -> AqtaError:
    param, message, code, indexed = _first_field_error(exc.detail)
    # A named field sent empty is missing; an empty element of a list is just invalid.
    missing = code == "required" or (code in {"null", "blank"} and not indexed)
    if param and message and not message.lower().startswith(param.split(".")[-1]):
        message = f"{param}: {message}"
    return AqtaError(
        message or "Invalid request.",
        status=400,
        code="missing_parameter" if missing else "invalid_parameter",
        param=param,
    )


def translate(exc: Exception) -> AqtaError | None:
    """Map framework exceptions to an :class:`AqtaError`; None means "unexpected"."""
    if isinstance(exc, AqtaError):
        return exc
    if isinstance(exc, Ratelimited):
        return AqtaError(
            "Too many requests; slow down and try again shortly.",
            status=429,
            code="rate_limit_exceeded",
            retry_after=60,
        )
    if isinstance(exc, drf.ValidationError):
        return _validation_error(exc)
    if isinstance(exc, RequestDataTooBig):
        return AqtaError(
            "The request body is larger than this server accepts.",
            status=413,
            code="request_too_large",
        )
    if isinstance(exc, SuspiciousOperation):  # e.g. too many form fields
        # Logged where Django logs the ones it handles itself.
        logging.getLogger(f"django.security.{exc.__class__.__name__}").error(str(exc))
        return AqtaError("Bad request: the request could not be read.", code="invalid_request")
    if isinstance(exc, RedisError):
        # What the control plane keeps in Redis falls back on its own (aqta.cache, key
        # records); anything that still reaches here is a dependency outage, not a bug.
        logger.error("Redis unavailable: %s", exc)
        return service_unavailable()
    if isinstance(exc, drf.ParseError):
        return AqtaError(f"Malformed request body: {exc.detail}", code="invalid_json")
    if isinstance(exc, drf.UnsupportedMediaType):
        return AqtaError(str(exc.detail), status=415, code="unsupported_media_type")
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else "not_authenticated"
        return AqtaError(str(exc.detail), status=401, code=str(code))
    if isinstance(exc, drf.PermissionDenied | DjangoPermissionDenied):
        message = str(getattr(exc, "detail", "") or exc or "Permission denied.")
        code = "csrf_failed" if message.startswith("CSRF Failed") else "permission_denied"
        return AqtaError(message, status=403, code=code)
    if isinstance(exc, drf.NotFound | Http404):
        return not_found()
    if isinstance(exc, drf.MethodNotAllowed):
        return AqtaError(str(exc.detail), status=405, code="method_not_allowed")
    if isinstance(exc, drf.NotAcceptable):
        return AqtaError(str(exc.detail), status=406, code="not_acceptable")
    if isinstance(exc, drf.Throttled):
        return AqtaError(
            "Too many requests.", status=429, code="rate_limit_exceeded", retry_after=exc.wait
        )
    if isinstance(exc, drf.APIException):
        return AqtaError(str(exc.detail), status=exc.status_code, code=str(exc.default_code))
    return None


def drf_exception_handler(exc: Exception, context: dict) -> Response | None:
    error = translate(exc)
    if error is None:
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
        error = AqtaError("Internal server error.", status=500, code="internal_error")
    response = Response(error.body(), status=error.status, headers=error.headers())
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="aqta"'
    return response


# --- Plain Django views and handlers -----------------------------------------------------


def ratelimited_view(request: HttpRequest, exception: Exception) -> HttpResponse:
    """django-ratelimit's view for non-DRF pages (e.g. the HTML login)."""
    return _page_or_json(request, translate(Ratelimited()), "429.html")  # type: ignore[arg-type]


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(("/api/", "/v1/")) or "application/json" in request.headers.get(
        "Accept", ""
    )


def _page_or_json(request: HttpRequest, error: AqtaError, template: str) -> HttpResponse:
    if _wants_json(request):
        return json_error(error)
    # Page rendering needs the template engine; imported here so the data plane never does.
    from django.template import loader

    try:
        body = loader.get_template(template).render({"error": error}, request)
    except Exception:  # a broken template must not turn a 404 into a 500
        body = f"<h1>{error.status}</h1><p>{error.message}</p>"
    return HttpResponse(body, status=error.status)


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _page_or_json(request, AqtaError("Bad request.", code="bad_request"), "400.html")


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    err = AqtaError("Permission denied.", status=403, code="permission_denied")
    return _page_or_json(request, err, "403.html")


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _page_or_json(request, not_found(), "404.html")


def handler500(request: HttpRequest) -> HttpResponse:
    err = AqtaError("Internal server error.", status=500, code="internal_error")
    return _page_or_json(request, err, "500.html")


class ServiceUnavailableMiddleware:
    """A Redis outage escaping a plain Django view is a 503 (page or JSON), not a 500.

    DRF views get the same through :func:`drf_exception_handler`.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, RedisError):
            return None
        logger.error("Redis unavailable in %s: %s", request.path, exception)
        response = _page_or_json(request, service_unavailable(), "503.html")
        response["Retry-After"] = "5"
        return response


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    err = AqtaError(f"CSRF Failed: {reason}", status=403, code="csrf_failed")
    return _page_or_json(request, err, "403.html")
