"""Receipts as stored, their per-organisation chain, the issuer's public keys and the
high-risk rules (docs/receipts.md).

A receipt row keeps the exact signed document (its RFC 8785 text, signature included) and,
beside it, the fields a list filters on. The chain lives outside the signed object:
``sequence``, ``prev_hash`` and ``chain_hash`` are set once by ``healthcare.chain`` when the
row is linked. On PostgreSQL a trigger refuses every other UPDATE and every DELETE (the
retention purge is the one exception, docs/receipts.md §7).
"""

from __future__ import annotations

from django.db import models


class ReceiptOutcome(models.TextChoices):
    ALLOWED = "ALLOWED", "Allowed"
    BLOCKED = "BLOCKED", "Blocked"
    SUPPRESSED = "SUPPRESSED", "Suppressed"


class Receipt(models.Model):
    """One signed ATTESTATION-v1 receipt of an enforcement decision on a /v1 call."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="receipts"
    )
    attestation_id = models.UUIDField(unique=True)
    trace_id = models.CharField(max_length=35, db_index=True)  # tr_ + 32 hex
    api_key_id = models.UUIDField(null=True, blank=True)  # no FK: receipts outlive keys
    model = models.CharField(max_length=512)
    outcome = models.CharField(max_length=10, choices=ReceiptOutcome.choices)
    high_risk = models.BooleanField(default=False)
    issued_at = models.DateTimeField()
    key_id = models.CharField(max_length=16)  # the issuer key that signed it
    document = models.TextField(help_text="The signed receipt, exactly as issued (RFC 8785).")
    # The chain, set once when the row is linked (healthcare.chain).
    sequence = models.PositiveBigIntegerField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True, db_default="")
    chain_hash = models.CharField(max_length=64, blank=True, db_default="")

    class Meta:
        ordering = ["-issued_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-issued_at", "-id"], name="receipt_org_time"),
            models.Index(
                fields=["organization", "id"],
                name="receipt_unlinked",
                condition=models.Q(sequence__isnull=True),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "sequence"], name="receipt_sequence_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.outcome} {self.trace_id} ({self.issued_at:%Y-%m-%d %H:%M:%S})"


class ReceiptChain(models.Model):
    """Head of one organisation's receipt chain: how far it is linked."""

    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.PROTECT, related_name="receipt_chain"
    )
    length = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)
    # Where the stored chain starts: 0 and zeros until a retention purge removes its
    # oldest receipts, then the last purged sequence and chain hash.
    base_sequence = models.PositiveBigIntegerField(default=0)
    base_hash = models.CharField(max_length=64, default="0" * 64)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.organization_id}: {self.length} receipts"


class ReceiptKey(models.Model):
    """A public key the issuer has signed with, and when. Private keys are never stored
    here: they come from the environment or a secret file (``healthcare.signing``)."""

    key_id = models.CharField(max_length=16, unique=True)
    public_key = models.CharField(max_length=43)  # base64url of 32 bytes, no padding
    algorithm = models.CharField(max_length=16, default="Ed25519")
    activated_at = models.DateTimeField()
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-activated_at"]

    def __str__(self) -> str:
        return f"{self.key_id} ({'retired' if self.retired_at else 'current'})"


class RuleCategory(models.TextChoices):
    DOSAGE = "dosage", "Dosage"
    DIAGNOSIS = "diagnosis", "Diagnosis"
    TRIAGE = "triage", "Triage"
    OTHER = "other", "Other"


class RuleScope(models.TextChoices):
    REQUEST = "request", "The request"
    RESPONSE = "response", "The answer"
    BOTH = "both", "Both"


class RuleAction(models.TextChoices):
    FLAG = "flag", "Mark as high-risk"
    BLOCK = "block", "Block the call"


class HighRiskRule(models.Model):
    """A term list or pattern that marks a Healthcare call as a high-risk decision."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="high_risk_rules"
    )
    name = models.CharField(max_length=80)
    category = models.CharField(max_length=12, choices=RuleCategory.choices)
    pattern = models.TextField(
        help_text="A regular expression (case-insensitive), or terms separated by '|'."
    )
    scope = models.CharField(max_length=8, choices=RuleScope.choices, default=RuleScope.BOTH)
    action = models.CharField(max_length=8, choices=RuleAction.choices, default=RuleAction.FLAG)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="high_risk_rule_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.category}, {self.action})"
