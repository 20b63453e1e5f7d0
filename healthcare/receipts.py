"""ATTESTATION-v1 receipts: issue and verify (docs/receipts.md).

A receipt is a flat JSON object signed with the issuer's Ed25519 key over its RFC 8785
canonical bytes (every field but ``signature``). Pure functions, no database.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Final, Literal, TypedDict, get_args

import orjson
import rfc8785
from aqta_verify_receipt import verify_receipt as reference_verify

from healthcare.signing import IssuerKey, b64url_decode, b64url_encode, issuer_key, key_id

VERSION: Final = 1
Outcome = Literal["ALLOWED", "BLOCKED", "SUPPRESSED"]
OUTCOMES: Final[frozenset[str]] = frozenset(get_args(Outcome))
# Bounds on what an issuer writes and a verifier reads before any heavier work.
MAX_TEXT: Final = 512
MAX_POLICIES: Final = 128
COST_PLACES: Final = 6
_COST_QUANTUM: Final = Decimal(1).scaleb(-COST_PLACES)
_HEX64 = re.compile(r"[0-9a-f]{64}", re.ASCII)
_SAFE_INT: Final = 2**53


class Receipt(TypedDict):
    v: int
    attestation_id: str
    trace_id: str
    org_id: str
    request_hash: str
    model: str
    outcome: Outcome
    policy_applied: list[str]
    cost_prevented_eur: int | float
    timestamp: str
    public_key: str
    signature: str


FIELDS: Final[frozenset[str]] = frozenset(Receipt.__annotations__)


@dataclass(frozen=True)
class Verdict:
    valid: bool
    reason: str = ""
    key_id: str | None = None


def utf16_sorted(values: Iterable[str]) -> list[str]:
    """Sorted by UTF-16 code units (RFC 8785's order), not by code points."""
    return sorted(values, key=lambda value: value.encode("utf-16-be", "surrogatepass"))


_COST_KEY: Final = b'"cost_prevented_eur":0'


def _flat(receipt: Mapping[str, Any]) -> bool:
    """A receipt of the known shape: the twelve (ASCII) field names, strings, an integer
    ``v``, a number cost and a list of strings."""
    if not receipt.keys() <= FIELDS:
        return False
    for name, value in receipt.items():
        if name == "policy_applied":
            if not isinstance(value, list) or not all(type(p) is str for p in value):
                return False
        elif name in ("cost_prevented_eur", "v"):
            # RFC 8785 numbers are doubles: an integer beyond 2**53 is refused.
            if type(value) not in (int, float) or (type(value) is int and abs(value) > _SAFE_INT):
                return False
        elif type(value) is not str:
            return False
    return True


def canonical_json(receipt: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON of a receipt (all its fields).

    A receipt of the known shape takes the fast path: orjson writes strings, integers and
    arrays exactly as RFC 8785 does (checked for every code point in the tests) and sorts
    these ASCII keys as RFC 8785 does; only the cost, a double, is written by ``rfc8785``
    (orjson would write ``1e-6`` where ECMAScript writes ``0.000001``). 15 us instead of
    150 us. Anything else goes through ``rfc8785`` whole. Raises
    ``rfc8785.CanonicalizationError`` (a ValueError) on what JSON cannot carry.
    """
    cost = receipt.get("cost_prevented_eur")
    if not _flat(receipt) or (type(cost) is float and not math.isfinite(cost)):
        return rfc8785.dumps(dict(receipt))
    try:
        if type(cost) is not float:
            return orjson.dumps(receipt, option=orjson.OPT_SORT_KEYS)
        body = orjson.dumps({**receipt, "cost_prevented_eur": 0}, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # e.g. a lone surrogate, an integer beyond 64 bits
        return rfc8785.dumps(dict(receipt))
    # The key is unique and every string value has its quotes escaped: one exact match.
    return body.replace(_COST_KEY, _COST_KEY[:-1] + rfc8785.dumps(cost), 1)


def canonical_bytes(receipt: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON of the receipt without ``signature``: the signed bytes."""
    return canonical_json({k: v for k, v in receipt.items() if k != "signature"})


def request_hash(body: bytes | object) -> str:
    """SHA-256 (hex) of the request body's canonical form (docs/receipts.md §3): the
    parsed JSON written compactly by orjson with keys sorted, UTF-8, numbers as parsed.

    ``bytes`` are the raw body and are parsed first; anything else is taken as the
    already-parsed body. Unsalted: anyone who can guess the body can confirm it.
    Raises ``ValueError`` when the body is not JSON (NaN, too deep, not UTF-8, ...).
    """
    try:
        if isinstance(body, bytes | bytearray | memoryview):
            body = orjson.loads(bytes(body))
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError):
        raise ValueError("the request body is not JSON that can be hashed") from None
    return hashlib.sha256(canonical).hexdigest()


def normalise_cost(value: Decimal | float | int) -> int | float:
    """Rounded to 6 places (half-even); an integer value as ``int``, so it prints as ``2``."""
    if isinstance(value, bool) or not isinstance(value, Decimal | float | int):
        raise ValueError("cost_prevented_eur must be a number")
    # repr keeps a float's shortest form: 0.1 is 0.1, not its binary expansion.
    amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not amount.is_finite() or amount < 0:
        raise ValueError("cost_prevented_eur must be a finite, non-negative number")
    rounded = amount.quantize(_COST_QUANTUM, rounding=ROUND_HALF_EVEN)
    if rounded == rounded.to_integral_value():
        return int(rounded)
    return float(rounded)


def _check_text(name: str, value: object) -> str | None:
    if not isinstance(value, str):
        return f"{name} must be a string"
    if not value:
        return f"{name} must not be empty"
    if len(value) > MAX_TEXT:
        return f"{name} is longer than {MAX_TEXT} characters"
    return None


def _check_attestation_id(value: object) -> str | None:
    if not isinstance(value, str) or len(value) != 36:
        return "attestation_id must be a UUID string"
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return "attestation_id must be a UUID string"
    if parsed.version != 4 or str(parsed) != value:
        return "attestation_id must be a lowercase UUID version 4"
    return None


def _check_ids(receipt: Mapping[str, Any]) -> str | None:
    if type(receipt["v"]) is not int or receipt["v"] != VERSION:
        return "v must be the integer 1"
    if reason := _check_attestation_id(receipt["attestation_id"]):
        return reason
    for name in ("trace_id", "org_id", "model"):
        if reason := _check_text(name, receipt[name]):
            return reason
    if not receipt["trace_id"].startswith("tr_"):
        return "trace_id must start with tr_"
    rh = receipt["request_hash"]
    if not isinstance(rh, str) or not _HEX64.fullmatch(rh):
        return "request_hash must be 64 lowercase hex characters"
    return None


def _check_outcome(value: object) -> str | None:
    if not isinstance(value, str):
        return "outcome must be a string"
    if value == "PASSED":
        return "outcome PASSED is the legacy name; ALLOWED is issued instead"
    if value not in OUTCOMES:
        return "outcome must be ALLOWED, BLOCKED or SUPPRESSED"
    return None


def _check_policies(value: object) -> str | None:
    if not isinstance(value, list):
        return "policy_applied must be an array"
    if len(value) > MAX_POLICIES:
        return f"policy_applied has more than {MAX_POLICIES} entries"
    for item in value:
        if reason := _check_text("each policy_applied entry", item):
            return reason
    if value != utf16_sorted(value):
        return "policy_applied must be sorted"
    return None


def _check_cost(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "cost_prevented_eur must be a number"
    if isinstance(value, float) and not math.isfinite(value):
        return "cost_prevented_eur must be finite"
    if value < 0:
        return "cost_prevented_eur must be non-negative"
    if isinstance(value, float):
        try:
            exponent = Decimal(repr(value)).normalize().as_tuple().exponent
        except InvalidOperation:  # pragma: no cover - finite floats always convert
            return "cost_prevented_eur must be a number"
        if isinstance(exponent, int) and exponent < -COST_PLACES:
            return f"cost_prevented_eur has more than {COST_PLACES} decimal places"
    return None


def _check_timestamp(value: object) -> str | None:
    if not isinstance(value, str) or len(value) > 64:
        return "timestamp must be an ISO 8601 string"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return "timestamp is not a valid ISO 8601 date and time"
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return "timestamp must carry an explicit UTC offset"
    return None


def _check_semantics(receipt: Mapping[str, Any]) -> str | None:
    """Our reading of every field, before any signature work; the first failure or None."""
    return (
        _check_ids(receipt)
        or _check_outcome(receipt["outcome"])
        or _check_policies(receipt["policy_applied"])
        or _check_cost(receipt["cost_prevented_eur"])
        or _check_timestamp(receipt["timestamp"])
    )


def _check_fields(receipt: object) -> str | None:
    if not isinstance(receipt, dict):
        return "a receipt must be a JSON object"
    if not all(isinstance(k, str) for k in receipt):
        return "a receipt's field names must be strings"
    if missing := FIELDS - receipt.keys():
        return f"missing field: {min(missing)}"
    if extra := receipt.keys() - FIELDS:
        return f"unknown field: {min(extra)[:64]!r}"
    return None


def _check_key(value: object, pinned: frozenset[str]) -> tuple[str | None, bytes]:
    if not isinstance(value, str) or len(value) != 43:
        return "public_key must be base64url of a 32-byte Ed25519 key", b""
    if value not in pinned:
        return "public_key is not a pinned issuer key", b""
    try:
        raw = b64url_decode(value)
    except ValueError:
        return "public_key must be base64url of a 32-byte Ed25519 key", b""
    return None, raw


def _check_signature(value: object) -> str | None:
    if not isinstance(value, str) or len(value) != 86:
        return "signature must be base64url of 64 bytes"
    try:
        b64url_decode(value)
    except ValueError:
        return "signature must be base64url of 64 bytes"
    return None


def _reference_reason(reason: str | None) -> str:
    if reason == "signature check failed":
        return "the signature does not match the receipt's contents"
    return f"rejected by the reference verifier: {reason or 'no reason given'}"


def receipt_verify(receipt: object, public_keys: str | Iterable[str]) -> Verdict:
    """Check a receipt against the pinned issuer key(s). Never raises.

    ``public_keys``: the pinned public key (base64url, as receipts carry it) or several,
    for a rotation. Our own checks of structure and meaning run first, then the public
    reference verifier checks the format and the signature under the pinned key.
    """
    try:
        return _verify(receipt, public_keys)
    except Exception as exc:  # the contract is a verdict, whatever the input
        return Verdict(False, f"receipt could not be checked: {type(exc).__name__}")


def _verify(receipt: object, public_keys: str | Iterable[str]) -> Verdict:
    pinned = frozenset([public_keys] if isinstance(public_keys, str) else public_keys)
    if not pinned:
        return Verdict(False, "no pinned issuer key to verify against")
    if reason := _check_fields(receipt):
        return Verdict(False, reason)
    assert isinstance(receipt, dict)
    if reason := _check_semantics(receipt):
        return Verdict(False, reason)
    reason, raw_key = _check_key(receipt["public_key"], pinned)
    if reason:
        return Verdict(False, reason)
    if reason := _check_signature(receipt["signature"]):
        return Verdict(False, reason)
    result = reference_verify(receipt, trusted_public_key=receipt["public_key"])
    if not result.valid:
        return Verdict(False, _reference_reason(result.reason), key_id(raw_key))
    return Verdict(True, "", key_id(raw_key))


def _issue_inputs(receipt: Mapping[str, Any]) -> None:
    if reason := _check_ids(receipt) or _check_outcome(receipt["outcome"]):
        raise ValueError(reason)
    if reason := _check_policies(receipt["policy_applied"]):
        raise ValueError(reason)


def receipt_issue(
    *,
    trace_id: str,
    org_id: str,
    request_hash: str,
    model: str,
    outcome: Outcome,
    policy_applied: Sequence[str] = (),
    cost_prevented_eur: Decimal | float | int = 0,
    timestamp: datetime | None = None,
    attestation_id: uuid.UUID | None = None,
    key: IssuerKey | None = None,
) -> Receipt:
    """A signed receipt. ``ValueError`` when an input cannot make a valid receipt.

    Policies are sorted, the cost rounded to 6 places, the time written with its offset
    (now, in UTC, by default); the issuer key is the process's unless one is given.
    """
    signer = key or issuer_key()
    when = timestamp or datetime.now(UTC)
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware")
    policies = list(policy_applied)
    if not all(isinstance(p, str) for p in policies):
        raise ValueError("each policy_applied entry must be a string")
    unsigned: dict[str, Any] = {
        "v": VERSION,
        "attestation_id": str(attestation_id or uuid.uuid4()),
        "trace_id": trace_id,
        "org_id": org_id,
        "request_hash": request_hash,
        "model": model,
        "outcome": outcome,
        "policy_applied": utf16_sorted(policies),
        "cost_prevented_eur": normalise_cost(cost_prevented_eur),
        "timestamp": when.isoformat(timespec="microseconds"),
        "public_key": signer.public_key,
    }
    _issue_inputs(unsigned)
    unsigned["signature"] = b64url_encode(signer.sign(canonical_bytes(unsigned)))
    receipt: Receipt = unsigned  # type: ignore[assignment]  # all twelve fields, checked above
    return receipt
