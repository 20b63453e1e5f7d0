"""The customer dashboard: server-rendered pages over the accounts and analytics services.

Every page resolves the user's current organisation (session ``aqta_organization_id``,
else their first membership). Objects of another organisation are 404s; members read,
owners and admins change settings and members (the services enforce it too).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Concatenate, ParamSpec

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST

from accounts import dashboard_services as org_services
from accounts.api.base import SESSION_ORGANIZATION
from accounts.authentication import request_user
from accounts.dashboard_selectors import (
    DEFAULT_PERIOD,
    PERIODS,
    membership_of,
    memberships_of,
    month_summary,
    trace_content_get,
    trace_get,
    usage_summary,
)
from accounts.forms import (
    ApiKeyCreateForm,
    MemberAddForm,
    MemberRoleForm,
    OrganizationSettingsForm,
    OrganizationSwitchForm,
    TraceFilterForm,
)
from accounts.models import ApiKey, Membership, Organization, Role
from accounts.selectors import api_key_get, api_key_list, membership_get, memberships_for_user
from accounts.services import api_key_create, api_key_revoke
from accounts.throttling import throttle
from aqta.errors import AqtaError
from billing.selectors import models_for_tier
from gateway.analytics import rollups, selectors

TRACES_PER_PAGE = 25

P = ParamSpec("P")


@dataclass(frozen=True)
class Current:
    """The signed-in user's organisation for this request, and their other ones."""

    membership: Membership
    memberships: list[Membership]

    @property
    def organization(self) -> Organization:
        return self.membership.organization

    @property
    def can_manage(self) -> bool:
        return self.membership.can_manage


def _current(request: HttpRequest) -> Current | None:
    memberships = list(memberships_for_user(user=request_user(request)))
    if not memberships:
        return None
    wanted = request.session.get(SESSION_ORGANIZATION)
    membership = next((m for m in memberships if str(m.organization_id) == wanted), None)
    if membership is None:
        if wanted:  # removed from that organisation since: fall back to the first one
            request.session.pop(SESSION_ORGANIZATION, None)
        membership = memberships[0]
    return Current(membership=membership, memberships=memberships)


def page(
    section: str,
) -> Callable[
    [Callable[Concatenate[HttpRequest, Current, P], HttpResponse]],
    Callable[Concatenate[HttpRequest, P], HttpResponse],
]:
    """Signed in, with an organisation; AqtaErrors become 404/403 pages; never cached."""

    def decorate(
        view: Callable[Concatenate[HttpRequest, Current, P], HttpResponse],
    ) -> Callable[Concatenate[HttpRequest, P], HttpResponse]:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
            current = _current(request)
            if current is None:
                response = render(request, "dashboard/no_organization.html", status=200)
            else:
                request.dashboard_section = section  # type: ignore[attr-defined]
                try:
                    response = view(request, current, *args, **kwargs)
                except AqtaError as error:
                    if error.status == 404:
                        raise Http404(error.message) from None
                    if error.status == 403:
                        response = forbidden(request, current, error.message)
                    else:
                        raise
            add_never_cache_headers(response)
            return response

        return wrapper

    return decorate


def _render(
    request: HttpRequest, current: Current, template: str, context: dict, status: int = 200
) -> HttpResponse:
    section = getattr(request, "dashboard_section", "overview")
    context = {
        "current": current,
        "organization": current.organization,
        "section": section,
        # Where the organisation switcher returns to: this section's list, which exists
        # in every organisation (a key or trace page would be a 404 in the other one).
        "section_url": reverse(f"dashboard:{section}"),
        **context,
    }
    return render(request, template, context, status=status)


def forbidden(request: HttpRequest, current: Current, message: str) -> HttpResponse:
    return _render(request, current, "dashboard/forbidden.html", {"message": message}, 403)


def _require_manager(request: HttpRequest, current: Current) -> HttpResponse | None:
    if current.can_manage:
        return None
    return forbidden(
        request, current, "Only owners and admins of this organisation can change this."
    )


def _form_error(form: forms.Form, error: AqtaError) -> None:
    form.add_error(error.param if error.param in form.fields else None, error.message)


# --- "/" and the organisation switcher ---------------------------------------------------


def home(request: HttpRequest) -> HttpResponse:
    """The landing page; signed-in users go straight to their dashboard."""
    if request.user.is_authenticated:
        return redirect("dashboard:overview")
    return render(request, "index.html")


@login_required
@require_POST
def organization_switch(request: HttpRequest) -> HttpResponse:
    form = OrganizationSwitchForm(request.POST)
    if not form.is_valid():
        raise Http404("No such organisation.")
    user = request_user(request)
    try:
        membership = membership_get(
            user=user, organization_id=str(form.cleaned_data["organization_id"])
        )
    except AqtaError:
        raise Http404("No such organisation.") from None
    request.session[SESSION_ORGANIZATION] = str(membership.organization_id)
    messages.success(request, f"Switched to {membership.organization.name}.")
    target = form.cleaned_data["next"]
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect("dashboard:overview")


# --- Overview and usage ------------------------------------------------------------------


@page("overview")
def overview(request: HttpRequest, current: Current) -> HttpResponse:
    organization = current.organization
    keys = api_key_list(organization=organization)
    return _render(
        request,
        current,
        "dashboard/overview.html",
        {
            **month_summary(organization=organization),
            "active_keys": sum(1 for k in keys if k.is_active()),
            "base_url": request.build_absolute_uri("/v1"),
        },
    )


@page("usage")
def usage(request: HttpRequest, current: Current) -> HttpResponse:
    period = request.GET.get("period", DEFAULT_PERIOD)
    if period not in PERIODS:
        period = DEFAULT_PERIOD
    organization = current.organization
    rollups.rollups_refresh_without_beat()
    context = {
        **month_summary(organization=organization),
        **usage_summary(organization=organization, period=period, now=timezone.now()),
        "periods": [(key, value[1]) for key, value in PERIODS.items()],
        "period": period,
    }
    return _render(request, current, "dashboard/usage.html", context)


# --- API keys ----------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRow:
    """A key as the keys page lists it."""

    key: ApiKey
    status: str  # "active", "revoked" or "expired"
    can_revoke: bool


def _keys_page(
    request: HttpRequest, current: Current, form: ApiKeyCreateForm, **extra: object
) -> HttpResponse:
    now = timezone.now()
    rows = []
    for key in api_key_list(organization=current.organization):
        status = "revoked" if key.revoked_at else ("active" if key.is_active(now) else "expired")
        can_revoke = status != "revoked" and (
            current.can_manage or key.created_by_id == request.user.pk
        )
        rows.append(KeyRow(key=key, status=status, can_revoke=can_revoke))
    return _render(request, current, "dashboard/keys.html", {"form": form, "keys": rows, **extra})


@page("keys")
@require_http_methods(["GET", "POST"])
@sensitive_variables("secret")
def keys(request: HttpRequest, current: Current) -> HttpResponse:
    organization = current.organization
    models = models_for_tier(tier=organization.tier)
    if request.method == "GET":
        return _keys_page(request, current, ApiKeyCreateForm(models=models))
    form = ApiKeyCreateForm(request.POST, models=models)
    if not form.is_valid():
        return _keys_page(request, current, form)
    user = request_user(request)
    try:
        throttle(
            request,
            group="api-key-create",
            rate=settings.AQTA_KEY_CREATE_RATE,
            key=lambda group, req: str(organization.pk),
        )
        api_key, secret = api_key_create(
            organization=organization,
            created_by=user,
            actor_label=user.email,
            **form.service_arguments(),
        )
    except AqtaError as error:
        if error.status not in {400, 403, 429}:
            raise
        _form_error(form, error)
        return _keys_page(request, current, form)
    # The secret goes into this one response only: not the session, not a message.
    return _keys_page(
        request, current, ApiKeyCreateForm(models=models), new_key=api_key, new_secret=secret
    )


@page("keys")
@require_http_methods(["GET", "POST"])
def key_revoke(request: HttpRequest, current: Current, key_id: uuid.UUID) -> HttpResponse:
    api_key = api_key_get(organization=current.organization, key_id=key_id)
    if not current.can_manage and api_key.created_by_id != request.user.pk:
        return forbidden(
            request,
            current,
            "Members can revoke only the keys they created; ask an owner or admin.",
        )
    if api_key.revoked_at is not None:
        messages.info(request, f"The key “{api_key.name}” was already revoked.")
        return redirect("dashboard:keys")
    if request.method == "GET":
        return _render(request, current, "dashboard/key_revoke.html", {"api_key": api_key})
    user = request_user(request)
    api_key_revoke(api_key=api_key, revoked_by=user, actor_label=user.email)
    messages.success(
        request, f"Revoked “{api_key.name}” ({api_key.masked}). Calls with it now fail with 401."
    )
    return redirect("dashboard:keys")


# --- Traces ------------------------------------------------------------------------------


@page("traces")
def traces(request: HttpRequest, current: Current) -> HttpResponse:
    organization = current.organization
    api_keys = list(api_key_list(organization=organization))
    form = TraceFilterForm(
        request.GET or None, api_keys=api_keys, models=models_for_tier(tier=organization.tier)
    )
    filters = form.filters() if form.is_bound else {}
    queryset = selectors.trace_list(organization=organization, filters=filters).select_related(
        "api_key"
    )
    paginator = Paginator(queryset, TRACES_PER_PAGE)
    page_obj = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return _render(
        request,
        current,
        "dashboard/traces.html",
        {
            "form": form,
            "page_obj": page_obj,
            "filtered": bool(filters),
            "query": query.urlencode(),
        },
    )


@page("traces")
def trace_detail(request: HttpRequest, current: Current, trace_id: str) -> HttpResponse:
    organization = current.organization
    trace = trace_get(organization=organization, trace_id=trace_id)
    return _render(
        request,
        current,
        "dashboard/trace_detail.html",
        {"trace": trace, "content": trace_content_get(organization=organization, trace=trace)},
    )


# --- Settings and members ----------------------------------------------------------------


@page("settings")
@require_http_methods(["GET", "POST"])
def organization_settings(request: HttpRequest, current: Current) -> HttpResponse:
    organization = current.organization
    if request.method == "GET":
        form = OrganizationSettingsForm(organization=organization)
        return _render(request, current, "dashboard/settings.html", {"form": form})
    if denied := _require_manager(request, current):
        return denied
    form = OrganizationSettingsForm(request.POST, organization=organization)
    if form.is_valid():
        try:
            org_services.organization_settings_update(
                organization=organization, actor=current.membership, **form.cleaned_data
            )
        except AqtaError as error:
            if error.status != 400:
                raise
            _form_error(form, error)
        else:
            messages.success(request, "Settings saved. They apply to the next call.")
            return redirect("dashboard:settings")
    return _render(request, current, "dashboard/settings.html", {"form": form})


def _members_page(request: HttpRequest, current: Current, add_form: MemberAddForm) -> HttpResponse:
    memberships = list(memberships_of(organization=current.organization))
    owners = [m for m in memberships if m.role == Role.OWNER]
    return _render(
        request,
        current,
        "dashboard/members.html",
        {
            "memberships": memberships,
            "add_form": add_form,
            "roles": Role.choices,
            "is_owner": current.membership.role == Role.OWNER,
            # The last owner can be neither demoted nor removed: offer no controls for them.
            "last_owner_id": owners[0].pk if len(owners) == 1 else None,
        },
    )


@page("members")
@require_http_methods(["GET", "POST"])
def members(request: HttpRequest, current: Current) -> HttpResponse:
    is_owner = current.membership.role == Role.OWNER
    if request.method == "GET":
        return _members_page(request, current, MemberAddForm(can_grant_owner=is_owner))
    if denied := _require_manager(request, current):
        return denied
    form = MemberAddForm(request.POST, can_grant_owner=is_owner)
    if form.is_valid():
        try:
            membership = org_services.membership_add(
                organization=current.organization, actor=current.membership, **form.cleaned_data
            )
        except AqtaError as error:
            if error.status not in {400, 403, 404, 409}:
                raise
            _form_error(form, error)
        else:
            messages.success(
                request, f"Added {membership.user.email} as {membership.get_role_display()}."
            )
            return redirect("dashboard:members")
    return _members_page(request, current, form)


@page("members")
@require_POST
def member_role(request: HttpRequest, current: Current, membership_id: int) -> HttpResponse:
    if denied := _require_manager(request, current):
        return denied
    membership = membership_of(organization=current.organization, membership_id=membership_id)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the roles owner, admin or member.")
        return redirect("dashboard:members")
    try:
        org_services.membership_change_role(
            membership=membership, actor=current.membership, role=form.cleaned_data["role"]
        )
    except AqtaError as error:
        if error.status not in {400, 403, 409}:
            raise
        messages.error(request, error.message)
    else:
        role = Role(form.cleaned_data["role"]).label.lower()
        messages.success(request, f"{membership.user.email} is now {role}.")
    return redirect("dashboard:members")


@page("members")
@require_http_methods(["GET", "POST"])
def member_remove(request: HttpRequest, current: Current, membership_id: int) -> HttpResponse:
    if denied := _require_manager(request, current):
        return denied
    membership = membership_of(organization=current.organization, membership_id=membership_id)
    if request.method == "GET":
        return _render(request, current, "dashboard/member_remove.html", {"membership": membership})
    try:
        org_services.membership_remove(membership=membership, actor=current.membership)
    except AqtaError as error:
        if error.status not in {403, 409}:
            raise
        messages.error(request, error.message)
        return redirect("dashboard:members")
    messages.success(request, f"Removed {membership.user.email} from {current.organization.name}.")
    if membership.user_id == request.user.pk:
        request.session.pop(SESSION_ORGANIZATION, None)
        return redirect("dashboard:overview")
    return redirect("dashboard:members")
