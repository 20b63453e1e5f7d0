from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import Membership, Role, User
from accounts.tests.factories import PASSWORD
from compliance.models import AuditEvent

pytestmark = pytest.mark.django_db

GOOD_PASSWORD = "correct horse battery staple"


def _error(response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


def _signup(client, email="new@example.com", password=GOOD_PASSWORD, **extra):
    return client.post(
        "/api/auth/signup", {"email": email, "password": password, **extra}, format="json"
    )


def _login(client, email, password):
    return client.post("/api/auth/login", {"email": email, "password": password}, format="json")


# --- signup -------------------------------------------------------------------------------


def test_signup_creates_the_user_a_personal_organisation_and_a_session(api_client):
    response = _signup(api_client, name="Grace Hopper")

    assert response.status_code == 201
    body = response.json()
    assert body["user"]["email"] == "new@example.com"
    assert body["user"]["name"] == "Grace Hopper"
    assert body["organization"]["role"] == "owner"
    assert body["organization"]["tier"] == "free"
    membership = Membership.objects.get(user__email="new@example.com")
    assert membership.role == Role.OWNER and membership.organization.is_personal
    assert api_client.get("/api/auth/me").json()["user"]["email"] == "new@example.com"
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"auth.signup", "organization.created", "auth.login"} <= actions


def test_signing_up_twice_with_the_same_email_is_a_409(api_client):
    assert _signup(api_client, email="dup@example.com").status_code == 201
    again = _signup(APIClient(), email="DUP@example.com")
    assert again.status_code == 409
    assert _error(again) | {} == {
        "message": "An account with this email address already exists.",
        "type": "conflict_error",
        "code": "email_taken",
        "param": "email",
    }
    assert User.objects.filter(email__iexact="dup@example.com").count() == 1


@pytest.mark.parametrize(
    ("payload", "code", "param"),
    [
        ({"password": GOOD_PASSWORD}, "missing_parameter", "email"),
        ({"email": "not-an-email", "password": GOOD_PASSWORD}, "invalid_parameter", "email"),
        ({"email": "a@example.com"}, "missing_parameter", "password"),
        ({"email": "a@example.com", "password": "123"}, "invalid_parameter", "password"),
        ({"email": "a@example.com", "password": "password"}, "invalid_parameter", "password"),
        ({"email": ["a@example.com"], "password": GOOD_PASSWORD}, "invalid_parameter", "email"),
    ],
)
def test_bad_signup_input_is_a_400_naming_the_field(api_client, payload, code, param):
    response = api_client.post("/api/auth/signup", payload, format="json")
    assert response.status_code == 400
    assert _error(response)["code"] == code
    assert _error(response)["param"] == param
    assert not User.objects.exists()


def test_signup_is_throttled_per_ip(api_client, settings):
    settings.AQTA_API_SIGNUP_RATE = "2/h"
    statuses = [_signup(api_client, email=f"u{i}@example.com").status_code for i in range(3)]
    assert statuses == [201, 201, 429]
    assert User.objects.count() == 2


# --- login / logout / me --------------------------------------------------------------------


def test_login_with_the_right_password_starts_a_session(api_client, user, org):
    response = _login(api_client, user.email, PASSWORD)

    assert response.status_code == 200
    assert response.json()["user"]["email"] == user.email
    assert response.json()["organization"]["id"] == str(org.pk)
    assert "sessionid" in response.cookies
    assert AuditEvent.objects.filter(action="auth.login", actor=user).exists()


def test_a_wrong_password_and_an_unknown_email_get_the_same_401(api_client, user):
    wrong = _login(api_client, user.email, "not the password")
    unknown = _login(api_client, "nobody@example.com", "whatever it is")

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert _error(wrong)["code"] == "invalid_credentials"
    failed = AuditEvent.objects.filter(action="auth.login_failed")
    assert set(failed.values_list("target", flat=True)) == {user.email, "nobody@example.com"}


def test_repeated_failures_lock_the_account_even_for_the_right_password(api_client, user):
    for _ in range(5):
        assert _login(api_client, user.email, "wrong password!").status_code == 401
    locked = _login(api_client, user.email, PASSWORD)
    assert locked.status_code == 429
    assert _error(locked)["code"] == "too_many_login_attempts"
    assert "Retry-After" in locked


def test_login_is_throttled_per_ip(api_client, user, settings):
    settings.AQTA_API_LOGIN_RATE = "3/h"
    statuses = [_login(api_client, user.email, PASSWORD).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_bad_login_input_is_a_400(api_client):
    response = api_client.post("/api/auth/login", {"email": "x@example.com"}, format="json")
    assert response.status_code == 400
    assert _error(response)["param"] == "password"
    assert api_client.get("/api/auth/login").status_code == 405


def test_logout_ends_the_session_and_needs_csrf(user, org):
    client = APIClient(enforce_csrf_checks=True)
    assert _login(client, user.email, PASSWORD).status_code == 200

    refused = client.post("/api/auth/logout")
    assert refused.status_code == 403 and _error(refused)["code"] == "csrf_failed"
    client.credentials(HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    assert client.post("/api/auth/logout").status_code == 204

    assert client.get("/api/auth/me").status_code == 401
    assert AuditEvent.objects.filter(action="auth.logout", actor=user).exists()


def test_me_needs_authentication(api_client):
    response = api_client.get("/api/auth/me")
    assert response.status_code == 401
    assert _error(response)["type"] == "authentication_error"


def test_me_with_an_api_key_describes_the_key_and_its_organisation(key_client, api_key, org):
    body = key_client.get("/api/auth/me").json()
    assert body["user"] is None
    assert body["api_key"]["id"] == str(api_key[0].pk)
    assert body["organization"]["id"] == str(org.pk)


# --- the HTML login (also used by the admin) -------------------------------------------------


def test_the_html_login_shares_the_login_throttle(user, settings):
    settings.AQTA_API_LOGIN_RATE = "2/h"
    client = Client()
    statuses = [
        client.post("/accounts/login/", {"login": user.email, "password": "nope"}).status_code
        for _ in range(3)
    ]
    assert statuses[-1] == 429
    assert _login(APIClient(), user.email, PASSWORD).status_code == 429


# --- the client address ------------------------------------------------------------------


class _WithoutAddress:
    """A test client whose requests carry no REMOTE_ADDR at all."""

    def _base_environ(self, **request):
        # RequestFactory's private environ builder, which the stubs leave out.
        environ = super()._base_environ(**request)  # type: ignore[misc]
        environ.pop("REMOTE_ADDR", None)
        return environ


class _ApiClientWithoutAddress(_WithoutAddress, APIClient):
    pass


class _ClientWithoutAddress(_WithoutAddress, Client):
    pass


@pytest.mark.parametrize("address", [None, "", "not-an-address"])
def test_a_login_without_a_client_address_is_refused_with_403(user, address):
    api: APIClient
    page: Client
    extra: dict[str, Any]
    if address is None:
        api, page, extra = _ApiClientWithoutAddress(), _ClientWithoutAddress(), {}
    else:
        api, page, extra = APIClient(), Client(), {"REMOTE_ADDR": address}

    response = api.post(
        "/api/auth/login", {"email": user.email, "password": PASSWORD}, format="json", **extra
    )
    html = page.post("/accounts/login/", {"login": user.email, "password": PASSWORD}, **extra)

    assert response.status_code == 403
    assert _error(response)["code"] == "permission_denied"
    assert html.status_code == 403
    assert not AuditEvent.objects.filter(action="auth.login").exists()


def test_ipv6_clients_of_one_prefix_share_the_login_throttle(user, settings):
    settings.AQTA_API_LOGIN_RATE = "2/h"
    addresses = ["2001:db8:1:2::10", "2001:db8:1:2:ffff::1", "2001:db8:1:2::99"]
    statuses = [
        APIClient()
        .post(
            "/api/auth/login",
            {"email": user.email, "password": PASSWORD},
            format="json",
            REMOTE_ADDR=address,
        )
        .status_code
        for address in addresses
    ]
    elsewhere = APIClient().post(
        "/api/auth/login",
        {"email": user.email, "password": PASSWORD},
        format="json",
        REMOTE_ADDR="2001:db8:1:3::10",
    )

    assert statuses == [200, 200, 429]
    assert elsewhere.status_code == 200
