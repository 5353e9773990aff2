"""The offline grounded responder's choices, on hand-built retrieval results (no database): which resolved ticket's
reply is reused, and when a knowledge-base passage wins over the category's past tickets."""

from __future__ import annotations

import pytest

from drafts import responder
from knowledge.selectors import Hit

REPLY_A = "Please open Billing, choose Invoices and download the PDF of the month you need."
REPLY_B = "We are sorry for the trouble. A teammate will check your account and write back within a day."
REPLY_B2 = "We are sorry for the trouble. A teammate will check your account and reply within one day."


def ticket(n: int, similarity: float, reply: str, category: str = "invoice") -> Hit:
    return Hit(chunk_id=n, document_id=n, external_id=f"ticket-{n}", source="resolved", title=f"ticket {n}", url="",
               heading="", text=f"question {n}", ordinal=0, score=similarity, vector_rank=n,
               vector_distance=1.0 - similarity, metadata={"category": category, "reply": reply})


def passage(n: int, similarity: float, text: str) -> Hit:
    return Hit(chunk_id=100 + n, document_id=100 + n, external_id=f"doc-{n}", source="docs", title=f"Doc {n}",
               url="", heading="", text=text, ordinal=0, score=similarity, vector_rank=n,
               vector_distance=1.0 - similarity)


def test_consensus_weights_neighbours_by_how_close_their_question_is() -> None:
    # two very close tickets agree on A; three farther ones agree on B. An unweighted medoid picks B (more votes);
    # the similarity-weighted choice follows the close tickets.
    close = [ticket(1, 0.95, REPLY_A), ticket(2, 0.93, REPLY_A + " Thanks!"),
             ticket(3, 0.55, REPLY_B), ticket(4, 0.54, REPLY_B2), ticket(5, 0.53, REPLY_B)]
    assert responder.consensus_ticket(close).metadata["reply"] == REPLY_A
    # at a very high temperature every neighbour counts alike: the majority reply wins
    assert responder.consensus_ticket(close, temperature=100.0).metadata["reply"] in {REPLY_B, REPLY_B2}
    # with equally close questions, the majority reply wins too
    flat = [ticket(i, 0.9, r) for i, r in enumerate([REPLY_A, REPLY_B, REPLY_B2, REPLY_B], start=1)]
    assert responder.consensus_ticket(flat).metadata["reply"] in {REPLY_B, REPLY_B2}


@pytest.mark.parametrize("kb_similarity, expected", [(0.75, "compose"), (0.6, "adapt_resolved")])
def test_a_passage_is_used_only_when_closer_than_the_categorys_tickets(settings, kb_similarity, expected) -> None:
    settings.RESPONDER_ADAPT_MIN_SIMILARITY = 0.8
    settings.RESPONDER_MIN_SIMILARITY = 0.45
    kb = [passage(1, kb_similarity, "To download an invoice open Billing and choose Invoices. Each invoice is a PDF "
                                    "file with every charge of the month.")]
    tickets = [ticket(1, 0.7, REPLY_A), ticket(2, 0.69, REPLY_A), ticket(3, 0.5, REPLY_B)]
    r = responder.respond(message="How do I download my invoice PDF?", category_slug="invoice", kb_hits=kb,
                          ticket_hits=tickets)
    assert r.strategy == expected
    if expected == "compose":
        assert not r.needs_human and "[1]" in r.body and r.citations[0]["external_id"] == "doc-1"
    else:  # below the adapt threshold: the category's consensus reply as a starting point, for a human to check
        assert r.needs_human and r.body == REPLY_A


def test_a_close_resolved_ticket_is_reused_even_when_a_passage_is_closer(settings) -> None:
    settings.RESPONDER_ADAPT_MIN_SIMILARITY = 0.8
    kb = [passage(1, 0.95, "Invoices are PDF files listed under Billing, one per month, with every charge.")]
    tickets = [ticket(1, 0.9, REPLY_A), ticket(2, 0.85, REPLY_A), ticket(3, 0.6, REPLY_B)]
    r = responder.respond(message="Where is my invoice?", category_slug="invoice", kb_hits=kb, ticket_hits=tickets)
    assert r.strategy == "adapt_resolved" and not r.needs_human and r.confidence == 0.9 and r.body == REPLY_A
