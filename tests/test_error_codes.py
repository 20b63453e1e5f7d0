"""The error vocabulary: one status and type per code, the same on both planes, all
documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rest_framework import exceptions as drf

from aqta.errors import ERROR_TYPES, AqtaError, ErrorCode, translate

DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"


def test_every_code_has_a_status_with_a_type():
    for code in ErrorCode:
        assert code.status in ERROR_TYPES, code
        assert code.type == ERROR_TYPES[code.status]


def test_codes_are_unique_snake_case():
    values = [code.value for code in ErrorCode]
    assert len(values) == len(set(values))
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", value) for value in values)


def test_an_error_takes_status_and_type_from_its_code():
    error = AqtaError("Too many.", code=ErrorCode.LOOP_DETECTED, retry_after=3)
    assert (error.status, error.type) == (429, "rate_limit_error")
    assert error.body() == {
        "error": {
            "message": "Too many.",
            "type": "rate_limit_error",
            "code": "loop_detected",
            "retry_after": 3,
        }
    }


@pytest.mark.parametrize(
    ("param", "code"),
    [(None, ErrorCode.INVALID_REQUEST), ("model", ErrorCode.INVALID_PARAMETER)],
)
def test_the_default_code_depends_on_a_param(param, code):
    assert AqtaError("Bad.", param=param).code is code


def test_a_framework_error_without_a_code_of_ours_gets_its_status_general_code():
    class Teapot(drf.APIException):
        status_code = 409
        default_code = "teapot"

    error = translate(Teapot("short and stout"))
    assert error is not None
    assert (error.status, error.code) == (409, ErrorCode.CONFLICT)
    assert ErrorCode.for_status(418) is ErrorCode.BAD_REQUEST
    assert ErrorCode.for_status(599) is ErrorCode.INTERNAL_ERROR


def test_an_authentication_code_that_is_not_a_401_code_stays_401():
    error = translate(drf.AuthenticationFailed("no", code="permission_denied"))
    assert error is not None
    assert (error.status, error.code) == (401, ErrorCode.NOT_AUTHENTICATED)
    error = translate(drf.AuthenticationFailed("no", code="invalid_api_key"))
    assert error is not None
    assert error.code is ErrorCode.INVALID_API_KEY


def test_docs_list_every_code_with_its_status():
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", DOC.read_text(), re.M))
    assert rows == {code.value: str(code.status) for code in ErrorCode}
