"""Ingest throughput on 1,000 real passages vs the raw embedding model's own throughput on the same texts.

    .venv/bin/python bench/ingest_throughput.py

Target: full ingest reaches at least 85% of the raw model's throughput (passages/s), measured side by side in
one run.

Passages: the 349 MTRAG IBM Cloud passages + the first 651 distinct non-empty ``response`` texts of the Bitext
customer-support CSV (file order) = 1,000 real passages.

(a) raw model: the documents are chunked exactly as ingestion does (``document_chunks`` + ``embedding_input``),
    the chunk inputs de-duplicated (as ingestion does), and only ``embedder.embed(texts)`` is timed.
(b) full ingest: the bench database's knowledge tables are emptied (so no stored embedding can be reused), then
    one ``source_sync`` call into source ``bench-throughput`` is timed end to end: chunking, token counting,
    embedding, hashing, DB writes (documents, versions, chunks) and the GIN/HNSW index updates.
The model is warmed up (one small embed call) first. (a) runs once before and once after (b), so the two raw
runs bracket the ingest; ratio = passages/s of (b) / passages/s of (a) with (a) the mean of its two runs. The
spread of the two raw runs shows whether the machine was busy (a 2-core machine: any other load skews it).
"""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

SOURCE = "bench-throughput"
N_MTRAG = 349
N_BITEXT = 651
TARGET = 0.85


def build_passages():
    from knowledge.services import DocumentInput

    docs = _common.mtrag_documents()
    assert len(docs) == N_MTRAG, f"expected {N_MTRAG} MTRAG passages, got {len(docs)}"
    seen: set[str] = set()
    with _common.BITEXT.open(encoding="utf-8", newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh), start=2):  # line 1 is the header
            text = row["response"]
            if not text.strip() or text in seen:
                continue
            seen.add(text)
            docs.append(DocumentInput(
                external_id=f"bitext-response-{len(seen):04d}", text=text,
                title=f"{row['category']} / {row['intent']}", metadata={"intent": row["intent"]},
                where=f"{_common.BITEXT.name}:row{i}",
            ))
            if len(seen) == N_BITEXT:
                break
    return docs


class TimedEmbedder:
    """Delegates to the real embedder and adds up the time spent in ``embed`` and in token counting."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.embed_s = 0.0
        self.count_s = 0.0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def embed(self, texts):
        t = time.perf_counter()
        try:
            return self._inner.embed(texts)
        finally:
            self.embed_s += time.perf_counter() - t

    def count_tokens(self, text):
        t = time.perf_counter()
        try:
            return self._inner.count_tokens(text)
        finally:
            self.count_s += time.perf_counter() - t

    def count_tokens_batch(self, texts):
        t = time.perf_counter()
        try:
            fn = getattr(self._inner, "count_tokens_batch", None)
            return fn(texts) if fn else [self._inner.count_tokens(x) for x in texts]
        finally:
            self.count_s += time.perf_counter() - t


def main(*, machine: bool = True) -> dict:
    _common.setup()
    from knowledge.models import Chunk
    from knowledge.services import document_chunks, embedding_input, source_sync
    from sdrbot.embeddings import get_embedder

    if machine:
        _common.print_machine_info()
    _common.print_header("Ingest throughput: 1,000 real passages, full ingest vs raw embedding model")
    docs = build_passages()
    n_docs = len(docs)
    chars = sum(len(d.text) for d in docs)
    print(f"  passages: {n_docs:,} real = {N_MTRAG} MTRAG IBM Cloud passages + the first {N_BITEXT} distinct"
          f" Bitext 'response' texts; {chars / 1e6:.2f} M characters")
    embedder = get_embedder()
    print(f"  model: {embedder.name}, batch size {embedder.batch_size}")

    # warm-up: load the model and run a couple of batches
    t = time.perf_counter()
    embedder.embed([d.text[:1000] for d in docs[: 2 * embedder.batch_size]])
    print(f"  warm-up: {2 * embedder.batch_size} texts in {time.perf_counter() - t:.1f} s (not counted)")

    # (a) raw model on exactly the texts ingestion embeds
    t = time.perf_counter()
    specs = [document_chunks(d, embedder) for d in docs]
    chunk_s = time.perf_counter() - t
    n_chunks = sum(len(s) for s in specs)
    texts = list(dict.fromkeys(embedding_input(c) for s in specs for c in s))
    print(f"  chunks: {n_chunks:,} ({len(texts):,} distinct inputs to embed); chunking took {chunk_s:.2f} s"
          f" (not part of (a))")

    def raw_run() -> tuple[float, float]:
        w, c = time.perf_counter(), time.process_time()
        vecs = embedder.embed(texts)
        assert vecs.shape == (len(texts), embedder.dimensions)
        return time.perf_counter() - w, time.process_time() - c

    load_before = os.getloadavg()[0]
    raw1_s, raw1_cpu = raw_run()

    # (b) full ingest into an empty knowledge base
    _common.reset_knowledge()
    timed = TimedEmbedder(embedder)
    t, c = time.perf_counter(), time.process_time()
    result = source_sync(source_name=SOURCE, documents=docs, origin="bench/ingest_throughput.py", embedder=timed)
    ingest_s, ingest_cpu = time.perf_counter() - t, time.process_time() - c
    stored = Chunk.objects.filter(document__source__name=SOURCE).count()
    if result.chunks_reused or result.chunks_embedded != len(texts) or result.added != n_docs:
        raise SystemExit(f"unexpected ingest result: {result}")

    # (a) again after (b): the two raw runs bracket the ingest, so drift or a busy machine shows up
    raw2_s, raw2_cpu = raw_run()
    load_after = os.getloadavg()[0]

    raw_s = (raw1_s + raw2_s) / 2
    raw_pps, ing_pps = n_docs / raw_s, n_docs / ingest_s
    ratio = ing_pps / raw_pps
    other_s = ingest_s - timed.embed_s - timed.count_s
    rows = [
        ["(a) raw model, embed() only: run 1", f"{raw1_s:.2f}", f"{raw1_cpu:.1f}", f"{len(texts) / raw1_s:.1f}",
         f"{n_docs / raw1_s:.2f}"],
        ["(b) full ingest, source_sync()", f"{ingest_s:.2f}", f"{ingest_cpu:.1f}", f"{len(texts) / ingest_s:.1f}",
         f"{ing_pps:.2f}"],
        ["(a) raw model, embed() only: run 2", f"{raw2_s:.2f}", f"{raw2_cpu:.1f}", f"{len(texts) / raw2_s:.1f}",
         f"{n_docs / raw2_s:.2f}"],
        ["(a) raw model, mean of runs 1 and 2", f"{raw_s:.2f}", "", f"{len(texts) / raw_s:.1f}", f"{raw_pps:.2f}"],
    ]
    print()
    _common.print_table(["run", "wall s", "CPU s (this process)", "chunks/s", "passages/s"], rows)
    print(f"  (b) stored {result.added:,} documents, {stored:,} chunks; embedded {result.chunks_embedded:,}, "
          f"reused {result.chunks_reused}")
    print(f"  (b) breakdown: embed() {timed.embed_s:.2f} s, token counting for chunking {timed.count_s:.2f} s, "
          f"everything else (parsing, hashing, DB writes, index updates) {other_s:.2f} s")
    spread = abs(raw1_s - raw2_s) / raw_s
    print(f"  1-min load average: {load_before:.2f} before, {load_after:.2f} after; raw runs differ by {spread:.1%}"
          + ("  (WARNING: over 10%: the machine was busy, the ratio is unreliable)" if spread > 0.10 else ""))
    ok = ratio >= TARGET
    print(f"  ratio (b)/(a) in passages/s: {ratio:.3f} (vs run 1 only: {raw1_s / ingest_s:.3f}, vs run 2 only: "
          f"{raw2_s / ingest_s:.3f})  target >= {TARGET:.2f}: {'PASS' if ok else 'FAIL'}")
    return {
        "passages": n_docs, "chunks": n_chunks, "distinct_inputs": len(texts), "chunking_s": chunk_s,
        "raw1_s": raw1_s, "raw2_s": raw2_s, "raw_s": raw_s, "ingest_s": ingest_s, "raw_chunks_per_s": len(texts) / raw_s, "raw_passages_per_s": raw_pps,
        "ingest_chunks_per_s": len(texts) / ingest_s, "ingest_passages_per_s": ing_pps, "ratio": ratio,
        "ingest_embed_s": timed.embed_s, "ingest_count_s": timed.count_s, "ingest_other_s": other_s,
        "stored_chunks": stored, "target_pass": ok, "raw_spread": spread, "load_before": load_before,
        "load_after": load_after, "raw1_cpu_s": raw1_cpu, "raw2_cpu_s": raw2_cpu, "ingest_cpu_s": ingest_cpu,
    }


if __name__ == "__main__":
    main()
