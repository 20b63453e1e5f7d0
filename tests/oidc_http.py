"""The HTTP side of the local OpenID Connect provider (``tests.oidc_provider``): routing
requests to its endpoints, reading form bodies, writing JSON and redirects."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from tests.oidc_protocol import OAuthError

if TYPE_CHECKING:
    from tests.oidc_provider import OIDCProvider


def handler_for(provider: OIDCProvider) -> type[BaseHTTPRequestHandler]:
    """A request handler class serving ``provider``'s endpoints."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "TestOIDCProvider/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            """Silence per-request stderr logging during tests."""

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def _dispatch(self, method: str) -> None:
            parts = urlsplit(self.path)
            path = parts.path
            provider.requests_seen.append((method, path))
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            try:
                if path == "/.well-known/openid-configuration" and method == "GET":
                    self._send_json(200, provider.discovery_document())
                elif path == "/jwks" and method == "GET":
                    self._send_json(200, provider.jwks)
                elif path == "/authorize":
                    params = query if method == "GET" else self._read_form()
                    self._send_redirect(provider.authorize(params))
                elif path == "/token" and method == "POST":
                    auth = self.headers.get("Authorization")
                    body = provider.token(auth, self._read_form())
                    self._send_json(200, body, {"Cache-Control": "no-store"})
                elif path == "/userinfo":
                    auth = self.headers.get("Authorization")
                    self._send_json(200, provider.userinfo(auth))
                else:
                    self._send_json(404, {"error": "not_found"})
            except OAuthError as e:
                headers = {"Cache-Control": "no-store", **e.headers}
                self._send_json(e.status, e.body(), headers)

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

    return Handler
