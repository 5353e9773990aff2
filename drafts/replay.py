"""Offline replay (phase 1 of the rollout): run held-out historical tickets through the drafting pipeline without
storing or sending anything, and compare each draft with the reply a human actually sent.

Metrics, per category and overall:
- ``edit_similarity``: normalised Levenshtein similarity (rapidfuzz, 0–1) on whitespace-normalised text; the
  draft's citation markers and "Sources:" list are removed first (they are console annotations, not reply text);
- ``token_f1``: SQuAD-style token F1;
- ``grounding``: mean grounding score of drafts that claim something; ``abstain_rate``: share of drafts that ask
  for a human; ``p50_ms``/``p95_ms``: pipeline latency per draft;
- ``baseline_similarity`` / ``baseline_f1``: the same for the baseline "always send the most common reply of the
  category" (train split). When every train reply of a category is unique — true of Bitext — the most common reply
  is taken as the medoid: the reply with the highest mean similarity to the others (a stronger baseline than an
  arbitrary pick). ``literal_baseline_similarity`` is the literal reading: the first of the equally common replies.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.utils.text import slugify
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from conversations.models import Category, Message, Ticket
from drafts.services import draft_compose
from drafts.text import normalise_ws, strip_citations, token_f1
from knowledge.models import Document
from sdrbot.tracing import SpanCollector

_SOURCES = re.compile(r"\n\s*Sources:\s*\n.*\Z", re.DOTALL)
MEDOID_SAMPLE = 300


@dataclass(frozen=True)
class ReplayCase:
    ref: str  # ticket external id (or pk) for messages
    category: str  # slug
    customer_messages: list[str]
    reference: str  # the reply a human sent


def comparable(draft: str) -> str:
    return normalise_ws(strip_citations(_SOURCES.sub("", draft)))


def edit_similarity(a: str, b: str) -> float:
    """Normalised Levenshtein similarity of whitespace-normalised texts, 0–1."""
    return float(Levenshtein.normalized_similarity(normalise_ws(a), normalise_ws(b)))


def cases_from_db(*, split: str = "test", category: str | None = None, limit: int | None = None) -> list[ReplayCase]:
    """Imported tickets of a split: customer turns before the first agent reply, and that reply."""
    tickets = Ticket.objects.filter(split=split, category__isnull=False).select_related("category").order_by("pk")
    if category:
        tickets = tickets.filter(category__slug=category)
    if limit:
        tickets = tickets[:limit]
    ticket_rows = list(tickets)
    msgs: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for tid, role, body in (Message.objects.filter(ticket__in=ticket_rows).order_by("ticket_id", "turn_index")
                            .values_list("ticket_id", "role", "body")):
        msgs[tid].append((role, body))
    cases = []
    for t in ticket_rows:
        turns = msgs[t.pk]
        first_agent = next((i for i, (role, _) in enumerate(turns) if role == Message.Role.AGENT), None)
        if not first_agent:
            continue
        assert t.category is not None  # filtered on category__isnull=False
        cases.append(ReplayCase(t.external_id or str(t.pk), t.category.slug,
                                [b for r, b in turns[:first_agent] if r == Message.Role.CUSTOMER], turns[first_agent][1]))
    return cases


def cases_from_file(path: Path, *, fmt: str, category: str | None = None, limit: int | None = None,
                    split_test: float | None = None, seed: int = 7) -> list[ReplayCase]:
    """Records of a file (the import readers, with their masking). With ``split_test``, only the records that the
    import's deterministic split puts in ``test`` — the held-out part."""
    from conversations.importing import read_records, split_of

    records, _problems = read_records(path, fmt=fmt)
    cases = []
    for r in records:
        if split_test is not None and split_of(r.external_id, seed=seed, split_test=split_test) != "test":
            continue
        slug = slugify(r.category)
        if category and slug != category:
            continue
        cases.append(ReplayCase(r.external_id, slug, r.customer_messages, r.reply))
        if limit and len(cases) >= limit:
            break
    return cases


def category_baselines(slugs: Sequence[str], *, strong: bool = True) -> dict[str, str]:
    """The most common train reply per category. When every reply is unique, ``strong`` takes the medoid (see the
    module docstring); otherwise the literal reading: the first of the equally common replies, in ticket order."""
    replies: dict[str, list[str]] = defaultdict(list)
    rows = (Message.objects.filter(role=Message.Role.AGENT, ticket__split=Ticket.Split.TRAIN,
                                   ticket__category__slug__in=list(slugs))
            .order_by("ticket_id", "turn_index").values_list("ticket__category__slug", "ticket_id", "body"))
    seen_ticket: set[int] = set()
    for slug, tid, body in rows:
        if tid not in seen_ticket:  # the first agent reply of each ticket
            seen_ticket.add(tid)
            replies[slug].append(body)
    out = {}
    for slug, texts in replies.items():
        counts = Counter(normalise_ws(t) for t in texts)
        top, n = counts.most_common(1)[0]
        if n > 1 or not strong:
            out[slug] = top
            continue
        sample = sorted(texts)[:MEDOID_SAMPLE] if len(texts) > MEDOID_SAMPLE else texts
        norm = [normalise_ws(t) for t in sample]
        sims = process.cdist(norm, norm, scorer=Levenshtein.normalized_similarity, workers=-1)
        out[slug] = sample[int(np.asarray(sims).mean(axis=1).argmax())]
    return out


def _exclusions(cases: Sequence[ReplayCase]) -> dict[str, list[int]]:
    """Resolved-ticket documents of the replayed tickets themselves, so a ticket never retrieves its own reply."""
    ids = {c.ref for c in cases}
    tickets = dict(Ticket.objects.filter(external_id__in=ids).values_list("pk", "external_id"))
    if not tickets:
        return {}
    docs = Document.objects.filter(external_id__in=[f"ticket-{pk}" for pk in tickets]).values_list("pk", "external_id")
    out: dict[str, list[int]] = defaultdict(list)
    for doc_pk, ext in docs:
        out[tickets[int(ext.removeprefix("ticket-"))]].append(doc_pk)
    return out


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    lat = [r["ms"] for r in rows]
    grounded = [r["grounding"] for r in rows if r["grounding"] is not None]
    s: dict[str, Any] = {
        "n": len(rows),
        "edit_similarity": round(float(np.mean([r["sim"] for r in rows])), 4),
        "token_f1": round(float(np.mean([r["f1"] for r in rows])), 4),
        "grounding": round(float(np.mean(grounded)), 4) if grounded else None,
        "abstain_rate": round(float(np.mean([r["abstain"] for r in rows])), 4),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p95_ms": round(float(np.percentile(lat, 95)), 2),
    }
    if all(r["base_sim"] is not None for r in rows):
        s["baseline_similarity"] = round(float(np.mean([r["base_sim"] for r in rows])), 4)
        s["baseline_f1"] = round(float(np.mean([r["base_f1"] for r in rows])), 4)
        s["beats_baseline"] = s["edit_similarity"] > s["baseline_similarity"]
    if all(r.get("literal_sim") is not None for r in rows):
        s["literal_baseline_similarity"] = round(float(np.mean([r["literal_sim"] for r in rows])), 4)
        s["beats_literal_baseline"] = s["edit_similarity"] > s["literal_baseline_similarity"]
    if any(r["cat_ok"] is not None for r in rows):
        judged = [r["cat_ok"] for r in rows if r["cat_ok"] is not None]
        s["category_accuracy"] = round(float(np.mean(judged)), 4)
    s["strategies"] = dict(Counter(r["strategy"] for r in rows))
    by_strategy: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_strategy[r["strategy"]].append(r)
    # where the responder wins or loses: each strategy's similarity beside the baseline's on the same tickets
    s["by_strategy"] = {k: {"n": len(v), "edit_similarity": round(float(np.mean([r["sim"] for r in v])), 4),
                            "baseline_similarity": (round(float(np.mean([r["base_sim"] for r in v])), 4)
                                                    if all(r["base_sim"] is not None for r in v) else None)}
                        for k, v in sorted(by_strategy.items())}
    return s


def replay(cases: Sequence[ReplayCase], *, given_category: bool = True,
           progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Draft every case with the real pipeline (nothing stored) → {"overall": {...}, "categories": {slug: {...}}}.
    With ``given_category`` the ticket's true category is passed in, as for a ticket that arrives categorised;
    otherwise the classifier must find it and its accuracy is reported."""
    categories = {c.slug: c for c in Category.objects.filter(slug__in={c.category for c in cases})}
    baselines = category_baselines(list(categories))
    literal = category_baselines(list(categories), strong=False)
    exclude = _exclusions(cases)
    rows: list[dict[str, Any]] = []
    for case in cases:
        message = case.customer_messages[-1]
        history = [("customer", m) for m in case.customer_messages[:-1]]
        t = time.perf_counter()
        out = draft_compose(message=message, history=history,
                            category=categories.get(case.category) if given_category else None,
                            recorder=SpanCollector(), exclude_document_ids=exclude.get(case.ref, []))
        ms = (time.perf_counter() - t) * 1000
        draft = comparable(out.body)
        base = baselines.get(case.category)
        rows.append({
            "category": case.category, "ms": ms, "strategy": out.strategy,
            "sim": edit_similarity(draft, case.reference), "f1": token_f1(draft, case.reference),
            "base_sim": edit_similarity(base, case.reference) if base is not None else None,
            "base_f1": token_f1(base, case.reference) if base is not None else None,
            "literal_sim": (edit_similarity(literal[case.category], case.reference)
                            if case.category in literal else None),
            "grounding": out.grounding_score, "abstain": out.needs_human,
            "cat_ok": None if given_category else (out.category is not None and out.category.slug == case.category),
        })
        if progress:
            progress(1)
    if not rows:
        return {"overall": {"n": 0}, "categories": {}}
    by_cat: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_cat[r["category"]].append(r)
    return {"overall": _summary(rows), "categories": {slug: _summary(rs) for slug, rs in sorted(by_cat.items())}}
