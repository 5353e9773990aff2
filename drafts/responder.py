"""The offline grounded responder: a deterministic drafting algorithm for when no chat model is configured.
Every draft it writes is labelled "Offline responder" wherever a draft is shown.

Given the customer's message, its category and what retrieval found, it takes the first of these that applies:

1. **adapt_resolved** — the nearest resolved ticket *of the same category* (and of the same intent when the
   classifier is confident) is close enough (cosine similarity of the questions ≥
   ``RESPONDER_ADAPT_MIN_SIMILARITY``, default 0.80): reuse a reply that was actually sent — the consensus reply of
   the retrieved tickets, weighted by how close their questions are (:func:`consensus_ticket`); order numbers
   from the message fill ``{{Order Number}}``-style placeholders and leading @mentions are dropped. Confidence =
   that similarity.
2. **compose** — a knowledge-base passage is relevant (similarity ≥ ``RESPONDER_MIN_SIMILARITY``, default 0.45) and
   closer to the question than the category's nearest resolved ticket:
   pick up to three sentences from the top passages that share the most content terms with the message
   (score = |query ∩ sentence| / √|sentence|, ties to the better-ranked passage), keep them in document order, and
   cite each with ``[n]``; the sources are listed under the reply. Confidence = best similarity × share of query
   terms covered.
3. **abstain** — otherwise: ``needs_human`` set, with the reason. When the category is known and has resolved
   tickets, the draft is their consensus reply as a starting point for the agent (strategy ``adapt_resolved``, still
   ``needs_human``: such a draft is never sent by the bot); with no category, a holding reply.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings

from drafts.text import content_terms, sentences
from knowledge.selectors import Hit

HOLDING_REPLY = ("Thanks for your message. A teammate is looking into this and will get back to you shortly.")
INTRO = "Thanks for reaching out."
OUTRO = "Let us know if this doesn't solve it."
_PLACEHOLDER_ORDER = re.compile(r"\{\{\s*(order|purchase)[^}]*\}\}", re.IGNORECASE)
_ORDER_NUMBER = re.compile(r"\b(?:[A-Z]{2,4}-?)?\d{6,}\b")
_LEADING_MENTIONS = re.compile(r"^(?:@\w+\s*)+")
_BULLET = re.compile(r"^(?:[-*•]|\d{1,3}[.)])\s+")


@dataclass
class ResponderResult:
    body: str
    strategy: str  # adapt_resolved | compose | abstain
    confidence: float
    needs_human: bool
    abstain_reason: str = ""
    citations: list[dict] = field(default_factory=list)
    used_passages: list[str] = field(default_factory=list)  # the text the reply was built from (for grounding)


def similarity(hit: Hit) -> float:
    """Cosine similarity of the query and the chunk (1 − cosine distance); 0 when the hit has no vector rank."""
    return 0.0 if hit.vector_distance is None else max(0.0, 1.0 - hit.vector_distance)


def citation(hit: Hit, n: int) -> dict:
    return {"n": n, "chunk_id": hit.chunk_id, "document_id": hit.document_id, "external_id": hit.external_id,
            "source": hit.source, "title": hit.title or hit.external_id, "url": hit.url,
            "snippet": hit.text[:240], "similarity": round(similarity(hit), 4)}


CONSENSUS_TEMPERATURE = 0.2  # cosine-similarity units; chosen on the train split (docs/benchmarks.md)


def consensus_ticket(close: Sequence[Hit], temperature: float | None = None) -> Hit:
    """Among the retrieved resolved tickets of the message's category (and intent), sorted nearest first, the one
    whose reply agrees most with the others' replies, each other reply weighted by how close its question is to the
    message: minimum-Bayes-risk selection (Kumar & Byrne, 2004) with utility = normalised Levenshtein similarity and
    weights ``exp((sim_j − sim_max) / temperature)``. One ticket's idiosyncrasies (a name, an aside) are less likely
    to be copied than with the single nearest reply, and unlike an unweighted medoid the choice still depends on the
    message when the category has few tickets. Ties go to the nearer ticket."""
    if len(close) <= 2:
        return close[0]
    import numpy as np
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    replies = [h.metadata["reply"] for h in close]
    sims = np.asarray(process.cdist(replies, replies, scorer=Levenshtein.normalized_similarity))
    q = np.array([similarity(h) for h in close])
    weights = np.exp((q - q.max()) / (temperature or CONSENSUS_TEMPERATURE))
    totals = sims @ weights
    best = max(range(len(close)), key=lambda i: (round(float(totals[i]), 6), -i))
    return close[best]


def adapt_reply(reply: str, message: str) -> str:
    """Fill order-number placeholders from the message and drop leading @mentions."""
    reply = _LEADING_MENTIONS.sub("", reply.strip())
    order = _ORDER_NUMBER.search(message)
    if order:
        reply = _PLACEHOLDER_ORDER.sub(order.group(0), reply)
    return reply.strip()


def _compose(message: str, hits: Sequence[Hit]) -> tuple[str, list[dict], list[str], float]:
    query = set(content_terms(message))
    scored: list[tuple[float, int, int, str]] = []
    for rank, hit in enumerate(hits[:3]):
        for pos, sent in enumerate(sentences(hit.text)):
            sent = _BULLET.sub("", sent).strip()
            terms = content_terms(sent)
            if len(terms) < 3 or len(sent) > 600 or sent.endswith(("?", ":")):
                continue  # fragments, walls of text and the document's own questions make poor replies
            overlap = len(query & set(terms))
            if overlap:
                scored.append((overlap / math.sqrt(len(terms)), -rank, -pos, sent))
    chosen = sorted(scored, reverse=True)[:3]
    if not chosen:
        return "", [], [], 0.0
    chosen.sort(key=lambda t: (-t[1], -t[2]))  # document order: passage rank, then position
    numbers: dict[int, int] = {}  # document id → citation number (chunks of one document share it)
    first_rank: dict[int, int] = {}
    lines = []
    for _, neg_rank, _, sent in chosen:
        rank = -neg_rank
        doc = hits[rank].document_id
        n = numbers.setdefault(doc, len(numbers) + 1)
        first_rank.setdefault(doc, rank)
        lines.append(f"{sent} [{n}]")
    cites = [citation(hits[first_rank[doc]], n) for doc, n in numbers.items()]
    sources = "\n".join(f"[{c['n']}] {c['title']}" + (f" — {c['url']}" if c["url"] else "") for c in cites)
    covered = set().union(*(set(content_terms(s)) for *_, s in chosen)) & query
    coverage = len(covered) / len(query) if query else 0.0
    body = f"{INTRO}\n\n" + " ".join(lines) + f"\n\n{OUTRO}\n\nSources:\n{sources}"
    used = [hits[-neg_rank].text for _, neg_rank, _, _ in chosen]
    return body, cites, list(dict.fromkeys(used)), coverage


def respond(*, message: str, category_slug: str | None, kb_hits: Sequence[Hit], ticket_hits: Sequence[Hit],
            intent: str = "") -> ResponderResult:
    """Draft a reply (see the module docstring for the algorithm). Deterministic for the same inputs. A predicted
    ``intent`` narrows the resolved tickets to those of that intent when any of them has it (a category's tickets
    may carry no intents at all, as imported tweets do)."""
    same_category = [h for h in ticket_hits
                     if category_slug is None or h.metadata.get("category") == category_slug]
    same_intent = [h for h in same_category if intent and h.metadata.get("intent") == intent]
    if same_intent:
        same_category = same_intent
    same_category.sort(key=lambda h: (-similarity(h), h.chunk_id))
    best_ticket = same_category[0] if same_category else None
    ticket_sim = similarity(best_ticket) if best_ticket else 0.0

    if best_ticket is not None and ticket_sim >= settings.RESPONDER_ADAPT_MIN_SIMILARITY and best_ticket.metadata.get("reply"):
        # the nearest is close enough to reuse; its retrieved neighbours (same category and intent) vote
        chosen = consensus_ticket([h for h in same_category if h.metadata.get("reply")])
        reply = adapt_reply(chosen.metadata["reply"], message)
        return ResponderResult(reply, "adapt_resolved", round(ticket_sim, 4), False,
                               citations=[citation(chosen, 1)],
                               used_passages=[chosen.text, chosen.metadata["reply"]])

    relevant = [h for h in kb_hits if similarity(h) >= settings.RESPONDER_MIN_SIMILARITY]
    if relevant and max(similarity(h) for h in relevant) > ticket_sim:
        # a knowledge-base passage is closer to the question than any resolved ticket of the category
        body, cites, used, coverage = _compose(message, relevant)
        if body:
            confidence = round(similarity(relevant[0]) * (0.5 + 0.5 * coverage), 4)
            return ResponderResult(body, "compose", confidence, False, citations=cites, used_passages=used)

    with_reply = [h for h in same_category if h.metadata.get("reply")]
    if category_slug is not None and with_reply:
        # nothing close enough to stand on its own: the category's consensus reply as a starting point for the
        # agent, never sent without a human (needs_human)
        chosen = consensus_ticket(with_reply)
        return ResponderResult(adapt_reply(chosen.metadata["reply"], message), "adapt_resolved", round(ticket_sim, 4),
                               True, abstain_reason=(f"nearest resolved ticket only {ticket_sim:.2f} similar: a starting "
                                                     "point from the category's nearest tickets; check before sending"),
                               citations=[citation(chosen, 1)], used_passages=[chosen.text, chosen.metadata["reply"]])

    best_kb = max((similarity(h) for h in kb_hits), default=0.0)
    return ResponderResult(
        HOLDING_REPLY, "abstain", 0.0, True,
        abstain_reason=(f"retrieval too weak: best passage {best_kb:.2f}, best resolved ticket {ticket_sim:.2f} "
                        f"(need {settings.RESPONDER_MIN_SIMILARITY:.2f})"),
    )
