"""Reads for the agent console: the inbox (filters, search, keyset pagination, counts) and the ticket page."""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.postgres.expressions import ArraySubquery
from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db.models import BooleanField, Count, F, Func, OuterRef, Q, QuerySet, Subquery
from django.db.models.fields.tuple_lookups import TupleGreaterThan
from django.http import Http404
from django.utils.dateparse import parse_datetime

from conversations.models import Category, Message, Ticket
from drafts.models import Dataset, Draft, Feedback
from sdrbot.access import is_agent

PAGE_SIZE = 25
OPEN_STATUSES = [Ticket.Status.NEW, Ticket.Status.DRAFTING, Ticket.Status.AWAITING_AGENT, Ticket.Status.REOPENED]


@dataclass(frozen=True)
class InboxFilters:
    status: str = "open"  # open | all | one Ticket.Status value
    category: str = ""  # slug
    channel: str = ""
    assignee: str = ""  # "" any | "me" | "none" | user id
    q: str = ""

    @classmethod
    def from_query(cls, params) -> InboxFilters:
        status = params.get("status", "open")
        if status not in {"open", "all", *Ticket.Status.values}:
            status = "open"
        channel = params.get("channel", "")
        return cls(status=status, category=params.get("category", "")[:100],
                   channel=channel if channel in Ticket.Channel.values else "",
                   assignee=params.get("assignee", "")[:20], q=params.get("q", "").strip()[:200])


def _encode_cursor(waiting_since: datetime | None, pk: int) -> str:
    raw = f"{waiting_since.isoformat() if waiting_since else ''}|{pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime | None, int] | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, pk = raw.split("|")
        return (parse_datetime(ts) if ts else None), int(pk)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


class _AnyOf(Func):
    """``lhs = ANY(ARRAY(subquery))``: the subquery runs once and the outer scan looks ids up, where ``EXISTS``
    per ticket made PostgreSQL probe the message index once per candidate row (docs/benchmarks.md, console)."""

    output_field = BooleanField()
    arity = 2

    def as_sql(self, compiler, connection, function=None, template=None, arg_joiner=None, **extra_context):
        lhs, lhs_params = compiler.compile(self.source_expressions[0])
        rhs, rhs_params = compiler.compile(self.source_expressions[1])
        return f"{lhs} = ANY({rhs})", (*lhs_params, *rhs_params)


def _filtered(filters: InboxFilters, user) -> QuerySet[Ticket]:
    qs = Ticket.objects.exclude(channel=Ticket.Channel.IMPORT)  # history is not work to do
    if filters.status == "open":
        qs = qs.filter(status__in=OPEN_STATUSES)
    elif filters.status != "all":
        qs = qs.filter(status=filters.status)
    if filters.category:
        qs = qs.filter(category__slug=filters.category) if filters.category != "none" else qs.filter(category__isnull=True)
    if filters.channel:
        qs = qs.filter(channel=filters.channel)
    if filters.assignee == "me":
        qs = qs.filter(assignee=user)
    elif filters.assignee == "none":
        qs = qs.filter(assignee__isnull=True)
    elif filters.assignee.isdigit():
        qs = qs.filter(assignee_id=int(filters.assignee))
    if filters.q:
        # full-text search (websearch syntax, English stemming) over the messages and the subject; both use GIN indexes
        query = SearchQuery(filters.q, search_type="websearch", config="english")
        in_messages = ArraySubquery(Message.objects.filter(search_vector=query).order_by().values("ticket_id"))
        in_subject = ArraySubquery(Ticket.objects.alias(sv=SearchVector("subject", config="english"))
                                   .filter(sv=query).order_by().values("pk"))
        qs = qs.filter(Q(_AnyOf(F("pk"), in_messages)) | Q(_AnyOf(F("pk"), in_subject)))
    return qs


def _after_cursor(base: QuerySet[Ticket], cursor: str, page_size: int) -> QuerySet[Ticket]:
    """The tickets after a keyset cursor in (``last_customer_message_at`` NULLS LAST, id) order. A row-value
    comparison ``(ts, id) > (cursor_ts, cursor_id)`` is one index range; tickets with no customer message yet sort
    last and come as a second, separately bounded branch."""
    after = _decode_cursor(cursor) if cursor else None
    if after is None:
        return base
    ts, pk = after
    if ts is None:
        return base.filter(last_customer_message_at__isnull=True, pk__gt=pk)
    ids = (base.filter(TupleGreaterThan((F("last_customer_message_at"), F("pk")), (ts, pk)))
           .order_by("last_customer_message_at", "pk").values("pk")[: page_size + 1]
           .union(base.filter(last_customer_message_at__isnull=True).order_by("pk").values("pk")[: page_size + 1],
                  all=True))
    return Ticket.objects.filter(pk__in=ids)


def _counts(filters: InboxFilters, user) -> tuple[dict[str, int], Sequence[Mapping[str, Any]]]:
    """Counts per status (ignoring the status filter) and per category (ignoring the category filter), so they guide
    filtering. Without a category filter one ``GROUP BY status, category`` gives both; with one, two indexed counts."""
    by_status: dict[str, int]
    if filters.category:
        by_status = dict(_filtered(replace(filters, status="all"), user)
                         .values_list("status").annotate(n=Count("pk")).order_by())
        by_category = list(_filtered(replace(filters, category=""), user)
                           .values("category__slug", "category__name").annotate(n=Count("pk"))
                           .order_by("-n", "category__name")[:40])
        return by_status, by_category
    grouped = list(_filtered(replace(filters, status="all"), user)
                   .values_list("status", "category_id").annotate(n=Count("pk")).order_by())
    wanted = set(OPEN_STATUSES) if filters.status == "open" else None if filters.status == "all" else {filters.status}
    by_status = {}
    per_category: dict[int | None, int] = defaultdict(int)
    for status, category_id, n in grouped:
        by_status[status] = by_status.get(status, 0) + n
        if wanted is None or status in wanted:
            per_category[category_id] += n
    names: dict[int | None, tuple[str | None, str | None]] = {
        pk: (slug, name) for pk, slug, name in
        Category.objects.filter(pk__in=[c for c in per_category if c]).values_list("pk", "slug", "name")}
    rows: list[dict[str, Any]] = [
        {"category__slug": names.get(c, (None, None))[0], "category__name": names.get(c, (None, None))[1], "n": n}
        for c, n in per_category.items()]
    rows.sort(key=lambda d: (-d["n"], d["category__name"] is None, d["category__name"] or ""))
    return by_status, rows[:40]


def inbox_page(filters: InboxFilters, user, cursor: str = "", page_size: int = PAGE_SIZE,
               with_counts: bool = True) -> dict[str, Any]:
    """One page of the inbox, longest-waiting first (``last_customer_message_at`` ascending, then id), with keyset
    pagination so every page costs the same, whatever its depth or size: the page is one query, and the counts
    (``with_counts``; the polled rows fragment does without) one or two more plus the category names."""
    base = _filtered(filters, user)
    latest_draft = Draft.objects.filter(ticket=OuterRef("pk")).exclude(status=Draft.Status.DISCARDED).order_by("-pk")
    last_customer = Message.objects.filter(ticket=OuterRef("pk"), role=Message.Role.CUSTOMER).order_by("-turn_index")
    rows = list(
        _after_cursor(base, cursor, page_size).select_related("customer", "category", "assignee")
        .annotate(draft_status=Subquery(latest_draft.values("status")[:1]),
                  draft_needs_human=Subquery(latest_draft.values("needs_human")[:1]),
                  snippet=Subquery(last_customer.values("body")[:1]))
        .order_by("last_customer_message_at", "pk")[: page_size + 1]
    )
    next_cursor = ""
    if len(rows) > page_size:
        rows = rows[:page_size]
        next_cursor = _encode_cursor(rows[-1].last_customer_message_at, rows[-1].pk)
    by_status, by_category = _counts(filters, user) if with_counts else ({}, [])
    return {"tickets": rows, "next_cursor": next_cursor, "by_status": by_status, "by_category": by_category}


def ticket_for_console(*, ticket_id: int, user) -> Ticket:
    """The access selector for a ticket in the console: staff only; 404 for missing and not-allowed alike."""
    if not is_agent(user):
        raise Http404
    try:
        return Ticket.objects.select_related("customer", "category", "assignee").get(pk=ticket_id)
    except Ticket.DoesNotExist as exc:
        raise Http404 from exc


def ticket_page(ticket: Ticket, user) -> dict[str, Any]:
    """Everything the ticket page shows, in a fixed number of queries."""
    messages = list(Message.objects.filter(ticket=ticket).select_related("author_user", "from_draft").order_by("turn_index"))
    draft = (Draft.objects.filter(ticket=ticket).exclude(status=Draft.Status.DISCARDED)
             .select_related("prompt_version", "predicted_category").order_by("-pk").first())
    feedback = Feedback.objects.filter(draft=draft, user=user).first() if draft else None
    staff = list(get_user_model().objects.filter(is_staff=True, is_active=True).order_by("username").only("id", "username"))
    return {"ticket": ticket, "messages": messages, "draft": draft, "feedback": feedback, "staff": staff,
            "reasons": Feedback.Reason.choices}


def sent_reply_for_console(*, message_id: int, user) -> Message:
    if not is_agent(user):
        raise Http404
    try:
        return Message.objects.select_related("ticket", "from_draft", "author_user").get(
            pk=message_id, role=Message.Role.AGENT)
    except Message.DoesNotExist as exc:
        raise Http404 from exc


def datasets_by_category() -> list[Dataset]:
    return list(Dataset.objects.select_related("category").annotate(n=Count("items")).order_by("category__name", "name"))


def categories() -> list[Category]:
    return list(Category.objects.order_by("name").only("slug", "name"))


# ---------------------------------------------------------------------------------------------- rollout dashboard

# trends: closed weeks come from the rollup (drafts.models.RolloutWeek), the current week is aggregated live
_TRENDS_SQL = """
SELECT category_id, week, median_edit_distance, light_share, auto_sent, thumbs_down_rate FROM drafts_rolloutweek
WHERE week >= date_trunc('week', now() - interval '12 weeks') AND week < date_trunc('week', now())
UNION ALL
SELECT d.category_id, date_trunc('week', now()),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY d.edit_distance) FILTER (WHERE NOT d.auto_sent),
       avg((d.edit_bucket IN ('unchanged', 'light'))::int) FILTER (WHERE NOT d.auto_sent AND d.edit_distance IS NOT NULL),
       count(*) FILTER (WHERE d.auto_sent), avg((NOT f.thumbs_up)::int)
FROM drafts_draft d
-- one index probe per draft of the current week, instead of aggregating all feedback ever given
LEFT JOIN LATERAL (SELECT bool_and(ff.thumbs_up) AS thumbs_up FROM drafts_feedback ff WHERE ff.draft_id = d.id) f ON true
WHERE d.status = 'sent' AND d.sent_at >= date_trunc('week', now()) AND d.category_id IS NOT NULL
GROUP BY d.category_id
ORDER BY 1, 2
"""
_SHADOW_SQL = """
SELECT category_id, count(*) FILTER (WHERE edit_distance IS NOT NULL),
       count(*) FILTER (WHERE edit_bucket IN ('unchanged', 'light'))
FROM drafts_draft
WHERE would_auto_send AND status = 'sent' AND NOT auto_sent AND category_id IS NOT NULL
GROUP BY category_id
"""
_REASONS_SQL = """
SELECT d.category_id, r.reason, count(*) FROM drafts_feedback f JOIN drafts_draft d ON d.id = f.draft_id,
     jsonb_array_elements_text(f.reasons) AS r(reason)
WHERE f.reasons <> '[]'::jsonb AND d.category_id IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2
"""
_FALLBACKS_SQL = """
SELECT category_id, date_trunc('week', created_at), count(*) FROM drafts_phasechange
WHERE automatic AND created_at >= now() - interval '12 weeks' GROUP BY 1, 2
"""


def rollout_dashboard() -> list[dict[str, Any]]:
    """Per category: phase, next gate (criteria with value, threshold, sample), shadow precision of the internal
    phase (drafts that would have been auto-sent and that agents sent unchanged or lightly edited), feedback reasons,
    weekly trends (median edit distance, share light, thumbs down, auto-sent volume, fallbacks) for 12 weeks —
    closed weeks from the RolloutWeek rollup, the current week live. Aggregates run in SQL: four statements for all
    categories, plus one per category for its gate."""
    from django.db import connection

    from drafts import rollout

    cats = list(Category.objects.order_by("name"))
    with connection.cursor() as cur:
        cur.execute(_TRENDS_SQL)
        trends: dict[int, list[tuple]] = {}
        for cid, wk, med, light, auto_n, down in cur.fetchall():
            trends.setdefault(cid, []).append((wk, med, light, auto_n, down))
        cur.execute(_SHADOW_SQL)
        shadow = {cid: (n, ok) for cid, n, ok in cur.fetchall()}
        cur.execute(_REASONS_SQL)
        reasons: dict[int, list[tuple[str, int]]] = {}
        for cid, reason, n in cur.fetchall():
            reasons.setdefault(cid, []).append((reason, n))
        cur.execute(_FALLBACKS_SQL)
        fallbacks: dict[int, dict] = {}
        for cid, wk, n in cur.fetchall():
            fallbacks.setdefault(cid, {})[wk] = n
    rows = []
    for c in cats:
        gate = rollout.gate_for(c)
        weeks = trends.get(c.pk, [])
        n_shadow, ok_shadow = shadow.get(c.pk, (0, 0))
        rows.append({
            "category": c, "gate": gate, "breaker": rollout.breaker_metrics(c) if c.phase == "customer_facing" else None,
            "shadow_n": n_shadow, "shadow_precision": (ok_shadow / n_shadow) if n_shadow else None,
            "reasons": reasons.get(c.pk, []),
            "series": {
                "median edit distance": [w[1] for w in weeks],
                "share unchanged/light": [w[2] for w in weeks],
                "thumbs down": [w[4] for w in weeks],
                "auto-sent": [w[3] for w in weeks],
                "fallbacks": [fallbacks.get(c.pk, {}).get(w[0], 0) for w in weeks],
            },
            "weeks": len(weeks),
        })
    return rows


def flagged_drafts(limit: int = 200) -> list[Draft]:
    """Drafts with monitor flags, newest first (sent ones are replies to follow up)."""
    return list(Draft.objects.exclude(monitor_flags=[]).select_related("ticket", "category", "sent_by")
                .order_by("-updated_at")[:limit])
