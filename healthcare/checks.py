"""``manage.py check --deploy``: the receipt issuer key is configured and readable."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from healthcare.signing import ENV_NAME, load_issuer_key


@register(deploy=True)
def receipt_key_check(app_configs: Any = None, **kwargs: Any) -> list[Warning | Error]:
    if settings.EMBEDDED:
        return []
    try:
        load_issuer_key()
    except ImproperlyConfigured as problem:
        if "is not set" in str(problem):
            return [
                Warning(
                    f"{ENV_NAME} is not set: calls of organisations on a tier with receipts "
                    "(Healthcare) will be answered 503 receipts_unavailable.",
                    hint=f"Set {ENV_NAME} or {ENV_NAME}_FILE (docs/receipts.md §5).",
                    id="healthcare.W001",
                )
            ]
        return [Error(str(problem), id="healthcare.E001")]
    except OSError as problem:  # the key file cannot be read
        return [Error(f"{ENV_NAME}_FILE: {problem}", id="healthcare.E001")]
    return []
