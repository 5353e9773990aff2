"""Writes for conversations. :func:`message_receive` is the one entry point for an inbound customer message from
any channel (widget API, email, import of live traffic, admin)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from conversations.models import Category, Customer, Message, SiteKey, Ticket, WidgetConversation, WidgetToken
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
            created_at=now, updated_at=now, last_customer_message_at=sent_at or now,
        )
        message = Message.objects.create(ticket=ticket, role=Message.Role.CUSTOMER, body=body, turn_index=0,
                                         external_id=external_id, sent_at=sent_at or now)
    else:
        message, created = _follow_up_receive(ticket_id=ticket.pk, body=body, external_id=external_id,
                                              sent_at=sent_at or now, now=now)
        if not created:
            return message
    draft = Draft.objects.create(ticket=message.ticket, message=message, status=Draft.Status.PENDING)

    from drafts.tasks import draft_generate

    transaction.on_commit(lambda: draft_generate.delay(draft.pk))
    return message


# A customer message on an existing ticket: every widget post after the first. Its statements are written by hand
# (docs/benchmarks.md, widget API: Django compiling them was about a third of a post's CPU); they run inside
# message_receive's transaction, after the ticket row is locked, so the turn read after the lock is the latest.
_TICKET_LOCK_SQL = "SELECT status FROM conversations_ticket WHERE id = %s FOR UPDATE"
_LAST_TURN_SQL = "SELECT MAX(turn_index) FROM conversations_message WHERE ticket_id = %s"
_MESSAGE_INSERT_SQL = (
    "INSERT INTO conversations_message (ticket_id, role, body, turn_index, author_user_id, external_id, origin, sent_at) "
    "VALUES (%s, %s, %s, %s, NULL, %s, '', %s) RETURNING id")
_TICKET_RECEIVED_SQL = (
    "UPDATE conversations_ticket SET status = %s, resolved_at = CASE WHEN %s THEN NULL ELSE resolved_at END, "
    "last_customer_message_at = GREATEST(last_customer_message_at, %s), updated_at = %s WHERE id = %s "
    "RETURNING resolved_at, last_customer_message_at")


def _follow_up_receive(*, ticket_id: int, body: str, external_id: str, sent_at: datetime,
                       now: datetime) -> tuple[Message, bool]:
    """Lock the ticket, store the message as its next turn, reopen a resolved / auto-replied ticket and record the
    implicit signals about the bot reply it follows. Returns ``(message, True)`` with ``message.ticket`` in its new
    state (fields not written here are deferred), or ``(the earlier message, False)`` when ``external_id`` was
    already received. Raises ``Ticket.DoesNotExist``."""
    from django.db import connection

    from drafts.rollout import signals_record
    from sdrbot.rows import instance_from_row

    with connection.cursor() as cursor:
        cursor.execute(_TICKET_LOCK_SQL, [ticket_id])
        row = cursor.fetchone()
        if row is None:
            raise Ticket.DoesNotExist(f"ticket {ticket_id} does not exist")
        previous_status = row[0]
        if external_id:
            existing = Message.objects.filter(ticket_id=ticket_id, external_id=external_id).first()
            if existing is not None:
                return existing, False
        reopen = previous_status in (Ticket.Status.RESOLVED, Ticket.Status.AUTO_REPLIED)
        status = Ticket.Status.REOPENED if reopen else previous_status
        cursor.execute(_LAST_TURN_SQL, [ticket_id])
        last_turn = cursor.fetchone()[0]
        turn = 0 if last_turn is None else last_turn + 1
        cursor.execute(_MESSAGE_INSERT_SQL, [ticket_id, Message.Role.CUSTOMER, body, turn, external_id, sent_at])
        message_id = cursor.fetchone()[0]
        cursor.execute(_TICKET_RECEIVED_SQL, [status, reopen, sent_at, now, ticket_id])
        resolved_at, last_customer_message_at = cursor.fetchone()
    ticket = instance_from_row(Ticket, {"id": ticket_id, "status": status, "resolved_at": resolved_at,
                                        "last_customer_message_at": last_customer_message_at, "updated_at": now},
                               from_database=False)
    message = instance_from_row(Message, {
        "id": message_id, "ticket_id": ticket_id, "role": Message.Role.CUSTOMER, "body": body, "turn_index": turn,
        "author_user_id": None, "external_id": external_id, "origin": "", "sent_at": sent_at}, from_database=False)
    assert ticket is not None and message is not None  # both ids come from the statements above, never NULL
    message.ticket = ticket
    if last_turn is not None:
        signals_record(message=message, previous_status=previous_status)
    return message, True


class StaleTicket(Exception):
    """The ticket changed since the agent loaded it (another agent sent, assigned or resolved it). ``ticket`` is the
    current state and ``last_reply`` the newest agent or bot message, to show what happened instead."""

    def __init__(self, ticket: Ticket, last_reply: Message | None) -> None:
        super().__init__(f"ticket {ticket.pk} changed (now version {ticket.version})")
        self.ticket = ticket
        self.last_reply = last_reply


def ticket_lock(*, ticket_id: int, expected_version: int | None) -> Ticket:
    """Lock the ticket row for a write; with ``expected_version``, raise :class:`StaleTicket` when it moved on.
    Must run inside a transaction."""
    ticket = Ticket.objects.select_for_update().get(pk=ticket_id)
    if expected_version is not None and ticket.version != expected_version:
        last = (Message.objects.filter(ticket=ticket, role__in=[Message.Role.AGENT, Message.Role.BOT])
                .order_by("-turn_index").select_related("author_user").first())
        raise StaleTicket(ticket, last)
    return ticket


def _bump(ticket: Ticket, **fields) -> None:
    for k, v in fields.items():
        setattr(ticket, k, v)
    ticket.version += 1
    ticket.updated_at = timezone.now()
    ticket.save(update_fields=[*fields, "version", "updated_at"])


def _next_turn(ticket: Ticket) -> int:
    turn = Message.objects.filter(ticket=ticket).aggregate(m=Max("turn_index"))["m"]
    return 0 if turn is None else turn + 1


def agent_message_create(*, ticket: Ticket, actor, body: str, origin: str, send_token: str = "") -> Message:
    """Append an agent reply to a locked ticket and resolve it (ARCHITECTURE.md: awaiting_agent → resolved; a new
    customer message reopens it). Raises :class:`MessageRejected` for an empty or oversized body."""
    if not body or not body.strip():
        raise MessageRejected("body: the reply is empty")
    if len(body) > MAX_MESSAGE_CHARS:
        raise MessageRejected(f"body: the reply is {len(body)} characters, over the {MAX_MESSAGE_CHARS} limit")
    message = Message.objects.create(ticket=ticket, role=Message.Role.AGENT, body=body, turn_index=_next_turn(ticket),
                                     author_user=actor, origin=origin, external_id=send_token[:255])
    _bump(ticket, status=Ticket.Status.RESOLVED, resolved_at=timezone.now())
    return message


def sent_with_token(ticket_id: int, send_token: str) -> Message | None:
    """The reply already sent with this form token (a double-clicked Send), if any."""
    if not send_token:
        return None
    return Message.objects.filter(ticket_id=ticket_id, role=Message.Role.AGENT, external_id=send_token[:255]).first()


@transaction.atomic
def reply_send(*, ticket_id: int, actor, body: str, expected_version: int | None, send_token: str = "") -> Message:
    """Send a reply written without a draft (recorded as ``origin="no_draft"``). Idempotent per ``send_token``."""
    ticket = Ticket.objects.select_for_update().get(pk=ticket_id)
    existing = sent_with_token(ticket.pk, send_token)
    if existing is not None:
        return existing
    ticket = ticket_lock(ticket_id=ticket_id, expected_version=expected_version)
    return agent_message_create(ticket=ticket, actor=actor, body=body, origin="no_draft", send_token=send_token)


@transaction.atomic
def ticket_assign(*, ticket_id: int, actor, assignee, expected_version: int | None = None) -> Ticket:
    """Assign the ticket to ``assignee`` (a staff user) or unassign it (None)."""
    if assignee is not None and not assignee.is_staff:
        raise MessageRejected("assignee: only staff can be assigned tickets")
    ticket = ticket_lock(ticket_id=ticket_id, expected_version=expected_version)
    _bump(ticket, assignee=assignee)
    return ticket


@transaction.atomic
def ticket_resolve(*, ticket_id: int, actor, expected_version: int | None = None) -> Ticket:
    ticket = ticket_lock(ticket_id=ticket_id, expected_version=expected_version)
    _bump(ticket, status=Ticket.Status.RESOLVED, resolved_at=timezone.now())
    return ticket


@transaction.atomic
def note_add(*, ticket_id: int, actor, body: str) -> Message:
    """An internal note: visible to staff only, never sent, never drafted for; does not change the version a
    reply form checks (a note does not answer the customer)."""
    if not body or not body.strip():
        raise MessageRejected("body: the note is empty")
    ticket = Ticket.objects.select_for_update().get(pk=ticket_id)
    return Message.objects.create(ticket=ticket, role=Message.Role.INTERNAL_NOTE, body=body[:MAX_MESSAGE_CHARS],
                                  turn_index=_next_turn(ticket), author_user=actor)


# ------------------------------------------------------------------------------------------- widget (public API)


def token_hash(token: str) -> str:
    """SHA-256 (hex) of a conversation token: the token itself is never stored."""
    import hashlib

    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def widget_origins_forget() -> None:
    """Drop the cached set of allowed origins (after a site key changes); see ``conversations.selectors``."""
    from conversations.selectors import ORIGINS_CACHE_KEY, redis_client

    redis_client().delete(ORIGINS_CACHE_KEY)


def site_key_create(*, name: str, allowed_origins: list[str], default_category: Category | None = None) -> SiteKey:
    """A new site key with a random public key and a random identity-signing secret. Origins are
    ``scheme://host[:port]`` without a path; raises ``ValueError`` (field ``allowed_origins``) otherwise."""
    import secrets
    from urllib.parse import urlsplit

    for origin in allowed_origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
            raise ValueError(f"allowed_origins: {origin!r} is not an origin like https://www.example.com")
    site = SiteKey.objects.create(name=name, key="pk_" + secrets.token_urlsafe(18), secret=secrets.token_urlsafe(32),
                                  allowed_origins=list(allowed_origins), default_category=default_category)
    widget_origins_forget()
    transaction.on_commit(widget_origins_forget)
    return site


def widget_token_issue(*, conversation: WidgetConversation) -> str:
    """A new conversation token (``secrets.token_urlsafe(32)``, 256 bits); only its hash is stored."""
    import secrets

    token = secrets.token_urlsafe(32)
    WidgetToken.objects.create(conversation=conversation, token_hash=token_hash(token))
    return token


@transaction.atomic
def widget_conversation_start(*, site_key: SiteKey, identity=None, name: str = "", email: str = "",
                              category: Category | None = None) -> tuple[WidgetConversation, str]:
    """Open a widget conversation and return it with its token. With a verified ``identity``
    (:class:`conversations.identity.Identity`) the conversation belongs to that customer of this site (so they can
    resume it elsewhere); without one it is anonymous and the name/email given are only what the visitor typed."""
    customer = None
    if identity is not None:
        customer = customer_get_or_create(external_id=f"site-{site_key.pk}:{identity.subject}",
                                          name=identity.name or name, email=identity.email)
    conversation = WidgetConversation.objects.create(
        site_key=site_key, customer=customer, subject=identity.subject if identity is not None else "",
        category=category or site_key.default_category, customer_name=name[:200], customer_email=email)
    return conversation, widget_token_issue(conversation=conversation)


@transaction.atomic
def widget_token_resume(*, site_key: SiteKey, identity, conversation_id: int) -> tuple[WidgetConversation, str]:
    """A fresh token for an earlier conversation of the same verified customer on the same site. Raises
    ``LookupError`` when the conversation is missing or not theirs (the API answers 404 for both)."""
    conversation = WidgetConversation.objects.filter(pk=conversation_id, site_key=site_key,
                                                     subject=identity.subject).exclude(subject="").first()
    if conversation is None:
        raise LookupError("conversation not found")
    return conversation, widget_token_issue(conversation=conversation)


def widget_message_post(*, conversation: WidgetConversation, body: str, client_message_id: str = "") -> Message:
    """A customer message from the widget, through :func:`message_receive` (drafting is queued after commit). The
    first message locks the conversation row, so two first posts never create two tickets; later ones go straight
    to ``message_receive``, which locks the ticket. A retried post with the same ``client_message_id`` returns the
    first message. Raises :class:`MessageRejected`."""
    if conversation.ticket_id is not None:
        return message_receive(body=body, channel=Ticket.Channel.WIDGET, ticket=Ticket(pk=conversation.ticket_id),
                               external_id=client_message_id[:255])
    return _widget_first_message(conversation_id=conversation.pk, body=body, client_message_id=client_message_id)


@transaction.atomic
def _widget_first_message(*, conversation_id: int, body: str, client_message_id: str) -> Message:
    conversation = WidgetConversation.objects.select_for_update().get(pk=conversation_id)
    if conversation.ticket_id is not None:  # another first post won the race
        return message_receive(body=body, channel=Ticket.Channel.WIDGET, ticket=Ticket(pk=conversation.ticket_id),
                               external_id=client_message_id[:255])
    if conversation.customer_id is None:
        # an anonymous visitor is never matched to an existing customer by the email they typed
        conversation.customer = Customer.objects.create(name=conversation.customer_name,
                                                        email=conversation.customer_email)
        conversation.save(update_fields=["customer"])
    message = message_receive(body=body, channel=Ticket.Channel.WIDGET, customer=Customer(pk=conversation.customer_id),
                              category=Category(pk=conversation.category_id) if conversation.category_id else None,
                              external_id=client_message_id[:255])
    conversation.ticket_id = message.ticket_id
    conversation.save(update_fields=["ticket"])
    metadata = {"human_requested_at": conversation.handoff_requested_at.isoformat()} \
        if conversation.handoff_requested_at is not None else {}
    if metadata:  # asked for a person before writing: the bot stays out
        Ticket.objects.filter(pk=message.ticket_id).update(metadata=metadata)
    return message


@transaction.atomic
def widget_reply_rate(*, conversation: WidgetConversation, message_id: int, thumbs_up: bool):
    """The customer's thumbs on one bot reply of their conversation: a ``rating`` signal on its draft (one per
    draft, changeable; drafts.rollout). Raises ``LookupError`` when the message is not a bot reply of this
    conversation."""
    from drafts.models import Draft
    from drafts.rollout import rating_record

    draft = (Draft.objects.filter(sent_message_id=message_id, sent_message__role=Message.Role.BOT,
                                  ticket_id=conversation.ticket_id).first() if conversation.ticket_id else None)
    if draft is None:
        raise LookupError("message_id: not a bot reply of this conversation")
    return rating_record(draft=draft, thumbs_up=thumbs_up, message_id=message_id)


@transaction.atomic
def widget_handoff(*, conversation_id: int) -> WidgetConversation:
    """"Talk to a person": the ticket goes to the agents' queue (``awaiting_agent``), the bot stops answering in it,
    the latest bot reply gets a ``human_request`` signal (rollout gates) and agents see a note. Before the first
    message only the wish is recorded; the ticket starts in the queue when it exists. Idempotent."""
    from drafts.rollout import human_request_record

    conversation = WidgetConversation.objects.select_for_update().get(pk=conversation_id)
    now = timezone.now()
    if conversation.handoff_requested_at is None:
        conversation.handoff_requested_at = now
        conversation.save(update_fields=["handoff_requested_at"])
    if conversation.ticket_id is not None:
        ticket = ticket_lock(ticket_id=conversation.ticket_id, expected_version=None)
        human_request_record(ticket_id=ticket.pk)
        if not ticket.metadata.get("human_requested_at"):
            ticket.metadata = {**ticket.metadata, "human_requested_at": now.isoformat()}
            Message.objects.create(ticket=ticket, role=Message.Role.INTERNAL_NOTE, turn_index=_next_turn(ticket),
                                   body="The customer asked to talk to a person (widget).")
        _bump(ticket, metadata=ticket.metadata, status=Ticket.Status.AWAITING_AGENT, resolved_at=None)
    return conversation
