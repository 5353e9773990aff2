"""Drafts, prompt versions and the trained classifiers of the drafting pipeline."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class PromptVersion(models.Model):
    """A versioned system prompt. Rows are never edited once used; a new version is a new row. At most one row is
    active per category, and at most one default (category NULL) is active."""

    name = models.CharField(max_length=100, default="support-reply")
    version = models.PositiveIntegerField()
    category = models.ForeignKey("conversations.Category", null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="prompt_versions")
    system_prompt = models.TextField()
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "category", "version"], name="prompt_unique_version"),
            models.UniqueConstraint(fields=["category"], condition=Q(is_active=True, category__isnull=False),
                                    name="prompt_one_active_per_category"),
            models.UniqueConstraint(fields=["name"], condition=Q(is_active=True, category__isnull=True),
                                    name="prompt_one_active_default"),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}" + (f" ({self.category})" if self.category_id else "")

    @property
    def label(self) -> str:
        return f"{self.name}@v{self.version}" + (f"/{self.category.slug}" if self.category is not None else "")


class Draft(models.Model):
    """A proposed reply to one inbound customer message. Status: pending → ready | failed, then sent or discarded.
    One live (not discarded) draft per message."""

    class Status(models.TextChoices):
        PENDING = "pending"
        READY = "ready"
        FAILED = "failed"
        SENT = "sent"
        DISCARDED = "discarded"

    class Generator(models.TextChoices):
        OFFLINE = "offline", "Offline grounded responder"
        OPENAI = "openai", "OpenAI-compatible model"

    ticket = models.ForeignKey("conversations.Ticket", on_delete=models.CASCADE, related_name="drafts")
    message = models.ForeignKey("conversations.Message", on_delete=models.CASCADE, related_name="drafts")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING, db_index=True)
    # the ticket's category when the draft was stored (rollout windows aggregate by it without a join)
    category = models.ForeignKey("conversations.Category", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="drafts")
    # what the rollout decided when the draft was stored: would it have been auto-sent (shadow, in internal)?
    would_auto_send = models.BooleanField(null=True, blank=True)
    auto_sent = models.BooleanField(default=False)
    body = models.TextField(blank=True)
    generator = models.CharField(max_length=12, choices=Generator.choices, blank=True)
    strategy = models.CharField(max_length=32, blank=True)  # offline: adapt_resolved | compose | abstain; llm
    model = models.CharField(max_length=100, blank=True)
    prompt_version = models.ForeignKey(PromptVersion, null=True, blank=True, on_delete=models.PROTECT)
    citations = models.JSONField(default=list, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    needs_human = models.BooleanField(default=False)
    abstain_reason = models.CharField(max_length=200, blank=True)
    grounding_score = models.FloatField(null=True, blank=True)
    flags = models.JSONField(default=list, blank=True)
    # monitor firings (drafts.monitors): [{"monitor", "blocking", "evidence"}, …]
    monitor_flags = models.JSONField(default=list, blank=True)
    predicted_category = models.ForeignKey("conversations.Category", null=True, blank=True, on_delete=models.SET_NULL,
                                           related_name="+")
    category_confidence = models.FloatField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=10, decimal_places=6, default=0)
    latency_ms = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # set when a worker claims the draft; another claim waits until the lease expires (a crashed worker's claim)
    claimed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    trace = models.ForeignKey("sdrbot.Trace", null=True, blank=True, on_delete=models.SET_NULL, related_name="drafts")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # set when sent: the reply as sent and how much the agent changed the draft (drafts.edits)
    sent_message = models.OneToOneField("conversations.Message", null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="from_draft")
    sent_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    sent_at = models.DateTimeField(null=True, blank=True)
    edit_distance = models.FloatField(null=True, blank=True)  # normalised Levenshtein distance, 0–1
    chars_inserted = models.PositiveIntegerField(null=True, blank=True)
    chars_deleted = models.PositiveIntegerField(null=True, blank=True)
    edit_bucket = models.CharField(max_length=12, blank=True)  # unchanged | light | heavy | rewritten
    diff = models.JSONField(default=list, blank=True)  # word-level opcodes [[op, draft words, sent words], …]

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message"], condition=~Q(status="discarded"), name="draft_one_live_per_message"),
        ]
        indexes = [models.Index(fields=["ticket", "status"]),
                   models.Index(fields=["category", "status", "sent_at"]),
                   models.Index(fields=["category", "auto_sent", "sent_at"]),
                   # dashboard: sent drafts by week (index-only scan) and the shadow-precision counts
                   models.Index(fields=["sent_at"], name="draft_sent_week_idx",
                                include=["id", "category", "auto_sent", "would_auto_send", "edit_distance", "edit_bucket"],
                                condition=Q(status="sent")),
                   models.Index(fields=["category"], name="draft_shadow_idx", include=["edit_distance", "edit_bucket"],
                                condition=Q(would_auto_send=True, status="sent", auto_sent=False))]

    def __str__(self) -> str:
        return f"draft {self.pk} ({self.status}) for ticket {self.ticket_id}"

    @property
    def generator_label(self) -> str:
        return "Offline responder" if self.generator == self.Generator.OFFLINE else (self.model or "model")


class Feedback(models.Model):
    """An agent's rating of a draft: thumbs up or down, reasons from the failure taxonomy, a comment. One per agent
    and draft; changing it updates the row (and its score on the trace)."""

    class Reason(models.TextChoices):
        WRONG_ROUTING = "wrong_routing", "Wrong routing"
        HALLUCINATION = "hallucination", "Hallucination"
        MISSED_FIELDS = "missed_required_fields", "Missed required fields"
        TONE = "tone_mismatch", "Tone mismatch"
        TOOL_FAILURE = "tool_failure", "Tool failure"
        OUTDATED = "outdated_information", "Outdated information"
        OTHER = "other", "Other"

    draft = models.ForeignKey(Draft, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    thumbs_up = models.BooleanField()
    reasons = models.JSONField(default=list, blank=True)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["draft", "user"], name="feedback_one_per_user")]
        indexes = [models.Index(fields=["draft"], name="feedback_with_reasons_idx", include=["reasons"],
                                condition=~Q(reasons=[]))]


class Dataset(models.Model):
    """A named set of evaluation examples (input → expected output), per category, for regression replays."""

    name = models.CharField(max_length=200)
    category = models.ForeignKey("conversations.Category", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="datasets")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name"], name="dataset_unique_name")]

    def __str__(self) -> str:
        return self.name


class DatasetItem(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="items")
    input = models.TextField()
    expected_output = models.TextField()
    category = models.ForeignKey("conversations.Category", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    ticket = models.ForeignKey("conversations.Ticket", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    draft = models.ForeignKey(Draft, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    trace = models.ForeignKey("sdrbot.Trace", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "ticket"], name="dataset_item_unique_ticket")]


class PhaseChange(models.Model):
    """Audit of a category's rollout phase: who (None = the system), when, why, whether a closed gate was
    overridden, and the gate metrics at that moment. Rows are never edited."""

    category = models.ForeignKey("conversations.Category", on_delete=models.CASCADE, related_name="phase_changes")
    from_phase = models.CharField(max_length=16)
    to_phase = models.CharField(max_length=16)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.TextField()
    override = models.BooleanField(default=False)
    automatic = models.BooleanField(default=False)
    metrics = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]


class ReplySignal(models.Model):
    """An implicit signal about a bot reply, recorded in customer-facing categories: the customer asked for a
    human, reopened the ticket within ``REOPEN_WINDOW_DAYS``, repeated the question, or rated the answer."""

    class Kind(models.TextChoices):
        HUMAN_REQUEST = "human_request"
        REOPEN = "reopen"
        REPEAT = "repeat_question"
        RATING = "rating"

    draft = models.ForeignKey(Draft, on_delete=models.CASCADE, related_name="signals")
    category = models.ForeignKey("conversations.Category", null=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    value = models.FloatField(null=True, blank=True)  # rating: 1 up, 0 down
    message = models.ForeignKey("conversations.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["draft", "kind"], name="signal_one_kind_per_draft")]
        indexes = [models.Index(fields=["category", "kind", "created_at"])]


class RolloutWeek(models.Model):
    """Weekly rollup of a category's sent drafts for the dashboard's trends (closed weeks; the current week is
    aggregated live). Recomputed by ``drafts.rollout.rollout_weeks_refresh`` (beat, nightly, recent weeks)."""

    category = models.ForeignKey("conversations.Category", on_delete=models.CASCADE, related_name="+")
    week = models.DateTimeField()  # date_trunc('week', sent_at)
    median_edit_distance = models.FloatField(null=True)
    light_share = models.FloatField(null=True)
    auto_sent = models.PositiveIntegerField(default=0)
    thumbs_down_rate = models.FloatField(null=True)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["category", "week"], name="rollout_week_unique")]


class ReplayRun(models.Model):
    """The result of an offline replay of one category (draft_replay --record): the evidence of the
    offline → internal gate."""

    category = models.ForeignKey("conversations.Category", on_delete=models.CASCADE, related_name="replay_runs")
    n = models.PositiveIntegerField()
    edit_similarity = models.FloatField()
    baseline_similarity = models.FloatField(null=True, blank=True)
    grounding = models.FloatField(null=True, blank=True)
    abstain_rate = models.FloatField()
    metrics = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]


class ClassifierModel(models.Model):
    """A trained text classifier (multinomial logistic regression on sentence embeddings, temperature-calibrated),
    stored as JSON weights so every process loads the same model from the database."""

    target = models.CharField(max_length=32)  # category | intent
    embedding_model = models.CharField(max_length=100)
    labels = models.JSONField()
    coef = models.JSONField()  # [n_labels][dims]
    intercept = models.JSONField()  # [n_labels]
    temperature = models.FloatField(default=1.0)
    metrics = models.JSONField(default=dict, blank=True)
    trained_on = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["target"], condition=Q(is_active=True), name="classifier_one_active")]
