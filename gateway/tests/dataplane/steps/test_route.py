"""Step 3, where the call goes (gateway/dataplane/steps/route.py): the catalogue model, the
tier's and the key's model rules, the output limit, the price, and the deployments that
can honour the request."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from aqta.errors import AqtaError, ErrorCode
from gateway.dataplane.call import Route
from gateway.dataplane.catalog import Catalog
from gateway.dataplane.steps import route
from gateway.tests.dataplane.steps.fakes import body, catalog, key_record

NOW = 1_750_000_000.0
CATALOG = catalog()


def routed(record=None, at: float = NOW, catalog_=CATALOG, **fields: Any) -> Route:
    request = body(**fields)
    model = route.model_of(catalog_, request)
    return route.route(catalog_, record or key_record(), model, request, at)


def refused(record=None, catalog_=CATALOG, **fields: Any) -> AqtaError:
    with pytest.raises(AqtaError) as raised:
        routed(record, catalog_=catalog_, **fields)
    return raised.value


def where(error: AqtaError) -> tuple[str, int, str | None]:
    return error.code, error.status, error.param


def names(found: Route) -> list[str]:
    return [t.deployment.name for t in found.targets]


def test_a_model_routes_to_its_deployments_in_order():
    found = routed(model="gpt-4o")
    assert found.model.model_id == "gpt-4o"
    assert names(found) == ["primary", "secondary"]
    assert [t.adapter.name for t in found.targets] == ["openai", "openai"]


def test_an_alias_routes_as_its_model():
    found = routed(model="mini")
    assert found.model is CATALOG.models["gpt-4o-mini"]
    assert names(found) == ["openai"]


def test_an_unknown_model_is_not_found():
    error = refused(model="gpt-9")
    assert where(error) == (ErrorCode.MODEL_NOT_FOUND, 404, "model")
    assert "`gpt-9`" in error.message


def test_a_tier_without_every_model_gets_only_cost_effective_ones():
    record = key_record(all_models=False)
    assert names(routed(record, model="gpt-4o-mini")) == ["openai"]
    error = refused(record, model="claude-sonnet")
    assert where(error) == (ErrorCode.MODEL_NOT_ALLOWED, 403, "model")
    assert error.type == "permission_error"
    assert error.message == "Your plan or key does not allow `claude-sonnet`."


def test_a_key_allow_list_refuses_the_models_it_does_not_name():
    record = key_record(allowed_models=("claude-sonnet",))
    assert routed(record, model="claude-sonnet").model.model_id == "claude-sonnet"
    assert where(refused(record, model="gpt-4o-mini")) == (
        ErrorCode.MODEL_NOT_ALLOWED,
        403,
        "model",
    )


def test_an_alias_is_allowed_by_its_own_name_or_its_models():
    by_model = key_record(allowed_models=("gpt-4o-mini",))
    by_alias = key_record(allowed_models=("mini",))
    assert routed(by_model, model="mini").model.model_id == "gpt-4o-mini"
    assert routed(by_alias, model="mini").model.model_id == "gpt-4o-mini"
    assert where(refused(by_alias, model="gpt-4o-mini"))[0] == ErrorCode.MODEL_NOT_ALLOWED


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
def test_an_output_limit_above_the_models_is_refused(name):
    assert routed(**{name: 16384}).model.max_output_tokens == 16384  # at the limit: fine
    error = refused(**{name: 16385})
    assert where(error) == (ErrorCode.INVALID_PARAMETER, 400, name)
    assert error.message == (
        f"{name} is too large: 16385. This model supports at most 16384 completion tokens."
    )


def test_a_model_without_an_output_limit_takes_any():
    assert routed(model="gpt-4o", max_tokens=1_000_000).model.max_output_tokens is None


@pytest.mark.parametrize("model", ["undeployed", "exotic"])
def test_a_model_no_adapter_can_serve_is_not_configured(model):
    error = refused(model=model)
    assert where(error) == (ErrorCode.PROVIDER_NOT_CONFIGURED, 503, "model")
    assert not route.servable(CATALOG.models[model])


def test_a_model_without_a_price_is_refused_before_it_is_served():
    assert where(refused(model="unpriced")) == (ErrorCode.PRICE_MISSING, 503, None)


def test_without_an_exchange_rate_nothing_is_served():
    error = refused(catalog_=catalog(rate=False))
    assert where(error) == (ErrorCode.EXCHANGE_RATE_MISSING, 503, None)


def test_the_first_deployments_refusal_is_the_clients_answer():
    """Anthropic first: its refusal of n > 1 is answered, though OpenAI could serve it."""
    error = refused(model="claude-or-gpt", n=2)
    assert where(error) == (ErrorCode.UNSUPPORTED_PARAMETER, 400, "n")
    assert names(routed(model="claude-or-gpt")) == ["anthropic", "openai"]


def test_a_fallback_that_cannot_honour_the_request_is_left_out():
    both = CATALOG.models["claude-or-gpt"]
    reversed_ = dataclasses.replace(both, deployments=tuple(reversed(both.deployments)))
    gpt_first = Catalog({**CATALOG.models, "gpt-or-claude": reversed_}, CATALOG.rates)
    assert names(routed(catalog_=gpt_first, model="gpt-or-claude")) == ["openai", "anthropic"]
    assert names(routed(catalog_=gpt_first, model="gpt-or-claude", n=2)) == ["openai"]
