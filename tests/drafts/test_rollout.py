"""Rollout: gate math on exact fixtures, promotion rules and audit, exactly-once auto-send, signals, the breaker."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.utils import timezone

from conversations.models import Category, Customer, Message, Ticket
from conversations.services import message_receive
from drafts import rollout
from drafts.models import Draft, Feedback, PhaseChange, ReplayRun, ReplySignal

pytestmark = pytest.mark.django_db


def sent_drafts(category: Category, distances: list[float], *, auto: bool = False) -> list[Draft]:
    """Drafts sent by agents (or the bot) with the given edit distances, newest last."""
    from drafts.edits import bucket_of

    customer = Customer.objects.create(name="c")
    out = []
    base = timezone.now() - dt.timedelta(days=1)
    for i, d in enumerate(distances):
        t = Ticket.objects.create(customer=customer, category=category, status="resolved")
        m = Message.objects.create(ticket=t, role="customer", body=f"q{i}", turn_index=0)
        out.append(Draft.objects.create(ticket=t, message=m, category=category, status="sent", body="b", auto_sent=auto,
                                        edit_distance=None if auto else d, edit_bucket="" if auto else bucket_of(d),
                                        sent_at=base + dt.timedelta(seconds=i)))
    return out


def test_wilson_lower_bound_exact() -> None:
    assert rollout.wilson_lower_bound(0, 0) == 0.0
    assert rollout.wilson_lower_bound(40, 50) == pytest.approx(0.6696, abs=1e-4)
    assert rollout.wilson_lower_bound(50, 50) == pytest.approx(0.9287, abs=1e-4)


def test_internal_gate_window_math(agent_user) -> None:
    cat = Category.objects.create(slug="orders", name="Orders", phase="internal")
    # 50 drafts: 40 light or unchanged (0, 0.1, and exactly 0.15 = the light bound), 10 heavy
    drafts = sent_drafts(cat, [0.0] * 20 + [0.1] * 10 + [0.15] * 10 + [0.4] * 10)
    gate = rollout.gate_internal_to_customer_facing(cat)
    by = {c.name: c for c in gate.criteria}
    assert gate.sample == 50 and by["window_min"].ok  # exactly the minimum sample counts
    assert by["min_light_share"].value == 0.8 and by["min_light_share"].ok  # a tie at the threshold passes
    assert gate.extra["wilson_lower_bound"] == pytest.approx(0.6696, abs=1e-4)
    assert by["max_median_edit_distance"].value == pytest.approx(0.1) and by["max_median_edit_distance"].ok
    # feedback: 1 thumbs down of 20 rated = 5 % (a tie passes); a hallucination reason closes the gate
    for d in drafts[:19]:
        Feedback.objects.create(draft=d, user=agent_user, thumbs_up=True)
    Feedback.objects.create(draft=drafts[19], user=agent_user, thumbs_up=False, reasons=["tone_mismatch"])
    gate = rollout.gate_internal_to_customer_facing(cat)
    assert {c.name: c.value for c in gate.criteria}["max_thumbs_down_rate"] == 0.05 and gate.open
    Feedback.objects.filter(draft=drafts[19]).update(reasons=["hallucination"])
    gate = rollout.gate_internal_to_customer_facing(cat)
    assert not gate.open and [c.name for c in gate.criteria if not c.ok] == ["max_hallucinations"]


def test_window_keeps_only_the_most_recent_and_needs_the_minimum() -> None:
    cat = Category.objects.create(slug="refund", name="Refund", phase="internal", gate_overrides={"window": 10, "window_min": 10})
    sent_drafts(cat, [0.9] * 30 + [0.0] * 10)  # old bad drafts fall out of a 10-draft window
    gate = rollout.gate_internal_to_customer_facing(cat)
    assert gate.sample == 10 and gate.open
    small = Category.objects.create(slug="new", name="New", phase="internal")
    sent_drafts(small, [0.0] * 49)
    gate = rollout.gate_internal_to_customer_facing(small)
    assert not gate.open and [c.name for c in gate.criteria if not c.ok] == ["window_min"]


def test_offline_gate_reads_the_latest_replay() -> None:
    cat = Category.objects.create(slug="invoice", name="Invoice")
    assert not rollout.gate_offline_to_internal(cat).open  # no replay yet
    ReplayRun.objects.create(category=cat, n=53, edit_similarity=0.43, grounding=1.0, abstain_rate=0.02)
    assert rollout.gate_offline_to_internal(cat).open
    ReplayRun.objects.create(category=cat, n=29, edit_similarity=0.43, grounding=1.0, abstain_rate=0.02)
    gate = rollout.gate_offline_to_internal(cat)
    assert [c.name for c in gate.criteria if not c.ok] == ["replay_min_tickets"]


def test_promotion_refused_while_closed_unless_overridden_and_audited(admin_user, agent_user) -> None:
    cat = Category.objects.create(slug="orders", name="Orders")
    with pytest.raises(rollout.GateClosed, match="offline_to_internal gate is closed"):
        rollout.category_phase_set(category_id=cat.pk, actor=admin_user, to_phase="internal", reason="")
    with pytest.raises(PermissionError):
        rollout.category_phase_set(category_id=cat.pk, actor=agent_user, to_phase="internal", reason="x" * 20, override=True)
    with pytest.raises(ValueError, match="written reason"):
        rollout.category_phase_set(category_id=cat.pk, actor=admin_user, to_phase="internal", reason="ok", override=True)
    change = rollout.category_phase_set(category_id=cat.pk, actor=admin_user, to_phase="internal",
                                        reason="Pilot with the night shift before the replay", override=True)
    cat.refresh_from_db()
    assert cat.phase == "internal" and change.override and change.actor == admin_user
    assert change.metrics["gate"] == "offline_to_internal" and change.metrics["open"] is False
    with pytest.raises(ValueError, match="a demotion needs a reason"):
        rollout.category_phase_set(category_id=cat.pk, actor=admin_user, to_phase="offline", reason="")
    rollout.category_phase_set(category_id=cat.pk, actor=admin_user, to_phase="offline", reason="back to the lab")
    with pytest.raises(ValueError, match="one phase at a time"):
        rollout.category_phase_set(category_id=cat.pk, actor=admin_user, to_phase="customer_facing", reason="x" * 20,
                                   override=True)
    assert list(PhaseChange.objects.filter(category=cat).values_list("to_phase", flat=True)) == ["offline", "internal"]


def test_business_hours() -> None:
    rule = {"tz": "Europe/Paris", "days": [0, 1, 2, 3, 4], "start": "09:00", "end": "18:00"}
    monday_10_paris = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.timezone.utc)
    assert rollout.within_business_hours(rule, monday_10_paris)
    assert not rollout.within_business_hours(rule, monday_10_paris.replace(hour=17, minute=30))  # 18:30 Paris
    assert not rollout.within_business_hours(rule, monday_10_paris - dt.timedelta(days=1))  # Sunday
    assert rollout.within_business_hours({}, monday_10_paris)


@pytest.fixture
def customer_facing(kb):
    cat = Category.objects.get(slug="account")
    cat.phase, cat.auto_send, cat.auto_send_min_confidence = "customer_facing", True, 0.5
    cat.save()
    return cat


def test_auto_send_happens_exactly_once(customer_facing) -> None:
    from drafts.services import draft_generate

    m = message_receive(body="how do I delete my account", channel="widget", category=customer_facing)
    draft_id = m.drafts.get().pk
    d = draft_generate(draft_id=draft_id)
    assert d.status == "sent" and d.auto_sent and d.would_auto_send
    bot = Message.objects.get(ticket=m.ticket, role="bot")
    assert bot.body == d.body and d.sent_message == bot
    assert Ticket.objects.get(pk=m.ticket_id).status == "auto_replied"
    # a redelivered task and a direct second send both do nothing
    assert draft_generate(draft_id=draft_id) is None
    assert rollout.draft_autosend(draft_id=draft_id) is None
    assert Message.objects.filter(ticket=m.ticket, role="bot").count() == 1
    assert d.trace.spans.filter(name="auto_send").count() == 1


def test_no_auto_send_when_blocked(customer_facing, settings) -> None:
    from drafts.services import draft_generate

    customer_facing.business_hours = {"tz": "UTC", "days": [], "start": "00:00", "end": "00:01"}
    customer_facing.save()
    m = message_receive(body="how do I delete my account", channel="widget", category=customer_facing)
    d = draft_generate(draft_id=m.drafts.get().pk)
    assert d.status == "ready" and not d.auto_sent and not Message.objects.filter(role="bot").exists()
    assert "outside business hours" in d.trace.spans.get(name="store").metadata["auto_send"]
    assert Ticket.objects.get(pk=m.ticket_id).status == "awaiting_agent"


def test_internal_phase_records_the_shadow_decision(kb) -> None:
    from drafts.services import draft_generate

    cat = Category.objects.get(slug="account")
    cat.phase, cat.auto_send_min_confidence = "internal", 0.5
    cat.save()
    d = draft_generate(draft_id=message_receive(body="how do I delete my account", channel="api",
                                                category=cat).drafts.get().pk)
    assert d.status == "ready" and d.would_auto_send is True and not d.auto_sent


def test_signals_and_the_breaker_demote_with_audit_and_email(customer_facing, admin_user, settings) -> None:
    from drafts.services import draft_generate

    admin_user.email = "boss@example.com"
    admin_user.save()
    customer_facing.gate_overrides = {"breaker_min": 4, "breaker_window": 10}
    customer_facing.save()
    for i in range(4):
        m = message_receive(body="how do I delete my account", channel="widget", category=customer_facing,
                            customer_external_id=f"w{i}")
        draft_generate(draft_id=m.drafts.get().pk)
        if i < 2:  # two of four customers ask for a person: 50 % > 15 %
            message_receive(body="that did not help, I want to talk to a real person", channel="widget", ticket=m.ticket)
    kinds = set(ReplySignal.objects.values_list("kind", flat=True))
    assert {"human_request", "reopen"} <= kinds
    assert rollout.breaker_check(customer_facing) == ["human requests 50% > 15%", "reopens 50% > 20%"]
    changes = rollout.breaker_run()
    customer_facing.refresh_from_db()
    assert customer_facing.phase == "internal" and len(changes) == 1
    change = changes[0]
    assert change.automatic and change.actor is None and "human requests 50%" in change.reason
    assert change.metrics["breaker"]["n"] == 4
    assert len(mail.outbox) == 1 and "fell back to internal" in mail.outbox[0].subject
    assert mail.outbox[0].to == ["boss@example.com"]
    assert rollout.recent_fallbacks()[0] == change
