"""Query latency of ``knowledge.selectors.search(k=10)`` at 10,000 and 100,000 chunks, query embedding excluded.

    .venv/bin/python bench/query_latency.py [--repeats 3] [--keep]

Target: hybrid p95 <= 20 ms at 100k chunks.

The knowledge base starts as the real chunks of the 349 MTRAG IBM Cloud passages (source ``ibm-cloud-docs``).
It is then grown to 10,000 and to 100,000 chunks with SYNTHETIC chunks (source ``synthetic-scale``, 10 chunks per
synthetic document): each synthetic text is a real chunk's text with one sentence swapped for a sentence of
another real chunk (both picked deterministically), its heading is the real chunk's heading, and its embedding is
the real chunk's stored embedding plus seeded Gaussian noise (sigma 0.02 per dimension), re-normalised to unit
length. Rows are loaded with binary COPY; the GIN and HNSW indexes are rebuilt after each load (same definitions
as knowledge/models.py, via Django's schema editor) and the table is ANALYZEd.

Queries: the last user turns of the 86 judged MTRAG-UN cloud tasks, embedded once beforehand and passed as
``query_embedding=``, so the timed wall time of each ``search()`` call excludes the query embedding. Each mode
gets one unmeasured warm-up pass, then ``--repeats`` measured passes over the 86 queries.

At the end the synthetic source is dropped again (unless ``--keep``), leaving the 349 real passages.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

SYNTH_SOURCE = "synthetic-scale"
SEED = 20261121
SIGMA = 0.02
CHUNKS_PER_DOC = 10
SCALES = (10_000, 100_000)
TARGET_MS = 20.0
BATCH = 10_000
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


# ------------------------------------------------------------------------------------------------ synthetic data


def _real_chunks():
    """(heading, text, token_count, embedding) of the real MTRAG chunks, in id order."""
    import numpy as np

    from knowledge.models import Chunk

    rows = list(Chunk.objects.filter(document__source__name=_common.MTRAG_SOURCE).order_by("id")
                .values_list("heading", "text", "token_count", "embedding"))
    return [(h, t, n, np.asarray(e, dtype=np.float32)) for h, t, n, e in rows]


def _synthetic_rows(real, start: int, count: int, model: str):
    """Synthetic chunks number ``start`` … ``start + count - 1``: yields (j, heading, text, token_count, text_hash,
    embedding). Deterministic: chunk j derives from real chunk ``j mod R`` and an RNG seeded with (SEED, start)."""
    import numpy as np

    from knowledge.services import text_hash

    rng = np.random.default_rng([SEED, start])
    sentences = [_SENTENCE.split(t) for _, t, _, _ in real]
    base_emb = np.stack([e for *_, e in real])
    r = len(real)
    for off in range(0, count, BATCH):
        n = min(BATCH, count - off)
        js = np.arange(start + off, start + off + n)
        bases = js % r
        donors = rng.integers(0, r, size=n)
        picks = rng.random((n, 2))
        noise = rng.standard_normal((n, base_emb.shape[1]), dtype=np.float32) * SIGMA
        embs = base_emb[bases] + noise
        embs /= np.linalg.norm(embs, axis=1, keepdims=True)
        for i in range(n):
            heading, _, tokens, _ = real[bases[i]]
            sents = list(sentences[bases[i]])
            donor = sentences[donors[i]]
            swap_in = donor[int(picks[i, 1] * len(donor))]
            if len(sents) >= 2:
                sents[int(picks[i, 0] * len(sents))] = swap_in
            else:
                sents.append(swap_in)
            text = " ".join(sents)
            emb_input = f"{heading}\n{text}" if heading else text
            yield int(js[i]), heading, text, tokens, text_hash(emb_input), embs[i]


def _set_indexes(present: bool) -> float:
    """Drop or (re)build the chunk table's GIN and HNSW indexes exactly as knowledge/models.py declares them.
    Returns the seconds it took."""
    from django.db import connection

    from knowledge.models import Chunk

    t = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'knowledge_chunk'")
        existing = {r[0] for r in cur.fetchall()}
        # session settings for a fast build: the 100k-vector HNSW graph (~200 MB) fits in memory
        cur.execute("SET maintenance_work_mem = '1GB'")
    with connection.schema_editor() as editor:
        for index in Chunk._meta.indexes:
            if index.name not in ("chunk_search_vector_gin", "chunk_embedding_hnsw"):
                continue
            if present and index.name not in existing:
                editor.add_index(Chunk, index)
            elif not present and index.name in existing:
                editor.remove_index(Chunk, index)
    with connection.cursor() as cur:
        cur.execute("RESET maintenance_work_mem")
    return time.perf_counter() - t


def _grow_to(total: int, real, model: str) -> dict[str, float]:
    """Add synthetic chunks until the chunk table holds ``total`` rows; rebuild indexes; ANALYZE."""
    import psycopg
    from django.utils import timezone
    from pgvector.psycopg import register_vector
    from psycopg.types.json import Jsonb
    from tqdm import tqdm

    from knowledge.models import Chunk, Document
    from knowledge.services import source_get_or_create
    from sdrbot import devservices

    have = Chunk.objects.count()
    need = total - have
    if need <= 0:
        return {"added": 0}
    source = source_get_or_create(name=SYNTH_SOURCE, kind="other")
    start = Chunk.objects.filter(document__source=source).count()  # synthetic chunks so far
    stats: dict[str, float] = {"added": need}
    stats["drop_indexes_s"] = _set_indexes(False)
    t = time.perf_counter()
    now = timezone.now()
    first_doc = start // CHUNKS_PER_DOC
    last_doc = (start + need - 1) // CHUNKS_PER_DOC
    existing_docs = dict(Document.objects.filter(source=source).values_list("external_id", "id"))
    with psycopg.connect(devservices.postgres_url(_common.BENCH_DB)) as conn:
        register_vector(conn)
        with conn.cursor() as cur:
            with cur.copy("COPY knowledge_document (source_id, external_id, title, url, text, checksum, version,"
                          " metadata, fetched_at, created_at) FROM STDIN") as copy:
                for d in range(first_doc, last_doc + 1):
                    ext = f"synthetic-{d:06d}"
                    if ext in existing_docs:
                        continue
                    body = f"Synthetic scale document {d} (chunks built from real MTRAG chunks)."
                    copy.write_row((source.pk, ext, f"Synthetic document {d}", "", body,
                                    hashlib.sha256(ext.encode()).hexdigest(), 1, Jsonb({"synthetic": True}), now, now))
            cur.execute("SELECT external_id, id FROM knowledge_document WHERE source_id = %s", [source.pk])
            doc_ids = dict(cur.fetchall())
            with cur.copy("COPY knowledge_chunk (document_id, ordinal, heading, text, token_count, text_hash,"
                          " embedding, embedding_model) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["bigint", "integer", "text", "text", "integer", "text", "vector", "text"])
                for j, heading, text, tokens, th, emb in tqdm(
                        _synthetic_rows(real, start, need, model), total=need, unit="chunk", file=sys.stderr,
                        desc=f"synthetic chunks to {total:,}", leave=False, mininterval=1.0):
                    copy.write_row((doc_ids[f"synthetic-{j // CHUNKS_PER_DOC:06d}"], j % CHUNKS_PER_DOC, heading,
                                    text, tokens, th, emb, model))
        conn.commit()
    stats["copy_s"] = time.perf_counter() - t
    stats["build_indexes_s"] = _set_indexes(True)
    t = time.perf_counter()
    _common.vacuum_analyze()
    stats["analyze_s"] = time.perf_counter() - t
    return stats


def _cleanup() -> None:
    """Drop the synthetic source; indexes are dropped first so the delete and VACUUM are quick, then rebuilt."""
    _set_indexes(False)
    n = _common.drop_source(SYNTH_SOURCE)
    _common.vacuum_analyze()
    _set_indexes(True)
    _common.vacuum_analyze()
    print(f"  cleanup: dropped source {SYNTH_SOURCE} ({n:,} synthetic chunks); indexes rebuilt")


# -------------------------------------------------------------------------------------------------- measurement


def _pct(values, q):
    import numpy as np

    return float(np.percentile(values, q))


def _measure(queries, vectors, repeats: int, label: str, modes) -> tuple[dict[str, dict[str, float]], dict]:
    """Latency per mode (one warm-up pass, then ``repeats`` measured passes) and each query's top-10 chunk ids."""
    from tqdm import tqdm

    from knowledge.selectors import search

    out: dict[str, dict[str, float]] = {}
    tops: dict[str, dict[str, list[int]]] = {}
    for mode in modes:
        for q in queries:  # warm-up pass, not measured
            search(q.text, k=10, mode=mode, query_embedding=vectors[q.id])
        lat: list[float] = []
        parts: dict[str, list[float]] = {}
        tops[mode] = {}
        for _ in tqdm(range(repeats), desc=f"{label} {mode}", unit="pass", file=sys.stderr, leave=False):
            for q in queries:
                t = time.perf_counter()
                res = search(q.text, k=10, mode=mode, query_embedding=vectors[q.id])
                lat.append((time.perf_counter() - t) * 1000)
                tops[mode][q.id] = [h.chunk_id for h in res.hits]
                for key, v in res.timings_ms.items():
                    parts.setdefault(key, []).append(v)
        out[mode] = {"p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95), "p99_ms": _pct(lat, 99),
                     "mean_ms": sum(lat) / len(lat), "max_ms": max(lat), "n": len(lat)}
        for key in ("keyword", "vector", "fetch"):
            if key in parts:
                out[mode][f"{key}_p50_ms"] = _pct(parts[key], 50)
                out[mode][f"{key}_p95_ms"] = _pct(parts[key], 95)
    return out, tops


def _overlap(a: dict[str, list[int]], b: dict[str, list[int]]) -> float:
    """Mean |top-10(a) ∩ top-10(b)| / 10 over the queries (1.0 = the same ten chunks)."""
    vals = [len(set(a[q]) & set(b[q])) / max(1, min(10, len(b[q]))) for q in b]
    return sum(vals) / len(vals)


def _print_scale(total: int, res: dict[str, dict[str, float]], title: str) -> None:
    rows = []
    for mode, r in res.items():
        inner = ", ".join(f"{k} p50 {r[f'{k}_p50_ms']:.2f} / p95 {r[f'{k}_p95_ms']:.2f}"
                          for k in ("keyword", "vector") if f"{k}_p50_ms" in r)
        rows.append([mode, f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['max_ms']:.2f}",
                     r["n"], inner])
    print(f"  {total:,} chunks, {title}")
    _common.print_table(["mode", "p50", "p95", "p99", "max", "calls", "SQL parts (timings_ms)"], rows)


def main(*, machine: bool = True, repeats: int = 3, keep: bool = False, scales=SCALES, baseline: bool = True) -> dict:
    _common.setup()
    from django.conf import settings
    from django.test import override_settings

    from knowledge.evaluation import load_qrels, load_queries
    from knowledge.models import Chunk
    from sdrbot.embeddings import get_embedder

    if machine:
        _common.print_machine_info()
    _common.print_header("Query latency at 10k and 100k chunks (query embedding excluded)")
    print(f"  NOTE: beyond the real MTRAG chunks, the scale chunks are SYNTHETIC: real chunk texts with one sentence\n"
          f"  swapped between real chunks, and real embeddings plus seeded Gaussian noise (sigma {SIGMA}, seed {SEED}),\n"
          f"  re-normalised. Source '{SYNTH_SOURCE}', {CHUNKS_PER_DOC} chunks per synthetic document.")
    _set_indexes(True)  # in case an interrupted earlier run left them dropped
    _common.drop_source(SYNTH_SOURCE)
    real_n = _common.ensure_only_mtrag()
    real = _real_chunks()
    embedder = get_embedder()
    queries = load_queries(_common.TASKS)
    qrels = load_qrels(_common.QRELS)
    queries = [q for q in queries if q.id in qrels]
    t = time.perf_counter()
    vectors = {q.id: v for q, v in zip(queries, embedder.embed([q.text for q in queries]))}
    print(f"  queries: {len(queries)} judged MTRAG-UN last-turn questions, embedded beforehand "
          f"({(time.perf_counter() - t) * 1000 / len(queries):.1f} ms/query, not counted)")
    print(f"  settings: KB_FTS_RANK {settings.KB_FTS_RANK}, ef_search {settings.KB_HNSW_EF_SEARCH}, "
          f"hybrid candidates max(4k, 40) = 40 per list; {repeats} measured passes per mode after 1 warm-up pass")
    bound = int(settings.KB_FTS_MAX_RANKED or 0)
    results: dict = {"bound": bound, "real_chunks": real_n, "repeats": repeats, "queries": len(queries), "scales": {}}
    try:
        for total in scales:
            stats = _grow_to(total, real, embedder.name)
            n = Chunk.objects.count()
            synth = n - real_n
            print()
            print(f"  loaded to {n:,} chunks = {real_n:,} real + {synth:,} synthetic"
                  + (f" (COPY {stats['copy_s']:.1f} s, index build {stats['build_indexes_s']:.1f} s,"
                     f" ANALYZE {stats['analyze_s']:.1f} s)" if stats.get("added") else ""))
            load0 = os.getloadavg()[0]
            res, tops = _measure(queries, vectors, repeats, f"{n:,}", ("keyword", "vector", "hybrid"))
            load1 = os.getloadavg()[0]
            nb = _common.bounded_query_count(queries, bound)
            print(f"  search(k=10) wall time in ms, query embedding excluded. After: keyword ranking bounded to "
                  f"KB_FTS_MAX_RANKED = {bound} candidates ({nb} of {len(queries)} queries take the bounded path here);"
                  f" 1-min load average {load0:.2f} before, {load1:.2f} after")
            _print_scale(n, res, f"after (KB_FTS_MAX_RANKED={bound})")
            entry = {"real": real_n, "synthetic": synth, "load": stats, "modes": res, "bounded_queries": nb,
                     "load_avg": [load0, load1]}
            if baseline:
                with override_settings(KB_FTS_MAX_RANKED=0):
                    base, base_tops = _measure(queries, vectors, repeats, f"{n:,} exhaustive", ("keyword", "hybrid"))
                _print_scale(n, base, "before: every match ranked (KB_FTS_MAX_RANKED=0 runs the original SQL)")
                entry["baseline"] = base
                entry["overlap@10"] = {m: _overlap(tops[m], base_tops[m]) for m in base_tops}
                print("  top-10 overlap of after vs before (same chunk ids; 1.0 = identical): "
                      + ", ".join(f"{m} {v:.3f}" for m, v in entry["overlap@10"].items())
                      + " (no relevance judgements exist for synthetic chunks)")
            results["scales"][n] = entry
    finally:
        if not keep:
            _cleanup()
    big = max(results["scales"]) if results["scales"] else None
    if big:
        p95 = results["scales"][big]["modes"]["hybrid"]["p95_ms"]
        ok = big >= 100_000 and p95 <= TARGET_MS
        results["target_pass"] = ok
        print()
        print(f"  target: hybrid p95 <= {TARGET_MS:.0f} ms at 100k chunks: {p95:.2f} ms at {big:,} -> "
              f"{'PASS' if ok else 'FAIL'} (scale chunks are synthetic, see above)")
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="measured passes over the 86 queries per mode")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic chunks afterwards")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the exhaustive-ranking (KB_FTS_MAX_RANKED=0) comparison")
    args = ap.parse_args()
    main(repeats=args.repeats, keep=args.keep, baseline=not args.no_baseline)
