"""Retrieval evaluation: queries + qrels → recall@k, MRR@10, nDCG@10 and latency, per mode.

Definitions (as in BEIR / pytrec_eval, Thakur et al. 2021):
- recall@k = |relevant ∩ top-k documents| / |relevant|, averaged over queries with at least one relevant document;
- MRR@10 = mean of 1 / rank of the first relevant document in the top 10 (0 if none);
- nDCG@10 = DCG@10 / IDCG@10 with DCG = Σ rel_i / log2(i + 1) (Järvelin & Kekäläinen 2002), graded by qrels score.
Chunks are ranked by the retriever; a document's rank is that of its best chunk (documents are what qrels name).
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.selectors import MODES, search
from sdrbot.embeddings import get_embedder

_USER_MARK = re.compile(r"\|user\|:\s*")


class EvalInputError(ValueError):
    """A queries or qrels file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Query:
    id: str
    text: str


def load_queries(path: Path) -> list[Query]:
    """BEIR JSONL (``{"_id", "text"}``; a leading ``|user|:`` marker is dropped) or MTRAG-UN task JSONL
    (``{"task_id", "input": [{speaker, text}, …]}``; the last user turn is the query), detected per line."""
    if not path.is_file():
        raise EvalInputError(f"{path}: no such file")
    out = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalInputError(f"{path}:{lineno}: malformed JSON: {exc.msg}") from exc
            if "task_id" in obj and isinstance(obj.get("input"), list):
                users = [t.get("text", "") for t in obj["input"] if t.get("speaker") == "user"]
                if not users:
                    raise EvalInputError(f"{path}:{lineno}: task has no user turn")
                out.append(Query(str(obj["task_id"]), users[-1].strip()))
            elif "_id" in obj and "text" in obj:
                text = _USER_MARK.sub(" ", str(obj["text"])).strip()
                out.append(Query(str(obj["_id"]), text))
            else:
                raise EvalInputError(f"{path}:{lineno}: neither BEIR (_id, text) nor MTRAG task (task_id, input)")
    return out


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """BEIR qrels TSV with a header ``query-id  corpus-id  score`` → {query id: {document external id: grade}}."""
    if not path.is_file():
        raise EvalInputError(f"{path}: no such file")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise EvalInputError(f"{path}:1: expected the header 'query-id<TAB>corpus-id<TAB>score', got {header}")
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 3:
                raise EvalInputError(f"{path}:{lineno}: expected 3 tab-separated columns, got {len(row)}")
            try:
                grade = int(float(row[2]))
            except ValueError as exc:
                raise EvalInputError(f"{path}:{lineno}: score {row[2]!r} is not a number") from exc
            if grade > 0:
                qrels.setdefault(row[0], {})[row[1]] = grade
    return qrels


def recall_at(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    return len(set(ranked[:k]) & set(relevant)) / len(relevant)


def mrr_at(ranked: Sequence[str], relevant: dict[str, int], k: int = 10) -> float:
    for i, doc in enumerate(ranked[:k], start=1):
        if doc in relevant:
            return 1.0 / i
    return 0.0


def ndcg_at(ranked: Sequence[str], relevant: dict[str, int], k: int = 10) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 1) for i, doc in enumerate(ranked[:k], start=1))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 1) for i, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg else 0.0


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def evaluate(
    queries: Sequence[Query], qrels: dict[str, dict[str, int]], *, modes: Sequence[str] = MODES,
    ks: Sequence[int] = (5, 10), filters: dict[str, Any] | None = None, progress=None,
) -> dict[str, dict[str, float]]:
    """Run every judged query in every mode. Query embeddings are computed once and shared by the modes, so
    latency figures are retrieval only (``p50_ms``/``p95_ms``); ``embed_p50_ms`` is the query embedding time.
    Returns {mode: {"recall@5": …, "mrr@10": …, "ndcg@10": …, "p50_ms": …, "p95_ms": …, "queries": n}}."""
    judged = [q for q in queries if q.id in qrels]
    if not judged:
        raise EvalInputError("no query has a judgement in the qrels (check the query ids)")
    depth = max(max(ks), 10)
    embed_ms: list[float] = []
    vectors = {}
    if any(m != "keyword" for m in modes):
        emb = get_embedder()
        for q in judged:
            t = time.perf_counter()
            vectors[q.id] = emb.embed([q.text])[0]
            embed_ms.append((time.perf_counter() - t) * 1000)
    report: dict[str, dict[str, float]] = {}
    for mode in modes:
        sums: dict[str, float] = {f"recall@{k}": 0.0 for k in ks} | {"mrr@10": 0.0, "ndcg@10": 0.0}
        lat: list[float] = []
        for q in judged:
            t = time.perf_counter()
            res = search(q.text, k=min(200, depth * 4), mode=mode, filters=filters, query_embedding=vectors.get(q.id))
            lat.append((time.perf_counter() - t) * 1000)
            ranked: list[str] = []
            for h in res.hits:
                if h.external_id not in ranked:
                    ranked.append(h.external_id)
            rel = qrels[q.id]
            for k in ks:
                sums[f"recall@{k}"] += recall_at(ranked, rel, k)
            sums["mrr@10"] += mrr_at(ranked, rel)
            sums["ndcg@10"] += ndcg_at(ranked, rel)
            if progress:
                progress(1)
        n = len(judged)
        report[mode] = {key: round(v / n, 4) for key, v in sums.items()} | {
            "p50_ms": round(_pct(lat, 50), 2), "p95_ms": round(_pct(lat, 95), 2), "queries": n,
            "embed_p50_ms": round(_pct(embed_ms, 50), 2) if embed_ms else 0.0,
        }
    return report
