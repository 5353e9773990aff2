"""The rollout dashboard, phase changes, history, flagged replies and the fallback banner through HTTP."""

from __future__ import annotations

import pytest
from django.urls import reverse

from conversations.models import Category
from drafts.models import Draft, PhaseChange, ReplayRun
from tests.drafts.test_console import DRAFT, make_ticket
from tests.drafts.test_rollout import sent_drafts

pytestmark = pytest.mark.django_db


def test_dashboard_is_for_admins(client, agent_user, admin_user, django_assert_max_num_queries) -> None:
    for i in range(3):
        c = Category.objects.create(slug=f"c{i}", name=f"Cat {i}", phase=["offline", "internal", "customer_facing"][i])
        sent_drafts(c, [0.0, 0.1, 0.3])
    assert client.get(reverse("console:rollout")).status_code == 302
    client.force_login(agent_user)
    assert client.get(reverse("console:rollout")).status_code == 403
    client.force_login(admin_user)
    with django_assert_max_num_queries(20):
        resp = client.get(reverse("console:rollout"))
    html = resp.content.decode()
    assert resp.status_code == 200 and "offline_to_internal" in html and "internal_to_customer_facing" in html
    assert "Wilson lower bound" in html and "<svg" in html and "share unchanged/light" in html


def test_promotion_through_the_dashboard(client, admin_user) -> None:
    cat = Category.objects.create(slug="orders", name="Orders")
    client.force_login(admin_user)
    url = reverse("console:rollout-phase", args=[cat.pk])
    resp = client.post(url, {"to_phase": "internal", "reason": ""}, follow=True)
    assert "Not promoted" in resp.content.decode() and Category.objects.get(pk=cat.pk).phase == "offline"
    ReplayRun.objects.create(category=cat, n=40, edit_similarity=0.41, grounding=1.0, abstain_rate=0.05)
    resp = client.post(url, {"to_phase": "internal", "reason": ""}, follow=True)
    assert "Orders: offline → internal" in resp.content.decode()
    change = PhaseChange.objects.get()
    assert change.actor == admin_user and not change.override and change.metrics["open"] is True
    resp = client.post(url, {"to_phase": "customer_facing", "reason": "Marketing launch needs it now", "override": "on"},
                       follow=True)
    assert Category.objects.get(pk=cat.pk).phase == "customer_facing"
    history = client.get(reverse("console:rollout-history", args=[cat.pk])).content.decode()
    assert "Marketing launch needs it now" in history and "override" in history


def test_flagged_replies_and_monitoring_of_sent_text(client, agent_user, kb) -> None:
    t = make_ticket()
    client.force_login(agent_user)
    client.post(reverse("console:send", args=[t.pk]), {"body": DRAFT + " We will refund you twice, guaranteed.",
                                                       "version": 1, "draft_id": t.drafts.get().pk})
    d = Draft.objects.get(ticket=t)
    assert d.status == "sent" and {f["monitor"] for f in d.monitor_flags} == {"risky_promise"}
    assert all(not f["blocking"] for f in d.monitor_flags)  # the human decided: flagged, not blocked
    assert d.trace.scores.filter(name="monitor:risky_promise").exists()
    html = client.get(reverse("console:flagged")).content.decode()
    assert "Password help" in html and "risky_promise" in html


def test_fallback_banner_for_admins_only(client, agent_user, admin_user) -> None:
    cat = Category.objects.create(slug="refund", name="Refund", phase="internal")
    PhaseChange.objects.create(category=cat, from_phase="customer_facing", to_phase="internal", automatic=True,
                               reason="automatic fallback: human requests 40% > 15%")
    client.force_login(admin_user)
    assert "Refund fell back to internal" in client.get(reverse("console:inbox")).content.decode()
    client.force_login(agent_user)
    assert "fell back" not in client.get(reverse("console:inbox")).content.decode()


def test_trends_read_closed_weeks_from_the_rollup_and_the_current_week_live(admin_user) -> None:
    import datetime as dt

    from django.utils import timezone

    from drafts import rollout
    from drafts.models import RolloutWeek
    from drafts.selectors import rollout_dashboard

    cat = Category.objects.create(slug="orders", name="Orders", phase="internal")
    old = sent_drafts(cat, [0.0, 0.2, 0.6])
    Draft.objects.filter(pk__in=[d.pk for d in old]).update(sent_at=timezone.now() - dt.timedelta(days=15))
    sent_drafts(cat, [0.1])  # this week (sent yesterday or today)
    Draft.objects.filter(category=cat, sent_at__gt=timezone.now() - dt.timedelta(days=3)).update(sent_at=timezone.now())
    row = rollout_dashboard()[0]
    assert row["series"]["median edit distance"] == [0.1]  # only the live week before the rollup exists
    assert rollout.rollout_weeks_refresh(weeks=12) == 1
    week = RolloutWeek.objects.get()
    assert week.median_edit_distance == pytest.approx(0.2) and week.light_share == pytest.approx(1 / 3)
    row = rollout_dashboard()[0]
    assert row["series"]["median edit distance"] == [pytest.approx(0.2), 0.1]
    assert rollout.rollout_weeks_refresh(weeks=12) == 1 and RolloutWeek.objects.count() == 1  # idempotent
