"""Which organisations have the Healthcare features, and the refusal for those without.

The tier's flags decide (``Tier.receipts``, ``Tier.audit_trail``): the Healthcare tier has
them; an operator may grant them to another tier (Enterprise has them by default) in the
admin. Any other tier gets 403 ``tier_feature_unavailable`` naming the Healthcare tier.
"""

from __future__ import annotations

from accounts.models import Organization
from aqta.errors import AqtaError, ErrorCode
from billing.models import Tier

HEALTHCARE_TIER = "healthcare"


def _healthcare_name() -> str:
    tier = Tier.objects.filter(slug=HEALTHCARE_TIER).only("name").first()
    return tier.name if tier is not None else "Healthcare"


def _refusal(feature: str, organization: Organization, verb: str = "are") -> AqtaError:
    return AqtaError(
        f"{feature} {verb} part of the {_healthcare_name()} tier; "
        f"this organisation is on {organization.tier.name}.",
        code=ErrorCode.TIER_FEATURE_UNAVAILABLE,
    )


def receipts_require(organization: Organization) -> None:
    """Raise the 403 unless the organisation's tier issues receipts."""
    if not organization.tier.receipts:
        raise _refusal("Receipts", organization)


def audit_trail_require(organization: Organization) -> None:
    """Raise the 403 unless the organisation's tier has the audit trail API."""
    if not organization.tier.audit_trail:
        raise _refusal("The audit trail and compliance reports", organization)


def bias_detection_require(organization: Organization) -> None:
    """Raise the 403 unless the organisation's tier has bias detection."""
    if not organization.tier.bias_detection:
        raise _refusal("Bias detection", organization, verb="is")


def compliance_reports_require(organization: Organization) -> None:
    """Raise the 403 unless the organisation's tier has compliance reports."""
    if not organization.tier.compliance_reports:
        raise _refusal("Compliance reports", organization)
