"""The one error vocabulary of Aqta: ``{"error": {"message", "type", "code", "param"?}}``.

Both planes raise :class:`AqtaError` (or let a framework exception be translated here),
so a client sees one shape for every failure, and the OpenAI SDK maps the status to its
typed exceptions. Nothing here ever renders a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum
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
    406: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "api_error",
    503: "service_unavailable",
    504: "timeout_error",
    499: "client_disconnected",  # only ever in traces: nobody is left to answer
}


class ErrorCode(StrEnum):
    """Every machine-readable ``code`` Aqta answers with, and the HTTP status it goes with.

    A code means one thing and has one status wherever it is raised, on /v1 and /api alike;
    the ``type`` follows from the status (:data:`ERROR_TYPES`). docs/errors.md lists them.
    """

    status: int

    def __new__(cls, value: str, status: int) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        return member

    @property
    def type(self) -> str:
        return ERROR_TYPES[self.status]

    # 400: the request itself
    INVALID_REQUEST = "invalid_request", 400
    BAD_REQUEST = "bad_request", 400
    INVALID_JSON = "invalid_json", 400
    INVALID_PARAMETER = "invalid_parameter", 400
    INVALID_TYPE = "invalid_type", 400
    INVALID_VALUE = "invalid_value", 400
    EMPTY_ARRAY = "empty_array", 400
    MISSING_PARAMETER = "missing_parameter", 400
    MISSING_REQUIRED_PARAMETER = "missing_required_parameter", 400
    UNSUPPORTED_PARAMETER = "unsupported_parameter", 400
    # 401: who is asking
    NOT_AUTHENTICATED = "not_authenticated", 401
    INVALID_API_KEY = "invalid_api_key", 401
    INVALID_CREDENTIALS = "invalid_credentials", 401
    MFA_REQUIRED = "mfa_required", 401
    AUTHENTICATION_FAILED = "authentication_failed", 401
    # 402: the organisation's month is used up
    QUOTA_EXCEEDED = "quota_exceeded", 402
    BUDGET_EXCEEDED = "budget_exceeded", 402
    # 403: allowed to ask, not allowed this
    PERMISSION_DENIED = "permission_denied", 403
    CSRF_FAILED = "csrf_failed", 403
    EMAIL_VERIFICATION_REQUIRED = "email_verification_required", 403
    MODEL_NOT_ALLOWED = "model_not_allowed", 403
    TIER_FEATURE_UNAVAILABLE = "tier_feature_unavailable", 403
    HIGH_RISK_BLOCKED = "high_risk_blocked", 403
    # 404-415
    NOT_FOUND = "not_found", 404
    MODEL_NOT_FOUND = "model_not_found", 404
    USER_NOT_FOUND = "user_not_found", 404
    SIGN_IN_NOT_CONFIGURED = "sign_in_not_configured", 404
    METHOD_NOT_ALLOWED = "method_not_allowed", 405
    NOT_ACCEPTABLE = "not_acceptable", 406
    CONFLICT = "conflict", 409
    ALREADY_A_MEMBER = "already_a_member", 409
    EMAIL_TAKEN = "email_taken", 409
    LAST_OWNER = "last_owner", 409
    REQUEST_TOO_LARGE = "request_too_large", 413
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type", 415
    # 429: too much, too fast
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded", 429
    LOOP_DETECTED = "loop_detected", 429
    TOO_MANY_LOGIN_ATTEMPTS = "too_many_login_attempts", 429
    # 5xx: ours or a provider's
    INTERNAL_ERROR = "internal_error", 500
    PROVIDER_ERROR = "provider_error", 502
    SERVICE_UNAVAILABLE = "service_unavailable", 503
    RECEIPTS_UNAVAILABLE = "receipts_unavailable", 503
    PROVIDER_UNAVAILABLE = "provider_unavailable", 503
    PROVIDER_NOT_CONFIGURED = "provider_not_configured", 503
    PRICE_MISSING = "price_missing", 503
    EXCHANGE_RATE_MISSING = "exchange_rate_missing", 503
    PROVIDER_TIMEOUT = "provider_timeout", 504
    # in traces only: the client went away before the answer
    CLIENT_DISCONNECTED = "client_disconnected", 499

    @classmethod
    def for_status(cls, status: int) -> ErrorCode:
        """The general code of a status, for a framework error that names no code of ours."""
        return _BY_STATUS.get(status, cls.INTERNAL_ERROR if status >= 500 else cls.BAD_REQUEST)

    @classmethod
    def named(cls, value: object) -> ErrorCode | None:
        """The code spelled ``value``, or None."""
        return _BY_VALUE.get(value) if isinstance(value, str) else None


_BY_VALUE: dict[str, ErrorCode] = {code.value: code for code in ErrorCode}
_BY_STATUS: dict[int, ErrorCode] = {}
for _code in reversed(ErrorCode):  # the first code listed for a status wins
    _BY_STATUS[_code.status] = _code


class AqtaError(Exception):
    """An error a client is meant to see: a message and its :class:`ErrorCode`, which
    decides the status and type."""

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        # A field at fault without a more specific code is an invalid parameter.
        self.code = code or (ErrorCode.INVALID_PARAMETER if param else ErrorCode.INVALID_REQUEST)
        self.status = self.code.status
        self.type = self.code.type
        self.param = param
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
    code: str,  # an ErrorCode, or a provider's own code in a relayed stream error
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
    return AqtaError(message, code=ErrorCode.NOT_FOUND)


def service_unavailable() -> AqtaError:
    return AqtaError(
        "A service Aqta depends on is unavailable; try again shortly.",
        code=ErrorCode.SERVICE_UNAVAILABLE,
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
        found = _first_in_fields(detail, prefix, indexed)
    elif isinstance(detail, list):
        found = _first_in_list(detail, prefix, indexed)
    else:
        code = getattr(detail, "code", None) or "invalid"
        return (prefix or None), str(detail), str(code), indexed
    return found or ((prefix or None), "", "invalid", indexed)


def _first_in_fields(
    detail: dict[Any, Any], prefix: str, indexed: bool
) -> tuple[str | None, str, str, bool] | None:
    """The first problem under a dict of details keyed by field name or list index."""
    for key, value in detail.items():
        if key == "non_field_errors":
            found = _first_field_error(value, prefix, indexed)
        else:
            found = _first_field_error(value, _join(prefix, key), isinstance(key, int))
        if found[1]:
            return found
    return None


def _first_in_list(
    detail: list[Any], prefix: str, indexed: bool
) -> tuple[str | None, str, str, bool] | None:
    """The first problem in a list: one field's messages, or one detail per item."""
    if not any(isinstance(item, dict | list) for item in detail):
        # The messages of one field.
        return _first_field_error(detail[0], prefix, indexed) if detail else None
    for index, item in enumerate(detail):  # one entry per item; {} for a valid one
        if item:
            found = _first_field_error(item, _join(prefix, index), True)
            if found[1]:
                return found
    return None


def _validation_error(exc: drf.ValidationError) -> AqtaError:
    param, message, code, indexed = _first_field_error(exc.detail)
    # A named field sent empty is missing; an empty element of a list is just invalid.
    missing = code == "required" or (code in {"null", "blank"} and not indexed)
    if param and message and not message.lower().startswith(param.split(".")[-1]):
        message = f"{param}: {message}"
    return AqtaError(
        message or "Invalid request.",
        code=ErrorCode.MISSING_PARAMETER if missing else ErrorCode.INVALID_PARAMETER,
        param=param,
    )


def _rate_limited(exc: Ratelimited) -> AqtaError:
    return AqtaError(
        "Too many requests; slow down and try again shortly.",
        code=ErrorCode.RATE_LIMIT_EXCEEDED,
        retry_after=60,
    )


def _too_large(exc: RequestDataTooBig) -> AqtaError:
    return AqtaError(
        "The request body is larger than this server accepts.", code=ErrorCode.REQUEST_TOO_LARGE
    )


def _suspicious(exc: SuspiciousOperation) -> AqtaError:
    """E.g. too many form fields; logged where Django logs the ones it handles itself."""
    logging.getLogger(f"django.security.{exc.__class__.__name__}").error(str(exc))
    return AqtaError("Bad request: the request could not be read.", code=ErrorCode.INVALID_REQUEST)


def _redis_down(exc: RedisError) -> AqtaError:
    # What the control plane keeps in Redis falls back on its own (aqta.cache, key records);
    # anything that still reaches here is a dependency outage, not a bug.
    logger.error("Redis unavailable: %s", exc)
    return service_unavailable()


def _malformed(exc: drf.ParseError) -> AqtaError:
    return AqtaError(f"Malformed request body: {exc.detail}", code=ErrorCode.INVALID_JSON)


def _not_authenticated(exc: drf.NotAuthenticated | drf.AuthenticationFailed) -> AqtaError:
    # Our authentication names its code (invalid_api_key); DRF's own have theirs.
    code = ErrorCode.named(exc.get_codes()) or ErrorCode.NOT_AUTHENTICATED
    if code.status != 401:
        code = ErrorCode.NOT_AUTHENTICATED
    return AqtaError(str(exc.detail), code=code)


def _permission_denied(exc: drf.PermissionDenied | DjangoPermissionDenied) -> AqtaError:
    message = str(getattr(exc, "detail", "") or str(exc) or "Permission denied.")
    csrf = message.startswith("CSRF Failed")
    return AqtaError(message, code=ErrorCode.CSRF_FAILED if csrf else ErrorCode.PERMISSION_DENIED)


def _throttled(exc: drf.Throttled) -> AqtaError:
    return AqtaError(
        "Too many requests.",
        code=ErrorCode.RATE_LIMIT_EXCEEDED,
        retry_after=exc.wait,  # type: ignore[attr-defined]  # set by __init__, not in the stubs
    )


def _with_code(code: ErrorCode) -> Callable[[drf.APIException], AqtaError]:
    """DRF's own message under ``code``."""
    return lambda exc: AqtaError(str(exc.detail), code=code)


def _api_exception(exc: drf.APIException) -> AqtaError:
    return AqtaError(str(exc.detail), code=ErrorCode.for_status(exc.status_code))


_Types = type[Exception] | tuple[type[Exception], ...]
# The first entry whose types the exception is an instance of translates it: subclasses come
# before their bases (Ratelimited is a PermissionDenied, RequestDataTooBig a
# SuspiciousOperation, every drf exception an APIException).
_TRANSLATIONS: tuple[tuple[_Types, Callable[..., AqtaError]], ...] = (
    (AqtaError, lambda exc: exc),
    (Ratelimited, _rate_limited),
    (drf.ValidationError, _validation_error),
    (RequestDataTooBig, _too_large),
    (SuspiciousOperation, _suspicious),
    (RedisError, _redis_down),
    (drf.ParseError, _malformed),
    (drf.UnsupportedMediaType, _with_code(ErrorCode.UNSUPPORTED_MEDIA_TYPE)),
    ((drf.NotAuthenticated, drf.AuthenticationFailed), _not_authenticated),
    ((drf.PermissionDenied, DjangoPermissionDenied), _permission_denied),
    ((drf.NotFound, Http404), lambda exc: not_found()),
    (drf.MethodNotAllowed, _with_code(ErrorCode.METHOD_NOT_ALLOWED)),
    (drf.NotAcceptable, _with_code(ErrorCode.NOT_ACCEPTABLE)),
    (drf.Throttled, _throttled),
    (drf.APIException, _api_exception),
)


def translate(exc: Exception) -> AqtaError | None:
    """Map framework exceptions to an :class:`AqtaError`; None means "unexpected"."""
    for types, translation in _TRANSLATIONS:
        if isinstance(exc, types):
            return translation(exc)
    return None


def drf_exception_handler(exc: Exception, context: dict) -> Response | None:
    error = translate(exc)
    if error is None:
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
        error = AqtaError("Internal server error.", code=ErrorCode.INTERNAL_ERROR)
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
    return _page_or_json(request, AqtaError("Bad request.", code=ErrorCode.BAD_REQUEST), "400.html")


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    err = AqtaError("Permission denied.", code=ErrorCode.PERMISSION_DENIED)
    return _page_or_json(request, err, "403.html")


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _page_or_json(request, not_found(), "404.html")


def handler500(request: HttpRequest) -> HttpResponse:
    err = AqtaError("Internal server error.", code=ErrorCode.INTERNAL_ERROR)
    return _page_or_json(request, err, "500.html")


class ServiceUnavailableMiddleware:
    """A Redis outage escaping a plain Django view is a 503 (page or JSON), not a 500.

    DRF views get the same through :func:`drf_exception_handler`.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
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
    err = AqtaError(f"CSRF Failed: {reason}", code=ErrorCode.CSRF_FAILED)
    return _page_or_json(request, err, "403.html")
