"""Reads of the knowledge base, chiefly :func:`search`: keyword, vector and hybrid retrieval over chunks."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from knowledge.models import Document
from sdrbot.embeddings import get_embedder

MODES = ("keyword", "vector", "hybrid")
# Words that make a query "websearch syntax" rather than plain language: quotes, OR, a leading minus.
_WEBSEARCH_OPERATORS = re.compile(r'"|\bor\b|(?:^|\s)-\w', re.IGNORECASE)


class SearchError(ValueError):
    """Bad arguments to :func:`search` (unknown mode, k out of range, unknown filter key)."""


SPAN_TEXT_CHARS = 400  # characters of a hit's text kept on a retrieval span (SearchResult.as_dict)


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + "…"


@dataclass
class Hit:
    """One retrieved chunk. ``score`` is the mode's own ranking score (keyword: ``ts_rank_cd``; vector: cosine
    similarity ``1 - distance``; hybrid: the RRF sum). The per-list ranks (1-based) and scores are kept."""

    chunk_id: int
    document_id: int
    external_id: str
    source: str
    title: str
    url: str
    heading: str
    text: str
    ordinal: int
    score: float
    keyword_rank: int | None = None
    keyword_score: float | None = None
    vector_rank: int | None = None
    vector_distance: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchResult:
    hits: list[Hit]
    config: dict[str, Any]
    timings_ms: dict[str, float]

    def as_dict(self, *, text_chars: int | None = SPAN_TEXT_CHARS) -> dict[str, Any]:
        """JSON-ready form, as stored on a retrieval span: every hit with its ranks and scores, its text (and a
        resolved ticket's reply) cut to ``text_chars`` characters — the chunk id leads to the whole text — so a
        trace stays small and quick to redact and store; ``text_chars=None`` keeps everything."""
        hits = []
        for h in self.hits:
            d = asdict(h)
            if text_chars is not None:
                d["text"] = _cut(d["text"], text_chars)
                if isinstance(d["metadata"].get("reply"), str):
                    d["metadata"] = {**d["metadata"], "reply": _cut(d["metadata"]["reply"], text_chars)}
            hits.append(d)
        return {"hits": hits, "config": self.config, "timings_ms": self.timings_ms}



def _filter_sql(filters: dict[str, Any] | None) -> tuple[str, list[Any], bool]:
    """SQL for filters → (where fragment, params, needs the document/source join).

    Filters: ``source`` (name or list of names), ``kind`` (source kind or list), ``metadata`` (dict that the
    document's metadata must contain, JSONB ``@>``), ``exclude_document_ids`` (list of ids)."""
    if not filters:
        return "", [], False
    allowed = {"source", "kind", "metadata", "exclude_document_ids"}
    unknown = set(filters) - allowed
    if unknown:
        raise SearchError(f"unknown search filter(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    parts: list[str] = []
    params: list[Any] = []
    join = False
    for key, col in (("source", "s.name"), ("kind", "s.kind")):
        if filters.get(key):
            vals = filters[key] if isinstance(filters[key], (list, tuple)) else [filters[key]]
            parts.append(f"{col} = ANY(%s)")
            params.append(list(vals))
            join = True
    if filters.get("metadata"):
        parts.append("d.metadata @> %s::jsonb")
        params.append(json.dumps(filters["metadata"]))
        join = True
    if filters.get("exclude_document_ids"):
        parts.append("NOT (c.document_id = ANY(%s))")
        params.append([int(i) for i in filters["exclude_document_ids"]])
    return (" AND " + " AND ".join(parts)) if parts else "", params, join


_JOIN = (
    " JOIN knowledge_document d ON d.id = c.document_id"
    " JOIN knowledge_knowledgesource s ON s.id = d.source_id"
)


def _tsquery_sql(query: str) -> tuple[str, str]:
    """(SQL producing the tsquery, the query text). Plain-language queries are OR-ed over their lexemes so that a
    question matches passages containing some of its words (ranked by ts_rank_cd's cover density); queries that
    use websearch operators (quotes, OR, -word) keep ``websearch_to_tsquery``'s exact semantics."""
    if _WEBSEARCH_OPERATORS.search(query):
        return "websearch_to_tsquery(%s::regconfig, %s)", query
    return "replace(websearch_to_tsquery(%s::regconfig, %s)::text, ' & ', ' | ')::tsquery", query


# Keyword candidates on a large knowledge base. A plain-language query is OR-ed over its lexemes, so a question
# made of common words ("configure", "instance", "storage") matches most chunks, and ranking every match costs
# ~15 µs a chunk with ts_rank_cd: hundreds of milliseconds at 100k chunks (docs/benchmarks.md). So when the
# planner's statistics (pg_stats.most_common_elems of chunk.search_vector, kept by ANALYZE/autovacuum) estimate
# that the query matches more than KB_FTS_MAX_RANKED chunks (default 500; 0 = no bound), only a bounded candidate
# set is ranked: chunks containing the query's most selective lexemes (the rarest ones OR-ed while their estimated
# matches add up to at most the bound; if even the rarest is more common than that, the rarest ones AND-ed until
# the estimate falls under it), at most KB_FTS_MAX_RANKED of them, found through the GIN index. Candidates must
# still match the whole query and are ranked against the whole query; if fewer than the requested number do (the
# rare words are typos, say), up to KB_FTS_MAX_RANKED other matching chunks fill the rest of the list, ranked
# after them. Below the bound (small knowledge bases, selective queries) every match is ranked exactly as without
# it. Lexemes missing from the statistics are estimated as the planner does (half the least common listed
# frequency); with no statistics yet, every match is ranked. Queries with explicit websearch operators keep their
# AND semantics and are always ranked in full.
_PLAN_SQL = r"""
mce AS (
    SELECT s.most_common_elems::text::text[] AS elems, s.most_common_elem_freqs AS freqs
    FROM pg_stats s
    WHERE s.schemaname = current_schema() AND s.tablename = 'knowledge_chunk' AND s.attname = 'search_vector'
),
words AS (
    SELECT w.lexeme, t.n, t.n * coalesce(f.freq, (SELECT freqs[cardinality(elems) + 1] / 2 FROM mce), 0) AS est
    FROM (SELECT greatest(reltuples, 0)::float8 AS n FROM pg_class WHERE oid = 'knowledge_chunk'::regclass) t
    CROSS JOIN unnest(tsvector_to_array(to_tsvector(%s::regconfig, %s))) AS w(lexeme)
    LEFT JOIN (SELECT u.lexeme, u.freq FROM mce, unnest(mce.elems, mce.freqs[1:cardinality(mce.elems)]) AS u(lexeme, freq)) f
           ON f.lexeme = w.lexeme
),
ordered AS (
    SELECT lexeme, n, est, row_number() OVER w AS rn,
           sum(est) OVER w AS est_any,
           n * exp(sum(ln(greatest(est, 0.5) / greatest(n, 1))) OVER w_before) AS est_all_before,
           '''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || '''' AS quoted
    FROM words
    WINDOW w AS (ORDER BY est, lexeme ROWS UNBOUNDED PRECEDING),
           w_before AS (ORDER BY est, lexeme ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
),
plan AS (
    SELECT (CASE
        WHEN max(n) <= %s OR max(est_any) <= %s THEN NULL
        WHEN min(est) <= %s THEN string_agg(quoted, ' | ' ORDER BY rn) FILTER (WHERE est_any <= %s)
        ELSE string_agg(quoted, ' & ' ORDER BY rn) FILTER (WHERE rn = 1 OR est_all_before > %s)
    END)::tsquery AS cand
    FROM ordered
)"""


def keyword_candidates(cur, query: str, n: int, filters: dict[str, Any] | None) -> list[tuple[int, float]]:
    where, params, join = _filter_sql(filters)
    tsq, text = _tsquery_sql(query)
    rank_fn = settings.KB_FTS_RANK
    if rank_fn not in ("ts_rank_cd", "ts_rank"):
        raise SearchError(f"KB_FTS_RANK must be ts_rank_cd or ts_rank, not {rank_fn!r}")
    bound = int(settings.KB_FTS_MAX_RANKED or 0)
    joins = _JOIN if join else ""
    if bound <= 0 or _WEBSEARCH_OPERATORS.search(query):
        # Rank every match: with no bound, or for queries with explicit operators (AND semantics, usually selective).
        cur.execute(
            f"WITH query AS (SELECT {tsq} AS q)"
            f" SELECT c.id, {rank_fn}(c.search_vector, query.q, %s) AS r FROM query, knowledge_chunk c{joins}"
            f" WHERE query.q <> ''::tsquery AND c.search_vector @@ query.q{where} ORDER BY r DESC, c.id LIMIT %s",
            [settings.KB_FTS_CONFIG, text, settings.KB_FTS_RANK_NORMALIZATION, *params, n],
        )
        return [(int(i), float(r)) for i, r in cur.fetchall()]
    # One round trip. `plan` is NULL when every match can be ranked; otherwise `sel` holds the (at most `bound`)
    # chunks containing the selective lexemes, found through the GIN index. If fewer than n of them match the
    # query (e.g. its rare words are typos), up to `bound` other matching chunks fill the list, ranked after them.
    norm = settings.KB_FTS_RANK_NORMALIZATION
    cur.execute(
        f"WITH query AS NOT MATERIALIZED (SELECT {tsq} AS q), {_PLAN_SQL},"
        f" sel AS MATERIALIZED (SELECT c.id, c.search_vector FROM knowledge_chunk c{joins}"
        f"  WHERE c.search_vector @@ (SELECT cand FROM plan){where} LIMIT %s),"
        f" hit AS MATERIALIZED (SELECT sel.id, sel.search_vector FROM sel, query WHERE sel.search_vector @@ query.q)"
        f" SELECT x.id, x.r FROM query, ("
        f"  SELECT hit.id, 0 AS tier, {rank_fn}(hit.search_vector, query.q, %s) AS r FROM hit, query"
        f"  UNION ALL"
        f"  SELECT c.id, 0, {rank_fn}(c.search_vector, query.q, %s) FROM query, knowledge_chunk c{joins}"
        f"  WHERE (SELECT cand FROM plan) IS NULL AND c.search_vector @@ query.q{where}"
        f"  UNION ALL"
        f"  (SELECT c.id, 1, {rank_fn}(c.search_vector, query.q, %s) FROM query, knowledge_chunk c{joins}"
        f"   WHERE (SELECT cand FROM plan) IS NOT NULL AND (SELECT count(*) FROM hit) < %s"
        f"   AND c.search_vector @@ query.q AND NOT c.search_vector @@ (SELECT cand FROM plan){where} LIMIT %s)"
        f" ) x WHERE query.q <> ''::tsquery ORDER BY x.tier, x.r DESC, x.id LIMIT %s",
        [settings.KB_FTS_CONFIG, text, settings.KB_FTS_CONFIG, text, *([bound] * 5), *params, bound,
         norm, norm, *params, norm, n, *params, bound, n],
    )
    return [(int(i), float(r)) for i, r in cur.fetchall()]


def vector_candidates(cur, embedding: np.ndarray, n: int, filters: dict[str, Any] | None, *,
                      model: str) -> list[tuple[int, float]]:
    """Nearest chunks by cosine distance. Runs inside :func:`search`'s transaction, which set the HNSW parameters."""
    where, params, join = _filter_sql(filters)
    vec = "[" + ",".join(f"{x:.7g}" for x in embedding.tolist()) + "]"
    cur.execute(
        f"SELECT c.id, c.embedding <=> %s::vector AS dist FROM knowledge_chunk c{_JOIN if join else ''}"
        f" WHERE c.embedding_model = %s{where} ORDER BY dist LIMIT %s",
        [vec, model, *params, n],
    )
    rows = [(int(i), float(d)) for i, d in cur.fetchall()]
    rows.sort(key=lambda r: (r[1], r[0]))
    return rows


def rrf_fuse(lists: Sequence[Sequence[int]], k: int) -> list[tuple[int, float]]:
    """Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009): score(d) = Σ_lists 1 / (k + rank(d)),
    ranks 1-based; k = 60 in the paper (``KB_RRF_K``). Ties break on the id for determinism."""
    scores: dict[int, float] = {}
    for ranked in lists:
        for rank, item in enumerate(ranked, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def search(
    query: str,
    k: int = 5,
    mode: str = "hybrid",
    filters: dict[str, Any] | None = None,
    *,
    query_embedding: np.ndarray | None = None,
    ef_search: int | None = None,
    candidates: int | None = None,
) -> SearchResult:
    """Retrieve the ``k`` best chunks for ``query``.

    - ``keyword``: Postgres full-text (``websearch_to_tsquery``; plain language OR-ed), ranked by ``ts_rank_cd``
      (``KB_FTS_RANK``; ``ts_rank`` is the alternative) with normalization ``KB_FTS_RANK_NORMALIZATION`` (default 1:
      divide by 1 + log(document length), so long chunks do not win by length alone). When the statistics say a
      query matches more than ``KB_FTS_MAX_RANKED`` chunks (default 500), only a bounded candidate set containing
      its most selective lexemes is ranked (see :func:`keyword_candidates`).
    - ``vector``: cosine distance on the HNSW index (``ef_search``, default ``KB_HNSW_EF_SEARCH``), iterative scan.
    - ``hybrid``: both lists of ``candidates`` (default ``max(4k, 40)``) fused by RRF (``KB_RRF_K``, default 60).

    ``query_embedding`` (unit vector) skips embedding the query, e.g. when the caller has it already. Returns a
    :class:`SearchResult` with hits, the configuration used and timings (ms). Raises :class:`SearchError` on bad
    arguments; an empty query gives no hits.
    """
    if mode not in MODES:
        raise SearchError(f"mode must be one of {MODES}, not {mode!r}")
    if not 1 <= k <= 200:
        raise SearchError(f"k must be between 1 and 200, not {k}")
    ef = ef_search or settings.KB_HNSW_EF_SEARCH
    n = candidates or (k if mode != "hybrid" else max(4 * k, 40))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    embedder = get_embedder() if mode != "keyword" else None
    config = {
        "mode": mode, "k": k, "candidates": n, "filters": filters or {}, "fts_config": settings.KB_FTS_CONFIG,
        "fts_rank": f"{settings.KB_FTS_RANK}(normalization={settings.KB_FTS_RANK_NORMALIZATION})" if mode != "vector" else None,
        "ef_search": ef if mode != "keyword" else None, "rrf_k": settings.KB_RRF_K if mode == "hybrid" else None,
        "embedding_model": embedder.name if embedder else None, "iterative_scan": "relaxed_order" if embedder else None,
    }
    query = (query or "").strip()
    if not query:
        return SearchResult([], config, {"total": 0.0})
    if embedder is not None and query_embedding is None:
        t = time.perf_counter()
        query_embedding = embedder.embed([query])[0]
        timings["embed"] = (time.perf_counter() - t) * 1000
    kw: list[tuple[int, float]] = []
    vc: list[tuple[int, float]] = []
    with transaction.atomic(), connection.cursor() as cur:
        # For this transaction only: the searches are planned for their own parameters every time (prepared
        # statements would otherwise switch to a generic plan after five runs, blind to how selective this query's
        # words and this category filter are: retrieval p95 +7-12 ms in bench/pipeline_overhead.py); and the HNSW
        # iterative scan (pgvector 0.8) keeps scanning when filters discard candidates instead of returning fewer
        # than n rows (relaxed_order may return them slightly out of order, so results are re-sorted).
        cur.execute("SELECT set_config('plan_cache_mode', 'force_custom_plan', true),"
                    " set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', 'relaxed_order', true)",
                    [str(max(ef, n))])
        if mode in ("keyword", "hybrid"):
            t = time.perf_counter()
            kw = keyword_candidates(cur, query, n, filters)
            timings["keyword"] = (time.perf_counter() - t) * 1000
        if mode in ("vector", "hybrid"):
            t = time.perf_counter()
            assert embedder is not None and query_embedding is not None
            vc = vector_candidates(cur, query_embedding, n, filters, model=embedder.name)
            timings["vector"] = (time.perf_counter() - t) * 1000
        if mode == "keyword":
            ranked = kw[:k]
        elif mode == "vector":
            ranked = [(i, 1.0 - d) for i, d in vc[:k]]
        else:
            ranked = rrf_fuse([[i for i, _ in kw], [i for i, _ in vc]], settings.KB_RRF_K)[:k]
        t = time.perf_counter()
        hits = _hydrate(cur, ranked, kw, vc)
        timings["fetch"] = (time.perf_counter() - t) * 1000
    timings["total"] = (time.perf_counter() - t0) * 1000
    return SearchResult(hits, config, {key: round(v, 3) for key, v in timings.items()})


def _json(value: Any) -> dict[str, Any]:
    """jsonb from a raw cursor: Django's psycopg setup leaves it as text for JSONField to decode."""
    if isinstance(value, str):
        return json.loads(value)
    return value or {}


def _hydrate(cur, ranked: list[tuple[int, float]], kw: list[tuple[int, float]], vc: list[tuple[int, float]]) -> list[Hit]:
    if not ranked:
        return []
    kw_pos = {cid: (r, s) for r, (cid, s) in enumerate(kw, start=1)}
    vc_pos = {cid: (r, d) for r, (cid, d) in enumerate(vc, start=1)}
    cur.execute(
        "SELECT c.id, c.document_id, d.external_id, s.name, d.title, d.url, c.heading, c.text, c.ordinal, d.metadata"
        " FROM knowledge_chunk c" + _JOIN + " WHERE c.id = ANY(%s)",
        [[cid for cid, _ in ranked]],
    )
    rows = {r[0]: r for r in cur.fetchall()}
    hits = []
    for cid, score in ranked:
        r = rows.get(cid)
        if r is None:  # deleted between the two queries
            continue
        kr = kw_pos.get(cid)
        vr = vc_pos.get(cid)
        hits.append(Hit(
            chunk_id=cid, document_id=r[1], external_id=r[2], source=r[3], title=r[4], url=r[5], heading=r[6],
            text=r[7], ordinal=r[8], metadata=_json(r[9]), score=round(score, 6),
            keyword_rank=kr[0] if kr else None, keyword_score=round(kr[1], 6) if kr else None,
            vector_rank=vr[0] if vr else None, vector_distance=round(vr[1], 6) if vr else None,
        ))
    return hits


def stale_documents(source_name: str | None = None):
    """Live documents older than their source's refresh interval, oldest first."""
    qs = Document.objects.stale().select_related("source").order_by("fetched_at")
    return qs.filter(source__name=source_name) if source_name else qs


def knowledge_stats() -> dict[str, int]:
    """Counts for the console header: sources, live documents, chunks, stale documents (4 cheap queries)."""
    from knowledge.models import Chunk, KnowledgeSource

    return {
        "sources": KnowledgeSource.objects.count(),
        "documents": Document.objects.live().count(),
        "chunks": Chunk.objects.count(),
        "stale": Document.objects.stale().count(),
    }
