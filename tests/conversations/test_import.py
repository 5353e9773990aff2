"""tickets_import: the four formats (real Bitext rows and real Twitter CDP conversations, plus small JSONL/CSV files),
PII masking, idempotent re-import, the deterministic train/test split, the resolved-tickets source (train only),
bad input named by file:line with nothing written unless --skip-invalid, and the admin pages."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from conversations.models import Category, Customer, Message, Ticket
from knowledge.models import Chunk, Document, IngestRun, KnowledgeSource
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.django_db

BITEXT = SHARED_DATA / "bitext-customer-support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
TWITTER = SHARED_DATA / "twitter-customer-care-cdp" / "dev.json"


def run(path: Path, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("tickets_import", str(path), *args, stdout=out, stderr=err, verbosity=0)
    return out.getvalue(), err.getvalue()


def expected_split(external_id: str, seed: int, share: float) -> str:
    """The brief's formula, written out independently of the implementation."""
    return "test" if int(hashlib.sha256(f"{seed}:{external_id}".encode()).hexdigest(), 16) % 10_000 < share * 10_000 else "train"


def assert_nothing_written() -> None:
    assert Ticket.objects.count() == 0
    assert Message.objects.count() == 0
    assert Customer.objects.count() == 0
    assert Category.objects.count() == 0
    assert Document.objects.count() == 0
    assert not KnowledgeSource.objects.filter(name="resolved-tickets").exists()


def thread(ticket: Ticket) -> list[tuple[int, str, str]]:
    return list(ticket.messages.order_by("turn_index").values_list("turn_index", "role", "body"))


def bitext_head(tmp_path: Path, rows: int) -> Path:
    """The header and the first ``rows`` records of the real Bitext CSV, byte for byte (fields span lines)."""
    with BITEXT.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        for _ in range(rows + 1):
            next(reader)
        n_lines = reader.line_num
    with BITEXT.open(encoding="utf-8", newline="") as fh:
        lines = [next(fh) for _ in range(n_lines)]
    out = tmp_path / "bitext.csv"
    out.write_text("".join(lines), encoding="utf-8", newline="")
    return out


def twitter_head(tmp_path: Path, n: int) -> tuple[Path, list[dict]]:
    convs = json.loads(TWITTER.read_text(encoding="utf-8"))[:n]
    out = tmp_path / "dev-head.json"
    out.write_text(json.dumps(convs, indent=4, ensure_ascii=False), encoding="utf-8")
    return out, convs


def write_jsonl(path: Path, rows: list[dict | str | bytes]) -> Path:
    with path.open("wb") as fh:
        for r in rows:
            raw = r if isinstance(r, bytes) else (r if isinstance(r, str) else json.dumps(r)).encode()
            fh.write(raw + b"\n")
    return path


def qa(ext: str, category: str = "Billing", **extra) -> dict:
    return {"id": ext, "category": category, "question": f"Question {ext}: why was I charged twice?",
            "reply": f"Reply {ext}: we refunded the second charge.", **extra}


# --- real formats ------------------------------------------------------------------------------------------------


def test_bitext_rows_resolved_split_source_and_reimport(tmp_path: Path) -> None:
    f = bitext_head(tmp_path, 30)
    with f.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30

    out, _ = run(f, "--format", "bitext", "--resolved", "--split-test", "0.2", "--seed", "7")

    splits = {f"bitext-{i}": expected_split(f"bitext-{i}", 7, 0.2) for i in range(1, 31)}
    n_test = sum(s == "test" for s in splits.values())
    assert 0 < n_test < 30
    assert f"imported 30 tickets (train {30 - n_test}, test {n_test}); skipped 0 existing, 0 invalid" in out
    assert f"resolved-tickets: {30 - n_test} documents added" in out
    assert Ticket.objects.count() == 30 and Customer.objects.count() == 30 and Message.objects.count() == 60

    order = Category.objects.get(slug="order")
    assert order.name == "Order"
    assert set(Category.objects.values_list("slug", flat=True)) == {r["category"].lower().replace("_", "-") for r in rows}
    for i, row in enumerate(rows, start=1):
        t = Ticket.objects.select_related("category", "customer").get(external_id=f"bitext-{i}")
        assert (t.channel, t.status, t.category_source) == ("import", "resolved", "import")
        assert t.resolved_at is not None
        assert t.category.slug == row["category"].lower().replace("_", "-")
        assert t.category.name == row["category"].replace("_", " ").capitalize()
        assert t.intent == row["intent"]
        assert t.subject == " ".join(row["instruction"].split())[:80]  # whitespace runs collapsed
        assert t.customer.name == f"Customer bitext-{i}" and t.customer.email == ""
        assert t.split == splits[t.external_id]
        assert thread(t) == [(0, "customer", row["instruction"]),
                             (1, "agent", row["response"].replace("\r\n", "\n").strip())]

    source = KnowledgeSource.objects.get(name="resolved-tickets")
    assert source.kind == "resolved_tickets"
    docs = {d.external_id: d for d in Document.objects.filter(source=source)}
    train = Ticket.objects.filter(split="train").select_related("category")
    assert set(docs) == {f"ticket-{t.pk}" for t in train}
    assert not set(docs) & {f"ticket-{pk}" for pk in Ticket.objects.filter(split="test").values_list("pk", flat=True)}
    for t in train:
        doc = docs[f"ticket-{t.pk}"]
        reply = t.messages.get(role="agent").body
        assert doc.metadata == {"category": t.category.slug, "intent": t.intent, "ticket_id": t.pk, "reply": reply}
        assert doc.text == t.messages.get(role="customer").body and doc.title == t.subject
        assert Chunk.objects.filter(document=doc).exists()  # short questions are embedded, not read as headings

    out, _ = run(f, "--format", "bitext", "--resolved", "--split-test", "0.2", "--seed", "7")
    assert "imported 0 tickets (train 0, test 0); skipped 30 existing, 0 invalid" in out
    assert "0 documents added" in out
    assert (Ticket.objects.count(), Customer.objects.count(), Message.objects.count()) == (30, 30, 60)
    assert Document.objects.count() == len(docs)


def test_twitter_conversations_threads_and_masking(tmp_path: Path) -> None:
    f, convs = twitter_head(tmp_path, 20)
    out, _ = run(f, "--format", "twitter-cdp", "--resolved", "--split-test", "0.25", "--seed", "3")
    assert "imported 20 tickets" in out
    assert set(Ticket.objects.values_list("external_id", flat=True)) == {c["dialogHeader"]["sessionID"] for c in convs}
    companies = {c["dialogHeader"]["company"] for c in convs}
    assert {(c.slug, c.name) for c in Category.objects.all()} == {(name.lower(), name) for name in companies}
    assert Category.objects.get(slug="applesupport").name == "AppleSupport"

    for conv in convs:
        t = Ticket.objects.select_related("category").get(external_id=conv["dialogHeader"]["sessionID"])
        assert t.category.name == conv["dialogHeader"]["company"]
        msgs = thread(t)
        roles = ["agent" if "agent" in turn else "customer" for turn in conv["dialogContent"]] + ["agent"]
        assert [m[1] for m in msgs] == roles
        assert [m[0] for m in msgs] == list(range(len(roles)))
        reply = msgs[-1][2]
        assert not reply.startswith("@")  # the addressing mention is dropped
        assert conv["agentURL"]["url"] in reply  # links survive the phone/card masking
        assert t.metadata["doc_id"] == conv["agentURL"]["doc_id"]
        assert t.created_at.isoformat().startswith(conv["dialogContent"][0]["datetime"][:19])

    texts = list(Message.objects.values_list("body", flat=True)) + list(Ticket.objects.values_list("subject", flat=True))
    texts += list(Document.objects.values_list("text", flat=True))
    texts += [d["reply"] for d in Document.objects.values_list("metadata", flat=True)]
    texts += list(Customer.objects.values_list("name", flat=True))
    blob = "\n".join(texts).lower()
    clients = {v for c in convs for turn in c["dialogContent"] for k, v in turn.items() if k.startswith("client")}
    assert clients
    for handle in clients:
        assert f"@{handle.lower()}" not in blob
    brands = {c.lower() for c in companies}
    for text in texts:
        for h in re.findall(r"(?<![\w@])@(\w+)", text):
            assert h.lower() == "user" or h.lower() in brands, (h, text)
    apple = Message.objects.filter(ticket__category__slug="applesupport")
    assert any("@AppleSupport" in b for b in apple.values_list("body", flat=True))  # the brand's handle is kept

    train = set(Ticket.objects.filter(split="train").values_list("pk", flat=True))
    assert set(Document.objects.values_list("metadata__ticket_id", flat=True)) == train


def test_tweet_with_email_phone_and_handles_is_masked(tmp_path: Path) -> None:
    conv = {
        "dialogHeader": {"company": "AppleSupport", "sessionID": "S-1", "conversationDateTime": "2020-04-01T17:31:32.000Z",
                         "duration": "00:30:00.0", "messageCount": "4"},
        "dialogContent": [
            {"client": "jane_doe99", "datetime": "2020-04-01T17:31:32.000Z", "tweet_ID": "1",
             "message": "@AppleSupport @bestie_1 my iPhone won't sync. Email me at jane.doe@example.com or call "
                        "+1 415 555 0123 &amp; cc @bestie_1. Thanks @AppleSupport!"},
            {"agent": "AppleSupport", "datetime": "2020-04-01T17:40:00.000Z", "tweet_ID": "2",
             "message": "@jane_doe99 Which iOS version?"},
            {"client": "jane_doe99", "datetime": "2020-04-01T17:45:00.000Z", "tweet_ID": "3",
             "message": "@AppleSupport iOS 13.4, my tag is jane_doe99"},
        ],
        "agentURL": {"url_utterance": "@jane_doe99 Thanks! Try this: https://web.archive.org/web/20200213092749/"
                                      "https://support.apple.com/en-us/HT201354", "doc_id": "0738", "turn": "4",
                     "url": "https://support.apple.com/en-us/HT201354", "tweet_ID": "4"},
    }
    second = json.loads(json.dumps(conv))
    del second["dialogHeader"]["sessionID"]
    f = tmp_path / "tw.json"
    f.write_text(json.dumps([conv, second], indent=2))
    run(f, "--format", "twitter-cdp", "--resolved", "--split-test", "0")

    t = Ticket.objects.get(external_id="S-1")
    assert Ticket.objects.filter(external_id="twitter-2").exists()  # no sessionID: position in the file
    assert thread(t) == [
        (0, "customer", "my iPhone won't sync. Email me at [email] or call [phone] & cc @user. Thanks @AppleSupport!"),
        (1, "agent", "Which iOS version?"),
        (2, "customer", "iOS 13.4, my tag is user"),
        (3, "agent", "Thanks! Try this: https://web.archive.org/web/20200213092749/https://support.apple.com/en-us/HT201354"),
    ]
    assert t.subject == "my iPhone won't sync. Email me at [email] or call [phone] & cc @user. Thanks @AppleSupport!"[:80]
    assert t.resolved_at.isoformat().startswith("2020-04-01T18:01:32")  # start + duration
    doc = Document.objects.get(external_id=f"ticket-{t.pk}")
    assert "jane" not in (doc.text + doc.metadata["reply"] + json.dumps(t.metadata)).lower()
    assert doc.text == thread(t)[0][2] + "\n\n" + thread(t)[2][2]


def test_jsonl_both_shapes_masked_and_not_resolved(tmp_path: Path) -> None:
    long_q = ("My card was charged twice for order 1182 last week and I would like the second charge reversed. "
              "Reach me at bob@example.org or 020 7946 0958.")
    f = write_jsonl(tmp_path / "t.jsonl", [
        {"id": "j1", "category": "Billing", "question": long_q, "reply": "Refunded, @bob_smith. We emailed bob@example.org."},
        "",
        {"id": 2, "category": "billing", "intent": "refund", "subject": "Double charge", "messages": [
            {"role": "customer", "body": "Charged twice."}, {"role": "agent", "body": "Which order?"},
            {"role": "customer", "body": "Order 1182"}, {"role": "agent", "body": "Refunded."}]},
    ])
    out, _ = run(f, "--format", "jsonl")
    assert "imported 2 tickets" in out and "documents added" not in out
    assert list(Category.objects.values_list("slug", "name")) == [("billing", "Billing")]  # one slug, first name wins
    j1 = Ticket.objects.get(external_id="j1")
    assert j1.status == "awaiting_agent" and j1.resolved_at is None
    masked_q = long_q.replace("bob@example.org", "[email]").replace("020 7946 0958", "[phone]")
    assert thread(j1) == [(0, "customer", masked_q), (1, "agent", "Refunded, @user. We emailed [email].")]
    assert j1.subject == masked_q[:80] and len(j1.subject) == 80
    j2 = Ticket.objects.get(external_id="2")
    assert (j2.subject, j2.intent) == ("Double charge", "refund")
    assert [(m[1], m[2]) for m in thread(j2)] == [("customer", "Charged twice."), ("agent", "Which order?"),
                                                  ("customer", "Order 1182"), ("agent", "Refunded.")]
    assert not KnowledgeSource.objects.exists()


def test_csv_with_optional_columns_multiline_reply_and_limit(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    with f.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "category", "question", "reply", "intent", "subject"])
        w.writerow(["c1", "Shipping", "Where is my parcel?", "It ships today.\nTracking follows by mail.", "track", ""])
        w.writerow(["c2", "Shipping", "Call me on +44 20 7946 0958", "Done", "", "Callback"])
        w.writerow(["c3", "Returns", "How do I return?", "Use the form.", "", ""])
    out, _ = run(f, "--format", "csv", "--limit", "2")
    assert "imported 2 tickets" in out
    assert set(Ticket.objects.values_list("external_id", flat=True)) == {"c1", "c2"}
    c1 = Ticket.objects.get(external_id="c1")
    assert thread(c1)[1] == (1, "agent", "It ships today.\nTracking follows by mail.")
    assert (c1.intent, c1.subject) == ("track", "Where is my parcel?")
    c2 = Ticket.objects.get(external_id="c2")
    assert c2.subject == "Callback" and thread(c2)[0][2] == "Call me on [phone]"
    out, _ = run(f, "--format", "csv")
    assert "imported 1 tickets" in out and "skipped 2 existing" in out


def test_split_is_deterministic_per_seed(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "many.jsonl", [qa(f"t{i}", category=f"Cat {i % 3}") for i in range(200)])

    def import_splits(seed: int) -> dict[str, str]:
        out, _ = run(f, "--format", "jsonl", "--split-test", "0.2", "--seed", str(seed))
        assert "imported 200 tickets" in out
        splits = dict(Ticket.objects.values_list("external_id", "split"))
        Ticket.objects.all().delete()
        Customer.objects.all().delete()
        return splits

    first = import_splits(7)
    assert first == {f"t{i}": expected_split(f"t{i}", 7, 0.2) for i in range(200)}
    assert 20 <= sum(s == "test" for s in first.values()) <= 60
    assert import_splits(7) == first
    other = import_splits(8)
    assert other != first and set(other.values()) == {"train", "test"}


def test_per_category_counts_in_summary(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "c.jsonl", [qa(f"a{i}", "Account") for i in range(3)] + [qa("b1", "Billing")])
    out, _ = run(f, "--format", "jsonl", "--split-test", "0")
    assert "2 categories (2 new)" in out and "account 3 (3/0), billing 1 (1/0)" in out


# --- bad input ---------------------------------------------------------------------------------------------------


def test_jsonl_problems_named_by_line_nothing_written_then_skip_invalid(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "bad.jsonl", [
        qa("ok1"),                                                                   # 1
        '{"id": "b2", "category": "X", "question": "q"',                             # 2 malformed JSON
        {"id": "b3", "question": "q", "reply": "r"},                                 # 3 no category
        {"id": "b4", "category": "X", "question": "   ", "reply": "r"},              # 4 empty question
        b'{"id": "b5", "category": "X", "question": "caf\xe9", "reply": "r"}',       # 5 invalid UTF-8
        qa("ok1"),                                                                   # 6 duplicate id
        {"id": "b7", "category": "X", "messages": [{"role": "bot", "body": "hi"}]},  # 7 bad role
        {"id": "b8", "category": "X", "messages": [{"role": "agent", "body": "hi"},
                                                   {"role": "customer", "body": "q"}]},  # 8 last is not the reply
        {"id": "b9", "category": "!!!", "question": "q", "reply": "r"},              # 9 no slug from the category
        "[1, 2]",                                                                    # 10 not an object
        {"id": "", "category": "X", "question": "q", "reply": "r"},                  # 11 empty id
        qa("ok2"),                                                                   # 12
    ])
    with pytest.raises(CommandError) as exc:
        run(f, "--format", "jsonl", "--resolved")
    msg = str(exc.value)
    assert "10 invalid ticket(s)" in msg and "nothing was imported" in msg
    for line, what in [(2, "malformed JSON"), (3, "'category' is missing"), (4, "'question' is empty"),
                       (5, "invalid UTF-8"), (6, "duplicate id 'ok1'"), (7, "role must be 'customer' or 'agent'"),
                       (8, "last message must be the agent's reply"), (9, "no letters or digits"),
                       (10, "expected a JSON object"), (11, "'id' is empty")]:
        assert re.search(rf"{re.escape(str(f))}:{line}: [^\n]*{re.escape(what)}", msg), (line, msg)
    assert_nothing_written()

    out, err = run(f, "--format", "jsonl", "--resolved", "--split-test", "0", "--skip-invalid")
    assert "imported 2 tickets (train 2, test 0); skipped 0 existing, 10 invalid" in out
    assert err.count("skipped ") == 10 and f"{f}:5: invalid UTF-8" in err
    assert set(Ticket.objects.values_list("external_id", flat=True)) == {"ok1", "ok2"}
    assert IngestRun.objects.get().skipped == 10 and Document.objects.count() == 2


def test_csv_problems_named_by_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.csv"
    f.write_bytes(
        b"id,category,question,reply\n"                      # 1
        b"c1,X,Where is it?,On its way\n"                    # 2
        b"c2,X,only three fields\n"                           # 3
        b'c3,X,Question?,""\n'                                # 4 empty reply
        b"c1,X,Again?,Yes\n"                                  # 5 duplicate id
        b"c4,X,caf\xe9?,Yes\n"                                # 6 invalid UTF-8
        b'c5,X,Two lines?,"line one\nline two"\n'             # 7-8
        b'c6,X,"unterminated,reply\n'                         # 9 unterminated quote
    )
    with pytest.raises(CommandError) as exc:
        run(f, "--format", "csv")
    msg = str(exc.value)
    for line, what in [(3, "expected 4 fields"), (4, "'reply' is empty"), (5, "duplicate id 'c1'"),
                       (6, "invalid UTF-8"), (9, "malformed CSV")]:
        assert re.search(rf"{re.escape(str(f))}:{line}: [^\n]*{re.escape(what)}", msg), (line, msg)
    assert f"{f}:7: " not in msg and f"{f}:2: " not in msg  # the good rows
    assert_nothing_written()
    out, _ = run(f, "--format", "csv", "--skip-invalid")
    assert "imported 2 tickets" in out and "5 invalid" in out
    assert thread(Ticket.objects.get(external_id="c5"))[1][2] == "line one\nline two"


def test_bitext_problems_and_row_numbers(tmp_path: Path) -> None:
    f = tmp_path / "bitext.csv"
    f.write_text("instruction,intent,category,response\n"
                 "cancel my order,cancel_order,ORDER,Sure.\n"
                 ",cancel_order,ORDER,Sure.\n"
                 "where is my refund,track_refund,REFUND,Soon.\n", encoding="utf-8")
    with pytest.raises(CommandError, match=rf"{re.escape(str(f))}:3: field 'instruction' is empty"):
        run(f, "--format", "bitext")
    assert_nothing_written()
    run(f, "--format", "bitext", "--skip-invalid")
    assert set(Ticket.objects.values_list("external_id", flat=True)) == {"bitext-1", "bitext-3"}  # data row numbers

    g = tmp_path / "nocat.csv"
    g.write_text("instruction,intent,response\nhi,greet,hello\n", encoding="utf-8")
    with pytest.raises(CommandError, match=rf"{re.escape(str(g))}:1: the CSV header lacks column\(s\) category"):
        run(g, "--format", "bitext")


def test_twitter_problems_named_by_line(tmp_path: Path) -> None:
    convs = json.loads(TWITTER.read_text(encoding="utf-8"))[:3]
    del convs[1]["agentURL"]
    text = json.dumps(convs, indent=4)
    starts = [i for i, line in enumerate(text.split("\n"), start=1) if line == "    {"]
    f = tmp_path / "tw.json"
    f.write_text(text)
    with pytest.raises(CommandError, match=rf"{re.escape(str(f))}:{starts[1]}: field 'agentURL'"):
        run(f, "--format", "twitter-cdp")
    assert_nothing_written()
    out, _ = run(f, "--format", "twitter-cdp", "--skip-invalid")
    assert "imported 2 tickets" in out and "1 invalid" in out
    Ticket.objects.all().delete()
    Customer.objects.all().delete()

    key = f'"company": "{convs[2]["dialogHeader"]["company"]}"'
    pos = text.rfind(key)  # in the last conversation
    broken = text[:pos] + key.replace(': "', ": ").rstrip('"') + text[pos + len(key):]
    bad_line = text.count("\n", 0, pos) + 1
    f.write_text(broken)
    with pytest.raises(CommandError, match=rf"{re.escape(str(f))}:{bad_line}: malformed JSON"):
        run(f, "--format", "twitter-cdp", "--skip-invalid")  # JSON that breaks cannot be skipped past
    assert Ticket.objects.count() == 0

    f.write_text('{"not": "an array"}')
    with pytest.raises(CommandError, match=rf"{re.escape(str(f))}:1: expected a JSON array"):
        run(f, "--format", "twitter-cdp")


def test_missing_file_wrong_format_and_bad_options(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no such file"):
        run(tmp_path / "nope.jsonl", "--format", "jsonl")
    f, _ = twitter_head(tmp_path, 2)
    with pytest.raises(CommandError, match=rf"{re.escape(str(f))}:1: the CSV header lacks column\(s\) id, category"):
        run(f, "--format", "csv")
    with pytest.raises(CommandError):
        run(f, "--format", "xml")
    with pytest.raises(CommandError, match="between 0 and 1"):
        run(f, "--format", "twitter-cdp", "--split-test", "1.5")
    with pytest.raises(CommandError, match="must be a slug"):
        run(f, "--format", "twitter-cdp", "--source", "bad name!")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(CommandError, match="no valid tickets"):
        run(empty, "--format", "jsonl")
    assert_nothing_written()


def test_limit_stops_reading_at_the_nth_valid_ticket(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "l.jsonl", [qa("a"), qa("b"), qa("c"), "{broken"])
    out, _ = run(f, "--format", "jsonl", "--limit", "3")
    assert "imported 3 tickets" in out
    with pytest.raises(CommandError, match=rf"{re.escape(str(f))}:4: malformed JSON"):
        run(f, "--format", "jsonl", "--limit", "4")


def test_embedding_failure_leaves_nothing(tmp_path: Path, settings) -> None:
    from sdrbot import embeddings

    settings.EMBEDDING_PROVIDER = "openai"
    settings.OPENAI_BASE_URL = "http://127.0.0.1:1/v1"  # nothing listens: the provider fails
    embeddings.reset_embedder()
    try:
        with pytest.raises(CommandError, match="nothing was imported"):
            run(write_jsonl(tmp_path / "e.jsonl", [qa("e1"), qa("e2")]), "--format", "jsonl", "--resolved",
                "--split-test", "0")
    finally:
        embeddings.reset_embedder()
    assert_nothing_written()


# --- admin -------------------------------------------------------------------------------------------------------


def test_admin_lists_and_read_only_ticket(tmp_path: Path, client, admin_user, django_assert_max_num_queries) -> None:
    run(write_jsonl(tmp_path / "a.jsonl", [qa(f"a{i}", "Account") for i in range(12)] + [qa("b1", "Billing")]),
        "--format", "jsonl")
    client.force_login(admin_user)
    with django_assert_max_num_queries(9):  # 8 + the admins' fallback banner
        resp = client.get("/admin/conversations/ticket/")
    assert resp.status_code == 200 and "Question a3: why was I charged twice?" in resp.content.decode()
    resp = client.get("/admin/conversations/category/")
    body = resp.content.decode()
    assert resp.status_code == 200 and re.search(r"field-ticket_count\">12<", body) and "account" in body
    t = Ticket.objects.get(external_id="a1")
    resp = client.get(f"/admin/conversations/ticket/{t.pk}/change/")
    body = resp.content.decode()
    assert resp.status_code == 200 and "Reply a1: we refunded the second charge." in body
    assert 'name="subject"' not in body and "messages-0-body" not in body  # read-only
    assert client.get("/admin/conversations/ticket/add/").status_code == 403
    assert client.get("/admin/conversations/message/").status_code == 200
    assert client.get("/admin/conversations/customer/").status_code == 200
