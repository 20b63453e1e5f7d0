"""The HTTP side of the local OpenID Connect provider (``tests.oidc_provider``): routing
requests to its endpoints, reading form bodies, writing JSON and redirects."""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from tests.oidc_protocol import OAuthError

if TYPE_CHECKING:
    from tests.oidc_provider import OIDCProvider


def handler_for(provider: OIDCProvider) -> type[BaseHTTPRequestHandler]:
    """A request handler class serving ``provider``'s endpoints."""
    return type("Handler", (_Handler,), {"provider": provider})


class _Handler(BaseHTTPRequestHandler):
    server_version = "TestOIDCProvider/1.0"
    provider: OIDCProvider
    # (method, path) -> endpoint, given the query parameters; anything else is a 404.
    routes: ClassVar[dict[tuple[str, str], Callable[[_Handler, dict[str, str]], None]]]

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request stderr logging during tests."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        self.provider.requests_seen.append((method, parts.path))
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        endpoint = self.routes.get((method, parts.path), _Handler._not_found)
        try:
            endpoint(self, query)
        except OAuthError as e:
            headers = {"Cache-Control": "no-store", **e.headers}
            self._send_json(e.status, e.body(), headers)

    # -- endpoints -------------------------------------------------------------------------

    def _discovery(self, query: dict[str, str]) -> None:
        self._send_json(200, self.provider.discovery_document())

    def _jwks(self, query: dict[str, str]) -> None:
        self._send_json(200, self.provider.jwks)

    def _authorize_query(self, query: dict[str, str]) -> None:
        self._send_redirect(self.provider.authorize(query))

    def _authorize_form(self, query: dict[str, str]) -> None:
        self._send_redirect(self.provider.authorize(self._read_form()))

    def _token(self, query: dict[str, str]) -> None:
        auth = self.headers.get("Authorization")
        body = self.provider.token(auth, self._read_form())
        self._send_json(200, body, {"Cache-Control": "no-store"})

    def _userinfo(self, query: dict[str, str]) -> None:
        auth = self.headers.get("Authorization")
        self._send_json(200, self.provider.userinfo(auth))

    def _not_found(self, query: dict[str, str]) -> None:
        self._send_json(404, {"error": "not_found"})

    routes = {
        ("GET", "/.well-known/openid-configuration"): _discovery,
        ("GET", "/jwks"): _jwks,
        ("GET", "/authorize"): _authorize_query,
        ("POST", "/authorize"): _authorize_form,
        ("POST", "/token"): _token,
        ("GET", "/userinfo"): _userinfo,
        ("POST", "/userinfo"): _userinfo,
    }

    # -- reading and writing ---------------------------------------------------------------

    def _read_form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8") if length else ""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if raw and ctype != "application/x-www-form-urlencoded":
            raise OAuthError("invalid_request", "expected a form-encoded body")
        return dict(parse_qsl(raw, keep_blank_values=True))

    def _send_json(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _send_redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()
