"""draft_replay: metrics against what humans sent, the category baseline, and no ticket finding its own reply."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from drafts.replay import ReplayCase, category_baselines, edit_similarity, replay
from drafts.text import token_f1

pytestmark = pytest.mark.django_db

QA = [
    ("orders", "cancel my order please", "Your order is cancelled and the refund is on its way."),
    ("orders", "please cancel the order I placed", "Your order is cancelled and the refund is on its way."),
    ("orders", "I need to cancel an order", "Your order is cancelled; the refund takes five days."),
    ("orders", "cancel order now", "Your order is cancelled and the refund is on its way."),
    ("orders", "how do I cancel my order", "Your order is cancelled and the refund is on its way."),
    ("orders", "where is my parcel", "Your parcel is with the courier and arrives tomorrow."),
    ("orders", "my parcel has not arrived", "Your parcel is with the courier and arrives tomorrow."),
    ("orders", "parcel still not delivered", "Your parcel is with the courier and arrives tomorrow."),
    ("account", "reset my password", "Use the reset link on the login page."),
    ("account", "forgot my password", "Use the reset link on the login page."),
    ("account", "password reset does not work", "Use the reset link on the login page; it expires in an hour."),
]


@pytest.fixture
def imported(tmp_path: Path) -> Path:
    f = tmp_path / "history.jsonl"
    f.write_text("".join(json.dumps({"id": f"h{i}", "category": c, "question": q, "reply": r}) + "\n"
                         for i, (c, q, r) in enumerate(QA)))
    call_command("tickets_import", str(f), "--format", "jsonl", "--resolved", "--split-test", "0.3", "--seed", "3",
                 stdout=StringIO(), stderr=StringIO())
    return f


def test_metric_definitions() -> None:
    assert edit_similarity("kitten  sitting", "kitten sitting") == 1.0
    assert edit_similarity("abcd", "abce") == pytest.approx(0.75)
    assert token_f1("the order is cancelled", "order cancelled") == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_baseline_is_the_most_common_reply_else_the_medoid(imported) -> None:
    base = category_baselines(["orders", "account"])
    assert base["account"] in {r for c, _, r in QA if c == "account"}
    from collections import Counter

    from conversations.models import Message

    train = Counter(Message.objects.filter(role="agent", ticket__split="train", ticket__category__slug="orders")
                    .values_list("body", flat=True))
    reply, count = train.most_common(1)[0]
    assert count > 1 and base["orders"] == reply


def test_replay_of_the_held_out_split(imported) -> None:
    out = StringIO()
    call_command("draft_replay", "--split", "test", "--json", stdout=out)
    report = json.loads(out.getvalue())
    from conversations.models import Ticket

    n_test = Ticket.objects.filter(split="test").count()
    assert 0 < report["overall"]["n"] == n_test
    for row in report["categories"].values():
        assert {"edit_similarity", "baseline_similarity", "token_f1", "grounding", "abstain_rate", "p50_ms",
                "p95_ms", "beats_baseline"} <= set(row)
        assert 0 <= row["edit_similarity"] <= 1 and row["p95_ms"] >= row["p50_ms"] > 0


def test_a_replayed_ticket_never_retrieves_its_own_reply(imported) -> None:
    """Replaying the whole file includes train tickets whose replies are in the resolved-ticket corpus; each must be
    drafted from its neighbours, not from itself."""
    unique = ReplayCase("h2", "orders", ["I need to cancel an order"], "Your order is cancelled; the refund takes five days.")
    report = replay([unique])
    from conversations.models import Ticket

    if Ticket.objects.get(external_id="h2").split == "train":
        assert report["overall"]["edit_similarity"] < 1.0  # its own (unique) reply was excluded


def test_classify_mode_reports_category_accuracy(imported) -> None:
    call_command("classifier_train", "--target", "category", "--min-per-label", "2", stdout=StringIO())
    out = StringIO()
    call_command("draft_replay", "--split", "test", "--classify", "--json", stdout=out)
    assert 0 <= json.loads(out.getvalue())["overall"]["category_accuracy"] <= 1


def test_errors() -> None:
    with pytest.raises(CommandError, match="no tickets to replay"):
        call_command("draft_replay", "--split", "test")
    with pytest.raises(CommandError, match="--format is required"):
        call_command("draft_replay", "--file", "x.jsonl")
    with pytest.raises(CommandError, match="no such file"):
        call_command("draft_replay", "--file", "/nonexistent.jsonl", "--format", "jsonl")
    with pytest.raises(CommandError, match="no train-split tickets"):
        call_command("classifier_train", "--target", "category")
