"""``message_receive`` on an existing ticket (every widget post after the first, written as hand-made SQL): turns
stay unique and gap-free under concurrent posts, the ticket moves as ARCHITECTURE.md says, a channel's redelivery
is stored once, and what the function returns matches what it stored."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from conversations.models import Message, Ticket
from conversations.services import agent_message_create, message_receive
from drafts.models import Draft
from tests.conftest import wait_for


@pytest.mark.django_db(transaction=True)
def test_concurrent_posts_to_one_ticket_get_consecutive_turns() -> None:
    first = message_receive(body="first", channel="widget", customer_email="c@example.com")
    ticket_id, posts, errors = first.ticket_id, 12, []
    barrier = threading.Barrier(posts)

    def post(i: int) -> None:
        try:
            barrier.wait(10)
            message_receive(body=f"follow-up {i}", channel="widget", ticket=Ticket(pk=ticket_id))
        except Exception as exc:  # noqa: BLE001 — reported below with the thread's number
            errors.append(f"{i}: {exc!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(posts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    turns = list(Message.objects.filter(ticket_id=ticket_id).order_by("turn_index").values_list("turn_index", flat=True))
    assert turns == list(range(posts + 1))
    # one draft per message (a Celery worker started by an earlier test may already be drafting them)
    assert sorted(Draft.objects.filter(ticket_id=ticket_id).values_list("message__turn_index", flat=True)) == turns
    latest = Message.objects.filter(ticket_id=ticket_id).order_by("-sent_at").first()
    assert Ticket.objects.get(pk=ticket_id).last_customer_message_at == latest.sent_at  # the latest, not the last writer's
    # A session-wide Celery worker may be drafting these: leave it nothing new to claim and let it finish what it has,
    # so the database flush after this test does not deadlock with a draft being stored.
    Draft.objects.filter(ticket_id=ticket_id, status=Draft.Status.PENDING, claimed_at__isnull=True).update(
        status=Draft.Status.DISCARDED)
    wait_for(lambda: not Draft.objects.filter(ticket_id=ticket_id, status=Draft.Status.PENDING).exists(), 60)


@pytest.mark.django_db
def test_follow_up_reopens_a_resolved_ticket_and_returns_what_it_stored(agent_user) -> None:
    first = message_receive(body="Where is my order?", channel="email", customer_email="c@example.com")
    ticket = Ticket.objects.get(pk=first.ticket_id)
    agent_message_create(ticket=ticket, actor=agent_user, body="It ships tomorrow.", origin="no_draft")
    assert Ticket.objects.get(pk=ticket.pk).resolved_at is not None
    sent_at = timezone.now() - timedelta(minutes=3)

    m = message_receive(body="It did not arrive.", channel="email", ticket=Ticket(pk=ticket.pk), sent_at=sent_at)

    stored = Message.objects.get(pk=m.pk)
    assert (stored.turn_index, stored.role, stored.body, stored.sent_at) == (2, "customer", "It did not arrive.", sent_at)
    assert (m.turn_index, m.role, m.body, m.sent_at, m.ticket_id) == (2, "customer", "It did not arrive.", sent_at, ticket.pk)
    row = Ticket.objects.get(pk=ticket.pk)
    # a message dated before the ticket's latest one (a slow channel) does not move the inbox's ordering back
    assert (row.status, row.resolved_at, row.last_customer_message_at) == (Ticket.Status.REOPENED, None, first.sent_at)
    assert (m.ticket.status, m.ticket.resolved_at, m.ticket.last_customer_message_at) == (
        Ticket.Status.REOPENED, None, first.sent_at)
    assert m.ticket.subject == "Where is my order?"  # not read by the post: loaded when asked for
    assert Draft.objects.get(message=m).status == Draft.Status.PENDING

    m2 = message_receive(body="Hello?", channel="email", ticket=Ticket(pk=ticket.pk))
    assert m2.turn_index == 3 and Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.REOPENED


@pytest.mark.django_db
def test_redelivered_message_is_stored_once() -> None:
    first = message_receive(body="hi", channel="email", customer_email="c@example.com")
    a = message_receive(body="again", channel="email", ticket=Ticket(pk=first.ticket_id), external_id="mail-2")
    b = message_receive(body="again", channel="email", ticket=Ticket(pk=first.ticket_id), external_id="mail-2")
    assert a.pk == b.pk
    assert Message.objects.filter(ticket_id=first.ticket_id).count() == 2
    assert Draft.objects.filter(ticket_id=first.ticket_id).count() == 2


@pytest.mark.django_db
def test_follow_up_on_a_missing_ticket_raises() -> None:
    with pytest.raises(Ticket.DoesNotExist):
        message_receive(body="hi", channel="email", ticket=Ticket(pk=987654))
