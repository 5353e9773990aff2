"""The public widget API through HTTP: the customer's flow, and every refusal (origin, site key, identity token,
another customer's conversation, payload size, rate limits) with its status and never a 5xx."""

from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest

from conversations.identity import identity_sign
from conversations.models import Category, Message, Ticket, WidgetConversation, WidgetToken
from conversations.services import site_key_create, token_hash
from drafts import rollout
from drafts.models import Draft, ReplySignal

pytestmark = pytest.mark.django_db
API = "/api/widget/v1/"
ORIGIN = "https://shop.example"


@pytest.fixture
def site():
    return site_key_create(name="shop", allowed_origins=[ORIGIN, "http://localhost:8123"])


def call(client, method: str, path: str, site=None, *, token: str | None = None, body=None, origin: str | None = ORIGIN,
         identity: str | None = None, raw: bytes | None = None, **extra):
    headers = {}
    if site is not None:
        headers["X-Site-Key"] = site if isinstance(site, str) else site.key
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if origin:
        headers["Origin"] = origin
    if identity:
        headers["X-Identity-Token"] = identity
    fn = getattr(client, method.lower())
    if method in ("GET", "OPTIONS"):
        return fn(API + path, headers=headers, **extra)
    data = raw if raw is not None else json.dumps(body if body is not None else {})
    return fn(API + path, data=data, content_type="application/json", headers=headers, **extra)


def start(client, site, **kw):
    r = call(client, "POST", "conversations", site, **kw)
    assert r.status_code == 201, r.content
    return r.json()


def bot_reply(ticket: Ticket, body: str = "You can delete your account under Settings.") -> Message:
    """The bot answers the ticket's latest customer message through the real auto-send service."""
    draft = Draft.objects.filter(ticket=ticket).order_by("-pk").first()
    Draft.objects.filter(pk=draft.pk).update(status=Draft.Status.READY, body=body, category=ticket.category,
                                             confidence=0.95)
    message = rollout.draft_autosend(draft_id=draft.pk)
    assert message is not None
    return message


def test_start_post_and_read_since_the_cursor(client, site) -> None:
    data = start(client, site, body={"message": "Where is my parcel?", "name": "Ada"})
    assert len(data["token"]) >= 43 and data["verified"] is False
    assert [m["role"] for m in data["messages"]] == ["customer"] and data["messages"][0]["body"] == "Where is my parcel?"
    assert data["state"]["status"] == "typing"  # no category yet: the bot may answer
    conversation = WidgetConversation.objects.get(pk=data["conversation_id"])
    ticket = conversation.ticket
    assert ticket.channel == "widget" and ticket.customer.name == "Ada" and ticket.status == "new"
    assert Draft.objects.get(ticket=ticket).status == "pending"
    # the token is stored only as its hash
    assert not WidgetToken.objects.filter(token_hash=data["token"]).exists()
    assert WidgetToken.objects.filter(token_hash=token_hash(data["token"]), conversation=conversation).exists()

    r = call(client, "POST", "conversation/messages", site, token=data["token"], body={"body": "It was order 42", "client_id": "c1"})
    assert r.status_code == 201 and [m["body"] for m in r.json()["messages"]] == ["It was order 42"]
    again = call(client, "POST", "conversation/messages", site, token=data["token"], body={"body": "It was order 42", "client_id": "c1"})
    assert again.status_code == 201 and Message.objects.filter(ticket=ticket).count() == 2  # a retried post is stored once
    r = call(client, "GET", f"conversation/messages?after={data['cursor']}", site, token=data["token"])
    assert [m["body"] for m in r.json()["messages"]] == ["It was order 42"] and r.json()["cursor"] == 1
    r = call(client, "GET", "conversation", site, token=data["token"])
    assert [m["cursor"] for m in r.json()["messages"]] == [0, 1]


def test_internal_notes_never_reach_the_widget_and_agent_replies_do(client, site, agent_user) -> None:
    from conversations.services import note_add, reply_send

    data = start(client, site, body={"message": "hello"})
    ticket = Ticket.objects.get(widget__pk=data["conversation_id"])
    note_add(ticket_id=ticket.pk, actor=agent_user, body="VIP customer, internal only")
    reply_send(ticket_id=ticket.pk, actor=agent_user, body="Hi, how can I help?", expected_version=None)
    r = call(client, "GET", "conversation/messages?after=0", site, token=data["token"])
    assert [(m["role"], m["body"]) for m in r.json()["messages"]] == [("agent", "Hi, how can I help?")]
    assert "VIP" not in r.content.decode()


def test_wrong_origin_is_refused_and_gets_no_cors_headers(client, site) -> None:
    r = call(client, "POST", "conversations", site, body={"message": "hi"}, origin="https://evil.example")
    assert r.status_code == 403 and "evil.example" in r.json()["detail"] and "access-control-allow-origin" not in r.headers
    assert not WidgetConversation.objects.exists()
    ok = call(client, "OPTIONS", "conversations", origin=ORIGIN, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
              HTTP_ACCESS_CONTROL_REQUEST_HEADERS="x-site-key,content-type")
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
    assert "x-site-key" in ok.headers["access-control-allow-headers"]
    bad = call(client, "OPTIONS", "conversations", origin="https://evil.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")
    assert "access-control-allow-origin" not in bad.headers
    # an origin allowed for another site key is still refused for this one
    site_key_create(name="other", allowed_origins=["https://other.example"])
    r = call(client, "POST", "conversations", site, body={}, origin="https://other.example")
    assert r.status_code == 403


def test_bad_site_key_and_bad_tokens_are_401(client, site) -> None:
    assert call(client, "POST", "conversations", None, body={}).status_code == 401
    r = call(client, "POST", "conversations", "pk_nope", body={})
    assert r.status_code == 401 and "X-Site-Key" in r.json()["detail"] and r.headers["WWW-Authenticate"]
    site.active = False
    site.save(update_fields=["active"])
    assert call(client, "POST", "conversations", site, body={}).status_code == 401
    site.active = True
    site.save(update_fields=["active"])
    data = start(client, site)
    other = site_key_create(name="other", allowed_origins=[ORIGIN])
    # a token works only with its own site key
    assert call(client, "GET", "conversation", other, token=data["token"]).status_code == 401
    assert call(client, "GET", "conversation", site, token="x" * 43).status_code == 401
    assert call(client, "GET", "conversation", site, token=None).status_code == 401
    r = call(client, "GET", "conversation", site, HTTP_AUTHORIZATION="Basic abc")
    assert r.status_code == 401


def test_identity_tokens_forged_expired_tampered_or_missing_claims_are_refused(client, site) -> None:
    good = identity_sign(secret=site.secret, subject="user-7", email="ada@example.com")
    forged = identity_sign(secret="not-the-secret-of-this-site-but-32-bytes-long", subject="user-7")
    expired = jwt.encode({"sub": "user-7", "exp": int(time.time()) - 3600}, site.secret, algorithm="HS256")
    no_exp = jwt.encode({"sub": "user-7"}, site.secret, algorithm="HS256")
    head, payload, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "user-8"  # someone else
    tampered = ".".join([head, base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode(), sig])
    none_alg = jwt.encode({"sub": "user-7", "exp": int(time.time()) + 60}, key=None, algorithm="none")
    for token, why in [(forged, "signature"), (expired, "expired"), (no_exp, "'exp' claim is required"),
                       (tampered, "signature"), (none_alg, "invalid"), ("garbage", "invalid")]:
        r = call(client, "POST", "conversations", site, body={}, identity=token)
        assert r.status_code == 401 and why in r.json()["detail"], (why, r.content)
        r = call(client, "GET", "conversations", site, identity=token)
        assert r.status_code == 401
    assert not WidgetConversation.objects.exists()
    assert call(client, "GET", "conversations", site).status_code == 401  # earlier conversations need an identity


def test_only_a_verified_identity_lists_and_resumes_its_own_conversations(client, site) -> None:
    me = identity_sign(secret=site.secret, subject="user-7", email="ada@example.com", name="Ada")
    someone = identity_sign(secret=site.secret, subject="user-8")
    mine = start(client, site, body={"message": "first question"}, identity=me)
    assert mine["verified"] is True
    theirs = start(client, site, body={"message": "their question"}, identity=someone)
    anonymous = start(client, site, body={"message": "anonymous"})
    conversation = WidgetConversation.objects.get(pk=mine["conversation_id"])
    assert conversation.customer.email == "ada@example.com" and conversation.customer.external_id == f"site-{site.pk}:user-7"

    r = call(client, "GET", "conversations", site, identity=me)
    assert [c["conversation_id"] for c in r.json()] == [mine["conversation_id"]]
    assert r.json()[0]["subject"] == "first question"
    r = call(client, "POST", f"conversations/{mine['conversation_id']}/resume", site, identity=me)
    assert r.status_code == 200 and r.json()["token"] != mine["token"]
    assert [m["body"] for m in r.json()["messages"]] == ["first question"]
    # the new token works, and so does the first one (another device)
    assert call(client, "GET", "conversation", site, token=r.json()["token"]).status_code == 200
    assert call(client, "GET", "conversation", site, token=mine["token"]).status_code == 200
    for cid in (theirs["conversation_id"], anonymous["conversation_id"], 10**9, 10**30):
        r = call(client, "POST", f"conversations/{cid}/resume", site, identity=me)
        assert r.status_code == 404
    # the same identity on another site sees nothing of this site
    other = site_key_create(name="other", allowed_origins=[ORIGIN])
    r = call(client, "GET", "conversations", other, identity=identity_sign(secret=other.secret, subject="user-7"))
    assert r.status_code == 200 and r.json() == []


def test_anonymous_visitor_is_never_matched_to_a_customer_by_email(client, site) -> None:
    from conversations.models import Customer

    victim = Customer.objects.create(name="Victim", email="victim@example.com")
    data = start(client, site, body={"message": "what is on my account?", "email": "victim@example.com"})
    ticket = Ticket.objects.get(widget__pk=data["conversation_id"])
    assert ticket.customer_id != victim.pk and ticket.customer.email == "victim@example.com"


def test_one_customer_cannot_read_or_rate_another_customers_conversation(client, site) -> None:
    a = start(client, site, body={"message": "A's secret question"})
    b = start(client, site, body={"message": "B's secret question"})
    bot = bot_reply(Ticket.objects.get(widget__pk=b["conversation_id"]))
    r = call(client, "GET", "conversation/messages?after=-1", site, token=a["token"])
    assert "B's" not in r.content.decode() and [m["body"] for m in r.json()["messages"]] == ["A's secret question"]
    r = call(client, "POST", "conversation/ratings", site, token=a["token"], body={"message_id": bot.pk, "value": "down"})
    assert r.status_code == 404 and not ReplySignal.objects.exists()
    # a stream token names one conversation and cannot be re-pointed
    st = call(client, "POST", "conversation/stream-token", site, token=a["token"]).json()["stream_token"]
    from django.core.signing import b64_decode, b64_encode

    payload, rest = st.split(":", 1)
    assert json.loads(b64_decode(payload.encode())) == {"c": a["conversation_id"]}
    forged = b64_encode(json.dumps({"c": b["conversation_id"]}, separators=(",", ":")).encode()).decode() + ":" + rest
    assert call(client, "GET", f"conversation/stream?stream_token={forged}", None).status_code == 401


def test_payload_limits_and_bad_bodies_are_4xx_with_the_field(client, site, settings) -> None:
    data = start(client, site)
    tok = data["token"]
    r = call(client, "POST", "conversation/messages", site, token=tok, body={"body": "x" * 20_000})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    r = call(client, "POST", "conversation/messages", site, token=tok, body={"body": "x" * 4001})
    assert r.status_code == 400 and "4000" in r.json()["body"][0]
    for body, field in [({"body": "   "}, "body"), ({}, "body"), ({"body": "a\x00b"}, "body"), ({"body": ["x"]}, "body"),
                        ({"body": "hi", "client_id": "x" * 101}, "client_id")]:
        r = call(client, "POST", "conversation/messages", site, token=tok, body=body)
        assert r.status_code == 400 and field in r.json(), (body, r.content)
    r = call(client, "POST", "conversation/messages", site, token=tok, raw=b"{not json")
    assert r.status_code == 400 and "JSON" in r.json()["detail"]
    r = call(client, "POST", "conversations", site, body={"category": "no-such-category"})
    assert r.status_code == 400 and "unknown category" in r.json()["category"][0]
    r = call(client, "GET", "conversation/messages?after=abc", site, token=tok)
    assert r.status_code == 400 and "after" in r.json()
    r = call(client, "POST", "conversation/ratings", site, token=tok, body={"message_id": 1, "value": "meh"})
    assert r.status_code == 400 and "value" in r.json()
    assert Message.objects.count() == 0


def test_rate_limits_answer_429_with_retry_after(client, site, settings) -> None:
    settings.WIDGET_THROTTLE_CONVERSATION = "3/min"
    tok = start(client, site)["token"]
    codes = [call(client, "POST", "conversation/messages", site, token=tok, body={"body": f"m{i}"}).status_code for i in range(4)]
    assert codes == [201, 201, 201, 429]
    r = call(client, "POST", "conversation/messages", site, token=tok, body={"body": "again"})
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
    # another conversation of the same site is not slowed down by this one
    other = start(client, site)["token"]
    assert call(client, "POST", "conversation/messages", site, token=other, body={"body": "hi"}).status_code == 201

    settings.WIDGET_THROTTLE_IP = "2/min"
    ip = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    codes = [call(client, "POST", "conversations", site, body={}, REMOTE_ADDR=ip).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    settings.WIDGET_THROTTLE_IP = "100000/min"
    settings.WIDGET_THROTTLE_SITE = "1/min"
    busy = site_key_create(name="busy", allowed_origins=[ORIGIN])
    codes = [call(client, "POST", "conversations", busy, body={}).status_code for _ in range(2)]
    assert codes == [201, 429]


@pytest.fixture
def customer_facing():
    return Category.objects.create(slug="account", name="Account", phase="customer_facing", auto_send=True,
                                   auto_send_min_confidence=0.5)


def test_rating_a_bot_reply_records_one_changeable_signal(client, site, customer_facing) -> None:
    data = start(client, site, body={"message": "how do I delete my account", "category": "account"})
    ticket = Ticket.objects.get(widget__pk=data["conversation_id"])
    assert ticket.category == customer_facing and ticket.category_source == "channel"
    bot = bot_reply(ticket)
    r = call(client, "GET", "conversation/messages?after=0", site, token=data["token"])
    assert r.json()["messages"][0]["role"] == "bot" and r.json()["messages"][0]["rating"] is None
    assert r.json()["state"]["status"] == "idle"
    for value, expected in (("up", 1.0), ("down", 0.0)):
        r = call(client, "POST", "conversation/ratings", site, token=data["token"], body={"message_id": bot.pk, "value": value})
        assert r.status_code == 200
        signal = ReplySignal.objects.get(kind="rating")
        assert signal.value == expected and signal.draft.sent_message_id == bot.pk and signal.category == customer_facing
    r = call(client, "GET", "conversation", site, token=data["token"])
    assert r.json()["messages"][1]["rating"] == "down"
    customer_message = r.json()["messages"][0]["id"]
    r = call(client, "POST", "conversation/ratings", site, token=data["token"], body={"message_id": customer_message, "value": "up"})
    assert r.status_code == 404  # only bot replies are rated


def test_talk_to_a_person_queues_the_ticket_records_the_signal_and_stops_the_bot(client, site, customer_facing) -> None:
    data = start(client, site, body={"message": "how do I delete my account", "category": "account"})
    ticket = Ticket.objects.get(widget__pk=data["conversation_id"])
    bot_reply(ticket)
    r = call(client, "POST", "conversation/handoff", site, token=data["token"])
    assert r.status_code == 200 and r.json()["state"]["status"] == "teammate"
    assert r.json()["state"]["availability"]["open_now"] is True
    ticket.refresh_from_db()
    assert ticket.status == "awaiting_agent" and ticket.metadata["human_requested_at"]
    assert ReplySignal.objects.get(kind="human_request").draft.ticket_id == ticket.pk
    assert Message.objects.get(ticket=ticket, role="internal_note").body.startswith("The customer asked")
    assert call(client, "POST", "conversation/handoff", site, token=data["token"]).status_code == 200  # idempotent
    assert ReplySignal.objects.filter(kind="human_request").count() == 1
    # the next customer message is drafted, but the bot no longer sends by itself
    call(client, "POST", "conversation/messages", site, token=data["token"], body={"body": "still there?"})
    draft = Draft.objects.filter(ticket=ticket).order_by("-pk").first()
    Draft.objects.filter(pk=draft.pk).update(status="ready", body="auto", confidence=0.99, category=customer_facing)
    assert rollout.draft_autosend(draft_id=draft.pk) is None
    assert Message.objects.filter(ticket=ticket, role="bot").count() == 1


def test_handoff_before_the_first_message_keeps_the_bot_out(client, site, customer_facing) -> None:
    data = start(client, site, body={"category": "account"})
    r = call(client, "POST", "conversation/handoff", site, token=data["token"])
    assert r.json()["state"]["status"] == "teammate"
    call(client, "POST", "conversation/messages", site, token=data["token"], body={"body": "how do I delete my account"})
    ticket = Ticket.objects.get(widget__pk=data["conversation_id"])
    draft = Draft.objects.get(ticket=ticket)
    Draft.objects.filter(pk=draft.pk).update(status="ready", body="auto", confidence=0.99, category=customer_facing)
    assert rollout.draft_autosend(draft_id=draft.pk) is None


def closed_today() -> dict:
    """Business hours open every day but today (UTC), 09:00–17:00: closed now, next open tomorrow at 09:00."""
    import datetime as dt

    today = dt.datetime.now(dt.timezone.utc).weekday()
    return {"tz": "UTC", "days": [d for d in range(7) if d != today], "start": "09:00", "end": "17:00"}


def test_internal_category_outside_business_hours_says_when_a_person_answers(client, site) -> None:
    import datetime as dt

    Category.objects.create(slug="billing", name="Billing", phase="internal", business_hours=closed_today())
    data = start(client, site, body={"message": "refund please", "category": "billing"})
    state = data["state"]
    assert state["status"] == "teammate" and state["availability"]["open_now"] is False
    opens = state["availability"]["opens_at"]
    tomorrow = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).date()
    assert opens == f"{tomorrow.isoformat()}T09:00:00+00:00" and opens == state["availability"]["expected_reply_by"]
    # the same through the token (its own hand-written lookup of the conversation, ticket and category)
    again = call(client, "GET", "conversation", site, token=data["token"]).json()
    assert again["state"] == state and [m["body"] for m in again["messages"]] == ["refund please"]


def test_next_opening() -> None:
    import datetime as dt

    rule = {"tz": "Europe/Paris", "days": [0, 1, 2, 3, 4], "start": "09:00", "end": "18:00"}
    saturday = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.timezone.utc)
    opens = rollout.next_opening(rule, saturday)
    assert opens.isoformat() == "2026-11-23T09:00:00+01:00"  # Monday 09:00 Paris
    monday_10 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.timezone.utc)
    assert rollout.next_opening(rule, monday_10) == monday_10
    assert rollout.next_opening(rule, monday_10.replace(hour=7)).isoformat() == "2026-11-23T09:00:00+01:00"
    assert rollout.next_opening({"tz": "UTC", "days": []}, saturday) is None
    assert rollout.next_opening({"tz": "UTC", "start": "10:00", "end": "10:00"}, saturday) is None  # never open


def test_long_poll_returns_new_messages_at_once_and_waits_otherwise(client, site, settings) -> None:
    settings.WIDGET_STREAM_POLL_SECONDS = 0.05
    data = start(client, site, body={"message": "hi"})
    t0 = time.monotonic()
    r = call(client, "GET", "conversation/messages?after=-1&wait=5", site, token=data["token"])
    assert time.monotonic() - t0 < 1 and len(r.json()["messages"]) == 1
    t0 = time.monotonic()
    r = call(client, "GET", "conversation/messages?after=0&wait=0.3", site, token=data["token"])
    assert 0.3 <= time.monotonic() - t0 < 3 and r.json()["messages"] == [] and r.json()["cursor"] == 0


def test_event_stream_sends_messages_state_and_end(client, site, settings) -> None:
    settings.WIDGET_STREAM_SECONDS = 0.3
    settings.WIDGET_STREAM_POLL_SECONDS = 0.05
    data = start(client, site, body={"message": "<img src=x onerror=alert(1)>"})
    st = call(client, "POST", "conversation/stream-token", site, token=data["token"]).json()["stream_token"]
    r = call(client, "GET", f"conversation/stream?stream_token={st}&after=-1", None, HTTP_ACCEPT="text/event-stream")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/event-stream")
    text = b"".join(r.streaming_content).decode()
    events = [b.strip() for b in text.split("\n\n") if b.strip().startswith(("id:", "event:"))]
    assert events[0].startswith("id: 0\nevent: message\n")
    assert json.loads(events[0].split("data: ", 1)[1])["body"] == "<img src=x onerror=alert(1)>"
    assert "event: state" in events[1] and events[-1].startswith("event: end")
    r = call(client, "GET", f"conversation/stream?stream_token={st}", None, origin="https://evil.example")
    assert r.status_code == 403
    assert call(client, "GET", "conversation/stream?stream_token=nope", None).status_code == 401
    settings.WIDGET_STREAM_TOKEN_SECONDS = -1  # every token is expired
    assert call(client, "GET", f"conversation/stream?stream_token={st}", None).status_code == 401


def test_schema_and_docs_page_work_offline(client) -> None:
    r = client.get(API + "schema/", headers={"Accept": "application/json"})
    assert r.status_code == 200
    schema = json.loads(r.content)
    assert {"/api/widget/v1/conversations", "/api/widget/v1/conversation/messages", "/api/widget/v1/conversation/stream",
            "/api/widget/v1/conversation/ratings", "/api/widget/v1/conversation/handoff"} <= set(schema["paths"])
    assert not any(p.startswith("/console") for p in schema["paths"])
    r = client.get(API + "docs/")
    html = r.content.decode()
    assert r.status_code == 200 and "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "https://" not in html and '"validatorUrl": null' in html  # nothing loaded from elsewhere


def test_demo_setup_creates_the_demo_site_key_and_the_demo_page_embeds_it(client, monkeypatch) -> None:
    from io import StringIO

    from conversations.models import SiteKey
    from sdrbot.management.commands.demo_setup import Command

    monkeypatch.setenv("PORT", "8123")
    assert "No active site key" in client.get("/demo/").content.decode()
    command = Command(stdout=StringIO())
    command._widget_site_key()
    command._widget_site_key()  # idempotent
    site = SiteKey.objects.get(name="demo")
    assert site.allowed_origins == ["http://127.0.0.1:8123", "http://localhost:8123"]
    assert "http://127.0.0.1:8123/demo/" in command.stdout.getvalue()
    html = client.get("/demo/").content.decode()
    assert f'<script src="/static/sdrbot/widget.js" data-site-key="{site.key}" defer></script>' in html
    assert site.secret not in html


def test_message_dict_matches_the_documented_serializer(client, site) -> None:
    from conversations.api import MessageOut, message_dict

    data = start(client, site, body={"message": "hi"})
    m = Message.objects.get(ticket__widget__pk=data["conversation_id"])
    m.rating = 0.0
    assert message_dict(m) == dict(MessageOut(m).data)


def test_query_counts_are_pinned(client, site, django_assert_max_num_queries) -> None:
    """The posting path is the hot one (docs/benchmarks.md): a fixed number of SQL statements per message."""
    data = start(client, site, body={"message": "first"})
    with django_assert_max_num_queries(9):
        r = call(client, "POST", "conversation/messages", site, token=data["token"], body={"body": "second"})
    assert r.status_code == 201
    for _ in range(5):
        call(client, "POST", "conversation/messages", site, token=data["token"], body={"body": "more"})
    with django_assert_max_num_queries(2):  # token lookup, messages with their ratings: no growth with the history
        r = call(client, "GET", "conversation", site, token=data["token"])
    assert len(r.json()["messages"]) == 7
