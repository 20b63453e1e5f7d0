"""``manage.py rotate_receipt_key``: a new key signs, the old one keeps verifying what it
signed, and neither private key is ever stored in the database."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from healthcare import chain, keyring
from healthcare.models import ReceiptKey
from healthcare.receipts import receipt_issue
from healthcare.signing import (
    ENV_NAME,
    LOCAL_FILE,
    IssuerKey,
    issuer_key,
    issuer_key_forget,
    parse_private_key,
)

HASH = "a" * 64


@pytest.fixture
def key_in_var(settings, tmp_path, monkeypatch):
    """The embedded mode's key file, in a fresh ``var/``."""
    monkeypatch.delenv(ENV_NAME, raising=False)
    monkeypatch.delenv(f"{ENV_NAME}_FILE", raising=False)
    settings.EMBEDDED, settings.VAR_DIR = True, tmp_path
    issuer_key_forget()
    keyring.forget()
    yield tmp_path / LOCAL_FILE
    issuer_key_forget()
    keyring.forget()


def _receipt(key: IssuerKey | None = None, at: datetime | None = None):
    return receipt_issue(
        trace_id="tr_" + "1" * 32,
        org_id="org",
        request_hash=HASH,
        model="gpt-4o",
        outcome="ALLOWED",
        key=key,
        timestamp=at,
    )


def _rotate(*args: str) -> str:
    out = io.StringIO()
    call_command("rotate_receipt_key", *args, stdout=out)
    return out.getvalue()


def test_rotation_replaces_the_key_file_and_old_receipts_keep_verifying(db, key_in_var):
    old = issuer_key()
    before = _receipt()
    seed_before = key_in_var.read_text()

    output = _rotate()

    new = issuer_key()
    assert new.key_id != old.key_id and key_in_var.read_text() != seed_before
    assert f"{old.key_id} retired" in output and new.key_id in output
    assert new.seed not in output and seed_before not in output  # secrets are never shown
    assert oct(key_in_var.stat().st_mode & 0o777) == "0o600"
    after = _receipt()
    assert after["public_key"] == new.public_key
    keyring.forget()
    assert chain.document_check(before).valid
    assert chain.document_check(after).valid
    rows = {k.key_id: k for k in ReceiptKey.objects.all()}
    assert rows[old.key_id].retired_at is not None and rows[new.key_id].retired_at is None
    # Only public keys are kept.
    assert all(len(r.public_key) == 43 for r in rows.values())
    published = keyring.published()
    assert published["key_id"] == new.key_id
    listed = published["keys"]
    assert isinstance(listed, list)
    assert [k["current"] for k in listed] == [True, False]


def test_a_retired_key_cannot_sign_receipts_dated_after_its_window(db, key_in_var):
    old = issuer_key()
    keyring.register(old)
    _rotate()
    keyring.forget()
    late = datetime.now(UTC) + timedelta(seconds=keyring.WINDOW_GRACE_SECONDS + 60)
    forged = _receipt(key=old, at=late)  # e.g. a leaked retired key

    verdict = chain.document_check(forged)

    assert not verdict.valid
    assert "outside its validity window" in verdict.reason


def test_an_unknown_key_is_not_trusted(db, key_in_var):
    stranger = IssuerKey.generate()
    verdict = chain.document_check(_receipt(key=stranger))
    assert not verdict.valid
    assert verdict.key_id is None


def test_a_key_in_the_environment_is_printed_once_with_print(db, monkeypatch, settings):
    current = IssuerKey.generate()
    monkeypatch.setenv(ENV_NAME, current.seed)
    issuer_key_forget()
    try:
        with pytest.raises(CommandError, match="--print"):
            _rotate()
        output = _rotate("--print")
    finally:
        issuer_key_forget()
        keyring.forget()
    line = next(x for x in output.splitlines() if x.startswith(f"{ENV_NAME}="))
    printed = line.split("=", 1)[1]
    assert IssuerKey.from_private_key(parse_private_key(printed)).key_id != current.key_id


def test_the_deploy_check_names_a_missing_or_broken_key(monkeypatch, settings):
    from healthcare.checks import receipt_key_check

    settings.EMBEDDED = False
    monkeypatch.delenv(ENV_NAME, raising=False)
    monkeypatch.delenv(f"{ENV_NAME}_FILE", raising=False)
    assert [m.id for m in receipt_key_check()] == ["healthcare.W001"]
    monkeypatch.setenv(ENV_NAME, "not-a-key")
    assert [m.id for m in receipt_key_check()] == ["healthcare.E001"]
    monkeypatch.setenv(ENV_NAME, IssuerKey.generate().seed)
    assert receipt_key_check() == []
