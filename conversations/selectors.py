"""Reads for the customer widget and its public API (conversations/api.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import OuterRef, Subquery

from conversations.models import Category, Message, SiteKey, Ticket, WidgetConversation
from conversations.services import token_hash
from sdrbot.rows import instance_from_row

ORIGINS_CACHE_KEY = "sdrbot:widget:allowed-origins:v1"
ORIGINS_CACHE_SECONDS = 30
WIDGET_ROLES = (Message.Role.CUSTOMER, Message.Role.AGENT, Message.Role.BOT)
PAGE_SIZE = 100


def site_key_active(key: str) -> SiteKey | None:
    """The active site key with this public key, or None."""
    if not key or len(key) > 64:
        return None
    return SiteKey.objects.filter(key=key, active=True).select_related("default_category").first()


_redis = None


def redis_client():
    """One Redis client per process (its connection pool is thread-safe) for the widget's throttles and CORS
    check: Django's cache builds a new client object for every call, which costs more than the call itself."""
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    return _redis


def origin_allowed_anywhere(origin: str) -> bool:
    """Whether any active site key allows ``origin`` (decides CORS preflights, which carry no site key): a Redis
    set rebuilt from the database when missing, kept ``ORIGINS_CACHE_SECONDS`` and dropped when a site key changes."""
    client = redis_client()
    found = client.sismember(ORIGINS_CACHE_KEY, origin)
    if found:
        return True
    if client.exists(ORIGINS_CACHE_KEY):
        return False
    origins = {o for row in SiteKey.objects.filter(active=True).values_list("allowed_origins", flat=True)
               for o in (row or []) if isinstance(o, str)}
    pipe = client.pipeline()
    pipe.delete(ORIGINS_CACHE_KEY)
    pipe.sadd(ORIGINS_CACHE_KEY, "", *origins)  # "" keeps the set present when no site key allows anything
    pipe.expire(ORIGINS_CACHE_KEY, ORIGINS_CACHE_SECONDS)
    pipe.execute()
    return origin in origins


# The conversation a token opens, with what the API and widget_state read, in one hand-written statement: every widget
# request starts here (docs/benchmarks.md: Django compiling the equivalent five-table select_related cost about 1 ms
# of CPU per request, an eighth of a post). Columns not read here are deferred, as with ``.only()``.
_CONVERSATION_COLUMNS = ("id", "site_key_id", "ticket_id", "customer_id", "subject", "category_id", "customer_name",
                         "customer_email", "handoff_requested_at", "created_at")
_SITE_KEY_COLUMNS = ("id", "key", "active", "allowed_origins", "secret")
_TICKET_COLUMNS = ("id", "status", "subject", "category_id")
_CATEGORY_COLUMNS = ("id", "phase", "auto_send", "business_hours")
_CONVERSATION_BY_TOKEN_SQL = f"""
SELECT {", ".join(f"c.{n}" for n in _CONVERSATION_COLUMNS)},
       {", ".join(f"s.{n}" for n in _SITE_KEY_COLUMNS)},
       {", ".join(f"t.{n}" for n in _TICKET_COLUMNS)},
       {", ".join(f"tc.{n}" for n in _CATEGORY_COLUMNS)},
       {", ".join(f"cc.{n}" for n in _CATEGORY_COLUMNS)}
FROM conversations_widgettoken w
JOIN conversations_widgetconversation c ON c.id = w.conversation_id
JOIN conversations_sitekey s ON s.id = c.site_key_id
LEFT JOIN conversations_ticket t ON t.id = c.ticket_id
LEFT JOIN conversations_category tc ON tc.id = t.category_id
LEFT JOIN conversations_category cc ON cc.id = c.category_id
WHERE w.token_hash = %s
"""


def conversation_by_token(token: str) -> WidgetConversation | None:
    """The conversation a token opens, with its site key, ticket and categories loaded (one query), or None."""
    if not token or len(token) > 128:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_CONVERSATION_BY_TOKEN_SQL, [token_hash(token)])
        row = cursor.fetchone()
    if row is None:
        return None
    parts: list[dict[str, Any]] = []
    start = 0
    for columns in (_CONVERSATION_COLUMNS, _SITE_KEY_COLUMNS, _TICKET_COLUMNS, _CATEGORY_COLUMNS, _CATEGORY_COLUMNS):
        parts.append(dict(zip(columns, row[start:start + len(columns)], strict=True)))
        start += len(columns)
    conversation = instance_from_row(WidgetConversation, parts[0])
    site_key = instance_from_row(SiteKey, parts[1])
    ticket = instance_from_row(Ticket, parts[2])
    ticket_category = instance_from_row(Category, parts[3])
    category = instance_from_row(Category, parts[4])
    assert conversation is not None and site_key is not None  # inner joins: both ids are present
    conversation.site_key = site_key
    if ticket is not None:
        ticket.category = ticket_category
        conversation.ticket = ticket
    conversation.category = category
    return conversation


def conversations_of(*, site_key: SiteKey, subject: str, limit: int = 50) -> list[WidgetConversation]:
    """A verified customer's conversations on one site, newest first."""
    return list(WidgetConversation.objects.filter(site_key=site_key, subject=subject).exclude(subject="")
                .select_related("ticket").order_by("-created_at", "-pk")[:limit])


def widget_messages(conversation: WidgetConversation, *, after: int = -1, limit: int = PAGE_SIZE) -> list[Message]:
    """Customer, agent and bot messages of the conversation after the cursor ``after`` (a turn index; -1 = from
    the start), oldest first, with the customer's rating of bot replies (``rating``: 1.0, 0.0 or None). Internal
    notes never leave the server."""
    if conversation.ticket_id is None:
        return []
    from drafts.models import ReplySignal

    rating = ReplySignal.objects.filter(draft__sent_message=OuterRef("pk"), kind=ReplySignal.Kind.RATING).values("value")[:1]
    return list(Message.objects.filter(ticket_id=conversation.ticket_id, role__in=WIDGET_ROLES, turn_index__gt=after)
                .annotate(rating=Subquery(rating)).order_by("turn_index")
                .only("id", "role", "body", "turn_index", "sent_at")[:limit])


def availability(category: Category | None, now: datetime) -> dict[str, Any]:
    """When a person will answer in this category: ``open_now``, ``opens_at`` (ISO 8601, None when open or never)
    and ``expected_reply_by`` (open: now + ``WIDGET_EXPECTED_REPLY_MINUTES``; closed: the next opening)."""
    from drafts.rollout import next_opening

    rule = (category.business_hours if category is not None else {}) or {}
    opens = next_opening(rule, now)
    open_now = opens == now
    expected = now + timedelta(minutes=settings.WIDGET_EXPECTED_REPLY_MINUTES) if open_now else opens
    return {"open_now": open_now, "opens_at": None if open_now or opens is None else opens.isoformat(),
            "expected_reply_by": expected.isoformat() if expected else None, "timezone": rule.get("tz", "UTC") if rule else None}


def _bot_may_answer(category: Category | None) -> bool:
    # no category yet: the classifier may still pick a customer-facing one, so the bot may be about to answer
    return category is None or (category.phase == Category.Phase.CUSTOMER_FACING and category.auto_send)


def widget_state(conversation: WidgetConversation, now: datetime) -> dict[str, Any]:
    """What the widget shows under the messages: ``idle`` (nothing asked yet, or answered), ``typing`` (the bot is
    drafting and may answer at once) or ``teammate`` (a person will answer, with :func:`availability`)."""
    ticket = conversation.ticket
    category = ticket.category if ticket is not None and ticket.category_id else conversation.category
    handoff = conversation.handoff_requested_at is not None
    if ticket is None:
        status = "teammate" if handoff else "idle"
    elif handoff or ticket.status == Ticket.Status.AWAITING_AGENT:
        status = "teammate"
    elif ticket.status in (Ticket.Status.NEW, Ticket.Status.DRAFTING, Ticket.Status.REOPENED):
        status = "typing" if _bot_may_answer(category) else "teammate"
    else:
        status = "idle"
    out: dict[str, Any] = {"status": status, "ticket_status": ticket.status if ticket is not None else None}
    if status == "teammate" or ticket is None:
        out["availability"] = availability(category, now)
    return out


def stream_probe(conversation: WidgetConversation) -> tuple | None:
    """What the event stream polls: one primary-key read of one table, a tuple that changes whenever something the
    widget shows changes (every service bumps the ticket's ``updated_at``; before the first message, the
    conversation row itself), or None when the conversation or its ticket is gone."""
    row: tuple | None
    if conversation.ticket_id is not None:
        row = Ticket.objects.filter(pk=conversation.ticket_id).values_list("pk", "updated_at", "status").first()
    else:
        row = (WidgetConversation.objects.filter(pk=conversation.pk)
               .values_list("ticket_id", "handoff_requested_at").first())
    return row
