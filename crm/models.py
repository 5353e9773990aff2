"""Sales (SDR): leads and their qualification state, the internal CRM (companies, contacts, activities), the
per-step checkpoints of a conversation, and the CRM outbox. State changes go through crm.services."""

from __future__ import annotations


from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class CrmSettings(models.Model):
    """The one row of sales configuration, edited by admins in the console (``/console/leads/settings/``).
    Secrets (webhook signing secret, HubSpot token) are never stored here: they come from the environment."""

    class Adapter(models.TextChoices):
        NONE = "none", "None (internal CRM only)"
        WEBHOOK = "webhook", "Generic webhook (JSON POST, HMAC-signed)"
        HUBSPOT = "hubspot", "HubSpot-compatible API"

    booking_link = models.URLField(max_length=500, blank=True)
    self_serve_link = models.URLField(max_length=500, blank=True)  # used when the knowledge base has no link
    adapter = models.CharField(max_length=16, choices=Adapter.choices, default=Adapter.NONE)
    endpoint_url = models.URLField(max_length=500, blank=True)
    scoring_rules = models.JSONField(default=dict, blank=True)  # empty = crm.scoring.DEFAULT_RULES
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        verbose_name_plural = "CRM settings"

    def __str__(self) -> str:
        return f"CRM settings ({self.adapter})"


class Company(models.Model):
    name = models.CharField(max_length=200, blank=True)
    domain = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "companies"
        constraints = [models.UniqueConstraint(fields=["domain"], condition=~Q(domain=""), name="company_unique_domain")]

    def __str__(self) -> str:
        return self.name or self.domain or f"company {self.pk}"


class Contact(models.Model):
    customer = models.OneToOneField("conversations.Customer", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="crm_contact")
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    role = models.CharField(max_length=200, blank=True)
    company = models.ForeignKey(Company, null=True, blank=True, on_delete=models.SET_NULL, related_name="contacts")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name or self.email or f"contact {self.pk}"


class Lead(models.Model):
    """A sales conversation being qualified. Status (ARCHITECTURE.md): new → qualifying → qualified |
    disqualified | handed_off."""

    class Status(models.TextChoices):
        NEW = "new"
        QUALIFYING = "qualifying"
        QUALIFIED = "qualified"
        DISQUALIFIED = "disqualified"
        HANDED_OFF = "handed_off"

    class NextAction(models.TextChoices):
        NONE = "", "—"
        SELF_SERVE = "self_serve", "Self-serve"
        BOOK_MEETING = "book_meeting", "Book a meeting"
        SUPPORT_TICKET = "support_ticket", "Support ticket"
        HUMAN_HANDOFF = "human_handoff", "Human handoff"

    ticket = models.OneToOneField("conversations.Ticket", on_delete=models.CASCADE, related_name="lead")
    thread_id = models.UUIDField(unique=True)
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="leads")
    company = models.ForeignKey(Company, null=True, blank=True, on_delete=models.SET_NULL, related_name="leads")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW, db_index=True)
    intent = models.CharField(max_length=32, blank=True)  # sales | support | out_of_scope
    sub_intent = models.CharField(max_length=32, blank=True)  # pricing, demo_request, product_question, …
    score = models.PositiveSmallIntegerField(default=0)  # 0–100
    tier = models.CharField(max_length=8, blank=True)
    next_action = models.CharField(max_length=16, choices=NextAction.choices, blank=True)
    # [{"rule", "dimension", "points", "label", "evidence"}] — the scoring rules that fired, as last computed
    fired_rules = models.JSONField(default=list, blank=True)
    handoff_reasons = models.JSONField(default=list, blank=True)
    # [{"flag", "turn", "quote"}]: instructions ignored, emails refused, refusals
    flags = models.JSONField(default=list, blank=True)
    asked = models.JSONField(default=dict, blank=True)  # slot → turn the agent asked for it
    refused = models.JSONField(default=list, blank=True)  # slots the prospect declined to give
    briefing = models.TextField(blank=True)
    briefing_data = models.JSONField(default=dict, blank=True)
    last_turn = models.IntegerField(default=-1)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "updated_at", "id"]), models.Index(fields=["-score", "id"])]

    def __str__(self) -> str:
        return f"lead {self.pk} ({self.status})"


class SlotValue(models.Model):
    """One value of one slot, as the prospect gave it on one turn. A later answer supersedes an earlier one
    (``is_current``); both are kept."""

    SLOTS = ["name", "email", "company", "role", "team_size", "budget", "authority", "need", "timeline"]

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="slot_values")
    slot = models.CharField(max_length=16)
    value = models.CharField(max_length=500)  # display form
    normalized = models.JSONField(default=dict, blank=True)  # e.g. {"amount": 50000, "currency": "USD"}
    quote = models.TextField(blank=True)  # the customer's own words
    turn_index = models.IntegerField()
    message = models.ForeignKey("conversations.Message", null=True, blank=True, on_delete=models.SET_NULL)
    source = models.CharField(max_length=32, default="offline_extractor")
    is_current = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["slot", "turn_index", "id"]
        constraints = [
            models.UniqueConstraint(fields=["lead", "slot"], condition=Q(is_current=True), name="slot_one_current"),
            models.UniqueConstraint(fields=["lead", "slot", "turn_index"], name="slot_one_per_turn"),
        ]


class Checkpoint(models.Model):
    """The agent's state for a thread after one step of one turn: lead id, intent, slots (with their turns),
    score, next action, retrieved context. A turn run again (a crashed or redelivered task) resumes after its last
    checkpoint."""

    thread_id = models.UUIDField()
    turn_id = models.IntegerField()
    step = models.CharField(max_length=32)
    seq = models.PositiveSmallIntegerField()
    state = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["thread_id", "turn_id", "seq"]
        constraints = [models.UniqueConstraint(fields=["thread_id", "turn_id", "step"], name="checkpoint_one_per_step")]
        indexes = [models.Index(fields=["thread_id", "-turn_id", "-seq"])]


class Activity(models.Model):
    """Internal CRM activity or task on a lead (also the audit of who did what: ``actor`` None is the bot)."""

    class Kind(models.TextChoices):
        NOTE = "note"
        TASK = "task"
        MEETING_REQUEST = "meeting_request"
        HANDOFF = "handoff"
        AUDIT = "audit"

    lead = models.ForeignKey(Lead, null=True, blank=True, on_delete=models.CASCADE, related_name="activities")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    subject = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    turn_index = models.IntegerField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "activities"
        ordering = ["created_at", "id"]


class OutboxWrite(models.Model):
    """One external CRM write: created in the same transaction as the internal rows, delivered by
    ``crm.outbox_deliver``. Status: pending → delivered | failed (dead after ``max_attempts``; admins re-deliver).
    The idempotency key ``{thread_id}:{turn_id}:{action}`` is unique and travels with every attempt, so the CRM
    applies the write once however many times it is sent."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    idempotency_key = models.CharField(max_length=200, unique=True)
    lead = models.ForeignKey(Lead, null=True, blank=True, on_delete=models.SET_NULL, related_name="outbox")
    action = models.CharField(max_length=32)
    adapter = models.CharField(max_length=16)
    payload = models.JSONField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField()
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # set while a worker holds the row; another worker may claim it only after it passes (a dead worker's claim)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    response = models.JSONField(default=dict, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["next_attempt_at"], name="outbox_due_idx", condition=Q(status="pending")),
                   models.Index(fields=["status", "-updated_at"])]

    def __str__(self) -> str:
        return f"{self.idempotency_key} ({self.status})"


class OutboxAttempt(models.Model):
    write = models.ForeignKey(OutboxWrite, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.FloatField(default=0)
    outcome = models.CharField(max_length=32)  # delivered | timeout | http_503 | connection_error | …
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["write_id", "number", "id"]
