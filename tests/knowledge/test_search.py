"""Retrieval: keyword, vector and hybrid modes, RRF, filters with iterative scan, and what a result carries."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from knowledge.models import Chunk, Document, KnowledgeSource
from knowledge.selectors import SearchError, rrf_fuse, search
from knowledge.services import DocumentInput, source_sync

pytestmark = pytest.mark.django_db

HELP = {
    "refunds": "Refunds are processed within five business days after we receive the returned item.",
    "shipping": "We ship worldwide. Express delivery takes two days within the EU.",
    "password": "To reset your password open Settings, choose Security and click Reset password.",
    "invoices": "Invoices are issued monthly and can be downloaded as PDF from the billing page.",
    "api": "The REST API is rate limited to 100 requests per minute per token.",
}


@pytest.fixture
def kb():
    source_sync(source_name="help", documents=[DocumentInput(external_id=k, text=v, title=k.title(),
                                                             metadata={"lang": "en"}) for k, v in HELP.items()])
    source_sync(source_name="sales", documents=[DocumentInput(external_id="pricing", title="Pricing",
                                                              text="The Pro plan costs 49 dollars per seat per month.",
                                                              metadata={"lang": "de"})])


def test_keyword_matches_terms(kb) -> None:
    res = search("express delivery", k=3, mode="keyword")
    assert res.hits[0].external_id == "shipping"
    assert res.hits[0].keyword_rank == 1 and res.hits[0].keyword_score > 0
    assert res.hits[0].vector_rank is None
    assert res.config["fts_rank"].startswith("ts_rank_cd") and res.config["ef_search"] is None


def test_keyword_websearch_syntax(kb) -> None:
    assert [h.external_id for h in search('"five business days"', k=5, mode="keyword").hits] == ["refunds"]
    excluded = search("password -settings", k=5, mode="keyword").hits
    assert excluded == []  # the only document with "password" also has "settings"


def test_vector_finds_a_paraphrase_without_shared_words(kb) -> None:
    res = search("how long until my money comes back", k=2, mode="vector")
    assert res.hits[0].external_id == "refunds"
    assert 0 < res.hits[0].vector_distance < 1 and res.hits[0].score == pytest.approx(1 - res.hits[0].vector_distance, abs=1e-5)
    assert res.config["embedding_model"] == "all-MiniLM-L6-v2-onnx-int8" and res.config["iterative_scan"] == "relaxed_order"
    assert "embed" in res.timings_ms and res.timings_ms["total"] >= res.timings_ms["vector"]


def test_hybrid_score_is_reciprocal_rank_fusion(kb, settings) -> None:
    res = search("reset my password", k=5, mode="hybrid")
    top = res.hits[0]
    assert top.external_id == "password"
    for h in res.hits:
        expected = sum(1 / (settings.KB_RRF_K + r) for r in (h.keyword_rank, h.vector_rank) if r is not None)
        assert h.score == pytest.approx(expected, abs=1e-6)
    assert [h.score for h in res.hits] == sorted((h.score for h in res.hits), reverse=True)
    assert res.config["rrf_k"] == 60 and res.config["candidates"] == 40


def test_rrf_fuse_exact() -> None:
    fused = rrf_fuse([[1, 2, 3], [3, 1]], k=60)
    assert fused[0] == (1, pytest.approx(1 / 61 + 1 / 62))
    assert fused[1] == (3, pytest.approx(1 / 63 + 1 / 61))
    assert fused[2] == (2, pytest.approx(1 / 62))
    assert rrf_fuse([[5], [4]], k=60) == [(4, 1 / 61), (5, 1 / 61)]  # ties break on id


def test_filters_by_source_kind_and_metadata(kb) -> None:
    assert {h.source for h in search("price per month", k=10, mode="hybrid", filters={"source": "sales"}).hits} == {"sales"}
    assert all(h.source == "help" for h in search("price", k=10, mode="vector", filters={"source": ["help"]}).hits)
    assert [h.external_id for h in search("plan", k=10, mode="vector", filters={"metadata": {"lang": "de"}}).hits] == ["pricing"]
    KnowledgeSource.objects.filter(name="sales").update(kind="resolved_tickets")
    assert {h.source for h in search("plan", k=10, mode="keyword", filters={"kind": "resolved_tickets"}).hits} == {"sales"}
    with pytest.raises(SearchError, match="unknown search filter"):
        search("x", filters={"tenant": 1})


def test_iterative_scan_keeps_filtered_vector_search_full() -> None:
    """500 chunks of document 'noise' are nearer the query than the 3 of 'target'. With ef_search=10 a plain HNSW
    scan returns 10 noise chunks and a filter excluding 'noise' leaves none; the iterative scan finds the 3.
    (The exclusion filter cannot use a btree index, so the planner must go through HNSW, as it does at scale.)"""
    rng = np.random.default_rng(7)
    q = rng.normal(size=384).astype(np.float32)
    q /= np.linalg.norm(q)

    def near(scale: float) -> list[float]:
        v = q + rng.normal(size=384).astype(np.float32) * scale
        return (v / np.linalg.norm(v)).tolist()

    src = KnowledgeSource.objects.create(name="mixed")
    docs = {}
    for name, n, scale in (("noise", 500, 0.02), ("target", 3, 0.2)):
        docs[name] = Document.objects.create(source=src, external_id=name, text=name, checksum="x")
        Chunk.objects.bulk_create([Chunk(document=docs[name], ordinal=i, text=f"{name} {i}", token_count=2,
                                         text_hash=f"{name}{i}", embedding=near(scale),
                                         embedding_model="all-MiniLM-L6-v2-onnx-int8") for i in range(n)])
    with connection.cursor() as cur:
        cur.execute("ANALYZE knowledge_chunk")
        cur.execute("SET enable_seqscan = off")  # as at scale: the planner walks the HNSW index
    try:
        res = search("anything", k=3, mode="vector", filters={"exclude_document_ids": [docs["noise"].pk]},
                     query_embedding=q, ef_search=10)
    finally:
        with connection.cursor() as cur:
            cur.execute("RESET enable_seqscan")
    assert len(res.hits) == 3 and {h.external_id for h in res.hits} == {"target"}


def test_removed_documents_are_never_retrieved(kb) -> None:
    source_sync(source_name="help", documents=[DocumentInput(external_id=k, text=v) for k, v in HELP.items() if k != "refunds"])
    for mode in ("keyword", "vector", "hybrid"):
        assert "refunds" not in [h.external_id for h in search("refund returned item", k=10, mode=mode).hits]


def test_argument_errors_and_empty_query(kb) -> None:
    with pytest.raises(SearchError, match="mode must be one of"):
        search("x", mode="semantic")
    with pytest.raises(SearchError, match="k must be between 1 and 200"):
        search("x", k=0)
    assert search("   ", mode="hybrid").hits == []
    assert search("the and of", k=5, mode="keyword").hits == []  # only stop words: an empty tsquery


def test_hits_carry_what_a_trace_needs(kb) -> None:
    res = search("invoice pdf", k=2)
    d = res.as_dict()
    hit = d["hits"][0]
    assert hit["external_id"] == "invoices" and hit["title"] == "Invoices" and hit["source"] == "help"
    assert {"chunk_id", "document_id", "text", "score", "keyword_rank", "vector_rank", "vector_distance"} <= set(hit)
    assert d["config"]["mode"] == "hybrid" and d["config"]["k"] == 2
    long = search("invoice pdf", k=1)
    long.hits[0].text = "x" * 1000
    assert long.as_dict()["hits"][0]["text"] == "x" * 400 + "…"  # a span keeps a snippet; the chunk id the rest
    assert long.as_dict(text_chars=None)["hits"][0]["text"] == "x" * 1000


def test_bounded_keyword_ranking_keeps_the_selective_matches_first(settings) -> None:
    """KB_FTS_MAX_RANKED: a query whose common word matches more chunks than the bound ranks only the chunks with its
    selective word (through the GIN index), then fills up with at most the bound of other matches."""
    docs = [DocumentInput(external_id=f"common-{i:02d}", title=f"Account note {i}",
                          text=f"Your account settings page number {i} lists the options for its owner.")
            for i in range(60)]
    docs += [DocumentInput(external_id=f"rare-{i}", title=f"Chargeback {i}",
                           text=f"A chargeback on your account: every chargeback is reviewed by the payments team, case {i}.")
             for i in range(3)]
    source_sync(source_name="bulk", documents=docs)
    with connection.cursor() as cur:
        cur.execute("ANALYZE knowledge_chunk")  # the bound is planned from pg_stats, as autovacuum keeps them
    settings.KB_FTS_MAX_RANKED = 0
    full = search("account chargeback", k=20, mode="keyword").hits
    settings.KB_FTS_MAX_RANKED = 10
    bounded = search("account chargeback", k=20, mode="keyword").hits
    assert {h.external_id for h in full[:3]} == {h.external_id for h in bounded[:3]} == {"rare-0", "rare-1", "rare-2"}
    assert len(full) == 20 and len(bounded) == 13  # 3 selective matches + at most 10 others: the bound held
    assert all(h.external_id.startswith("common-") for h in bounded[3:])
    # below the bound nothing changes: a selective query ranks every match exactly as without a bound
    settings.KB_FTS_MAX_RANKED = 0
    exact = [h.external_id for h in search("chargeback payments", k=5, mode="keyword").hits]
    settings.KB_FTS_MAX_RANKED = 10
    assert [h.external_id for h in search("chargeback payments", k=5, mode="keyword").hits] == exact
