"""Reads for the sales console: the leads list, one lead's page, the dead CRM writes."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Prefetch, Q
from django.http import Http404

from crm.models import Lead, OutboxAttempt, OutboxWrite, SlotValue
from sdrbot.access import is_agent

PAGE_SIZE = 50
SLOT_LABELS = {"team_size": "Team size", "need": "Need (BANT)", "budget": "Budget (BANT)",
               "authority": "Authority (BANT)", "timeline": "Timeline (BANT)"}


def leads_list(*, status: str = "", limit: int = PAGE_SIZE) -> list[Lead]:
    """Most recently active leads first, with their CRM delivery counts (one query)."""
    qs = (Lead.objects.select_related("contact", "company", "ticket")
          .annotate(writes_delivered=Count("outbox", filter=Q(outbox__status="delivered")),
                    writes_pending=Count("outbox", filter=Q(outbox__status="pending")),
                    writes_failed=Count("outbox", filter=Q(outbox__status="failed")))
          .order_by("-updated_at", "-id"))
    if status:
        qs = qs.filter(status=status)
    return list(qs[:limit])


def status_counts() -> dict[str, int]:
    return dict(Lead.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))


def lead_for_console(*, lead_id: int, user) -> Lead:
    """The access selector for a lead: staff only; 404 for missing and not-allowed alike."""
    if not is_agent(user):
        raise Http404
    try:
        return Lead.objects.select_related("contact", "company", "ticket__customer").get(pk=lead_id)
    except Lead.DoesNotExist as exc:
        raise Http404 from exc


def lead_page(lead: Lead) -> dict[str, Any]:
    """Everything the lead page shows, in a fixed number of queries."""
    from conversations.models import Message

    messages = list(Message.objects.filter(ticket_id=lead.ticket_id).exclude(role=Message.Role.INTERNAL_NOTE)
                    .order_by("turn_index"))
    values = list(SlotValue.objects.filter(lead=lead).order_by("slot", "turn_index", "id"))
    slots = []
    for name in SlotValue.SLOTS:
        history = [v for v in values if v.slot == name]
        current = next((v for v in history if v.is_current), None)
        slots.append({"name": name, "label": SLOT_LABELS.get(name, name.title()), "current": current, "history": [v for v in history if not v.is_current],
                      "declined": name in lead.refused})
    writes = list(OutboxWrite.objects.filter(lead=lead).order_by("created_at", "id").prefetch_related(
        Prefetch("attempt_log", queryset=OutboxAttempt.objects.order_by("number", "id"))))
    return {"lead": lead, "transcript": messages, "slots": slots, "writes": writes,
            "activities": list(lead.activities.select_related("actor").order_by("created_at", "id")),
            "flags": [{**f, "label": f["flag"].replace("_", " ")} for f in lead.flags if f.get("flag") != "support_turn"]}


def dead_writes(limit: int = 200) -> list[OutboxWrite]:
    return list(OutboxWrite.objects.filter(status=OutboxWrite.Status.FAILED).select_related("lead__contact")
                .order_by("-updated_at", "-id")[:limit])
