"""ATTESTATION-v1 receipts: canonical bytes, issue/verify, the public CLI, hostile input."""

from __future__ import annotations

import copy
import hashlib
import json
import stat
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from django.core.exceptions import ImproperlyConfigured

from healthcare import signing
from healthcare.receipts import (
    canonical_bytes,
    normalise_cost,
    receipt_issue,
    receipt_verify,
    request_hash,
)
from healthcare.signing import IssuerKey, b64url_encode, key_id, load_issuer_key

CLI = Path(sys.executable).with_name("aqta-verify-receipt")
KEY = IssuerKey.generate()
OTHER = IssuerKey.generate()
WHEN = datetime(2026, 4, 23, 10, 15, 30, 123456, tzinfo=UTC)
ID = uuid.UUID("6f1c1a2e-9b7d-4c3a-8e2f-1a2b3c4d5e6f")
HASH = "a" * 64


def issue(key: IssuerKey = KEY, **overrides):
    fields: dict[str, Any] = {
        "trace_id": "tr_01HX",
        "org_id": "org_1",
        "request_hash": HASH,
        "model": "gpt-4o-mini",
        "outcome": "BLOCKED",
        "policy_applied": ["pii", "budget"],
        "cost_prevented_eur": Decimal("0.0042"),
        "timestamp": WHEN,
        "attestation_id": ID,
        "key": key,
    }
    fields.update(overrides)
    return receipt_issue(**fields)


def cost_bytes(cost) -> bytes:
    return canonical_bytes({"cost_prevented_eur": normalise_cost(cost)})


# Canonical bytes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cost", "expected"),
    [
        (0.000015, b'{"cost_prevented_eur":0.000015}'),
        (0.000001, b'{"cost_prevented_eur":0.000001}'),
        (1e-7, b'{"cost_prevented_eur":0}'),
        (2.0, b'{"cost_prevented_eur":2}'),
        (0, b'{"cost_prevented_eur":0}'),
        (Decimal("12.3400000"), b'{"cost_prevented_eur":12.34}'),
        (0.1, b'{"cost_prevented_eur":0.1}'),
        (0.0000025, b'{"cost_prevented_eur":0.000002}'),  # half-even
        (1234567.1234567, b'{"cost_prevented_eur":1234567.123457}'),
    ],
)
def test_cost_canonical_bytes(cost, expected):
    assert cost_bytes(cost) == expected


def test_integer_valued_cost_is_an_int():
    assert type(normalise_cost(2.0)) is int
    assert type(normalise_cost(1e-7)) is int


@pytest.mark.parametrize("cost", [-0.01, float("nan"), float("inf"), True, "1"])
def test_bad_costs_are_refused(cost):
    with pytest.raises(ValueError):
        normalise_cost(cost)


def test_non_ascii_is_literal_utf8():
    assert canonical_bytes({"policy_applied": ["Größe-Limit", "données"]}) == (
        '{"policy_applied":["Größe-Limit","données"]}'.encode()
    )


def test_key_order_is_utf16_code_units():
    # By code point U+E000 sorts before U+1F600; by UTF-16 code unit (0xD83D...) after.
    data = {"\U0001f600": 1, "\ue000": 2, "é": 3, "b": 4, "a": 5}
    assert canonical_bytes(data) == '{"a":5,"b":4,"\u00e9":3,"\U0001f600":1,"\ue000":2}'.encode()


def test_signature_is_not_signed():
    receipt = issue()
    assert b'"signature"' not in canonical_bytes(receipt)
    assert canonical_bytes(receipt).startswith(b'{"attestation_id":')


def test_whole_receipt_vector():
    receipt = issue(cost_prevented_eur=0.000015, policy_applied=["z", "Größe"])
    expected = (
        '{"attestation_id":"6f1c1a2e-9b7d-4c3a-8e2f-1a2b3c4d5e6f","cost_prevented_eur":0.000015,'
        '"model":"gpt-4o-mini","org_id":"org_1","outcome":"BLOCKED",'
        '"policy_applied":["Größe","z"],"public_key":"' + KEY.public_key + '",'
        '"request_hash":"' + HASH + '","timestamp":"2026-04-23T10:15:30.123456+00:00",'
        '"trace_id":"tr_01HX","v":1}'
    )
    assert canonical_bytes(receipt) == expected.encode()


def test_request_hash_is_of_the_canonical_body():
    a = request_hash(b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}')
    b = request_hash(b'{"messages":[{"content":"hi","role":"user"}],"model":"m"}')
    c = request_hash({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert a == b == c
    assert len(a) == 64 and a == a.lower()
    # The exact bytes hashed: compact, keys sorted, UTF-8 as is, numbers as parsed.
    body = '{"b": 1.0, "a": [1, 0.000015, "Größe"], "c": null}'.encode()
    canonical = '{"a":[1,0.000015,"Größe"],"b":1.0,"c":null}'.encode()
    assert request_hash(body) == hashlib.sha256(canonical).hexdigest()
    assert request_hash(b'{"x": 1.0}') != request_hash(b'{"x": 1}')


@pytest.mark.parametrize("body", [b"not json", b'{"x": NaN}', b"[" * 100_000 + b"]" * 100_000])
def test_request_hash_refuses_what_has_no_canonical_form(body):
    with pytest.raises(ValueError):
        request_hash(body)


# Issue and verify -----------------------------------------------------------------------


def test_round_trip():
    receipt = issue()
    assert set(receipt) == {
        "v",
        "attestation_id",
        "trace_id",
        "org_id",
        "request_hash",
        "model",
        "outcome",
        "policy_applied",
        "cost_prevented_eur",
        "timestamp",
        "public_key",
        "signature",
    }
    assert receipt["policy_applied"] == ["budget", "pii"]
    assert receipt["timestamp"] == "2026-04-23T10:15:30.123456+00:00"
    verdict = receipt_verify(receipt, KEY.public_key)
    assert verdict.valid, verdict.reason
    assert verdict.key_id == KEY.key_id
    assert receipt_verify(json.loads(json.dumps(receipt)), [OTHER.public_key, KEY.public_key]).valid


def test_defaults():
    receipt = receipt_issue(
        trace_id="tr_x", org_id="o", request_hash=HASH, model="m", outcome="ALLOWED", key=KEY
    )
    assert receipt["cost_prevented_eur"] == 0 and receipt["policy_applied"] == []
    assert uuid.UUID(receipt["attestation_id"]).version == 4
    assert datetime.fromisoformat(receipt["timestamp"]).utcoffset() == timedelta(0)
    assert receipt_verify(receipt, KEY.public_key).valid


def test_other_offsets_are_kept():
    when = datetime(2026, 4, 23, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    receipt = issue(timestamp=when)
    assert receipt["timestamp"] == "2026-04-23T12:00:00.000000+02:00"
    assert receipt_verify(receipt, KEY.public_key).valid


@pytest.mark.parametrize(
    "overrides",
    [
        {"outcome": "PASSED"},
        {"outcome": "MAYBE"},
        {"trace_id": "01HX"},
        {"request_hash": "A" * 64},
        {"timestamp": datetime(2026, 4, 23)},  # naive
        {"attestation_id": uuid.UUID(int=1)},  # not version 4
        {"policy_applied": ["x" * 1000]},
        {"cost_prevented_eur": -1},
    ],
)
def test_issue_refuses_what_cannot_verify(overrides):
    with pytest.raises(ValueError):
        issue(**overrides)


def tampered(receipt):
    """(name, receipt) pairs, each of which must fail everywhere."""
    changed = copy.deepcopy(receipt)
    changed["model"] = "gpt-4o"
    cost = copy.deepcopy(receipt)
    cost["cost_prevented_eur"] = 1
    signature = copy.deepcopy(receipt)
    raw = bytearray(signing.b64url_decode(receipt["signature"]))
    raw[0] ^= 1
    signature["signature"] = b64url_encode(bytes(raw))
    extra = copy.deepcopy(receipt)
    extra["note"] = "x"
    foreign = issue(key=OTHER)
    resigned = copy.deepcopy(receipt)  # our key named, another key's signature
    resigned["signature"] = b64url_encode(OTHER.sign(canonical_bytes(receipt)))
    return [
        ("changed field", changed),
        ("changed cost", cost),
        ("changed signature", signature),
        ("extra field", extra),
        ("other key", foreign),
        ("other key's signature", resigned),
    ]


@pytest.mark.parametrize("index", range(6))
def test_tampered_receipts_are_invalid(index):
    name, receipt = tampered(issue())[index]
    verdict = receipt_verify(receipt, KEY.public_key)
    assert not verdict.valid, name
    assert verdict.reason


def test_reasons_are_specific():
    receipt = issue()
    assert "not a pinned" in receipt_verify(receipt, OTHER.public_key).reason
    assert "no pinned" in receipt_verify(receipt, []).reason
    legacy = dict(receipt, outcome="PASSED")
    assert "legacy" in receipt_verify(legacy, KEY.public_key).reason
    unsorted = dict(receipt, policy_applied=["pii", "budget"])
    assert "sorted" in receipt_verify(unsorted, KEY.public_key).reason
    precise = dict(receipt, cost_prevented_eur=0.0000015)
    assert "decimal places" in receipt_verify(precise, KEY.public_key).reason
    naive = dict(receipt, timestamp="2026-04-23T10:15:30")
    assert "offset" in receipt_verify(naive, KEY.public_key).reason
    changed = dict(receipt, model="other")
    assert "signature does not match" in receipt_verify(changed, KEY.public_key).reason


def _deep(depth: int):
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


HOSTILE_VALUES = [
    None,
    True,
    -1,
    1.5,
    float("nan"),
    float("inf"),
    "",
    "x" * 1_000_000,
    "a\x00b",
    "\ud800",
    [],
    {},
    ["\x00"],
    [1, 2],
    _deep(100_000),
    {"k": _deep(10_000)},
    b"bytes",
]


@pytest.mark.parametrize("field", sorted(issue()))
def test_hostile_field_values_never_raise(field):
    receipt = issue()
    for value in HOSTILE_VALUES:
        hostile = dict(receipt)
        hostile[field] = value
        verdict = receipt_verify(hostile, KEY.public_key)
        assert not verdict.valid, (field, repr(value)[:40])
        assert verdict.reason


@pytest.mark.parametrize(
    "value",
    [None, "receipt", b"{}", 42, [], _deep(100_000), {1: "x"}, {"\x00": 1}, {"v": 1}],
)
def test_hostile_receipts_never_raise(value):
    verdict = receipt_verify(value, KEY.public_key)
    assert not verdict.valid and verdict.reason


def test_hostile_pins_never_raise():
    receipt = issue()
    for pins in (None, 42, [None], ["x" * 100_000], "\x00"):
        assert not receipt_verify(receipt, pins).valid  # type: ignore[arg-type]


# The public verifier's CLI ------------------------------------------------------------------


def run_cli(receipt, key: str = KEY.public_key) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), "-", f"--key={key}", "--json"],
        input=json.dumps(receipt, ensure_ascii=False),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def run_cli_file(path: Path, key: str = KEY.public_key) -> subprocess.CompletedProcess[str]:
    """The CLI on a receipt file, as a relying party runs it (exact bytes, not re-dumped)."""
    return subprocess.run(
        [str(CLI), str(path), f"--key={key}"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"cost_prevented_eur": 0.000015},
        {"cost_prevented_eur": 0.000001},
        {"cost_prevented_eur": 1e-7},
        {"cost_prevented_eur": 2.0},
        {"cost_prevented_eur": Decimal("1234567.654321")},
        {"policy_applied": ["Größe-Limit", "données", "\U0001f600", "\ue000", "日本"]},
        {"outcome": "ALLOWED", "policy_applied": []},
        {"outcome": "SUPPRESSED", "model": "modèle-é"},
    ],
)
def test_cli_accepts_issued_receipts(overrides):
    receipt = issue(**overrides)
    result = run_cli(receipt)
    assert result.returncode == 0, result.stdout + result.stderr
    assert receipt_verify(receipt, KEY.public_key).valid


def test_cli_rejects_tampered_receipts():
    for name, receipt in tampered(issue()):
        result = run_cli(receipt)
        assert result.returncode == 1, (name, result.stdout, result.stderr)
        assert not receipt_verify(receipt, KEY.public_key).valid, name


def test_cli_with_another_pinned_key_rejects():
    assert run_cli(issue(), key=OTHER.public_key).returncode == 1


# The issuer key ---------------------------------------------------------------------------


def _seed(key: IssuerKey) -> str:
    raw = key.private_key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return b64url_encode(raw)


def test_key_from_env_seed(monkeypatch):
    monkeypatch.setenv("AQTA_RECEIPT_SIGNING_KEY", _seed(KEY))
    assert load_issuer_key().public_key == KEY.public_key


def test_key_from_pem_file(monkeypatch, tmp_path):
    pem = KEY.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "key.pem"
    path.write_bytes(pem)
    monkeypatch.delenv("AQTA_RECEIPT_SIGNING_KEY", raising=False)
    monkeypatch.setenv("AQTA_RECEIPT_SIGNING_KEY_FILE", str(path))
    assert load_issuer_key().public_key == KEY.public_key


@pytest.mark.parametrize("value", ["not-a-key!", b64url_encode(b"x" * 31), "-----BEGIN junk"])
def test_bad_key_stops_start_up(monkeypatch, value):
    monkeypatch.setenv("AQTA_RECEIPT_SIGNING_KEY", value)
    with pytest.raises(ImproperlyConfigured):
        load_issuer_key()


def test_embedded_key_is_generated_once(monkeypatch, tmp_path, settings):
    monkeypatch.delenv("AQTA_RECEIPT_SIGNING_KEY", raising=False)
    monkeypatch.delenv("AQTA_RECEIPT_SIGNING_KEY_FILE", raising=False)
    settings.EMBEDDED = True
    settings.VAR_DIR = tmp_path / "var"
    first = load_issuer_key()
    path = tmp_path / "var" / "receipt_signing_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_issuer_key().public_key == first.public_key


def test_outside_embedded_mode_the_key_is_required(monkeypatch, settings):
    monkeypatch.delenv("AQTA_RECEIPT_SIGNING_KEY", raising=False)
    monkeypatch.delenv("AQTA_RECEIPT_SIGNING_KEY_FILE", raising=False)
    settings.EMBEDDED = False
    with pytest.raises(ImproperlyConfigured):
        load_issuer_key()


def test_key_id():
    assert KEY.key_id == key_id(signing.b64url_decode(KEY.public_key))
    assert len(KEY.key_id) == 16 and int(KEY.key_id, 16) >= 0


# --- the fast canonical form is RFC 8785's ------------------------------------------------


def test_orjson_writes_every_code_point_as_rfc8785_does():
    """What the fast path relies on for strings (every Unicode scalar value)."""
    import orjson
    import rfc8785

    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        text = chr(cp) + "a\\"
        assert orjson.dumps(text) == rfc8785.dumps(text), hex(cp)


@pytest.mark.parametrize("seed", range(3))
def test_the_fast_canonical_form_equals_rfc8785_on_random_receipts(seed):
    import random

    import rfc8785

    from healthcare.receipts import canonical_json

    rng = random.Random(seed)
    alphabet = 'aZ09 "\\\n\t\x00\x1f\x7fé€ß😀\ue000\u2028'
    for _ in range(2_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        micro = rng.randint(0, 10 ** rng.randint(0, 15))
        cost = micro / 10**6 if rng.random() < 0.8 else micro
        receipt = receipt_issue(
            trace_id="tr_" + text,
            org_id=text,
            request_hash=HASH,
            model=text[::-1],
            outcome=rng.choice(["ALLOWED", "BLOCKED", "SUPPRESSED"]),
            policy_applied=[text, "b" + text],
            cost_prevented_eur=cost,
            key=KEY,
        )
        whole: dict[str, Any] = dict(receipt)
        assert canonical_json(receipt) == rfc8785.dumps(whole)
        unsigned = {k: v for k, v in whole.items() if k != "signature"}
        assert canonical_bytes(receipt) == rfc8785.dumps(unsigned)


def test_the_fast_canonical_form_refuses_what_rfc8785_refuses():
    import rfc8785

    from healthcare.receipts import canonical_json

    receipt = receipt_issue(
        trace_id="tr_x", org_id="o", request_hash=HASH, model="m", outcome="ALLOWED", key=KEY
    )
    for cost in (2**53 + 1, float("inf"), float("nan")):
        with pytest.raises(rfc8785.CanonicalizationError):
            canonical_json({**receipt, "cost_prevented_eur": cost})
