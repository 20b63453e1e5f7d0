"""/api/auth/* and /api/keys: thin DRF views over allauth's flows and accounts' services."""

from __future__ import annotations

from allauth.account.adapter import get_adapter as get_account_adapter
from allauth.account.forms import LoginForm, SignupForm
from allauth.account.internal.flows.signup import complete_signup
from allauth.socialaccount.adapter import get_adapter as get_social_adapter
from allauth.socialaccount.models import SocialApp
from django.conf import settings
from django.http import HttpResponseRedirect
from django.middleware.csrf import get_token
from django.utils.http import url_has_allowed_host_and_scheme
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import KeyPrincipal
from accounts.models import ApiKey, Membership, Organization
from accounts.selectors import api_key_get, api_key_list, membership_get, memberships_for_user
from accounts.services import api_key_create, api_key_revoke
from accounts.throttling import client_ip, throttle
from aqta.errors import AqtaError, ErrorCode
from aqta.openapi import ORGANIZATION_PARAMETER, error_responses
from aqta.parsers import JSONParser

ORGANIZATION_HEADER = "X-Aqta-Organization"
SESSION_ORGANIZATION = "aqta_organization_id"


def validated(serializer_class: type[serializers.Serializer], data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _form_error_codes(form) -> dict[str, list[str]]:
    return {
        field: [error.code or "invalid" for error in errors]
        for field, errors in form.errors.as_data().items()
    }


def _first_form_error(form) -> tuple[str | None, str]:
    for field, errors in form.errors.as_data().items():
        for error in errors:
            message = " ".join(error.messages)
            return (None if field == "__all__" else field), message
    return None, "Invalid request."


# --- Output shapes -----------------------------------------------------------------------


def organization_data(organization: Organization, role: str | None = None) -> dict:
    data = {
        "id": str(organization.pk),
        "name": organization.name,
        "slug": organization.slug,
        "tier": organization.tier.slug,
        "monthly_budget_eur": (
            str(organization.monthly_budget_eur)
            if organization.monthly_budget_eur is not None
            else None
        ),
        "content_logging": organization.content_logging,
    }
    if role is not None:
        data["role"] = role
    return data


def me_data(request: Request) -> dict:
    user = request.user
    if isinstance(user, KeyPrincipal):
        api_key = user.api_key
        return {
            "user": None,
            "api_key": ApiKeyOutput(api_key).data,
            "organization": organization_data(api_key.organization),
            "organizations": [organization_data(api_key.organization)],
        }
    memberships = list(memberships_for_user(user=user))
    current = _current_membership(request) if memberships else None
    return {
        "user": {"id": user.pk, "email": user.email, "name": user.name},
        "api_key": None,
        "organization": (
            organization_data(current.organization, current.role) if current else None
        ),
        "organizations": [organization_data(m.organization, m.role) for m in memberships],
    }


def _current_membership(request: Request) -> Membership:
    org_id = request.headers.get(ORGANIZATION_HEADER) or request.session.get(SESSION_ORGANIZATION)
    return membership_get(user=request.user, organization_id=org_id)


class ApiKeyOutput(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(
        slug_field="email",
        read_only=True,
        allow_null=True,
        help_text="Who created it; null when an API key (or an operator command) did.",
    )
    status = serializers.SerializerMethodField()
    organization = serializers.UUIDField(source="organization_id", read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "organization",
            "prefix",
            "last4",
            "status",
            "created_by",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
            "rate_limit_per_minute",
            "allowed_models",
            "monthly_budget_eur",
        ]

    @extend_schema_field(serializers.ChoiceField(choices=["active", "revoked", "expired"]))
    def get_status(self, obj: ApiKey) -> str:
        if obj.revoked_at is not None:
            return "revoked"
        return "active" if obj.is_active() else "expired"


@extend_schema_serializer(component_name="ApiKeyCreated")
class ApiKeyCreatedOutput(ApiKeyOutput):
    key = serializers.CharField(help_text="The secret, shown this once.")

    class Meta(ApiKeyOutput.Meta):
        fields = [*ApiKeyOutput.Meta.fields, "key"]


# Shapes of me_data() for the schema (the views build the dicts themselves).
@extend_schema_serializer(component_name="Organization")
class OrganizationOutput(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    slug = serializers.CharField()
    tier = serializers.CharField()
    monthly_budget_eur = serializers.DecimalField(
        max_digits=12, decimal_places=2, allow_null=True, help_text="Null: no budget."
    )
    content_logging = serializers.BooleanField()
    role = serializers.ChoiceField(
        choices=["owner", "admin", "member"], required=False, help_text="Session callers only."
    )


@extend_schema_serializer(component_name="Me")
class MeOutput(serializers.Serializer):
    @extend_schema_serializer(component_name="User")
    class UserOutput(serializers.Serializer):
        id = serializers.IntegerField()
        email = serializers.EmailField()
        name = serializers.CharField(allow_blank=True)

    user = UserOutput(allow_null=True, help_text="Null when called with an API key.")
    api_key = ApiKeyOutput(allow_null=True, help_text="The key, when called with one.")
    organization = OrganizationOutput(allow_null=True, help_text="The current organisation.")
    organizations = OrganizationOutput(many=True)


# --- Auth --------------------------------------------------------------------------------


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
    def post(self, request: Request):
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
        if not isinstance(request.user, KeyPrincipal):
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


# --- Keys --------------------------------------------------------------------------------


class OrganizationScopedApi(APIView):
    """Resolves the caller's organisation: the key's own, or the session user's current one."""

    def organization_context(self, request: Request) -> tuple[Organization, Membership | None]:
        if isinstance(request.user, KeyPrincipal):
            return request.user.api_key.organization, None
        membership = _current_membership(request)
        return membership.organization, membership

    @staticmethod
    def actor(request: Request):
        return None if isinstance(request.user, KeyPrincipal) else request.user

    @staticmethod
    def actor_label(request: Request) -> str:
        user = request.user
        return user.label if isinstance(user, KeyPrincipal) else user.email


class ApiKeyListCreateApi(OrganizationScopedApi):
    class Input(serializers.Serializer):
        class Meta:
            ref_name = "ApiKeyCreateInput"

        name = serializers.CharField(max_length=100)
        expires_at = serializers.DateTimeField(required=False, allow_null=True)
        rate_limit_per_minute = serializers.IntegerField(
            required=False, allow_null=True, min_value=1, max_value=10_000_000
        )
        allowed_models = serializers.ListField(
            child=serializers.CharField(max_length=120), required=False, max_length=200
        )
        monthly_budget_eur = serializers.DecimalField(
            max_digits=12, decimal_places=2, min_value=0, required=False, allow_null=True
        )

    @extend_schema(
        operation_id="keys_list",
        parameters=[ORGANIZATION_PARAMETER],
        responses={
            200: inline_serializer(
                "ApiKeyList",
                {"object": serializers.CharField(), "data": ApiKeyOutput(many=True)},
            ),
            **error_responses(401, 404),
        },
    )
    def get(self, request: Request) -> Response:
        organization, _ = self.organization_context(request)
        keys = api_key_list(organization=organization)
        return Response({"object": "list", "data": ApiKeyOutput(keys, many=True).data})

    @extend_schema(
        operation_id="keys_create",
        request=Input,
        parameters=[ORGANIZATION_PARAMETER],
        responses={
            201: ApiKeyCreatedOutput,
            **error_responses(
                400,
                401,
                403,
                404,
                415,
                429,
                s403="`tier_feature_unavailable` (a rate limit above the tier's), `csrf_failed`.",
            ),
        },
        description="The response's `key` field is the secret, shown this once.",
    )
    def post(self, request: Request) -> Response:
        organization, _ = self.organization_context(request)
        throttle(
            request,
            group="api-key-create",
            rate=settings.AQTA_KEY_CREATE_RATE,
            key=lambda group, req: str(organization.pk),
        )
        data = validated(self.Input, request.data)
        api_key, secret = api_key_create(
            organization=organization,
            created_by=self.actor(request),
            actor_label=self.actor_label(request),
            **data,
        )
        body = ApiKeyOutput(api_key).data
        body["key"] = secret
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class ApiKeyDetailApi(OrganizationScopedApi):
    @extend_schema(
        operation_id="keys_retrieve",
        parameters=[ORGANIZATION_PARAMETER],
        responses={200: ApiKeyOutput, **error_responses(401, 404)},
    )
    def get(self, request: Request, key_id: str) -> Response:
        organization, _ = self.organization_context(request)
        return Response(ApiKeyOutput(api_key_get(organization=organization, key_id=key_id)).data)

    @extend_schema(
        operation_id="keys_revoke",
        parameters=[ORGANIZATION_PARAMETER],
        responses={
            200: ApiKeyOutput,
            **error_responses(
                401,
                403,
                404,
                s403="`permission_denied` (members revoke only their own keys), `csrf_failed`.",
            ),
        },
    )
    def delete(self, request: Request, key_id: str) -> Response:
        organization, membership = self.organization_context(request)
        api_key = api_key_get(organization=organization, key_id=key_id)
        if (
            membership is not None
            and not membership.can_manage
            and api_key.created_by_id != request.user.pk
        ):
            raise AqtaError(
                "Members can revoke only the keys they created; ask an owner or admin.",
                code=ErrorCode.PERMISSION_DENIED,
            )
        api_key = api_key_revoke(
            api_key=api_key, revoked_by=self.actor(request), actor_label=self.actor_label(request)
        )
        return Response(ApiKeyOutput(api_key).data)
