"""The signed form of a report: ``aqta-report-v1`` (docs/reports.md).

The report's content (``compliance.reports.collect``) is canonicalised with RFC 8785
(JCS); ``content_sha256`` is the SHA-256 of those bytes and ``signature`` the Ed25519
signature of the same bytes with the receipt issuer key (base64url, no padding), whose
public key ``GET /v1/attestation/public-key`` publishes. The PDF carries this document as
its attachment ``report.json`` and prints the hash and signature on its last page.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from healthcare.signing import b64url_decode, b64url_encode, issuer_key

VERSION = "aqta-report-v1"


def content_bytes(report: Any) -> bytes:
    return rfc8785.dumps(report)


def report_sign(report: dict[str, Any]) -> dict[str, Any]:
    """The signed document of a report's content."""
    data = content_bytes(report)
    key = issuer_key()
    return {
        "object": "compliance_report",
        "version": VERSION,
        "report": report,
        "integrity": {
            "algorithm": "Ed25519",
            "canonicalization": "RFC 8785",
            "content_sha256": hashlib.sha256(data).hexdigest(),
            "signature": b64url_encode(key.sign(data)),
            "key_id": key.key_id,
            "public_key": key.public_key,
        },
    }


@dataclass(frozen=True)
class ReportVerdict:
    valid: bool
    reason: str
    key_id: str | None = None
    content_sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "reason": self.reason,
            "key_id": self.key_id,
            "content_sha256": self.content_sha256,
        }


def report_verify(document: Any, pinned_keys: dict[str, str]) -> ReportVerdict:
    """Check a signed report against public keys (key id -> base64url raw key) that the
    verifier trusts; never raises. The key embedded in the document is only a hint: a
    document is valid only with a pinned key."""
    if isinstance(document, bytes | str):
        try:
            document = orjson.loads(document)
        except orjson.JSONDecodeError:
            return ReportVerdict(False, "not JSON")
    if not isinstance(document, dict) or document.get("version") != VERSION:
        return ReportVerdict(False, f"not an {VERSION} document")
    integrity, report = document.get("integrity"), document.get("report")
    if not isinstance(integrity, dict) or not isinstance(report, dict):
        return ReportVerdict(False, "the report or its integrity block is missing")
    key_id, signature, claimed = (
        integrity.get("key_id"),
        integrity.get("signature"),
        integrity.get("content_sha256"),
    )
    if not all(isinstance(v, str) for v in (key_id, signature, claimed)):
        return ReportVerdict(False, "integrity fields must be strings")
    try:
        data = content_bytes(report)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as error:
        return ReportVerdict(False, f"the report cannot be canonicalised: {error}", key_id)
    actual = hashlib.sha256(data).hexdigest()
    if actual != claimed:
        return ReportVerdict(False, "content_sha256 does not match the content", key_id, actual)
    public = pinned_keys.get(key_id)  # type: ignore[arg-type]
    if public is None:
        return ReportVerdict(False, f"key {key_id} is not a known issuer key", key_id, actual)
    try:
        Ed25519PublicKey.from_public_bytes(b64url_decode(public)).verify(
            b64url_decode(signature),  # type: ignore[arg-type]
            data,
        )
    except (InvalidSignature, ValueError):
        return ReportVerdict(False, "the signature does not verify", key_id, actual)
    return ReportVerdict(True, "", key_id, actual)
