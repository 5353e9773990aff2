"""The drafting pipeline: classify → retrieve → generate → check → store, one span each on the turn's trace.

:func:`draft_compose` thinks (no writes except the trace it is given); :func:`draft_generate` claims a pending
draft, composes, and stores the outcome — safe to run twice: a second run finds the draft claimed or no longer
pending and does nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from conversations.models import Category, Message, Ticket
from drafts import classifier, llm, monitors, responder, rollout
from drafts.grounding import grounding_check
from drafts.models import DatasetItem, Draft, Feedback
from knowledge.models import KnowledgeSource
from knowledge.selectors import Hit, search
from sdrbot.embeddings import get_embedder
from sdrbot.retry import attempts, transient_db_error
from sdrbot.tracing import SpanCollector, TraceRecorder, format_exception

log = logging.getLogger(__name__)

KB_KINDS = [KnowledgeSource.Kind.DOCS, KnowledgeSource.Kind.HELP_CENTER, KnowledgeSource.Kind.OTHER]
RETRIEVAL_QUERY_CHARS = 2000  # longer messages are searched by their beginning (the model reads 256 tokens anyway)
KB_K = 5
TICKETS_K = 20  # the consensus reply is chosen among the close ones (responder.consensus_ticket)

# Instructions aimed at the assistant inside customer or document text (OWASP LLM01 prompt-injection patterns).
_INJECTION = re.compile(
    r"\b(ignore|disregard|forget)\b.{0,40}\b(instructions?|rules|prompt|above|previous)\b"
    r"|\b(system|developer)\s+prompt\b|\byou\s+are\s+now\b|\bact\s+as\b.{0,30}\b(admin|developer|system)\b"
    r"|\b(refund|credit|compensate)\s+(everyone|all\s+customers|every\s+customer)\b"
    r"|\bset\s+(my|the)\s+\w+\s+to\b|\bnew\s+instructions?\b",
    re.IGNORECASE | re.DOTALL,
)


def injection_found(text: str) -> bool:
    return bool(_INJECTION.search(text or ""))


@dataclass
class DraftOutcome:
    body: str
    generator: str
    strategy: str
    model: str
    prompt_version_id: int | None
    citations: list[dict]
    confidence: float
    needs_human: bool
    abstain_reason: str
    grounding_score: float | None
    flags: list[str]
    category: Category | None
    category_confidence: float | None
    intent: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = Decimal("0")
    llm_attempts: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    monitor_flags: list[dict] = field(default_factory=list)
    embedding: Any = None  # the message's embedding (numpy, unit length), for later steps of the same turn


def _category_by_slug(slug: str) -> Category | None:
    return Category.objects.filter(slug=slug).first()


def draft_compose(*, message: str, history: Sequence[tuple[str, str]] = (), category: Category | None = None,
                  recorder: SpanCollector | None = None, force_offline: bool = False,
                  exclude_document_ids: Sequence[int] = (), customer_email: str = "") -> DraftOutcome:
    """Run classify → retrieve → generate → check for one customer message and return the outcome (nothing is
    stored but the recorder's spans; pass a plain :class:`SpanCollector` to store nothing at all). ``history`` is
    the earlier turns as (role, body); ``exclude_document_ids`` keeps resolved-ticket documents out of retrieval
    (a replayed ticket must not find its own reply). Raises the model's error when a configured chat model fails after its
    retries."""
    recorder = recorder if recorder is not None else SpanCollector()
    steps = recorder.span
    query = message[:RETRIEVAL_QUERY_CHARS]
    flags: list[str] = []
    if injection_found(message):
        flags.append("prompt_injection")

    with steps("classify", "classify", input={"message": query, "given_category": category.slug if category else None}) as s:
        embedding = get_embedder().embed([query])[0]
        category_confidence = None
        pred = None
        models = classifier.active_model_ids()
        if category is None:
            pred = classifier.classify(embedding, target="category", model_id=models.get("category"), active=models)
            if pred is not None and pred.confidence >= settings.CLASSIFIER_MIN_CONFIDENCE:
                category = _category_by_slug(pred.label)
            category_confidence = pred.confidence if pred else None
        intent_pred = classifier.classify(embedding, target="intent", model_id=models.get("intent"), active=models)
        intent = intent_pred.label if intent_pred and intent_pred.confidence >= settings.CLASSIFIER_MIN_CONFIDENCE else ""
        s.output = {"category": category.slug if category else None, "prediction": pred.top if pred else None,
                    "intent": intent, "intent_prediction": intent_pred.top if intent_pred else None}

    with steps("retrieve", "retrieve", input={"query": query}) as s:
        ticket_filters: dict[str, Any] = {"kind": KnowledgeSource.Kind.RESOLVED_TICKETS}
        if category is not None:
            ticket_filters["metadata"] = {"category": category.slug}
        if exclude_document_ids:
            ticket_filters["exclude_document_ids"] = list(exclude_document_ids)
        for attempt in attempts(transient_db_error):
            with attempt:
                kb = search(query, k=KB_K, mode="hybrid", filters={"kind": KB_KINDS}, query_embedding=embedding)
                tickets = search(query, k=TICKETS_K, mode="vector", filters=ticket_filters, query_embedding=embedding)
        s.output = {"knowledge_base": kb.as_dict(), "resolved_tickets": tickets.as_dict()}

    kb_hits: list[Hit] = kb.hits
    ticket_hits: list[Hit] = tickets.hits
    if any(injection_found(h.text) for h in kb_hits):
        flags.append("instructions_in_retrieved_text")

    prompt = llm.prompt_active(category.pk if category else None) if llm.llm_enabled() and not force_offline else None
    with steps("generate", "generate", input={"generator": "openai" if prompt else "offline"}) as s:
        outcome_fields: dict[str, Any]
        if prompt is not None:
            try:
                reply = llm.llm_generate(prompt=prompt, message=message, history=history, kb_hits=kb_hits,
                                         ticket_hits=ticket_hits, recorder=recorder, parent=s)
            except llm.MalformedOutput as exc:
                flags.append("llm_output_invalid")
                s.metadata["fallback"] = f"offline responder: {exc}"
                prompt = None
            else:
                by_id = {h.chunk_id: h for h in [*kb_hits, *ticket_hits]}
                cited = [by_id[i] for i in reply.cited_chunk_ids if i in by_id]
                flags.extend(reply.flags)
                outcome_fields = dict(
                    body=reply.reply, generator=Draft.Generator.OPENAI, strategy="llm", model=reply.model,
                    citations=[responder.citation(h, n) for n, h in enumerate(cited, start=1)],
                    confidence=reply.confidence, needs_human=reply.needs_human,
                    abstain_reason="the model asked for a human" if reply.needs_human else "",
                    prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                    cost_usd=reply.cost_usd, llm_attempts=reply.attempts,
                )
                used = [h.text for h in kb_hits] + [f"{h.text}\n{h.metadata.get('reply', '')}" for h in ticket_hits]
        if prompt is None:
            r = responder.respond(message=message, category_slug=category.slug if category else None,
                                  kb_hits=kb_hits, ticket_hits=ticket_hits, intent=intent)
            outcome_fields = dict(
                body=r.body, generator=Draft.Generator.OFFLINE, strategy=r.strategy, model="offline-grounded-responder",
                citations=r.citations, confidence=r.confidence, needs_human=r.needs_human,
                abstain_reason=r.abstain_reason,
            )
            used = r.used_passages
        s.output = {k: v for k, v in outcome_fields.items() if k not in {"cost_usd"}}

    with steps("check", "check") as s:
        # an abstention's holding reply claims nothing, so it has no grounding score
        g = grounding_check("" if outcome_fields["strategy"] == "abstain" else outcome_fields["body"], used)
        if "prompt_injection" in flags and not outcome_fields["needs_human"]:
            outcome_fields["needs_human"] = True
            outcome_fields["abstain_reason"] = outcome_fields["abstain_reason"] or "the message contains instructions to the assistant"
        fired = [] if outcome_fields["strategy"] == "abstain" else monitors.monitors_run(monitors.MonitorInput(
            reply=outcome_fields["body"], grounding_score=g.score, customer_email=customer_email,
            customer_text="\n".join([message, *(b for r, b in history if r == "customer")])))
        s.output = {"grounding_score": g.score, "supported": g.supported, "counted": g.counted,
                    "unsupported": g.unsupported[:5], "flags": flags, "monitors": fired,
                    "cited_sources": [c["external_id"] for c in outcome_fields["citations"]]}

    return DraftOutcome(
        prompt_version_id=prompt.pk if prompt is not None else None, grounding_score=g.score, flags=flags,
        category=category, category_confidence=category_confidence, intent=intent,
        latency_ms=recorder.step_latency_ms(), monitor_flags=fired, embedding=embedding,
        **outcome_fields,
    )


def _history(ticket: Ticket, before_turn: int) -> list[tuple[str, str]]:
    return list(
        Message.objects.filter(ticket=ticket, turn_index__lt=before_turn)
        .exclude(role=Message.Role.INTERNAL_NOTE).order_by("turn_index").values_list("role", "body")
    )


def draft_generate(*, draft_id: int) -> Draft | None:
    """Claim a pending draft and produce it. Returns the draft, or None when there was nothing to do (gone,
    no longer pending, or claimed by another worker whose lease has not expired). A failure after the retries
    marks the draft ``failed`` with its error; the ticket then waits for a human like any other."""
    now = timezone.now()
    lease_expired = now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 30)
    claimed = (
        Draft.objects.filter(pk=draft_id, status=Draft.Status.PENDING)
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=lease_expired))
        .update(claimed_at=now, attempts=F("attempts") + 1, updated_at=now)
    )
    if claimed != 1:
        return None
    draft = Draft.objects.select_related("ticket__category", "ticket__customer", "message").get(pk=draft_id)
    ticket, message = draft.ticket, draft.message
    Ticket.objects.filter(pk=ticket.pk).exclude(status=Ticket.Status.RESOLVED).update(status=Ticket.Status.DRAFTING,
                                                                                   updated_at=now)
    recorder = TraceRecorder.start(
        name="draft", thread_id=str(ticket.thread_id), turn_id=str(message.turn_index), ticket_id=ticket.pk,
        input={"message": message.body},
        metadata={"channel": ticket.channel, "category": ticket.category.slug if ticket.category else None,
                  "ticket_id": ticket.pk, "message_id": message.pk, "draft_id": draft.pk},
    )
    try:
        outcome = draft_compose(message=message.body, history=_history(ticket, message.turn_index),
                                category=ticket.category, recorder=recorder, customer_email=ticket.customer.email)
        from crm.services import qualification_run  # sales turns: qualify the lead on the same trace (crm/)

        outcome = qualification_run(ticket=ticket, message=message, outcome=outcome, recorder=recorder)
    except Exception as exc:  # the model failed after its retries, or a bug: the draft must not stay pending
        log.warning("draft %s failed: %s", draft_id, type(exc).__name__)
        with transaction.atomic():
            Draft.objects.filter(pk=draft_id, status=Draft.Status.PENDING, claimed_at=now).update(
                status=Draft.Status.FAILED, error=format_exception(exc), trace=recorder.trace, updated_at=timezone.now())
            Ticket.objects.filter(pk=ticket.pk, status=Ticket.Status.DRAFTING).update(
                status=Ticket.Status.AWAITING_AGENT, updated_at=timezone.now())
            recorder.finish(status="error", output={"error": format_exception(exc)})
        draft.refresh_from_db()
        return draft

    with transaction.atomic():
        with recorder.span("store", "store") as s:
            fields = dict(
                status=Draft.Status.READY, body=outcome.body, generator=outcome.generator, strategy=outcome.strategy,
                model=outcome.model, prompt_version_id=outcome.prompt_version_id, citations=outcome.citations,
                confidence=outcome.confidence, needs_human=outcome.needs_human,
                abstain_reason=outcome.abstain_reason[:200], grounding_score=outcome.grounding_score,
                flags=outcome.flags, monitor_flags=outcome.monitor_flags, predicted_category=outcome.category if ticket.category_id is None else None,
                category_confidence=outcome.category_confidence, prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens, cost_usd=outcome.cost_usd, latency_ms=outcome.latency_ms,
                trace=recorder.trace, error="", updated_at=timezone.now(),
            )
            category = ticket.category or outcome.category
            decision_args = dict(category=category, confidence=outcome.confidence, needs_human=outcome.needs_human,
                                 monitor_flags=outcome.monitor_flags, now=timezone.now())
            fields["category"] = category
            fields["would_auto_send"] = not rollout.autosend_blockers(**decision_args, shadow=True)
            blockers = rollout.autosend_blockers(**decision_args)
            stored = Draft.objects.filter(pk=draft_id, status=Draft.Status.PENDING, claimed_at=now).update(**fields)
            s.metadata["auto_send"] = "sent" if not blockers else "; ".join(blockers)
            if stored == 1:
                ticket_fields: dict[str, Any] = {"status": Ticket.Status.AWAITING_AGENT, "updated_at": timezone.now()}
                Ticket.objects.filter(pk=ticket.pk, status=Ticket.Status.DRAFTING).update(**ticket_fields)
                if ticket.category_id is None and outcome.category is not None:
                    Ticket.objects.filter(pk=ticket.pk, category__isnull=True).update(
                        category=outcome.category, category_source="classifier")
                if outcome.intent and not ticket.intent:
                    Ticket.objects.filter(pk=ticket.pk, intent="").update(intent=outcome.intent)
            s.output = {"stored": stored == 1, "draft_id": draft_id}
            if stored == 1 and not blockers:
                # the side effect: sent at most once per draft (rollout.draft_autosend claims the draft row)
                with recorder.span("auto_send", "tool") as a:
                    bot_message = rollout.draft_autosend(draft_id=draft_id)
                    a.output = {"message_id": bot_message.pk if bot_message else None}
        recorder.finish(
            status="ok" if stored == 1 else "error",
            output={"body": outcome.body, "needs_human": outcome.needs_human, "stored": stored == 1},
            metadata={"category": outcome.category.slug if outcome.category else None, "model": outcome.model,
                      "prompt_version": outcome.prompt_version_id, "generator": outcome.generator,
                      "strategy": outcome.strategy},
        )
    draft.refresh_from_db()
    return draft


# --------------------------------------------------------------------------------------------------------- console


class DraftNotSendable(Exception):
    """The draft cannot be sent in its state (discarded, still pending); the message says why."""


@transaction.atomic
def draft_send(*, draft_id: int, actor, body: str, expected_version: int | None, send_token: str = "") -> Message:
    """Send the agent's (possibly edited) reply for a draft: the reply becomes a message, the draft becomes
    ``sent`` with the edit metrics of :mod:`drafts.edits`, and those are scored on the draft's trace.

    Idempotent per ``send_token`` (a double-clicked Send returns the first message). Raises
    :class:`conversations.services.StaleTicket` when the ticket changed since ``expected_version`` (another agent
    answered: nothing is sent, the caller shows what was), :class:`DraftNotSendable`, or ``MessageRejected``."""
    from conversations.services import agent_message_create, sent_with_token, ticket_lock
    from drafts.edits import edit_metrics
    from sdrbot.tracing import score_record

    draft = Draft.objects.select_related("trace").get(pk=draft_id)
    ticket = Ticket.objects.select_for_update().get(pk=draft.ticket_id)
    existing = sent_with_token(ticket.pk, send_token)
    if existing is not None:
        return existing
    ticket = ticket_lock(ticket_id=ticket.pk, expected_version=expected_version)
    draft = Draft.objects.select_for_update(of=("self",)).select_related("trace").get(pk=draft_id)
    if draft.status not in (Draft.Status.READY, Draft.Status.FAILED):
        raise DraftNotSendable(f"this draft is {draft.status}; it cannot be sent")
    message = agent_message_create(ticket=ticket, actor=actor, body=body, origin="draft", send_token=send_token)
    m = edit_metrics(draft.body, body)
    # what was actually sent is monitored too: flagged for follow-up, never blocked (a human decided)
    sent_flags = monitors.monitors_run(monitors.MonitorInput(
        reply=body, grounding_score=None, customer_email=ticket.customer.email if ticket.customer_id else "",
        customer_text="\n".join(Message.objects.filter(ticket=ticket, role=Message.Role.CUSTOMER)
                                 .values_list("body", flat=True))))
    now = timezone.now()
    Draft.objects.filter(pk=draft.pk).update(
        status=Draft.Status.SENT, sent_message=message, sent_by=actor, sent_at=now, edit_distance=m.distance,
        chars_inserted=m.chars_inserted, chars_deleted=m.chars_deleted, edit_bucket=m.bucket, diff=m.diff,
        monitor_flags=[{**f, "blocking": False, "on": "sent"} for f in sent_flags], updated_at=now)
    if draft.trace is not None:
        for name, value, string_value in (("edit_distance", m.distance, ""), ("edit_bucket", None, m.bucket),
                                          ("chars_inserted", m.chars_inserted, ""), ("chars_deleted", m.chars_deleted, "")):
            score_record(trace=draft.trace, name=name, value=value, string_value=string_value, source="human", author=actor)
        for f in sent_flags:
            score_record(trace=draft.trace, name=f"monitor:{f['monitor']}", value=1.0, string_value="sent",
                         comment=f["evidence"])
    return message


@transaction.atomic
def draft_discard(*, draft_id: int, actor) -> Draft:
    updated = Draft.objects.filter(pk=draft_id, status__in=[Draft.Status.READY, Draft.Status.FAILED, Draft.Status.PENDING]
                                   ).update(status=Draft.Status.DISCARDED, updated_at=timezone.now())
    if not updated:
        raise DraftNotSendable("only a ready, failed or pending draft can be discarded")
    return Draft.objects.get(pk=draft_id)


@transaction.atomic
def draft_regenerate(*, draft_id: int, actor) -> Draft:
    """Discard the draft and queue a new one for the same customer message (after commit)."""
    from drafts.tasks import draft_generate as draft_generate_task

    old = Draft.objects.select_for_update().get(pk=draft_id)
    if old.status == Draft.Status.SENT:
        raise DraftNotSendable("this draft was already sent")
    if old.status != Draft.Status.DISCARDED:
        Draft.objects.filter(pk=old.pk).update(status=Draft.Status.DISCARDED, updated_at=timezone.now())
    new = Draft.objects.create(ticket_id=old.ticket_id, message_id=old.message_id, status=Draft.Status.PENDING)
    Ticket.objects.filter(pk=old.ticket_id).update(status=Ticket.Status.DRAFTING, updated_at=timezone.now())
    transaction.on_commit(lambda: draft_generate_task.delay(new.pk))
    return new


@transaction.atomic
def feedback_record(*, draft_id: int, actor, thumbs_up: bool, reasons: Sequence[str] = (), comment: str = "") -> Feedback:
    """Record (or change) ``actor``'s rating of a draft and its score ``thumbs`` (1 up, 0 down; the reasons as the
    string value, the comment as the score comment) on the draft's trace. Raises ``ValueError`` for an unknown
    reason, or for reasons on a thumbs up."""
    from sdrbot.models import Score
    from sdrbot.tracing import schedule_export

    valid = set(Feedback.Reason.values)
    bad = [r for r in reasons if r not in valid]
    if bad:
        raise ValueError(f"reasons: unknown {bad}; choose from {sorted(valid)}")
    reasons = sorted(set(reasons)) if not thumbs_up else []
    draft = Draft.objects.select_related("trace").get(pk=draft_id)
    now = timezone.now()
    fb, created = Feedback.objects.update_or_create(
        draft=draft, user=actor,
        defaults={"thumbs_up": thumbs_up, "reasons": reasons, "comment": comment[:5000], "updated_at": now},
    )
    if draft.trace is not None:
        Score.objects.update_or_create(
            trace=draft.trace, name="thumbs", author=actor,
            defaults={"value": 1.0 if thumbs_up else 0.0, "string_value": ",".join(reasons)[:200],
                      "comment": comment[:5000], "source": "human", "exported_at": None},
        )
        schedule_export(draft.trace.pk)
    return fb


@transaction.atomic
def dataset_item_add(*, ticket_id: int, actor, dataset_name: str | None = None) -> DatasetItem:
    """Add a ticket to its category's regression dataset: the customer's message(s) as input, the sent reply as the
    expected output, with links to the draft and its trace. Raises ``ValueError`` when nothing was sent yet.
    Adding the same ticket twice returns the existing item."""
    from drafts.models import Dataset

    ticket = Ticket.objects.select_related("category").get(pk=ticket_id)
    reply = Message.objects.filter(ticket=ticket, role=Message.Role.AGENT).order_by("-turn_index").first()
    if reply is None:
        raise ValueError("ticket: no reply has been sent yet, so there is no expected output")
    question = "\n\n".join(Message.objects.filter(ticket=ticket, role=Message.Role.CUSTOMER, turn_index__lt=reply.turn_index)
                           .order_by("turn_index").values_list("body", flat=True))
    name = dataset_name or f"{ticket.category.slug if ticket.category else 'uncategorised'}-regression"
    dataset, _ = Dataset.objects.get_or_create(name=name, defaults={"category": ticket.category})
    draft = Draft.objects.filter(sent_message=reply).first()
    item, _ = DatasetItem.objects.get_or_create(
        dataset=dataset, ticket=ticket,
        defaults={"input": question, "expected_output": reply.body, "category": ticket.category, "draft": draft,
                  "trace_id": draft.trace_id if draft else None, "created_by": actor},
    )
    return item
