"""The protocol pieces of the local OpenID Connect provider (``tests.oidc_provider``): its
users, authorization codes and access tokens, the OAuth 2.0 error response, and the PKCE and
JWK computations."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

CODE_LIFETIME_SECONDS = 60
TOKEN_LIFETIME_SECONDS = 3600
ID_TOKEN_LIFETIME_SECONDS = 300


@dataclass
class OIDCUser:
    """An account known to the identity provider."""

    sub: str
    email: str
    name: str = ""
    email_verified: bool = True

    def claims(self) -> dict[str, Any]:
        """Standard profile/email claims, shared by the id_token and userinfo."""
        given, _, family = self.name.partition(" ")
        return {
            "sub": self.sub,
            "email": self.email,
            "email_verified": self.email_verified,
            "name": self.name,
            "given_name": given,
            "family_name": family,
        }


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    sub: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    expires_at: float
    auth_time: int
    # Access tokens minted from this code; revoked if the code is replayed (RFC 6749 4.1.2).
    access_tokens: list[str] = field(default_factory=list)


@dataclass
class AccessToken:
    sub: str
    scope: str
    expires_at: float


class OAuthError(Exception):
    """An RFC 6749 error response (``{"error": ..., "error_description": ...}``)."""

    def __init__(
        self,
        error: str,
        description: str = "",
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body


def s256(verifier: str) -> str:
    """PKCE S256 transform (RFC 7636 4.2): BASE64URL(SHA256(ASCII(verifier))) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def consteq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint, a stable and conventional ``kid``."""
    canonical = json.dumps(
        {"e": jwk["e"], "kty": jwk["kty"], "n": jwk["n"]}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
