from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditChain(models.Model):
    """Head of one hash chain (per organisation, plus ``global`` for user-level events).

    Appending locks this row, so events of one chain are strictly ordered even across
    hosts, while different organisations never wait for each other. On PostgreSQL a
    trigger lets the head only grow (migration 0003); the retention purge alone moves its
    base (``compliance.audit_retention``).
    """

    scope = models.CharField(max_length=64, unique=True)
    last_hash = models.CharField(max_length=64, default="0" * 64)
    length = models.PositiveBigIntegerField(default=0)
    # Where the stored chain starts: 0 and zeros until a retention purge removes its
    # oldest events, then the last purged sequence and hash.
    base_sequence = models.PositiveBigIntegerField(default=0)
    base_hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"{self.scope} ({self.length} events)"


class AuditEvent(models.Model):
    """One audit-worthy event. ``hash`` = SHA-256 over the previous hash and this event
    (``compliance.hashing``). Append-only on PostgreSQL: deleting a user or an
    organisation only detaches its events (``actor`` / ``organization`` set to NULL)."""

    chain = models.ForeignKey(AuditChain, on_delete=models.PROTECT, related_name="events")
    sequence = models.PositiveBigIntegerField()
    organization = models.ForeignKey(
        "accounts.Organization",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="audit_events",
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="audit_events",
    )
    actor_label = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    target = models.CharField(max_length=200, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["chain", "sequence"], name="audit_sequence_unique")
        ]
        indexes = [models.Index(fields=["chain", "created_at"], name="audit_chain_time")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.actor_label}"


class ChainKind(models.TextChoices):
    AUDIT = "audit", "Audit events"
    RECEIPTS = "receipts", "Receipts"


class ChainCheckpoint(models.Model):
    """A signed statement of one chain's head at a moment (``compliance.checkpoints``).

    The same signed document is written first to the checkpoint file store, outside the
    database, which is what verification trusts; this copy is what the API serves. Never
    changed or deleted (a trigger refuses it on PostgreSQL).
    """

    kind = models.CharField(max_length=10, choices=ChainKind.choices)
    scope = models.CharField(max_length=64, help_text="Audit scope, or the organisation id.")
    length = models.PositiveBigIntegerField()
    last_hash = models.CharField(max_length=64)
    base_sequence = models.PositiveBigIntegerField(default=0)
    base_hash = models.CharField(max_length=64, default="0" * 64)
    signed_at = models.DateTimeField()
    key_id = models.CharField(max_length=16)
    document = models.TextField(help_text="The signed checkpoint, exactly as written (RFC 8785).")
    file = models.CharField(max_length=200, help_text="The file-store file it was written to.")

    class Meta:
        ordering = ["-signed_at", "-id"]
        indexes = [
            models.Index(fields=["kind", "scope", "-signed_at"], name="checkpoint_chain_time")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.scope} at {self.length} ({self.signed_at:%Y-%m-%d %H:%M})"
