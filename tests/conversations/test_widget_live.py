"""Widget streams and long polls are woken by PostgreSQL NOTIFY (conversations.live): a change reaches an open
stream at once although polling is set to 30 s, and only widget tickets and conversations notify."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import connection

from conversations.live import CHANNEL, listen_connect
from conversations.models import Ticket
from conversations.services import message_receive, site_key_create, widget_conversation_start, widget_message_post
from tests.conversations.test_widget_api import ORIGIN, call, start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def site():
    return site_key_create(name="shop", allowed_origins=[ORIGIN])


def test_only_widget_tickets_and_conversations_notify(site) -> None:
    with listen_connect() as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        email = message_receive(body="hello", channel="email", customer_email="c@example.com")
        conversation, _token = widget_conversation_start(site_key=site)
        m = widget_message_post(conversation=conversation, body="hi from the widget")
        Ticket.objects.filter(pk=email.ticket_id).update(status="resolved")
        got = {n.payload for n in listener.notifies(timeout=1.0)}
    assert f"t:{m.ticket_id}" in got and f"c:{conversation.pk}" in got
    assert f"t:{email.ticket_id}" not in got


def test_stream_gets_a_new_message_at_once_without_polling(client, site, settings) -> None:
    settings.WIDGET_STREAM_POLL_SECONDS = 30.0  # only a notification can deliver within the test's deadline
    settings.WIDGET_STREAM_SECONDS = 20.0
    data = start(client, site, body={"message": "first question"})
    st = call(client, "POST", "conversation/stream-token", site, token=data["token"]).json()["stream_token"]
    r = call(client, "GET", f"conversation/stream?stream_token={st}&after=0", None, HTTP_ACCEPT="text/event-stream")
    events: list[tuple[float, str]] = []
    seen_state = threading.Event()

    def read() -> None:
        try:
            for chunk in r.streaming_content:
                for block in chunk.decode().split("\n\n"):
                    if block.startswith(("event:", "id:")):
                        events.append((time.monotonic(), block))
                        if "event: state" in block:
                            seen_state.set()
                        if "second question" in block:
                            return
        finally:
            r.close()
            connection.close()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert seen_state.wait(10)
    time.sleep(0.3)  # the stream is waiting now
    sent = time.monotonic()
    post = call(client, "POST", "conversation/messages", site, token=data["token"], body={"body": "second question"})
    assert post.status_code == 201
    reader.join(10)
    arrived = [t for t, block in events if "second question" in block]
    assert arrived and arrived[0] - sent < 2.0, events
    message = json.loads(next(b for _t, b in events if "second question" in b).split("data: ", 1)[1])
    assert message["role"] == "customer" and message["cursor"] == 1


def _long_poll_while_posting(client, site, body: str) -> tuple[list[str], float]:
    """Start a conversation, post ``body`` to its ticket from another thread 0.5 s later, and long-poll (as the widget
    does, asking again after a state-change return) until a new message arrives: (bodies, seconds taken)."""
    data = start(client, site, body={"message": "hi"})
    ticket = Ticket.objects.get(widget__pk=data["conversation_id"])

    def later() -> None:
        time.sleep(0.5)
        try:
            message_receive(body=body, channel="widget", ticket=Ticket(pk=ticket.pk))
        finally:
            connection.close()

    poster = threading.Thread(target=later, daemon=True)
    poster.start()
    t0 = time.monotonic()
    bodies: list[str] = []
    while not bodies and time.monotonic() - t0 < 10:
        # a long poll also returns on a state change (a worker drafting the first message): ask again
        r = call(client, "GET", "conversation/messages?after=0&wait=20", site, token=data["token"])
        bodies = [m["body"] for m in r.json()["messages"]]
    poster.join(10)
    return bodies, time.monotonic() - t0


def test_long_poll_returns_when_a_message_arrives(client, site, settings) -> None:
    settings.WIDGET_STREAM_POLL_SECONDS = 30.0
    bodies, seconds = _long_poll_while_posting(client, site, "a second line")
    assert seconds < 3.0
    assert bodies == ["a second line"]


def test_without_the_listener_long_polls_fall_back_to_polling(client, site, settings) -> None:
    from conversations.live import hub

    hub.stop()
    settings.WIDGET_NOTIFY_LISTEN = False  # PostgreSQL reached only through a transaction-mode pooler
    settings.WIDGET_STREAM_POLL_SECONDS = 0.1
    bodies, seconds = _long_poll_while_posting(client, site, "polled, not notified")
    assert seconds < 3.0 and not hub.listening.is_set()
    assert bodies == ["polled, not notified"]
