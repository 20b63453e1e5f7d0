"""/api/auth/*: login, signup, OpenID Connect sign-in, logout and me, over allauth's flows."""

from __future__ import annotations

from allauth.account.adapter import get_adapter as get_account_adapter
from allauth.account.forms import LoginForm, SignupForm
from allauth.account.internal.flows.signup import complete_signup
from allauth.socialaccount.adapter import get_adapter as get_social_adapter
from allauth.socialaccount.models import SocialApp
from django import forms
from django.conf import settings
from django.http import HttpResponseRedirect
from django.middleware.csrf import get_token
from django.utils.http import url_has_allowed_host_and_scheme
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.base import validated
from accounts.api.serializers import MeOutput, me_data
from accounts.authentication import KeyPrincipal, request_principal
from accounts.throttling import client_ip, throttle
from aqta.errors import AqtaError, ErrorCode
from aqta.openapi import ORGANIZATION_PARAMETER, error_responses
from aqta.parsers import JSONParser


def _form_error_codes(form: forms.Form) -> dict[str, list[str]]:
    return {
        field: [error.code or "invalid" for error in errors]
        for field, errors in form.errors.as_data().items()
    }


def _first_form_error(form: forms.Form) -> tuple[str | None, str]:
    for field, errors in form.errors.as_data().items():
        for error in errors:
            message = " ".join(error.messages)
            return (None if field == "__all__" else field), message
    return None, "Invalid request."


class AuthLoginApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    class Input(serializers.Serializer):
        class Meta:
            ref_name = "LoginInput"

        email = serializers.EmailField()
        password = serializers.CharField(trim_whitespace=False, max_length=4096)

    @extend_schema(
        operation_id="auth_login",
        request=Input,
        responses={
            200: MeOutput,
            **error_responses(
                400,
                401,
                403,
                415,
                429,
                s401="`invalid_credentials` (the same for an unknown email and a wrong "
                "password); `mfa_required`.",
                s403="`permission_denied`: no client address to throttle by.",
                s429="`rate_limit_exceeded` (per IP) or `too_many_login_attempts` (the "
                "account is locked for a while after repeated failures).",
            ),
        },
    )
    def post(self, request: Request) -> Response:
        throttle(request, group="auth-login", rate=settings.AQTA_API_LOGIN_RATE, key=client_ip)
        data = validated(self.Input, request.data)
        django_request = request._request
        form = LoginForm(
            data={"login": data["email"], "password": data["password"]}, request=django_request
        )
        if not form.is_valid():
            codes = [c for cs in _form_error_codes(form).values() for c in cs]
            if "too_many_login_attempts" in codes:
                raise AqtaError(
                    "Too many failed login attempts; try again later.",
                    code=ErrorCode.TOO_MANY_LOGIN_ATTEMPTS,
                    retry_after=300,
                )
            raise AqtaError("Incorrect email or password.", code=ErrorCode.INVALID_CREDENTIALS)
        form.login(django_request)
        if not django_request.user.is_authenticated:
            # A further stage (TOTP) is pending; it is completed in the browser.
            raise AqtaError(
                "This account uses two-factor authentication; sign in at /accounts/login/.",
                code=ErrorCode.MFA_REQUIRED,
            )
        request.user = django_request.user
        get_token(django_request)
        return Response(me_data(request))


class AuthSignupApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    class Input(serializers.Serializer):
        class Meta:
            ref_name = "SignupInput"

        email = serializers.EmailField(max_length=254)
        password = serializers.CharField(trim_whitespace=False, max_length=4096)
        name = serializers.CharField(max_length=150, required=False, allow_blank=True)

    @extend_schema(
        operation_id="auth_signup",
        request=Input,
        responses={
            201: MeOutput,
            **error_responses(
                400,
                403,
                409,
                415,
                429,
                s403="`email_verification_required`: created, but the address must be "
                "confirmed first; `permission_denied`: no client address to throttle by.",
            ),
        },
    )
    def post(self, request: Request) -> Response:
        throttle(request, group="auth-signup", rate=settings.AQTA_API_SIGNUP_RATE, key=client_ip)
        data = validated(self.Input, request.data)
        django_request = request._request
        form = SignupForm(data={"email": data["email"], "password1": data["password"]})
        if not form.is_valid():
            codes = _form_error_codes(form)
            if "email_taken" in codes.get("email", []):
                raise AqtaError(
                    "An account with this email address already exists.",
                    code=ErrorCode.EMAIL_TAKEN,
                    param="email",
                )
            field, message = _first_form_error(form)
            param = "password" if field == "password1" else field
            raise AqtaError(message, code=ErrorCode.INVALID_PARAMETER, param=param)
        user, _ = form.try_save(django_request)
        if data.get("name"):
            user.name = data["name"]
            user.save(update_fields=["name"])
        complete_signup(django_request, user=user)
        request.user = django_request.user
        if not django_request.user.is_authenticated:
            raise AqtaError(
                "Account created; confirm your email address to sign in.",
                code=ErrorCode.EMAIL_VERIFICATION_REQUIRED,
            )
        get_token(django_request)
        return Response(me_data(request), status=status.HTTP_201_CREATED)


class AuthOAuthSigninApi(APIView):
    """Start "Sign in with Google / Microsoft" (OpenID Connect through allauth).

    JSON clients get ``{"redirect_url": ...}`` to send the browser to; an HTML form post
    is redirected straight away. allauth completes the login at its callback URL.
    """

    authentication_classes = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    class Input(serializers.Serializer):
        class Meta:
            ref_name = "OAuthSigninInput"

        provider = serializers.ChoiceField(choices=["google", "microsoft"])
        next = serializers.CharField(required=False, max_length=2000)

    @extend_schema(
        operation_id="auth_oauth_signin",
        request=Input,
        responses={
            200: inline_serializer("OAuthRedirect", {"redirect_url": serializers.URLField()}),
            302: OpenApiResponse(description="A form post is redirected to the provider."),
            **error_responses(
                400,
                403,
                404,
                415,
                429,
                s403="`permission_denied`: no client address to throttle by.",
                s404="`sign_in_not_configured`: that sign-in is not set up on this server.",
            ),
        },
    )
    def post(self, request: Request) -> Response | HttpResponseRedirect:
        throttle(request, group="auth-login", rate=settings.AQTA_API_LOGIN_RATE, key=client_ip)
        data = validated(self.Input, request.data)
        django_request = request._request
        next_url = data.get("next") or settings.LOGIN_REDIRECT_URL
        if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
            raise AqtaError("next must be a URL on this site.", param="next")
        try:
            provider = get_social_adapter().get_provider(django_request, data["provider"])
        except SocialApp.DoesNotExist:
            raise AqtaError(
                f"Sign-in with {data['provider']} is not configured on this server.",
                code=ErrorCode.SIGN_IN_NOT_CONFIGURED,
                param="provider",
            ) from None
        redirect = provider.redirect(django_request, "login", next_url=next_url)
        if request.content_type.startswith("application/json"):
            return Response({"redirect_url": redirect["Location"]})
        return HttpResponseRedirect(redirect["Location"])


class AuthLogoutApi(APIView):
    @extend_schema(
        operation_id="auth_logout",
        request=None,
        responses={204: None, **error_responses(401, 403)},
    )
    def post(self, request: Request) -> Response:
        if not isinstance(request_principal(request), KeyPrincipal):
            get_account_adapter(request._request).logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AuthMeApi(APIView):
    @extend_schema(
        operation_id="auth_me",
        parameters=[ORGANIZATION_PARAMETER],
        responses={200: MeOutput, **error_responses(401, 404)},
    )
    def get(self, request: Request) -> Response:
        get_token(request._request)
        return Response(me_data(request))
