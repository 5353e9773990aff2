"""The sales console through HTTP: access by role, CSRF, escaping of customer text, pinned query counts."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from crm.models import Activity, CrmSettings, Lead, OutboxWrite
from crm.scoring import DEFAULT_RULES
from tests.crm.test_qualification import Chat

pytestmark = pytest.mark.django_db


@pytest.fixture
def lead(chat) -> Lead:
    chat.say("Can I get a demo? <script>alert('x')</script> We are 60 people.")
    chat.say("I'm Ana Lima, Head of Support at Acme")
    return chat.lead


@pytest.fixture
def chat(sdr_model, sales_kb):
    from tests.crm.conftest import configure

    configure("webhook", "http://127.0.0.1:9/webhook")
    return Chat()


def login(client: Client, user) -> Client:
    client.force_login(user)
    return client


def test_pages_are_staff_only_and_admin_pages_admin_only(client, lead, agent_user, admin_user, outsider_user) -> None:
    urls = ["/console/leads/", f"/console/leads/{lead.pk}/"]
    admin_urls = ["/console/leads/outbox/", "/console/leads/settings/"]
    for url in urls + admin_urls:
        r = client.get(url)
        assert r.status_code == 302 and "/console/login/" in r["Location"]
    login(client, outsider_user)
    for url in urls + admin_urls:
        assert client.get(url).status_code == 302
    login(client, agent_user)
    for url in urls:
        assert client.get(url).status_code == 200
    for url in admin_urls:
        assert client.get(url).status_code == 403
    assert client.get("/console/leads/999999/").status_code == 404
    login(client, admin_user)
    for url in urls + admin_urls:
        assert client.get(url).status_code == 200


def test_lead_page_shows_slots_turns_rules_briefing_and_escapes_customer_text(client, lead, agent_user) -> None:
    html = login(client, agent_user).get(f"/console/leads/{lead.pk}/").content.decode()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html and "<script>alert" not in html
    assert "Head of Support" in html and "Team of 50+" in html and "Talking to a decision maker" in html
    assert "Briefing" in html and "Recommended next step" in html
    assert "turn_note" in html and "pending" in html


def test_leads_list_query_count_is_pinned(client, lead, agent_user, django_assert_max_num_queries) -> None:
    login(client, agent_user)
    with django_assert_max_num_queries(8):
        r = client.get("/console/leads/?status=qualifying")
    assert r.status_code == 200 and "Ana Lima" in r.content.decode()


def test_admin_saves_settings_bad_rules_are_refused_and_csrf_is_enforced(admin_user) -> None:
    c = Client(enforce_csrf_checks=True)
    c.force_login(admin_user)
    page = c.get("/console/leads/settings/")
    token = page.cookies["csrftoken"].value
    assert c.post("/console/leads/settings/", {"adapter": "webhook"}).status_code == 403  # no CSRF token
    rules = json.loads(json.dumps(DEFAULT_RULES))
    rules["rules"][0]["op"] = "bigger"
    bad = c.post("/console/leads/settings/", {"csrfmiddlewaretoken": token, "adapter": "webhook",
                                              "endpoint_url": "https://crm.example.org/hook",
                                              "scoring_rules": json.dumps(rules)})
    assert bad.status_code == 400 and "rules[1]: op must be one of" in bad.content.decode()
    assert not CrmSettings.objects.filter(adapter="webhook").exists()
    rules["rules"][0]["op"] = "gte"
    rules["tiers"][1]["min_score"] = 30
    ok = c.post("/console/leads/settings/", {"csrfmiddlewaretoken": token, "adapter": "webhook",
                                             "endpoint_url": "https://crm.example.org/hook",
                                             "booking_link": "https://cal.example.org/x", "scoring_rules": json.dumps(rules)})
    assert ok.status_code == 302
    cfg = CrmSettings.objects.get(pk=1)
    assert cfg.adapter == "webhook" and cfg.scoring_rules["tiers"][1]["min_score"] == 30 and cfg.updated_by == admin_user
    assert Activity.objects.filter(kind="audit", actor=admin_user).exists()


def test_admin_redelivers_a_dead_write_agent_cannot(client, lead, agent_user, admin_user) -> None:
    row = OutboxWrite.objects.filter(lead=lead).first()
    OutboxWrite.objects.filter(pk=row.pk).update(status="failed", attempts=8, last_error="HTTP 503")
    login(client, agent_user)
    assert client.post(f"/console/leads/outbox/{row.pk}/redeliver/").status_code == 403
    login(client, admin_user)
    assert "HTTP 503" in client.get("/console/leads/outbox/").content.decode()
    r = client.post(f"/console/leads/outbox/{row.pk}/redeliver/")
    assert r.status_code == 302
    row.refresh_from_db()
    assert row.status == "pending" and row.max_attempts == 16


def test_htmx_fragment_refreshes_only_the_crm_writes_while_pending(client, lead, agent_user) -> None:
    login(client, agent_user)
    r = client.get(f"/console/leads/{lead.pk}/?fragment=writes", HTTP_HX_REQUEST="true")
    html = r.content.decode()
    assert r.status_code == 200 and html.lstrip().startswith('<div id="crm-writes"') and "<html" not in html
    assert 'hx-trigger="every 5s"' in html and "HX-Request" in r["Vary"]
    OutboxWrite.objects.filter(lead=lead).update(status="delivered")
    html = client.get(f"/console/leads/{lead.pk}/?fragment=writes", HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in html  # nothing pending: it stops polling
    assert "<html" in client.get(f"/console/leads/{lead.pk}/?fragment=writes").content.decode()  # plain GET: the page
