"""Customers, categories, tickets and messages. State changes go through conversations.services."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Customer(models.Model):
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    external_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["external_id"], condition=~Q(external_id=""), name="customer_unique_external_id"),
        ]

    def __str__(self) -> str:
        return self.name or self.email or self.external_id or f"customer {self.pk}"


class Category(models.Model):
    """A ticket category: the unit of routing, prompts and (later) rollout gates."""

    class Phase(models.TextChoices):
        OFFLINE = "offline", "Offline"
        INTERNAL = "internal", "Internal"
        CUSTOMER_FACING = "customer_facing", "Customer-facing"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # rollout (drafts.rollout): changed only through its services, each change audited in PhaseChange
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.OFFLINE)
    auto_send = models.BooleanField(default=False)
    auto_send_min_confidence = models.FloatField(default=0.8)
    # {"tz": "Europe/Paris", "days": [0,1,2,3,4], "start": "09:00", "end": "18:00"}; empty = always open
    business_hours = models.JSONField(default=dict, blank=True)
    gate_overrides = models.JSONField(default=dict, blank=True)  # criterion name → threshold

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Ticket(models.Model):
    """A conversation with one customer. Status follows ARCHITECTURE.md:
    new → drafting → awaiting_agent | auto_replied → resolved; reopened when the customer writes again."""

    class Status(models.TextChoices):
        NEW = "new"
        DRAFTING = "drafting"
        AWAITING_AGENT = "awaiting_agent"
        AUTO_REPLIED = "auto_replied"
        RESOLVED = "resolved"
        REOPENED = "reopened"

    class Channel(models.TextChoices):
        WIDGET = "widget", "Widget"
        EMAIL = "email", "Email"
        API = "api", "API"
        IMPORT = "import", "Import"
        ADMIN = "admin", "Admin"

    class Split(models.TextChoices):
        NONE = "", "live"
        TRAIN = "train"
        TEST = "test"

    subject = models.CharField(max_length=300, blank=True)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.API)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW, db_index=True)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets")
    intent = models.CharField(max_length=100, blank=True)
    # who set the category: "" unknown, "import", "classifier", "agent", "channel"
    category_source = models.CharField(max_length=16, blank=True)
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="tickets")
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="assigned_tickets")
    thread_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    external_id = models.CharField(max_length=255, blank=True)
    split = models.CharField(max_length=8, choices=Split.choices, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    # bumped by every write through the services; a form posts the version it showed (optimistic concurrency)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    last_customer_message_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "external_id"], condition=~Q(external_id=""),
                                    name="ticket_unique_external_id"),
        ]
        indexes = [
            models.Index(fields=["status", "last_customer_message_at", "id"]),
            models.Index(fields=["last_customer_message_at", "id"]),
            models.Index(fields=["category", "status"]),
            models.Index(fields=["split", "category"]),
            models.Index(fields=["status", "channel", "category"]),  # the inbox's per-status/category counts
            GinIndex(SearchVector("subject", config="english"), name="ticket_subject_search_gin"),  # inbox search
        ]

    def __str__(self) -> str:
        return self.subject or f"ticket {self.pk}"


class Message(models.Model):
    class Role(models.TextChoices):
        CUSTOMER = "customer"
        AGENT = "agent"
        BOT = "bot"
        INTERNAL_NOTE = "internal_note"

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    body = models.TextField()
    turn_index = models.PositiveIntegerField()
    author_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    external_id = models.CharField(max_length=255, blank=True)
    # for agent and bot replies: "draft" (sent from a draft) or "no_draft" (written from scratch)
    origin = models.CharField(max_length=16, blank=True)
    sent_at = models.DateTimeField(default=timezone.now)
    search_vector = models.GeneratedField(expression=SearchVector("body", config="english"),
                                          output_field=SearchVectorField(), db_persist=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["ticket", "turn_index"], name="message_unique_turn")]
        indexes = [GinIndex(fields=["search_vector"], name="message_search_vector_gin")]
        ordering = ["ticket_id", "turn_index"]

    def __str__(self) -> str:
        return f"{self.role} #{self.turn_index} of ticket {self.ticket_id}"


class SiteKey(models.Model):
    """A website that embeds the chat widget. ``key`` is public (it sits in the page's script tag); ``secret`` signs
    the company's identity tokens (JWT HS256) and never leaves the server side of that company. Requests from a
    browser origin not in ``allowed_origins`` are refused."""

    name = models.CharField(max_length=200)
    key = models.CharField(max_length=64, unique=True)
    secret = models.CharField(max_length=128)
    # exact origins, scheme://host[:port], e.g. ["https://www.example.com"]
    allowed_origins = models.JSONField(default=list, blank=True)
    default_category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class WidgetConversation(models.Model):
    """One conversation in the widget: its ticket appears with the first message. ``subject`` is the verified
    identity's user id (JWT ``sub``) when the conversation was started with one, else empty (anonymous)."""

    site_key = models.ForeignKey(SiteKey, on_delete=models.CASCADE, related_name="conversations")
    ticket = models.OneToOneField(Ticket, null=True, blank=True, on_delete=models.SET_NULL, related_name="widget")
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    subject = models.CharField(max_length=255, blank=True)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    customer_name = models.CharField(max_length=200, blank=True)
    customer_email = models.EmailField(blank=True)
    handoff_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["site_key", "subject", "created_at"])]

    def __str__(self) -> str:
        return f"widget conversation {self.pk}"


class WidgetToken(models.Model):
    """A conversation token: ``secrets.token_urlsafe(32)`` given once to the browser, stored as its SHA-256. A
    verified customer who resumes a conversation on another device gets a token of its own."""

    conversation = models.ForeignKey(WidgetConversation, on_delete=models.CASCADE, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
