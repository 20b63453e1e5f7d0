"""A real, minimal OpenID Connect identity provider for tests.

Runs a standard library HTTP server on 127.0.0.1 (ephemeral port) in a daemon thread so that
django-allauth's generic ``openid_connect`` provider can perform a complete authorization-code
login against it over real HTTP: discovery, authorize redirect, token exchange, id_token
verification via JWKS, and userinfo.

Usage::

    with OIDCProvider("client-id", "client-secret") as idp:
        idp.add_user("alice-sub", "alice@example.com", name="Alice Example")
        idp.set_next_user("alice-sub")
        # SocialApp(provider="openid_connect", client_id="client-id", secret="client-secret",
        #           settings={"server_url": idp.server_url})

The authorize endpoint has no login form: it "logs in" the selected user and redirects
straight back to the client (auto-consent). The protocol's data and computations are in
``tests.oidc_protocol``, the HTTP request handler in ``tests.oidc_http``.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote_plus, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.oidc_http import handler_for
from tests.oidc_protocol import (
    CODE_LIFETIME_SECONDS,
    ID_TOKEN_LIFETIME_SECONDS,
    TOKEN_LIFETIME_SECONDS,
    AccessToken,
    AuthCode,
    OAuthError,
    OIDCUser,
    consteq,
    jwk_thumbprint,
    s256,
)

__all__ = ["OIDCProvider", "OIDCUser"]


class OIDCProvider:
    """Local OpenID Connect provider speaking what allauth's ``openid_connect`` expects.

    Attributes useful in assertions:

    * ``requests_seen``: ``(method, path)`` of every request received (path without query).
    * ``token_auth_methods``: client authentication method used per successful token request
      (``"client_secret_post"`` or ``"client_secret_basic"``).
    * ``authorize_params``: query parameters of every accepted authorize request.
    * ``require_pkce``: set to ``True`` to reject authorize requests without a code challenge.
    """

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.require_pkce = False
        self.requests_seen: list[tuple[str, str]] = []
        self.token_auth_methods: list[str] = []
        self.authorize_params: list[dict[str, str]] = []

        self._lock = threading.Lock()
        self._users: dict[str, OIDCUser] = {}
        self._next_sub: str | None = None
        self._deny_next = False
        self._codes: dict[str, AuthCode] = {}
        self._used_codes: dict[str, AuthCode] = {}
        self._access_tokens: dict[str, AccessToken] = {}

        self._private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_jwk: dict[str, Any] = RSAAlgorithm.to_jwk(
            self._private_key.public_key(), as_dict=True
        )
        self.kid = jwk_thumbprint(public_jwk)
        self._public_jwk = {**public_jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}

        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind to an ephemeral port on 127.0.0.1 and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("OIDCProvider already started")
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="oidc-provider", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- public configuration --------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash); allauth compares ``iss`` exactly."""
        if self._server is None:
            raise RuntimeError("OIDCProvider not started")
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)
        return f"http://{host}:{port}"

    @property
    def server_url(self) -> str:
        """Discovery document URL, the value for allauth's ``SocialApp.settings["server_url"]``.

        allauth appends ``/.well-known/openid-configuration`` only when the URL does not
        already contain ``/.well-known/``, so the full URL is used as-is.
        """
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self._public_jwk)]}

    def add_user(
        self, sub: str, email: str, name: str = "", email_verified: bool = True
    ) -> OIDCUser:
        """Register a user; the first user added becomes the default next login."""
        user = OIDCUser(sub=sub, email=email, name=name, email_verified=email_verified)
        with self._lock:
            self._users[sub] = user
            if self._next_sub is None:
                self._next_sub = sub
        return user

    def set_next_user(self, sub: str) -> None:
        """Select who the authorize endpoint logs in (sticky until changed)."""
        with self._lock:
            if sub not in self._users:
                raise KeyError(f"unknown user {sub!r}; call add_user() first")
            self._next_sub = sub
            self._deny_next = False

    def deny_next_login(self) -> None:
        """Make the next authorize request redirect back with ``error=access_denied``.

        This is what allauth treats as the user cancelling the login.
        """
        with self._lock:
            self._deny_next = True

    def sign_id_token(self, claims: dict[str, Any]) -> str:
        """Sign arbitrary claims with the provider key (for tests of bad tokens)."""
        return jwt.encode(claims, self._private_key, algorithm="RS256", headers={"kid": self.kid})

    # -- protocol --------------------------------------------------------------------------

    def discovery_document(self) -> dict[str, Any]:
        iss = self.issuer
        return {
            "issuer": iss,
            "authorization_endpoint": f"{iss}/authorize",
            "token_endpoint": f"{iss}/token",
            "userinfo_endpoint": f"{iss}/userinfo",
            "jwks_uri": f"{iss}/jwks",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email"],
            # allauth picks client_secret_post whenever it is listed (see basic_auth property).
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": [
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "email",
                "email_verified",
                "name",
                "given_name",
                "family_name",
            ],
        }

    def authorize(self, params: dict[str, str]) -> str:
        """Validate an authorization request and return the redirect Location."""
        client_id, redirect_uri = self._client_and_redirect(params)
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "only response_type=code is supported")
        scope = params.get("scope", "")
        if "openid" not in scope.split():
            raise OAuthError("invalid_scope", "scope must include openid")
        challenge = self._code_challenge(params)
        return self._log_in(params, client_id, redirect_uri, scope, challenge)

    def _client_and_redirect(self, params: dict[str, str]) -> tuple[str, str]:
        """The request's client_id, which must be ours, and its absolute redirect_uri."""
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        if not client_id:
            raise OAuthError("invalid_request", "client_id is required")
        if not consteq(client_id, self.client_id):
            raise OAuthError("unauthorized_client", "unknown client_id")
        if not redirect_uri:
            raise OAuthError("invalid_request", "redirect_uri is required")
        parts = urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            raise OAuthError("invalid_request", "redirect_uri must be an absolute URL")
        return client_id, redirect_uri

    def _code_challenge(self, params: dict[str, str]) -> str | None:
        """The request's PKCE code_challenge (S256 only), required if ``require_pkce``."""
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method", "plain" if challenge else None)
        if challenge is not None and method != "S256":
            raise OAuthError("invalid_request", "only code_challenge_method=S256 is supported")
        if method is not None and not challenge:
            raise OAuthError("invalid_request", "code_challenge_method without code_challenge")
        if self.require_pkce and not challenge:
            raise OAuthError("invalid_request", "PKCE code_challenge is required")
        return challenge

    def _log_in(
        self,
        params: dict[str, str],
        client_id: str,
        redirect_uri: str,
        scope: str,
        challenge: str | None,
    ) -> str:
        """Log the selected user in (or deny, as set up) and redirect back to the client."""
        state = params.get("state")
        with self._lock:
            self.authorize_params.append(dict(params))
            if self._deny_next:
                self._deny_next = False
                return self._redirect_with(redirect_uri, {"error": "access_denied"}, state)
            sub = self._next_sub
            if sub is None:
                return self._redirect_with(redirect_uri, {"error": "login_required"}, state)
            code = secrets.token_urlsafe(32)
            now = time.time()
            self._codes[code] = AuthCode(
                client_id=client_id,
                redirect_uri=redirect_uri,
                sub=sub,
                scope=scope,
                nonce=params.get("nonce"),
                code_challenge=challenge,
                expires_at=now + CODE_LIFETIME_SECONDS,
                auth_time=int(now),
            )
        return self._redirect_with(redirect_uri, {"code": code}, state)

    @staticmethod
    def _redirect_with(redirect_uri: str, params: dict[str, str], state: str | None) -> str:
        if state is not None:
            params = {**params, "state": state}
        sep = "&" if urlsplit(redirect_uri).query else "?"
        return f"{redirect_uri}{sep}{urlencode(params)}"

    def _authenticate_client(self, authorization: str | None, form: dict[str, str]) -> str:
        """Return the auth method used; raise ``invalid_client`` on failure.

        Basic credentials are compared both raw and form-urldecoded: RFC 6749 2.3.1 says
        to urlencode them, but ``requests.auth.HTTPBasicAuth`` (used by allauth) does not.
        """
        basic_challenge = {"WWW-Authenticate": 'Basic realm="oidc-provider"'}
        if authorization and authorization.lower().startswith("basic "):
            if "client_secret" in form:
                raise OAuthError("invalid_request", "multiple client authentication methods")
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
                raw_id, _, raw_secret = decoded.partition(":")
            except (binascii.Error, UnicodeDecodeError) as e:
                raise OAuthError("invalid_client", "malformed Basic header", 401) from e
            for cid, secret in (
                (raw_id, raw_secret),
                (unquote_plus(raw_id), unquote_plus(raw_secret)),
            ):
                if consteq(cid, self.client_id) and consteq(secret, self.client_secret):
                    if form.get("client_id", cid) != cid:
                        raise OAuthError("invalid_request", "client_id mismatch")
                    return "client_secret_basic"
            raise OAuthError("invalid_client", "client authentication failed", 401, basic_challenge)
        post_id = form.get("client_id")
        post_secret = form.get("client_secret")
        if post_id is None or post_secret is None:
            raise OAuthError("invalid_client", "client authentication required", 401)
        if consteq(post_id, self.client_id) and consteq(post_secret, self.client_secret):
            return "client_secret_post"
        raise OAuthError("invalid_client", "client authentication failed", 401)

    def token(self, authorization: str | None, form: dict[str, str]) -> dict[str, Any]:
        auth_method = self._authenticate_client(authorization, form)
        if form.get("grant_type") != "authorization_code":
            raise OAuthError("unsupported_grant_type", "only authorization_code is supported")
        code_value = form.get("code")
        if not code_value:
            raise OAuthError("invalid_request", "code is required")

        with self._lock:
            code = self._redeem(code_value)
            self._check_code(code, form)
            user = self._users[code.sub]
            access_token = secrets.token_urlsafe(32)
            now = int(time.time())
            self._access_tokens[access_token] = AccessToken(
                sub=user.sub, scope=code.scope, expires_at=now + TOKEN_LIFETIME_SECONDS
            )
            code.access_tokens.append(access_token)
            self.token_auth_methods.append(auth_method)

        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.sub,
            "aud": self.client_id,
            "azp": self.client_id,
            "exp": now + ID_TOKEN_LIFETIME_SECONDS,
            "iat": now,
            "auth_time": code.auth_time,
            "email": user.email,
            "email_verified": user.email_verified,
            "name": user.name,
        }
        if code.nonce is not None:
            claims["nonce"] = code.nonce
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_SECONDS,
            "id_token": self.sign_id_token(claims),
            "scope": code.scope,
        }

    def _redeem(self, code_value: str) -> AuthCode:
        """Use up an authorization code (under the lock). A code used twice revokes the
        access tokens issued for it."""
        code = self._codes.pop(code_value, None)
        if code is None:
            replayed = self._used_codes.get(code_value)
            if replayed is not None:
                for token in replayed.access_tokens:
                    self._access_tokens.pop(token, None)
                raise OAuthError("invalid_grant", "authorization code already used")
            raise OAuthError("invalid_grant", "unknown authorization code")
        self._used_codes[code_value] = code
        return code

    def _check_code(self, code: AuthCode, form: dict[str, str]) -> None:
        """Raise ``invalid_grant`` unless the token request may exchange ``code``."""
        if time.time() > code.expires_at:
            raise OAuthError("invalid_grant", "authorization code expired")
        if code.client_id != self.client_id:
            raise OAuthError("invalid_grant", "code was issued to another client")
        if form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match")
        verifier = form.get("code_verifier")
        if code.code_challenge is not None:
            if not verifier:
                raise OAuthError("invalid_grant", "code_verifier is required")
            if not consteq(s256(verifier), code.code_challenge):
                raise OAuthError("invalid_grant", "PKCE verification failed")
        elif verifier:
            # Defends against PKCE downgrade (RFC 9700 2.1.1).
            raise OAuthError("invalid_grant", "code_verifier sent but no code_challenge")

    def userinfo(self, authorization: str | None) -> dict[str, Any]:
        challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        if not authorization or not authorization.lower().startswith("bearer "):
            raise OAuthError(
                "invalid_token", "Bearer token required", 401, {"WWW-Authenticate": "Bearer"}
            )
        with self._lock:
            token = self._access_tokens.get(authorization[7:].strip())
            if token is None or time.time() > token.expires_at:
                raise OAuthError("invalid_token", "unknown or expired access token", 401, challenge)
            return self._users[token.sub].claims()
