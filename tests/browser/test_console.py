"""The agent console in real Chromium: the whole workflow of an agent, with hostile customer text on screen."""

from __future__ import annotations

import pytest
from django.utils import timezone

from conversations.models import Category, Customer, Message, Ticket
from drafts.models import DatasetItem, Draft, Feedback
from sdrbot.models import Trace
from tests.browser.conftest import login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

XSS = "<script>alert('s')</script><img src=x onerror=alert('i')> Where is my refund for order 1234567?"
DRAFT = "Thanks for reaching out. Refunds reach your card within five business days of the return. [1]"


@pytest.fixture
def tickets():
    cat = Category.objects.create(slug="refund", name="Refund")
    customer = Customer.objects.create(name="<b>Mallory</b>", email="m@example.com")
    made = []
    for i, (subject, body, status) in enumerate([("Refund still missing", XSS, "pending"),
                                                 ("Change my address", "Please change my delivery address.", "ready")]):
        at = timezone.now() - timezone.timedelta(minutes=30 - i)
        t = Ticket.objects.create(subject=subject, channel="api", status="awaiting_agent", customer=customer,
                                  category=cat, last_customer_message_at=at)
        m = Message.objects.create(ticket=t, role="customer", body=body, turn_index=0, sent_at=at)
        trace = Trace.objects.create(name="draft", thread_id=str(t.thread_id), turn_id="0", ticket_id=t.pk)
        Draft.objects.create(ticket=t, message=m, status=status, body=DRAFT if status == "ready" else "",
                             generator="offline", strategy="compose", confidence=0.72, grounding_score=1.0, trace=trace,
                             citations=[{"n": 1, "chunk_id": 1, "title": "Refund policy <i>v2</i>", "source": "docs",
                                         "snippet": "Refunds reach your card within five business days.",
                                         "external_id": "refunds"}])
        made.append(t)
    return made


def test_agent_workflow(page, agent_user, tickets) -> None:
    refund, _address = tickets
    page.goto("/console/")
    assert "/console/login/" in page.url
    login(page, "agent-t", "pw-agent-123")
    page.wait_for_url("**/console/")
    rows = page.locator("tr.ticket-row")
    assert rows.count() == 2 and "Refund still missing" in rows.first.inner_text()  # longest waiting first
    screenshot(page, "console-inbox")

    page.get_by_role("link", name="Refund still missing").click()
    page.wait_for_url(f"**/console/tickets/{refund.pk}/")
    thread = page.locator(".thread").inner_text()
    assert "<script>alert('s')</script><img src=x onerror=alert('i')>" in thread  # text, not markup
    assert "<b>Mallory</b>" in thread and page.locator(".thread b, .thread img").count() == 0
    assert page.get_by_text("Drafting a reply…").is_visible()

    # the draft arrives while the agent is typing a note: the panel updates, the note text stays
    page.get_by_label("Internal note").fill("Checking the payment provider first")
    Draft.objects.filter(ticket=refund).update(status="ready", body=DRAFT)
    reply = page.get_by_label("Reply", exact=True)
    reply.wait_for(timeout=10_000)
    assert page.get_by_label("Internal note").input_value() == "Checking the payment provider first"
    assert reply.input_value() == DRAFT
    assert "Offline responder" in page.locator("#draft-panel").inner_text()
    assert "Refund policy <i>v2</i>" in page.locator(".citations").inner_text()
    screenshot(page, "console-ticket-draft")

    reply.fill(DRAFT.replace(" [1]", " We have just checked: it was sent yesterday."))
    reply.press("Control+Enter")
    page.get_by_text("Reply sent.").wait_for()
    assert Message.objects.filter(ticket=refund, role="agent").count() == 1
    page.get_by_role("link", name="See the diff").click()
    page.wait_for_url("**/diff/")
    assert page.locator("ins").count() >= 1 and page.locator("del").count() >= 1
    assert "edit" in page.locator("main").inner_text()
    screenshot(page, "console-diff")
    page.go_back()

    page.get_by_role("checkbox", name="Hallucination").check()
    page.get_by_label("Comment").fill("Invented the date")
    page.get_by_role("button", name="Thumbs down").click()
    page.get_by_text("Feedback saved").wait_for()
    fb = Feedback.objects.get(draft__ticket=refund)
    assert not fb.thumbs_up and fb.reasons == ["hallucination"] and fb.comment == "Invented the date"

    page.get_by_role("button", name="Add to dataset").click()
    page.get_by_text("Added to dataset").wait_for()
    assert DatasetItem.objects.get().ticket == refund
    assert page.dialogs == []
    screenshot(page, "console-ticket-sent")


def test_second_agent_sees_the_conflict(page, agent_user, admin_user, tickets) -> None:
    _refund, address = tickets
    page.goto(f"/console/tickets/{address.pk}/")
    login(page, "admin-t", "pw-admin-123")
    page.wait_for_url(f"**/console/tickets/{address.pk}/")
    # meanwhile another agent answers
    from drafts.services import draft_send

    draft_send(draft_id=address.drafts.get().pk, actor=agent_user, body="Done, your address is updated.",
               expected_version=address.version)
    page.get_by_label("Reply", exact=True).fill("My competing answer")
    page.get_by_role("button", name="Send").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "answered meanwhile" in alert.inner_text() and "Done, your address is updated." in alert.inner_text()
    assert page.get_by_label("Reply", exact=True).input_value() == "My competing answer"
    assert Message.objects.filter(ticket=address, role="agent").count() == 1
    screenshot(page, "console-conflict")
