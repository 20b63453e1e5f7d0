"""Celery application. Tasks run eagerly in the embedded mode (no REDIS_URL)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aqta.settings")

app = Celery("aqta")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
