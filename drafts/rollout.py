"""Rollout gates per category: offline → internal → customer_facing, auto-send, implicit signals and the circuit
breaker that demotes a category whose bot replies go wrong.

Gate defaults (``DEFAULTS``; an admin overrides any of them per category in ``Category.gate_overrides``):

offline → internal, from the category's latest offline replay (``draft_replay --record``):
  ``replay_min_tickets`` 30 held-out tickets; ``replay_min_edit_similarity`` 0.30 (the "always send the category's
  most common reply" baseline scores 0.30–0.44 on the Bitext categories, docs/benchmarks.md); ``replay_min_grounding``
  0.80; ``replay_max_abstain_rate`` 0.25.
internal → customer_facing, over the ``window`` (200) most recent drafts sent by agents, at least ``window_min`` (50):
  share sent unchanged or light ≥ ``min_light_share`` 0.80 (its Wilson lower bound at 95 % is shown beside it);
  median normalised edit distance ≤ ``max_median_edit_distance`` 0.15; thumbs down ≤ ``max_thumbs_down_rate`` 0.05 of
  rated drafts; no "hallucination" reason (``max_hallucinations`` 0).
circuit breaker (customer_facing), over the ``breaker_window`` (50) most recent auto-sent replies, once there are
  ``breaker_min`` (20): human requests > ``max_human_request_rate`` 0.15, reopens > ``max_reopen_rate`` 0.20, or more
  than ``max_critical_flags`` 0 replies with a critical monitor flag → demote to internal, audit, banner, email.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from conversations.models import Category, Message, Ticket
from drafts.models import Draft, PhaseChange, ReplayRun, ReplySignal

log = logging.getLogger(__name__)

DEFAULTS: dict[str, float] = {
    "replay_min_tickets": 30, "replay_min_edit_similarity": 0.30, "replay_min_grounding": 0.80,
    "replay_max_abstain_rate": 0.25,
    "window": 200, "window_min": 50, "min_light_share": 0.80, "max_median_edit_distance": 0.15,
    "max_thumbs_down_rate": 0.05, "max_hallucinations": 0,
    "breaker_window": 50, "breaker_min": 20, "max_human_request_rate": 0.15, "max_reopen_rate": 0.20,
    "max_critical_flags": 0,
}
CRITICAL_MONITORS = ("risky_promise", "foreign_personal_data", "toxic")
REOPEN_WINDOW_DAYS = 7
WILSON_Z = 1.96  # 95 %
PHASES: list[str] = [Category.Phase.OFFLINE, Category.Phase.INTERNAL, Category.Phase.CUSTOMER_FACING]
_HUMAN_REQUEST = re.compile(
    r"\b(human|real person|a person|someone real|(?:an? )?agent|representative|operator|talk to (?:a )?(?:person|someone))\b",
    re.IGNORECASE)


class GateClosed(Exception):
    def __init__(self, gate: Gate) -> None:
        super().__init__(f"the {gate.name} gate is closed: " + "; ".join(
            f"{c.label} {c.value_text} (needs {c.op} {c.threshold})" for c in gate.criteria if not c.ok))
        self.gate = gate


def wilson_lower_bound(successes: int, n: int, z: float = WILSON_Z) -> float:
    """Lower end of the Wilson score interval for a binomial proportion (Wilson 1927): with few samples a high
    observed share is not yet evidence. 0 for n = 0."""
    if n == 0:
        return 0.0
    p = successes / n
    denom = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - margin) / denom


@dataclass
class Criterion:
    name: str
    label: str
    value: float | None
    op: str  # ">=" or "<="
    threshold: float
    n: int

    @property
    def ok(self) -> bool:
        if self.value is None:
            return False
        return self.value >= self.threshold if self.op == ">=" else self.value <= self.threshold

    @property
    def value_text(self) -> str:
        return "no data" if self.value is None else f"{self.value:.3f}".rstrip("0").rstrip(".") if isinstance(self.value, float) else str(self.value)


@dataclass
class Gate:
    name: str  # offline_to_internal | internal_to_customer_facing
    criteria: list[Criterion]
    sample: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return all(c.ok for c in self.criteria)

    def as_dict(self) -> dict[str, Any]:
        return {"gate": self.name, "open": self.open, "sample": self.sample, "extra": self.extra,
                "criteria": [{**asdict(c), "ok": c.ok} for c in self.criteria]}


def thresholds(category: Category) -> dict[str, float]:
    return {**DEFAULTS, **{k: float(v) for k, v in (category.gate_overrides or {}).items() if k in DEFAULTS}}


def gate_offline_to_internal(category: Category) -> Gate:
    t = thresholds(category)
    run = ReplayRun.objects.filter(category=category).first()
    n = run.n if run else 0
    return Gate("offline_to_internal", [
        Criterion("replay_min_tickets", "replayed tickets", n if run else None, ">=", t["replay_min_tickets"], n),
        Criterion("replay_min_edit_similarity", "mean edit similarity", run.edit_similarity if run else None, ">=",
                  t["replay_min_edit_similarity"], n),
        Criterion("replay_min_grounding", "grounding score", run.grounding if run else None, ">=", t["replay_min_grounding"], n),
        Criterion("replay_max_abstain_rate", "abstain rate", run.abstain_rate if run else None, "<=",
                  t["replay_max_abstain_rate"], n),
    ], n, {"replay_at": run.created_at.isoformat() if run else None,
           "baseline_similarity": run.baseline_similarity if run else None})


_WINDOW_SQL = """
WITH w AS (
    SELECT d.id, d.edit_distance, d.edit_bucket FROM drafts_draft d
    WHERE d.category_id = %s AND d.status = 'sent' AND NOT d.auto_sent AND d.edit_distance IS NOT NULL
    ORDER BY d.sent_at DESC, d.id DESC LIMIT %s
), fb AS (
    SELECT f.draft_id, bool_or(NOT f.thumbs_up) AS down, bool_or(f.reasons ? 'hallucination') AS hallucination
    FROM drafts_feedback f WHERE f.draft_id IN (SELECT id FROM w) GROUP BY f.draft_id
)
SELECT (SELECT count(*) FROM w),
       (SELECT count(*) FROM w WHERE edit_bucket IN ('unchanged', 'light')),
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY edit_distance) FROM w),
       (SELECT count(*) FROM fb), (SELECT count(*) FROM fb WHERE down), (SELECT count(*) FROM fb WHERE hallucination)
"""


def window_metrics(category: Category, window: int) -> dict[str, Any]:
    """The agent-sent drafts window of a category, aggregated in one SQL statement."""
    with connection.cursor() as cur:
        cur.execute(_WINDOW_SQL, [category.pk, int(window)])
        n, light, median, rated, down, halluc = cur.fetchone()
    return {"n": n, "light": light, "median_edit_distance": float(median) if median is not None else None,
            "rated": rated, "thumbs_down": down, "hallucinations": halluc}


def gate_internal_to_customer_facing(category: Category) -> Gate:
    t = thresholds(category)
    m = window_metrics(category, int(t["window"]))
    n = m["n"]
    share = m["light"] / n if n else None
    down_rate = m["thumbs_down"] / m["rated"] if m["rated"] else (0.0 if n else None)
    return Gate("internal_to_customer_facing", [
        Criterion("window_min", "sent drafts in the window", n, ">=", t["window_min"], n),
        Criterion("min_light_share", "share unchanged or light", share, ">=", t["min_light_share"], n),
        Criterion("max_median_edit_distance", "median edit distance", m["median_edit_distance"], "<=",
                  t["max_median_edit_distance"], n),
        Criterion("max_thumbs_down_rate", "thumbs down of rated", down_rate, "<=", t["max_thumbs_down_rate"], m["rated"]),
        Criterion("max_hallucinations", "hallucination reasons", m["hallucinations"] if n else None, "<=",
                  t["max_hallucinations"], m["rated"]),
    ], n, {"wilson_lower_bound": round(wilson_lower_bound(m["light"], n), 4) if n else None, **m})


def gate_for(category: Category) -> Gate | None:
    """The gate the category must pass next (None at customer_facing)."""
    if category.phase == Category.Phase.OFFLINE:
        return gate_offline_to_internal(category)
    if category.phase == Category.Phase.INTERNAL:
        return gate_internal_to_customer_facing(category)
    return None


def gates_evaluate_all() -> dict[int, dict[str, Any]]:
    """Every category's next gate (one SQL statement per category). Returns {category id: gate dict}."""
    out = {}
    for category in Category.objects.all():
        gate = gate_for(category)
        if gate is not None:
            out[category.pk] = gate.as_dict()
    return out


# ------------------------------------------------------------------------------------------------ phase changes


@transaction.atomic
def category_phase_set(*, category_id: int, actor, to_phase: str, reason: str, override: bool = False,
                       automatic: bool = False) -> PhaseChange:
    """Move a category one step. Promotion (up one step) needs an admin ``actor`` and an open gate, unless
    ``override`` with a written ``reason``; demotion (down, any steps) needs a reason. Every change is an audit row
    with the gate metrics of that moment. Raises :class:`GateClosed`, ``PermissionError`` or ``ValueError``."""
    category = Category.objects.select_for_update().get(pk=category_id)
    if to_phase not in PHASES:
        raise ValueError(f"to_phase: must be one of {[str(p) for p in PHASES]}")
    current, target = PHASES.index(category.phase), PHASES.index(to_phase)
    if target == current:
        raise ValueError(f"the category is already {category.phase}")
    reason = (reason or "").strip()
    gate = gate_for(category)
    snapshot = gate.as_dict() if gate else {"breaker": breaker_metrics(category)}
    if target > current:
        from sdrbot.access import is_admin

        if target != current + 1:
            raise ValueError("promote one phase at a time")
        if actor is None or not is_admin(actor):
            raise PermissionError("only an admin can promote a category")
        if gate is not None and not gate.open:
            if not override:
                raise GateClosed(gate)
            if len(reason) < 10:
                raise ValueError("reason: an override needs a written reason (10 characters or more)")
    elif not reason:
        raise ValueError("reason: a demotion needs a reason")
    change = PhaseChange.objects.create(
        category=category, from_phase=category.phase, to_phase=to_phase, actor=actor,
        reason=reason or f"gate open: {gate.name if gate else ''}", override=bool(override and gate and not gate.open),
        automatic=automatic, metrics=snapshot)
    category.phase = to_phase
    category.save(update_fields=["phase"])
    return change


# ------------------------------------------------------------------------------------------------------ auto-send


def within_business_hours(rule: dict[str, Any], now: datetime) -> bool:
    """``{"tz", "days" (0 = Monday), "start", "end"}`` (24 h "HH:MM"); an empty rule is always open."""
    if not rule:
        return True
    try:
        local = now.astimezone(ZoneInfo(rule.get("tz", "UTC")))
    except ZoneInfoNotFoundError:
        return False
    if local.weekday() not in rule.get("days", [0, 1, 2, 3, 4, 5, 6]):
        return False
    hhmm = local.strftime("%H:%M")
    return rule.get("start", "00:00") <= hhmm < rule.get("end", "24:00")


def next_opening(rule: dict[str, Any], now: datetime) -> datetime | None:
    """When the business hours ``rule`` (as in :func:`within_business_hours`) next open: ``now`` when open now, the
    next start within 8 days otherwise, None when the rule never opens (or names an unknown time zone)."""
    if within_business_hours(rule, now):
        return now
    try:
        zone = ZoneInfo(rule.get("tz", "UTC"))
    except ZoneInfoNotFoundError:
        return None
    if rule.get("start", "00:00") >= rule.get("end", "24:00"):
        return None  # an empty window never opens (within_business_hours has no overnight windows)
    local = now.astimezone(zone)
    start_h, start_m = (int(x) for x in rule.get("start", "00:00").split(":"))
    for offset in range(0, 8):
        day = (local + timedelta(days=offset)).date()
        if day.weekday() not in rule.get("days", [0, 1, 2, 3, 4, 5, 6]):
            continue
        opens = datetime(day.year, day.month, day.day, start_h, start_m, tzinfo=zone)
        if opens > local:
            return opens
    return None


def autosend_blockers(*, category: Category | None, confidence: float | None, needs_human: bool,
                      monitor_flags: list[dict], now: datetime, shadow: bool = False) -> list[str]:
    """Why the bot must not send this draft (empty list: it may). ``shadow`` ignores phase and the auto-send
    switch, answering "would it have been sent?" for the internal phase's shadow precision."""
    reasons = []
    if category is None:
        return ["no category"]
    if not shadow:
        if category.phase != Category.Phase.CUSTOMER_FACING:
            reasons.append(f"category is {category.phase}")
        if not category.auto_send:
            reasons.append("auto-send is off")
    if needs_human:
        reasons.append("the draft asks for a human")
    if confidence is None or confidence < category.auto_send_min_confidence:
        reasons.append(f"confidence {confidence if confidence is not None else '—'} < {category.auto_send_min_confidence}")
    blocking = [f["monitor"] for f in monitor_flags if f.get("blocking")]
    if blocking:
        reasons.append("monitors fired: " + ", ".join(sorted(set(blocking))))
    if not within_business_hours(category.business_hours, now):
        reasons.append("outside business hours")
    return reasons


def draft_autosend(*, draft_id: int) -> Message | None:
    """The bot sends a ready draft: exactly once per draft — the claim is a conditional update of the draft row,
    and the message, the draft and the ticket change in one transaction. Returns the bot message, or None when the
    draft was already sent (or is no longer ready)."""
    from conversations.services import ticket_lock
    from sdrbot.tracing import score_record

    with transaction.atomic():
        draft = Draft.objects.select_related("trace").get(pk=draft_id)
        ticket = ticket_lock(ticket_id=draft.ticket_id, expected_version=None)
        if ticket.metadata.get("human_requested_at"):
            return None  # the customer asked for a person (widget): the draft waits for an agent
        now = timezone.now()
        claimed = Draft.objects.filter(pk=draft_id, status=Draft.Status.READY, auto_sent=False).update(
            status=Draft.Status.SENT, auto_sent=True, sent_at=now, updated_at=now)
        if claimed != 1:
            return None
        turn = Message.objects.filter(ticket=ticket).order_by("-turn_index").values_list("turn_index", flat=True).first()
        message = Message.objects.create(ticket=ticket, role=Message.Role.BOT, body=draft.body, origin="draft",
                                         turn_index=0 if turn is None else turn + 1, sent_at=now)
        Draft.objects.filter(pk=draft_id).update(sent_message=message)
        ticket.status = Ticket.Status.AUTO_REPLIED
        ticket.version += 1
        ticket.updated_at = now
        ticket.save(update_fields=["status", "version", "updated_at"])
        if draft.trace is not None:
            score_record(trace=draft.trace, name="auto_sent", value=1.0)
    return message


# ------------------------------------------------------------------------------------------ signals and breaker


# The latest bot reply of a ticket and the customer message it answered: read on every customer message (the widget's
# posting path), so written by hand rather than compiled from a two-join select_related each time.
_LAST_BOT_REPLY_SQL = """
SELECT d.id, d.category_id, d.sent_at, m.body
FROM drafts_draft d JOIN conversations_message m ON m.id = d.message_id
WHERE d.ticket_id = %s AND d.auto_sent AND d.sent_at IS NOT NULL AND d.category_id IS NOT NULL
ORDER BY d.sent_at DESC LIMIT 1
"""


def signals_record(*, message: Message, previous_status: str) -> list[ReplySignal]:
    """Implicit signals carried by a new customer message about the bot reply it follows (customer-facing
    categories only): asks for a human; reopens within ``REOPEN_WINDOW_DAYS``; repeats the question it answered
    (rapidfuzz token-set ratio ≥ 85). One signal of each kind per bot reply."""
    from django.db import connection
    from rapidfuzz import fuzz

    with connection.cursor() as cursor:
        cursor.execute(_LAST_BOT_REPLY_SQL, [message.ticket_id])
        bot = cursor.fetchone()
    if bot is None:
        return []
    draft_id, category_id, sent_at, answered = bot
    out = []
    kinds = []
    if _HUMAN_REQUEST.search(message.body):
        kinds.append(ReplySignal.Kind.HUMAN_REQUEST)
    if previous_status in (Ticket.Status.AUTO_REPLIED, Ticket.Status.RESOLVED) and \
            message.sent_at - sent_at <= timedelta(days=REOPEN_WINDOW_DAYS):
        kinds.append(ReplySignal.Kind.REOPEN)
    if fuzz.token_set_ratio(message.body.lower(), answered.lower()) >= 85:
        kinds.append(ReplySignal.Kind.REPEAT)
    for kind in kinds:
        signal, _ = ReplySignal.objects.get_or_create(draft_id=draft_id, kind=kind,
                                                      defaults={"category_id": category_id, "message": message})
        out.append(signal)
    return out


def rating_record(*, draft: Draft, thumbs_up: bool, message_id: int | None = None) -> ReplySignal:
    """The customer's thumbs on a bot reply: one ``rating`` signal per draft (value 1 up, 0 down), changeable."""
    signal, _ = ReplySignal.objects.update_or_create(
        draft=draft, kind=ReplySignal.Kind.RATING,
        defaults={"value": 1.0 if thumbs_up else 0.0, "category_id": draft.category_id, "message_id": message_id,
                  "created_at": timezone.now()})
    return signal


def human_request_record(*, ticket_id: int) -> ReplySignal | None:
    """The customer pressed "Talk to a person": a ``human_request`` signal on the ticket's latest bot reply (None
    when the bot has not answered in this ticket). At most one per bot reply."""
    bot = Draft.objects.filter(ticket_id=ticket_id, auto_sent=True).order_by("-sent_at").first()
    if bot is None:
        return None
    signal, _ = ReplySignal.objects.get_or_create(draft=bot, kind=ReplySignal.Kind.HUMAN_REQUEST,
                                                  defaults={"category_id": bot.category_id})
    return signal


_BREAKER_SQL = """
WITH w AS (
    SELECT d.id, d.monitor_flags FROM drafts_draft d
    WHERE d.category_id = %s AND d.auto_sent ORDER BY d.sent_at DESC, d.id DESC LIMIT %s
)
SELECT (SELECT count(*) FROM w),
       (SELECT count(DISTINCT s.draft_id) FROM drafts_replysignal s WHERE s.draft_id IN (SELECT id FROM w) AND s.kind = 'human_request'),
       (SELECT count(DISTINCT s.draft_id) FROM drafts_replysignal s WHERE s.draft_id IN (SELECT id FROM w) AND s.kind = 'reopen'),
       (SELECT count(*) FROM w WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(w.monitor_flags) f
                                             WHERE f->>'monitor' = ANY(%s)))
"""


def breaker_metrics(category: Category) -> dict[str, Any]:
    t = thresholds(category)
    with connection.cursor() as cur:
        cur.execute(_BREAKER_SQL, [category.pk, int(t["breaker_window"]), list(CRITICAL_MONITORS)])
        n, human, reopen, critical = cur.fetchone()
    return {"n": n, "human_request_rate": human / n if n else None, "reopen_rate": reopen / n if n else None,
            "critical_flags": critical}


def breaker_check(category: Category) -> list[str]:
    """The thresholds a customer-facing category has passed (empty: healthy, or not enough auto-sent replies)."""
    t = thresholds(category)
    m = breaker_metrics(category)
    if m["n"] < t["breaker_min"]:
        return []
    tripped = []
    if m["human_request_rate"] > t["max_human_request_rate"]:
        tripped.append(f"human requests {m['human_request_rate']:.0%} > {t['max_human_request_rate']:.0%}")
    if m["reopen_rate"] > t["max_reopen_rate"]:
        tripped.append(f"reopens {m['reopen_rate']:.0%} > {t['max_reopen_rate']:.0%}")
    if m["critical_flags"] > t["max_critical_flags"]:
        tripped.append(f"{m['critical_flags']} replies with critical monitor flags")
    return tripped


def breaker_run() -> list[PhaseChange]:
    """Demote every customer-facing category whose breaker tripped; audit it and email the admins."""
    changes = []
    for category in Category.objects.filter(phase=Category.Phase.CUSTOMER_FACING):
        tripped = breaker_check(category)
        if not tripped:
            continue
        change = category_phase_set(category_id=category.pk, actor=None, to_phase=Category.Phase.INTERNAL,
                                    reason="automatic fallback: " + "; ".join(tripped), automatic=True)
        changes.append(change)
        _email_admins(category, change)
    return changes


def _email_admins(category: Category, change: PhaseChange) -> None:
    from django.contrib.auth import get_user_model

    recipients = list(get_user_model().objects.filter(is_superuser=True, is_active=True).exclude(email="")
                      .values_list("email", flat=True))
    if not recipients:
        return
    send_mail(
        subject=f"[sdrbot] {category.name} fell back to internal",
        message=(f"The category {category.name} was moved from customer-facing to internal at "
                 f"{change.created_at:%Y-%m-%d %H:%M} UTC.\n\nWhy: {change.reason}\n\nThe bot no longer answers in this "
                 "category; agents receive its drafts. Review it on the rollout dashboard."),
        from_email=None, recipient_list=recipients, fail_silently=True,
    )


def recent_fallbacks(days: int = 7) -> list[PhaseChange]:
    """Automatic demotions of the last ``days`` days, for the admins' banner."""
    since = timezone.now() - timedelta(days=days)
    return list(PhaseChange.objects.filter(automatic=True, created_at__gte=since).select_related("category")[:10])


_ROLLUP_SQL = """
INSERT INTO drafts_rolloutweek (category_id, week, median_edit_distance, light_share, auto_sent, thumbs_down_rate, computed_at)
SELECT d.category_id, date_trunc('week', d.sent_at) AS wk,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY d.edit_distance) FILTER (WHERE NOT d.auto_sent),
       avg((d.edit_bucket IN ('unchanged', 'light'))::int) FILTER (WHERE NOT d.auto_sent AND d.edit_distance IS NOT NULL),
       count(*) FILTER (WHERE d.auto_sent), avg((NOT f.thumbs_up)::int), now()
FROM drafts_draft d
LEFT JOIN (SELECT draft_id, bool_and(thumbs_up) AS thumbs_up FROM drafts_feedback GROUP BY draft_id) f ON f.draft_id = d.id
WHERE d.status = 'sent' AND d.category_id IS NOT NULL
  AND d.sent_at >= date_trunc('week', now()) - make_interval(weeks => %s) AND d.sent_at < date_trunc('week', now())
GROUP BY 1, 2
ON CONFLICT (category_id, week) DO UPDATE SET median_edit_distance = EXCLUDED.median_edit_distance,
    light_share = EXCLUDED.light_share, auto_sent = EXCLUDED.auto_sent, thumbs_down_rate = EXCLUDED.thumbs_down_rate,
    computed_at = EXCLUDED.computed_at
"""


def rollout_weeks_refresh(*, weeks: int = 2) -> int:
    """Recompute the dashboard's weekly rollup for the last ``weeks`` closed weeks (late feedback changes a week's
    thumbs-down rate, so recent weeks are recomputed nightly; ``weeks=12`` rebuilds the whole chart). Returns the
    rows written. One SQL statement."""
    with connection.cursor() as cur:
        cur.execute(_ROLLUP_SQL, [int(weeks)])
        return cur.rowcount
