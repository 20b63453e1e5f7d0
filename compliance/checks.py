"""``manage.py check --deploy``: the checkpoint store belongs outside the app's own disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def checkpoint_store_check(app_configs: Any, **kwargs: Any) -> list[Warning]:
    if settings.EMBEDDED:
        return []
    store = Path(settings.AQTA_CHECKPOINT_DIR).resolve()
    var = Path(settings.VAR_DIR).resolve()
    if store == var or var in store.parents:
        return [
            Warning(
                f"AQTA_CHECKPOINT_DIR is {store}, inside the app's own var/ directory.",
                hint="Point it at a separate volume or a write-once (object lock) bucket "
                "mount that the database's users cannot write to (docs/audit.md).",
                id="compliance.W001",
            )
        ]
    return []
