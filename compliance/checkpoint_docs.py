"""A signed checkpoint as a document: signing it, reading it back, checking its signature.

The signed bytes are the RFC 8785 (JCS) form of the document without ``signature``, as
for receipts (docs/receipts.md §2), signed with the issuer's Ed25519 key. Reading never
raises: whatever a file or a row holds, the answer is a checkpoint or the reason it is
not one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from compliance.chains import KINDS, Head
from healthcare import keyring
from healthcare.signing import IssuerKey, b64url_decode, b64url_encode, key_id

VERSION = 1
TYPE = "aqta.chain_checkpoint"
MAX_DOCUMENT = 16_384
FIELDS = frozenset(
    {
        "v",
        "type",
        "kind",
        "scope",
        "length",
        "last_hash",
        "base_sequence",
        "base_hash",
        "base_at",
        "signed_at",
        "public_key",
        "signature",
    }
)
_HASH = re.compile(r"[0-9a-f]{64}", re.ASCII)
_B64URL = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)


@dataclass(frozen=True)
class Checkpoint:
    kind: str
    scope: str
    length: int
    last_hash: str
    base_sequence: int
    base_hash: str
    base_at: datetime | None
    signed_at: datetime
    public_key: str
    signature: str
    document: str
    source: str = ""

    @property
    def key_id(self) -> str:
        return key_id(b64url_decode(self.public_key))

    def value(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.document)
        return parsed


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def checkpoint_sign(
    head: Head, *, base_at: datetime | None, now: datetime, key: IssuerKey
) -> Checkpoint:
    """The signed checkpoint of ``head`` at ``now``."""
    unsigned: dict[str, Any] = {
        "v": VERSION,
        "type": TYPE,
        "kind": str(head.kind),
        "scope": head.scope,
        "length": head.length,
        "last_hash": head.last_hash,
        "base_sequence": head.base_sequence,
        "base_hash": head.base_hash,
        "base_at": _instant(base_at) if base_at is not None else None,
        "signed_at": _instant(now),
        "public_key": key.public_key,
    }
    signature = b64url_encode(key.sign(rfc8785.dumps(unsigned)))
    document = rfc8785.dumps({**unsigned, "signature": signature}).decode("utf-8")
    parsed, problem = checkpoint_parse(document, source="signed")
    if parsed is None:  # what we sign must read back; never expected
        raise ValueError(f"a signed checkpoint does not read back: {problem}")
    return parsed


# --- reading ------------------------------------------------------------------------------


def _count(value: Any, name: str) -> str:
    if type(value) is not int or not 0 <= value < 2**53:
        return f"{name} is not a non-negative integer (below 2^53)"
    return ""


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _b64(value: Any, size: int) -> bool:
    if not isinstance(value, str) or not _B64URL.fullmatch(value):
        return False
    try:
        return len(b64url_decode(value)) == size
    except ValueError:
        return False


def _chain_problem(value: dict[str, Any]) -> str:
    if value.get("v") != VERSION or value.get("type") != TYPE:
        return f"not a version {VERSION} {TYPE}"
    if value.get("kind") not in KINDS:
        return "kind is not audit or receipts"
    scope = value.get("scope")
    if not isinstance(scope, str) or not 0 < len(scope) <= 64:
        return "scope is not a string of 1 to 64 characters"
    for name in ("length", "base_sequence"):
        if problem := _count(value.get(name), name):
            return problem
    for name in ("last_hash", "base_hash"):
        if not isinstance(value.get(name), str) or not _HASH.fullmatch(value[name]):
            return f"{name} is not 64 lowercase hex digits"
    return ""


def _problem(value: Any) -> str:
    if not isinstance(value, dict):
        return "not a JSON object"
    if set(value) != FIELDS:
        return "its fields are not those of a checkpoint"
    if problem := _chain_problem(value):
        return problem
    if value["base_at"] is not None and _moment(value["base_at"]) is None:
        return "base_at is not an ISO 8601 instant with an offset"
    if _moment(value["signed_at"]) is None:
        return "signed_at is not an ISO 8601 instant with an offset"
    if not _b64(value["public_key"], 32):
        return "public_key is not base64url of 32 bytes"
    if not _b64(value["signature"], 64):
        return "signature is not base64url of 64 bytes"
    return ""


def checkpoint_parse(text: str, *, source: str) -> tuple[Checkpoint | None, str]:
    """The checkpoint ``text`` holds, or (None, why it is not one)."""
    if len(text) > MAX_DOCUMENT:
        return None, "too long to be a checkpoint"
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None, "not JSON"
    if problem := _problem(value):
        return None, problem
    signed_at = _moment(value["signed_at"])
    assert signed_at is not None  # checked above
    return (
        Checkpoint(
            kind=value["kind"],
            scope=value["scope"],
            length=value["length"],
            last_hash=value["last_hash"],
            base_sequence=value["base_sequence"],
            base_hash=value["base_hash"],
            base_at=_moment(value["base_at"]),
            signed_at=signed_at,
            public_key=value["public_key"],
            signature=value["signature"],
            document=text,
            source=source,
        ),
        "",
    )


# --- the signature ------------------------------------------------------------------------


def _window_reason(checkpoint: Checkpoint) -> str:
    known = keyring.key_for(checkpoint.key_id)
    if known is None:
        return ""
    grace = timedelta(seconds=keyring.WINDOW_GRACE_SECONDS)
    signed = checkpoint.signed_at
    if signed < known.activated_at - grace or (
        known.retired_at and signed > known.retired_at + grace
    ):
        return f"signed by key {known.key_id} outside its validity window"
    return ""


def signature_reason(checkpoint: Checkpoint) -> str:
    """Why the checkpoint's signature does not hold, or "" when it does."""
    if checkpoint.public_key not in keyring.public_keys():
        return "it is signed by a key that is not one of the issuer's"
    unsigned = {k: v for k, v in checkpoint.value().items() if k != "signature"}
    public = Ed25519PublicKey.from_public_bytes(b64url_decode(checkpoint.public_key))
    try:
        public.verify(b64url_decode(checkpoint.signature), rfc8785.dumps(unsigned))
    except InvalidSignature:
        return "its signature does not match its contents"
    return _window_reason(checkpoint)
