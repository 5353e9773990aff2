"""The agent console through HTTP: who gets in, the inbox, the ticket page, sending with edit metrics, conflicts,
feedback, the diff view, datasets — with query counts pinned on the list and ticket pages."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse
from django.utils import timezone

from conversations.models import Category, Customer, Message, Ticket
from drafts.models import Dataset, DatasetItem, Draft, Feedback
from sdrbot.models import Score, Trace

pytestmark = pytest.mark.django_db

DRAFT = "Thanks for reaching out. To reset your password open Settings and click Reset password. [1]"


def make_ticket(*, subject="Password help", body="How do I reset my password?", status=Ticket.Status.AWAITING_AGENT,
                category=None, draft_body=DRAFT, channel=Ticket.Channel.API, minutes_ago=10) -> Ticket:
    now = timezone.now() - timezone.timedelta(minutes=minutes_ago)
    customer = Customer.objects.create(name="Casey Customer", email=f"{uuid.uuid4().hex[:6]}@example.com")
    t = Ticket.objects.create(subject=subject, channel=channel, status=status, customer=customer, category=category,
                              last_customer_message_at=now)
    m = Message.objects.create(ticket=t, role=Message.Role.CUSTOMER, body=body, turn_index=0, sent_at=now)
    if draft_body is not None:
        trace = Trace.objects.create(name="draft", thread_id=str(t.thread_id), turn_id="0", ticket_id=t.pk)
        Draft.objects.create(ticket=t, message=m, status=Draft.Status.READY, body=draft_body, generator="offline",
                             strategy="compose", confidence=0.7, grounding_score=1.0, trace=trace,
                             citations=[{"n": 1, "chunk_id": 1, "title": "Reset password", "source": "docs",
                                         "snippet": "open Settings", "external_id": "password"}])
    return t


PAGES = ["console:inbox", "console:datasets"]


@pytest.mark.parametrize("name", PAGES)
def test_anonymous_and_customers_are_sent_to_login(client, outsider_user, name) -> None:
    for who in (None, outsider_user):
        if who:
            client.force_login(who)
        resp = client.get(reverse(name))
        assert resp.status_code == 302 and resp["Location"].startswith("/console/login/")


def test_denied_users_cannot_act(client, outsider_user) -> None:
    t = make_ticket()
    client.force_login(outsider_user)
    for url in (reverse("console:ticket", args=[t.pk]), reverse("console:send", args=[t.pk])):
        resp = client.post(url, {"body": "hi", "version": t.version}) if url.endswith("send/") else client.get(url)
        assert resp.status_code == 302
    assert Message.objects.filter(ticket=t).count() == 1


def test_a_customer_account_cannot_log_in(client, outsider_user, agent_user) -> None:
    resp = client.post(reverse("console:login"), {"username": "outsider-t", "password": "pw-out-123"})
    assert resp.status_code == 200 and "staff account" in resp.content.decode()
    resp = client.post(reverse("console:login"), {"username": "agent-t", "password": "pw-agent-123"})
    assert resp.status_code == 302 and resp["Location"] == "/console/"


def test_inbox_lists_open_tickets_longest_waiting_first_with_counts(client, agent_user, django_assert_max_num_queries) -> None:
    cat = Category.objects.create(slug="account", name="Account")
    old = make_ticket(subject="Old one", minutes_ago=90, category=cat)
    new = make_ticket(subject="New one", minutes_ago=5)
    make_ticket(subject="Done", status=Ticket.Status.RESOLVED)
    make_ticket(subject="History", channel=Ticket.Channel.IMPORT)
    client.force_login(agent_user)
    with django_assert_max_num_queries(8):
        resp = client.get(reverse("console:inbox"))
    html = resp.content.decode()
    assert html.index("Old one") < html.index("New one")  # waiting time order
    assert "Done" not in html and "History" not in html
    assert resp.context["page"]["by_status"] == {"awaiting_agent": 2, "resolved": 1}
    assert {c["category__slug"]: c["n"] for c in resp.context["page"]["by_category"]} == {"account": 1, None: 1}
    assert "New one" not in client.get(reverse("console:inbox"), {"category": "account"}).content.decode()
    assert "Done" in client.get(reverse("console:inbox"), {"status": "resolved"}).content.decode()
    old.assignee = agent_user
    old.save(update_fields=["assignee"])
    mine = client.get(reverse("console:inbox"), {"assignee": "me"}).content.decode()
    assert "Old one" in mine and "New one" not in mine
    assert new.pk  # (both shown above)


def test_inbox_search_and_cursor_pagination_with_constant_queries(client, agent_user, django_assert_max_num_queries) -> None:
    for i in range(30):
        make_ticket(subject=f"Ticket {i:02d}", body="My invoice is wrong" if i % 3 == 0 else "Where is my parcel?",
                    minutes_ago=100 - i)
    client.force_login(agent_user)
    with django_assert_max_num_queries(8):
        first = client.get(reverse("console:inbox"))
    page = first.context["page"]
    assert len(page["tickets"]) == 25 and page["next_cursor"]
    with django_assert_max_num_queries(8):
        second = client.get(reverse("console:inbox"), {"cursor": page["next_cursor"]})
    assert [t.subject for t in second.context["page"]["tickets"]] == [f"Ticket {i:02d}" for i in range(25, 30)]
    found = client.get(reverse("console:inbox"), {"q": "invoice"}).context["page"]["tickets"]
    assert {t.subject for t in found} == {f"Ticket {i:02d}" for i in range(0, 30, 3)}
    assert client.get(reverse("console:inbox"), {"cursor": "garbage!!"}).status_code == 200
    rows = client.get(reverse("console:inbox"), {"fragment": "rows"}, HTTP_HX_REQUEST="true")
    assert "<tbody" in rows.content.decode() and "<html" not in rows.content.decode()


def test_inbox_keyset_walks_every_ticket_once_with_the_same_queries_whatever_the_page_size(agent_user) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from drafts import selectors

    timed = [make_ticket(subject=f"Timed {i:02d}", minutes_ago=200 - (i // 2)) for i in range(12)]  # equal timestamps in pairs
    waiting = [make_ticket(subject=f"No message yet {i}") for i in range(3)]
    Ticket.objects.filter(pk__in=[t.pk for t in waiting]).update(last_customer_message_at=None)
    expected = [t.pk for t in timed] + [t.pk for t in waiting]  # NULLs last, ties broken by id
    filters = selectors.InboxFilters()
    counts = {}
    for size in (2, 5, 25):
        seen, cursor, queries = [], "", set()
        while True:
            with CaptureQueriesContext(connection) as ctx:
                page = selectors.inbox_page(filters, agent_user, cursor=cursor, page_size=size)
            queries.add(len(ctx.captured_queries))
            seen += [t.pk for t in page["tickets"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == expected, size
        counts[size] = queries
    assert counts[2] == counts[5] == counts[25] and len(counts[2]) == 1  # one fixed count, deep pages included
    with CaptureQueriesContext(connection) as ctx:
        selectors.inbox_page(filters, agent_user, with_counts=False)
    assert len(ctx.captured_queries) == 1  # the polled rows fragment: the page query alone


def test_inbox_search_matches_subject_and_messages_with_stemming_and_counts(client, agent_user) -> None:
    make_ticket(subject="Refunds for damaged chairs", body="hello")
    make_ticket(subject="Question", body="I was charged twice for one order")
    make_ticket(subject="Other", body="Where is my parcel?")
    client.force_login(agent_user)
    by_subject = client.get(reverse("console:inbox"), {"q": "refund"}).context["page"]
    assert [t.subject for t in by_subject["tickets"]] == ["Refunds for damaged chairs"]
    assert by_subject["by_status"] == {"awaiting_agent": 1}
    by_body = client.get(reverse("console:inbox"), {"q": "charge twice"}).context["page"]["tickets"]
    assert [t.subject for t in by_body] == ["Question"]
    either = client.get(reverse("console:inbox"), {"q": "parcel or refund"}).context["page"]["tickets"]  # websearch OR
    assert {t.subject for t in either} == {"Other", "Refunds for damaged chairs"}
    assert client.get(reverse("console:inbox"), {"q": "damaged -chairs"}).context["page"]["tickets"] == []  # NOT
    html = client.get(reverse("console:inbox"), {"q": "<script>alert(1)</script>"}).content.decode()
    assert "<script>alert(1)</script>" not in html


def test_ticket_page_shows_draft_editor_and_citations(client, agent_user, django_assert_max_num_queries) -> None:
    t = make_ticket(body="<script>alert('customer')</script> reset please")
    client.force_login(agent_user)
    with django_assert_max_num_queries(10):
        resp = client.get(reverse("console:ticket", args=[t.pk]))
    html = resp.content.decode()
    assert '<label for="reply-body" class="big">Reply</label>' in html and DRAFT in html
    assert "Offline responder" in html and "Reset password" in html and "grounding 1.00" in html
    assert "&lt;script&gt;alert(&#x27;customer&#x27;)&lt;/script&gt;" in html and "<script>alert('customer')" not in html
    for button in ("Send", "Regenerate", "Discard", "Add to dataset"):
        assert f">{button}</button>" in html
    assert "Thumbs up</button>" in html and "Thumbs down</button>" in html


def test_send_records_edit_metrics_and_scores(client, agent_user) -> None:
    t = make_ticket()
    draft = t.drafts.get()
    client.force_login(agent_user)
    sent = DRAFT.replace("[1]", "Let me know if that works!")
    resp = client.post(reverse("console:send", args=[t.pk]), {"body": sent, "version": t.version,
                                                              "draft_id": draft.pk, "send_token": "tok-1"})
    assert resp.status_code == 302
    draft.refresh_from_db()
    t.refresh_from_db()
    msg = Message.objects.get(ticket=t, role="agent")
    assert msg.body == sent and msg.origin == "draft" and msg.author_user == agent_user
    assert draft.status == "sent" and draft.sent_message == msg and draft.sent_by == agent_user
    assert 0 < draft.edit_distance < 0.5 and draft.edit_bucket == "heavy"
    assert draft.chars_inserted > 0 and draft.chars_deleted == 3  # "[1]" out
    assert ["insert", "", "Let me know if that works!"] in draft.diff or any(op[0] == "replace" for op in draft.diff)
    assert t.status == "resolved" and t.version == 2
    scores = dict(Score.objects.filter(trace=draft.trace).values_list("name", "value"))
    assert scores["edit_distance"] == draft.edit_distance and scores["chars_deleted"] == 3
    assert Score.objects.get(trace=draft.trace, name="edit_bucket").string_value == "heavy"


def test_unchanged_send_is_bucketed_unchanged(client, agent_user) -> None:
    t = make_ticket()
    client.force_login(agent_user)
    client.post(reverse("console:send", args=[t.pk]), {"body": "  " + DRAFT.replace(" ", "  "), "version": 1,
                                                       "draft_id": t.drafts.get().pk})
    d = t.drafts.get()
    assert d.edit_distance == 0 and d.edit_bucket == "unchanged"


def test_second_agent_is_refused_and_sees_what_was_sent(client, agent_user, admin_user) -> None:
    t = make_ticket()
    draft = t.drafts.get()
    client.force_login(agent_user)
    client.post(reverse("console:send", args=[t.pk]), {"body": "First answer.", "version": 1, "draft_id": draft.pk})
    client.force_login(admin_user)
    resp = client.post(reverse("console:send", args=[t.pk]), {"body": "My own answer.", "version": 1,
                                                              "draft_id": draft.pk}, HTTP_HX_REQUEST="true")
    html = resp.content.decode()
    assert resp.status_code == 409 and resp["HX-Retarget"] == "#draft-panel"
    assert "answered meanwhile" in html and "First answer." in html and "agent-t" in html
    assert "My own answer." in html  # the second agent's text is not lost
    assert list(Message.objects.filter(ticket=t, role="agent").values_list("body", flat=True)) == ["First answer."]


def test_double_clicked_send_sends_once(client, agent_user) -> None:
    t = make_ticket()
    client.force_login(agent_user)
    data = {"body": "Once.", "version": 1, "draft_id": t.drafts.get().pk, "send_token": "same-token"}
    assert client.post(reverse("console:send", args=[t.pk]), data).status_code == 302
    assert client.post(reverse("console:send", args=[t.pk]), data).status_code == 302
    assert Message.objects.filter(ticket=t, role="agent").count() == 1


def test_reply_without_a_draft_is_recorded_as_such(client, agent_user) -> None:
    t = make_ticket(draft_body=None)
    client.force_login(agent_user)
    client.post(reverse("console:send", args=[t.pk]), {"body": "Hand-written.", "version": 1})
    assert Message.objects.get(ticket=t, role="agent").origin == "no_draft"
    html = client.get(reverse("console:ticket", args=[t.pk])).content.decode()
    assert "written without a draft" in html


def test_empty_reply_is_refused_and_nothing_is_sent(client, agent_user) -> None:
    t = make_ticket()
    client.force_login(agent_user)
    resp = client.post(reverse("console:send", args=[t.pk]), {"body": "  ", "version": 1, "draft_id": t.drafts.get().pk})
    assert resp.status_code == 400 and "the reply is empty" in resp.content.decode()
    assert not Message.objects.filter(ticket=t, role="agent").exists()


def test_feedback_can_be_given_and_changed(client, agent_user) -> None:
    t = make_ticket()
    d = t.drafts.get()
    client.force_login(agent_user)
    resp = client.post(reverse("console:feedback", args=[t.pk]), {"draft_id": d.pk, "rating": "down",
                       "reasons": ["hallucination", "tone_mismatch"], "comment": "Invented a setting"}, HTTP_HX_REQUEST="true")
    assert resp.status_code == 200 and "Feedback saved" in resp.content.decode()
    fb = Feedback.objects.get(draft=d, user=agent_user)
    assert not fb.thumbs_up and fb.reasons == ["hallucination", "tone_mismatch"]
    score = Score.objects.get(trace=d.trace, name="thumbs")
    assert score.value == 0.0 and score.string_value == "hallucination,tone_mismatch" and score.comment == "Invented a setting"
    client.post(reverse("console:feedback", args=[t.pk]), {"draft_id": d.pk, "rating": "up", "reasons": ["tone_mismatch"]})
    fb.refresh_from_db()
    assert fb.thumbs_up and fb.reasons == [] and Feedback.objects.count() == 1
    assert Score.objects.filter(trace=d.trace, name="thumbs").count() == 1
    assert client.post(reverse("console:feedback", args=[t.pk]), {"draft_id": d.pk, "rating": "down",
                                                                  "reasons": ["made_up"]}).status_code == 400


def test_diff_view_marks_insertions_and_deletions(client, agent_user) -> None:
    t = make_ticket()
    client.force_login(agent_user)
    client.post(reverse("console:send", args=[t.pk]), {"body": DRAFT.replace("open Settings", "open the Settings page"),
                                                       "version": 1, "draft_id": t.drafts.get().pk})
    msg = Message.objects.get(ticket=t, role="agent")
    html = client.get(reverse("console:diff", args=[msg.pk])).content.decode()
    assert "<ins>the</ins> Settings <ins>page</ins>" in html
    assert "light edit" in html and "9 characters inserted, 0 deleted" in html


def test_add_to_dataset(client, agent_user) -> None:
    cat = Category.objects.create(slug="account", name="Account")
    t = make_ticket(category=cat)
    client.force_login(agent_user)
    resp = client.post(reverse("console:ticket-action", args=[t.pk, "dataset"]), HTTP_HX_REQUEST="true")
    assert "no reply has been sent yet" in resp.content.decode()
    client.post(reverse("console:send", args=[t.pk]), {"body": "Sent reply.", "version": 1, "draft_id": t.drafts.get().pk})
    client.post(reverse("console:ticket-action", args=[t.pk, "dataset"]))
    client.post(reverse("console:ticket-action", args=[t.pk, "dataset"]))  # twice: one item
    item = DatasetItem.objects.get()
    assert item.dataset.name == "account-regression" and item.dataset.category == cat
    assert item.input == "How do I reset my password?" and item.expected_output == "Sent reply."
    assert item.trace == t.drafts.get().trace
    assert "account-regression" in client.get(reverse("console:datasets")).content.decode()
    assert "Sent reply." in client.get(reverse("console:dataset", args=[item.dataset.pk])).content.decode()
    assert Dataset.objects.count() == 1


def test_regenerate_discard_assign_resolve_note(client, agent_user, admin_user, django_capture_on_commit_callbacks) -> None:
    t = make_ticket()
    d = t.drafts.get()
    client.force_login(agent_user)
    with django_capture_on_commit_callbacks() as callbacks:
        client.post(reverse("console:draft-action", args=[t.pk, "regenerate"]), {"draft_id": d.pk})
    d.refresh_from_db()
    new = Draft.objects.exclude(pk=d.pk).get()
    assert d.status == "discarded" and new.status == "pending" and len(callbacks) == 1
    client.post(reverse("console:draft-action", args=[t.pk, "discard"]), {"draft_id": new.pk})
    assert Draft.objects.get(pk=new.pk).status == "discarded"
    client.post(reverse("console:ticket-action", args=[t.pk, "assign"]), {"assignee": admin_user.pk})
    assert Ticket.objects.get(pk=t.pk).assignee == admin_user
    assert client.post(reverse("console:ticket-action", args=[t.pk, "assign"]), {"assignee": "999999"}).status_code == 400
    client.post(reverse("console:ticket-action", args=[t.pk, "note"]), {"body": "Customer is a VIP"})
    note = Message.objects.get(ticket=t, role="internal_note")
    assert note.body == "Customer is a VIP" and note.author_user == agent_user
    client.post(reverse("console:ticket-action", args=[t.pk, "resolve"]))
    assert Ticket.objects.get(pk=t.pk).status == "resolved"


def test_htmx_send_returns_the_ticket_fragment(client, agent_user) -> None:
    t = make_ticket()
    client.force_login(agent_user)
    resp = client.post(reverse("console:send", args=[t.pk]), {"body": "Hi!", "version": 1, "draft_id": t.drafts.get().pk},
                       HTTP_HX_REQUEST="true")
    html = resp.content.decode()
    assert resp.status_code == 200 and "<html" not in html and "Reply sent." in html


def test_pending_draft_panel_polls_until_ready(client, agent_user) -> None:
    t = make_ticket()
    Draft.objects.filter(ticket=t).update(status="pending")
    client.force_login(agent_user)
    panel = client.get(reverse("console:ticket", args=[t.pk]), {"fragment": "draft"}, HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 2s"' in panel and "Drafting a reply" in panel
    Draft.objects.filter(ticket=t).update(status="ready")
    panel = client.get(reverse("console:ticket", args=[t.pk]), {"fragment": "draft"}, HTTP_HX_REQUEST="true").content.decode()
    assert "every 2s" not in panel and DRAFT in panel
