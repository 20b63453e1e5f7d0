"""The settings module: embedded defaults, production from the environment, safe failures.

Each case runs Django in a subprocess with a controlled environment, because settings
are read once at start-up.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from aqta.env import database_from_url
from healthcare.signing import IssuerKey

ROOT = Path(__file__).resolve().parent.parent
FERNET_KEY = "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktMzJieXQ="
PROBE = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'db': s.DATABASES['default']['ENGINE'], "
    "'db_name': str(s.DATABASES['default']['NAME']), "
    "'cache': s.CACHES['default']['BACKEND'], 'eager': s.CELERY_TASK_ALWAYS_EAGER, "
    "'broker': s.CELERY_BROKER_URL, 'debug': s.DEBUG, 'secure': s.SESSION_COOKIE_SECURE, "
    "'pool': s.DATABASES['default'].get('OPTIONS', {}).get('pool')}))"
)


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "aqta.settings"}
    command = [sys.executable, *args]
    return subprocess.run(
        command, cwd=ROOT, env=base | env, capture_output=True, text=True, timeout=60
    )


def test_with_no_environment_it_runs_embedded(tmp_path):
    result = _run(["-c", PROBE], {"AQTA_VAR_DIR": str(tmp_path)})

    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["db"] == "django.db.backends.sqlite3"
    assert seen["db_name"] == str(tmp_path / "aqta.sqlite3")
    assert seen["cache"].endswith("LocMemCache")
    assert seen["eager"] is True and seen["broker"] == "memory://"
    assert seen["debug"] is False
    # Generated secrets live outside the database, readable by the owner only.
    for name in ("secret_key", "api_key_pepper", "encryption_key"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600


def test_with_database_and_redis_urls_it_uses_postgres_pool_and_redis(tmp_path):
    env = {
        "DATABASE_URL": "postgres://aqta:p%40ss@db.internal:5433/aqta?sslmode=require",
        "REDIS_URL": "redis://cache.internal:6379/2",
        "SECRET_KEY": "s" * 50,
        "AQTA_API_KEY_PEPPER": "p" * 50,
        "AQTA_ENCRYPTION_KEYS": FERNET_KEY,
        "AQTA_VAR_DIR": str(tmp_path),
    }
    result = _run(["-c", PROBE], env)

    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["db"] == "django.db.backends.postgresql" and seen["db_name"] == "aqta"
    assert seen["pool"]["max_size"] == 10
    assert seen["cache"].endswith("RedisCache")
    assert seen["eager"] is False and seen["broker"] == "redis://cache.internal:6379/2"
    assert seen["secure"] is True
    assert not list(tmp_path.iterdir()), "no local secrets outside the embedded mode"


@pytest.mark.parametrize(("value", "expected"), [(None, 0.5), ("1.5", 1.5)])
def test_the_redis_cache_has_short_timeouts_and_falls_back(tmp_path, value, expected):
    env = {
        "REDIS_URL": "redis://cache.internal:6379/2",
        "SECRET_KEY": "s" * 50,
        "AQTA_API_KEY_PEPPER": "p" * 50,
        "AQTA_ENCRYPTION_KEYS": FERNET_KEY,
        "AQTA_VAR_DIR": str(tmp_path),
        **({"CACHE_REDIS_TIMEOUT": value} if value else {}),
    }
    probe = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({**s.CACHES['default'], 'sessions': s.SESSION_ENGINE}))"
    )
    result = _run(["-c", probe], env)

    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["BACKEND"] == "aqta.cache.FallbackRedisCache"
    assert seen["OPTIONS"] == {"socket_timeout": expected, "socket_connect_timeout": expected}
    assert seen["sessions"] == "django.contrib.sessions.backends.db"


@pytest.mark.parametrize("missing", ["SECRET_KEY", "AQTA_API_KEY_PEPPER", "AQTA_ENCRYPTION_KEYS"])
def test_a_missing_secret_outside_embedded_mode_stops_start_up_clearly(missing):
    env = {
        "DATABASE_URL": "postgres://aqta@127.0.0.1:5432/aqta",
        "SECRET_KEY": "s" * 50,
        "AQTA_API_KEY_PEPPER": "p" * 50,
        "AQTA_ENCRYPTION_KEYS": FERNET_KEY,
    }
    del env[missing]
    result = _run(["manage.py", "check"], env)

    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr
    assert "ImproperlyConfigured" in result.stderr


def test_secrets_can_come_from_files(tmp_path):
    (tmp_path / "key").write_text("from-a-file-" + "x" * 40 + "\n")
    env = {
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "SECRET_KEY_FILE": str(tmp_path / "key"),
        "AQTA_API_KEY_PEPPER": "p" * 50,
        "AQTA_ENCRYPTION_KEYS": FERNET_KEY,
    }
    probe = (
        "import django; django.setup(); from django.conf import settings as s; print(s.SECRET_KEY)"
    )
    result = _run(["-c", probe], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from-a-file-" + "x" * 40


def test_a_malformed_setting_is_a_clear_error():
    result = _run(["manage.py", "check"], {"DEBUG": "maybe", "AQTA_VAR_DIR": "/tmp/aqta-var"})
    assert result.returncode != 0
    assert "DEBUG must be true or false" in result.stderr


def test_check_deploy_passes_with_production_settings():
    env = {
        "DATABASE_URL": "postgres://aqta@127.0.0.1:5432/aqta",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "AQTA_API_KEY_PEPPER": secrets.token_urlsafe(50),
        "AQTA_ENCRYPTION_KEYS": FERNET_KEY,
        "AQTA_RECEIPT_SIGNING_KEY": IssuerKey.generate().seed,
        "ALLOWED_HOSTS": "aqta.example.com",
        "SECURE_SSL_REDIRECT": "true",
        # The checkpoint store on a volume of its own (docs/audit.md).
        "AQTA_CHECKPOINT_DIR": "/mnt/aqta-checkpoints",
    }
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stdout + result.stderr

    del env["AQTA_CHECKPOINT_DIR"]  # the default, inside var/
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode != 0
    assert "compliance.W001" in result.stdout + result.stderr


def test_database_urls_are_parsed_with_escapes_and_options():
    db = database_from_url("postgresql://u%3Ar:s%2Fcret@h:6543/n%20b?sslmode=verify-full")
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"]) == (
        "u:r",
        "s/cret",
        "h",
        "6543",
        "n b",
    )
    assert db["OPTIONS"]["sslmode"] == "verify-full"
    assert db["CONN_MAX_AGE"] == 0


def test_an_unsupported_database_url_is_refused():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="mysql"):
        database_from_url("mysql://u@h/db")
