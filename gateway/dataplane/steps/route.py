"""Step 3: where the call goes. The catalogue model, the tier's and the key's model rules,
the model's output limit, its price, and the deployments whose provider can honour this
request, in order (the first one's adapter decides what is refused)."""

from __future__ import annotations

from typing import Any

from accounts.key_records import KeyRecord
from aqta.errors import AqtaError, ErrorCode
from gateway.dataplane.call import Route, Target
from gateway.dataplane.catalog import Catalog, ModelEntry
from gateway.dataplane.providers import adapter_for


def model_of(catalog: Catalog, body: dict[str, Any]) -> ModelEntry:
    """The catalogue entry of the model asked for (an alias gives its model's)."""
    model = catalog.models.get(body["model"])
    if model is None:
        raise model_not_found(body["model"])
    return model


def route(
    catalog: Catalog, record: KeyRecord, model: ModelEntry, body: dict[str, Any], at: float
) -> Route:
    name = body["model"]
    if not allowed(record, model, name):
        raise AqtaError(
            f"Your plan or key does not allow `{name}`.",
            code=ErrorCode.MODEL_NOT_ALLOWED,
            param="model",
        )
    output_limit_check(body, model)
    targets = tuple(
        Target(d, adapter) for d in model.deployments if (adapter := adapter_for(d.provider))
    )
    if not targets:
        raise AqtaError(
            f"No provider is configured to serve `{name}`.",
            code=ErrorCode.PROVIDER_NOT_CONFIGURED,
            param="model",
        )
    catalog.price_check(model, at)
    return Route(model, _honouring(targets, body))


def model_not_found(name: str) -> AqtaError:
    return AqtaError(
        f"The model `{name}` does not exist or you do not have access to it.",
        code=ErrorCode.MODEL_NOT_FOUND,
        param="model",
    )


def servable(model: ModelEntry) -> bool:
    """Whether any deployment of ``model`` speaks a protocol the gateway has an adapter for."""
    return any(adapter_for(d.provider) is not None for d in model.deployments)


def allowed(record: KeyRecord, model: ModelEntry, name: str) -> bool:
    """Tier and key allow-list; an alias is allowed by its own name or its model's."""
    if not record.all_models and not model.cost_effective:
        return False
    names = record.allowed_models
    return not names or model.model_id in names or name in names


def output_limit_check(body: dict[str, Any], model: ModelEntry) -> None:
    """A completion limit above what the model can produce is refused, as OpenAI does,
    rather than clamped: the client learns the real limit instead of a silent cut."""
    limit = model.max_output_tokens
    if limit is None:
        return
    for name in ("max_completion_tokens", "max_tokens"):
        asked = body.get(name)
        if isinstance(asked, int) and asked > limit:
            raise AqtaError(
                f"{name} is too large: {asked}. This model supports at most {limit} "
                "completion tokens.",
                code=ErrorCode.INVALID_PARAMETER,
                param=name,
            )


def _honouring(targets: tuple[Target, ...], body: dict[str, Any]) -> tuple[Target, ...]:
    """The first target's refusal is the client's answer; a fallback that could not honour
    the request is left out rather than answering differently."""
    first, *rest = targets
    first.adapter.check_request(body)
    kept = [first]
    for target in rest:
        try:
            target.adapter.check_request(body)
        except AqtaError:
            continue
        kept.append(target)
    return tuple(kept)
