from __future__ import annotations

import uuid

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


# --- Long-running compliance jobs: bias detection runs and compliance reports ------------


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class JobFields(models.Model):
    """What every Celery-run job stores: progress for the API and the dashboard, and the
    lease that keeps a run executed by one worker at a time (``compliance.jobs``)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE)
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent done, 0-100.")
    step = models.CharField(max_length=200, blank=True, help_text="What the job is doing now.")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The worker executing the job and until when its claim holds (renewed by a heartbeat);
    # a job whose lease lapsed is taken over by the next delivery or the resume sweep.
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Deliveries that executed it.")

    class Meta:
        abstract = True

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.COMPLETED, JobStatus.FAILED)


class ProbeSet(models.Model):
    """An organisation's own counterfactual probe set (``compliance.bias.probes`` format);
    the default set ships with the code and is not stored."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="probe_sets"
    )
    name = models.CharField(max_length=120)
    definition = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="probe_set_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


class BiasMethod(models.TextChoices):
    PROBE = "probe", "Counterfactual probes"
    PASSIVE = "passive", "Passive monitoring"


class BiasRun(JobFields):
    """One bias detection run: counterfactual probes sent through the gateway, or passive
    monitoring of a period of logged traffic; ``findings`` are the per-group results."""

    method = models.CharField(max_length=10, choices=BiasMethod.choices)
    model = models.CharField(max_length=120, blank=True)
    probe_set = models.ForeignKey(ProbeSet, on_delete=models.SET_NULL, null=True, blank=True)
    probe_set_name = models.CharField(max_length=120)
    definition = models.JSONField(help_text="The probe set as it was when the run started.")
    repetitions = models.PositiveSmallIntegerField(default=1)
    concurrency = models.PositiveSmallIntegerField(default=4)
    budget_cap_eur = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    spent_eur = models.DecimalField(max_digits=16, decimal_places=8, default=0)
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    # The run's own key: its traffic is the organisation's, billed and rate-limited like any
    # other, and recognisable by this key. Revoked, and its secret erased, when the run ends.
    api_key = models.ForeignKey(
        "accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    key_secret_encrypted = models.TextField(blank=True)
    calls_total = models.PositiveIntegerField(default=0)
    calls_done = models.PositiveIntegerField(default=0)
    calls_failed = models.PositiveIntegerField(default=0)
    stopped_reason = models.CharField(max_length=200, blank=True)
    findings = models.JSONField(default=list, blank=True)
    summary = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "-created_at"], name="bias_run_org_time")]

    def __str__(self) -> str:
        return f"{self.get_method_display()} {self.model or ''} ({self.status})"


class ProbeCallStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    ANSWERED = "answered", "Answered"
    REFUSED = "refused", "Refused by a policy"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class ProbeCall(models.Model):
    """One variant of one case and repetition of a probe run, and what it got back."""

    run = models.ForeignKey(BiasRun, on_delete=models.CASCADE, related_name="calls")
    index = models.PositiveIntegerField()
    case_id = models.CharField(max_length=80)
    attribute = models.CharField(max_length=80)
    group = models.CharField(max_length=80)
    repetition = models.PositiveSmallIntegerField()
    status = models.CharField(
        max_length=10, choices=ProbeCallStatus.choices, default=ProbeCallStatus.PENDING
    )
    sends = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    trace_id = models.CharField(max_length=64, blank=True)
    cached = models.BooleanField(default=False)
    cost_eur = models.DecimalField(max_digits=16, decimal_places=8, default=0)
    outcomes = models.JSONField(default=dict, blank=True)
    answer_excerpt = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="probe_call_index_unique")
        ]
        indexes = [models.Index(fields=["run", "status"], name="probe_call_run_status")]

    def __str__(self) -> str:
        return f"{self.case_id} {self.attribute}={self.group} #{self.repetition}"


class ReportFormat(models.TextChoices):
    PDF = "pdf", "PDF"
    JSON = "json", "JSON"


class ComplianceReport(JobFields):
    """A signed compliance report of one period (``compliance.reports``). ``document`` is
    the signed JSON; ``pdf`` the rendered file when the format is PDF."""

    period_start = models.DateField()
    period_end = models.DateField()
    format = models.CharField(max_length=4, choices=ReportFormat.choices)
    document = models.JSONField(null=True, blank=True)
    content_sha256 = models.CharField(max_length=64, blank=True)
    signature = models.CharField(max_length=100, blank=True)
    key_id = models.CharField(max_length=16, blank=True)
    pdf = models.BinaryField(null=True, blank=True, editable=False)
    pdf_sha256 = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "-created_at"], name="report_org_time")]

    def __str__(self) -> str:
        return f"Report {self.period_start}..{self.period_end} ({self.status})"
