"""Writes for conversations. :func:`message_receive` is the one entry point for an inbound customer message from
any channel (widget API, email, import of live traffic, admin)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from conversations.models import Category, Customer, Message, Ticket
from drafts.models import Draft

MAX_MESSAGE_CHARS = 200_000  # ≈ 200 KB of text; longer bodies are refused rather than cut


class MessageRejected(ValueError):
    """The message cannot be accepted (empty, too long, closed channel); the message says which field and why."""


def customer_get_or_create(*, name: str = "", email: str = "", external_id: str = "") -> Customer:
    """Find the customer by external id, else by email, else create one."""
    if external_id:
        customer, _ = Customer.objects.get_or_create(external_id=external_id, defaults={"name": name, "email": email})
        return customer
    if email:
        found = Customer.objects.filter(email__iexact=email).order_by("pk").first()
        if found is not None:
            return found
    return Customer.objects.create(name=name, email=email)


@transaction.atomic
def message_receive(
    *,
    body: str,
    channel: str,
    ticket: Ticket | None = None,
    customer: Customer | None = None,
    customer_name: str = "",
    customer_email: str = "",
    customer_external_id: str = "",
    subject: str = "",
    category: Category | None = None,
    external_id: str = "",
    sent_at: datetime | None = None,
) -> Message:
    """Persist an inbound customer message (and its ticket when ``ticket`` is None), move the ticket's status
    (new, or reopened when it was resolved / auto-replied), create the pending draft and queue drafting after
    commit. Idempotent per ``external_id`` within a ticket: a channel that delivers the same message twice gets
    the first one back and nothing is drafted twice.

    Raises :class:`MessageRejected` for an empty body (field ``body``) or one over ``MAX_MESSAGE_CHARS``.
    """
    if not body or not body.strip():
        raise MessageRejected("body: the message is empty")
    if len(body) > MAX_MESSAGE_CHARS:
        raise MessageRejected(f"body: the message is {len(body)} characters, over the {MAX_MESSAGE_CHARS} limit")
    now = timezone.now()
    if ticket is None:
        customer = customer or customer_get_or_create(name=customer_name, email=customer_email,
                                                      external_id=customer_external_id)
        ticket = Ticket.objects.create(
            subject=(subject or " ".join(body.split())[:80])[:300], channel=channel, customer=customer,
            category=category, category_source="channel" if category else "", status=Ticket.Status.NEW,
            created_at=now, updated_at=now,
        )
    else:
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        if external_id:
            existing = Message.objects.filter(ticket=ticket, external_id=external_id).first()
            if existing is not None:
                return existing
        if ticket.status in (Ticket.Status.RESOLVED, Ticket.Status.AUTO_REPLIED):
            ticket.status = Ticket.Status.REOPENED
            ticket.resolved_at = None
    turn = (Message.objects.filter(ticket=ticket).aggregate(m=Max("turn_index"))["m"])
    message = Message.objects.create(
        ticket=ticket, role=Message.Role.CUSTOMER, body=body, turn_index=0 if turn is None else turn + 1,
        external_id=external_id, sent_at=sent_at or now,
    )
    ticket.last_customer_message_at = message.sent_at
    ticket.updated_at = now
    ticket.save(update_fields=["status", "resolved_at", "last_customer_message_at", "updated_at"])
    draft = Draft.objects.create(ticket=ticket, message=message, status=Draft.Status.PENDING)

    from drafts.tasks import draft_generate

    transaction.on_commit(lambda: draft_generate.delay(draft.pk))
    return message
