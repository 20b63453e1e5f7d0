"""The error envelope: every DRF validation shape names the parameter at fault."""

from __future__ import annotations

import pytest
import redis
from django.test import Client
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail

from aqta.errors import translate


class _Limits(serializers.Serializer):
    per_minute = serializers.IntegerField(min_value=1)


class _Item(serializers.Serializer):
    name = serializers.CharField()


class _Nested(serializers.Serializer):
    tags = serializers.ListField(child=serializers.CharField())
    limits = _Limits(required=False)
    items = _Item(many=True, required=False)
    labels = serializers.DictField(child=serializers.CharField(), required=False)
    matrix = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()), required=False
    )


def _error_for(data: dict):
    serializer = _Nested(data=data)
    assert not serializer.is_valid()
    error = translate(serializers.ValidationError(serializer.errors))
    assert error is not None
    return error


@pytest.mark.parametrize(
    ("data", "param", "code"),
    [
        ({"tags": ["ok", ""]}, "tags[1]", "invalid_parameter"),
        ({"tags": ["ok", None]}, "tags[1]", "invalid_parameter"),
        ({"tags": ["ok"], "limits": {"per_minute": 0}}, "limits.per_minute", "invalid_parameter"),
        ({"tags": ["ok"], "limits": {}}, "limits.per_minute", "missing_parameter"),
        ({"tags": ["ok"], "items": [{"name": "a"}, {}]}, "items[1].name", "missing_parameter"),
        ({"tags": ["ok"], "items": [{"name": "a"}, "x"]}, "items[1]", "invalid_parameter"),
        ({"tags": ["ok"], "items": [{"name": ""}]}, "items[0].name", "missing_parameter"),
        ({"tags": ["ok"], "labels": {"env": ""}}, "labels.env", "missing_parameter"),
        ({"tags": ["ok"], "matrix": [[1], [2, "x"]]}, "matrix[1][1]", "invalid_parameter"),
        ({}, "tags", "missing_parameter"),
    ],
)
def test_nested_validation_errors_name_the_exact_parameter(data, param, code):
    error = _error_for(data)

    assert error.status == 400
    assert error.param == param
    assert error.code == code
    assert error.message.startswith(f"{param}: ")


def test_a_top_level_list_of_messages_is_one_invalid_request():
    error = translate(serializers.ValidationError(["first problem", "second problem"]))

    assert error is not None and error.status == 400
    assert error.param is None
    assert error.message == "first problem"


def test_a_list_of_per_item_details_names_the_first_bad_item():
    detail = {"items": [{}, {"name": [ErrorDetail("Too long.", code="max_length")]}]}

    error = translate(serializers.ValidationError(detail))

    assert error is not None
    assert (error.param, error.code) == ("items[1].name", "invalid_parameter")
    assert error.message == "items[1].name: Too long."


def test_a_non_field_error_of_a_nested_object_names_the_object():
    error = translate(
        serializers.ValidationError({"limits": {"non_field_errors": ["start must be before end."]}})
    )

    assert error is not None
    assert error.param == "limits"
    assert error.message == "limits: start must be before end."


# --- a dependency outage that reaches a view ---------------------------------------------


@pytest.fixture
def redis_outage_in_key_listing(monkeypatch):
    def unavailable(**kwargs):
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379.")

    monkeypatch.setattr("accounts.api.keys.api_key_list", unavailable)
    monkeypatch.setattr("accounts.views.api_key_list", unavailable)


@pytest.mark.django_db
def test_a_redis_outage_in_an_api_view_is_a_503_in_the_envelope(
    key_client, redis_outage_in_key_listing
):
    response = key_client.get("/api/keys")

    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "message": "A service Aqta depends on is unavailable; try again shortly.",
            "type": "service_unavailable",
            "code": "service_unavailable",
            "retry_after": 5,
        }
    }
    assert response["Retry-After"] == "5"


@pytest.mark.django_db
def test_a_redis_outage_in_a_page_is_a_503_page(user, org, redis_outage_in_key_listing):
    client = Client()
    client.force_login(user)

    page = client.get("/dashboard/keys/")
    as_json = client.get("/dashboard/keys/", HTTP_ACCEPT="application/json")

    assert page.status_code == 503 and page["Retry-After"] == "5"
    assert "try again shortly" in page.content.decode()
    assert as_json.status_code == 503
    assert as_json.json()["error"]["code"] == "service_unavailable"
