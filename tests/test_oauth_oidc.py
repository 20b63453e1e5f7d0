"""Sign in with Google/Microsoft, end to end against a real local OpenID Connect provider.

The provider runs in this process on a loopback port; allauth talks to it over real HTTP
(discovery, token exchange, userinfo). The browser's leg (authorize redirect) is played by
httpx, and the callback by Django's test client.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.test import Client

from accounts.models import Membership, User
from compliance.models import AuditEvent
from tests.oidc_provider import OIDCProvider

CLIENT_ID = "aqta-test-client"
CLIENT_SECRET = "aqta-test-secret"


@pytest.fixture
def idp(settings):
    with OIDCProvider(CLIENT_ID, CLIENT_SECRET) as provider:
        provider.require_pkce = True
        provider.add_user("g-ada", "ada@example.com", name="Ada Lovelace")
        settings.SOCIALACCOUNT_PROVIDERS = {
            "openid_connect": {
                "APPS": [
                    {
                        "provider_id": "google",
                        "name": "Google",
                        "client_id": CLIENT_ID,
                        "secret": CLIENT_SECRET,
                        "settings": {"server_url": provider.issuer, "oauth_pkce_enabled": True},
                    }
                ]
            }
        }
        yield provider


def _sign_in(client: Client, provider: str = "google") -> httpx.Response:
    """Start the flow through our API, then follow the browser's leg to the IdP."""
    start = client.post(
        "/api/auth/oauth-signin",
        {"provider": provider, "next": "/"},
        content_type="application/json",
    )
    assert start.status_code == 200, start.content
    return httpx.get(start.json()["redirect_url"], follow_redirects=False)


def _callback(client: Client, idp_response: httpx.Response):
    location = urlsplit(idp_response.headers["location"])
    return client.get(f"{location.path}?{location.query}")


@pytest.mark.django_db
def test_a_new_user_signs_in_with_google_and_gets_a_personal_organisation(idp):
    client = Client()
    at_idp = _sign_in(client)
    assert at_idp.status_code == 302
    assert parse_qs(urlsplit(at_idp.headers["location"]).query)["code"]

    done = _callback(client, at_idp)

    assert done.status_code == 302
    assert done["Location"] == "/"
    me = client.get("/api/auth/me").json()
    assert me["user"]["email"] == "ada@example.com"
    assert me["user"]["name"] == "Ada Lovelace"
    assert me["organization"]["role"] == "owner"
    assert me["organization"]["tier"] == "free"
    assert ("POST", "/token") in idp.requests_seen
    assert ("GET", "/userinfo") in idp.requests_seen
    # PKCE was used on the authorize leg.
    assert idp.authorize_params[-1]["code_challenge_method"] == "S256"
    signup = AuditEvent.objects.get(action="auth.signup")
    assert signup.data == {"method": "google"}
    assert AuditEvent.objects.filter(action="auth.login", actor__email="ada@example.com").exists()


@pytest.mark.django_db
def test_signing_in_again_reuses_the_same_account(idp):
    first = Client()
    _callback(first, _sign_in(first))
    second = Client()
    _callback(second, _sign_in(second))

    assert second.get("/api/auth/me").json()["user"]["email"] == "ada@example.com"
    assert User.objects.filter(email="ada@example.com").count() == 1
    assert Membership.objects.filter(user__email="ada@example.com").count() == 1


@pytest.mark.django_db
def test_a_denied_consent_signs_nobody_in(idp):
    client = Client()
    idp.deny_next_login()
    at_idp = _sign_in(client)
    assert "error=access_denied" in at_idp.headers["location"]

    _callback(client, at_idp)

    assert client.get("/api/auth/me").status_code == 401
    assert not User.objects.filter(email="ada@example.com").exists()


@pytest.mark.django_db
def test_a_forged_state_is_refused(idp):
    client = Client()
    at_idp = _sign_in(client)
    location = urlsplit(at_idp.headers["location"])
    forged = location.query.replace("state=", "state=forged")

    client.get(f"{location.path}?{forged}")

    assert client.get("/api/auth/me").status_code == 401
    assert ("POST", "/token") not in idp.requests_seen


@pytest.mark.django_db
def test_an_unconfigured_provider_answers_404(idp):
    response = Client().post(
        "/api/auth/oauth-signin", {"provider": "microsoft"}, content_type="application/json"
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "sign_in_not_configured"


@pytest.mark.django_db
def test_an_unknown_provider_or_offsite_next_is_a_400(idp):
    client = Client()
    unknown = client.post(
        "/api/auth/oauth-signin", {"provider": "myspace"}, content_type="application/json"
    )
    offsite = client.post(
        "/api/auth/oauth-signin",
        {"provider": "google", "next": "https://evil.example/"},
        content_type="application/json",
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"]["param"] == "provider"
    assert offsite.status_code == 400
    assert offsite.json()["error"]["param"] == "next"


@pytest.mark.django_db
def test_a_form_post_is_redirected_straight_to_the_provider(idp):
    response = Client().post("/api/auth/oauth-signin", {"provider": "google"})
    assert response.status_code == 302
    assert response["Location"].startswith(idp.issuer + "/authorize?")
