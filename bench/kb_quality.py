"""Retrieval quality on MTRAG-UN (IBM Cloud docs): recall@5, recall@10, MRR@10, nDCG@10, latency p50/p95 for the
keyword, vector and hybrid modes, with the default keyword ranking (ts_rank_cd) and with ts_rank.

    .venv/bin/python bench/kb_quality.py

The knowledge base is the 349 passages of mtrag-ibmcloud/passages.jsonl in source ``ibm-cloud-docs`` of the
``sdrbot_bench`` database (same mapping as ``kb_ingest --format jsonl --id-field _id --title-field page_id
--text-field text``); the queries are the last user turns of the 86 MTRAG-UN cloud tasks that have judgements
(the answerable and partially answerable ones), scored with ``knowledge.evaluation.evaluate`` (the code behind
``manage.py kb_eval``). Latency is retrieval only (query embeddings are computed once beforehand) at the depth
the evaluation asks for (k=40).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402  (sets up sys.path for the repo)

COLS = ["recall@5", "recall@10", "mrr@10", "ndcg@10", "p50_ms", "p95_ms"]


def _evaluate(label: str) -> dict[str, dict[str, float]]:
    from tqdm import tqdm

    from knowledge.evaluation import evaluate, load_qrels, load_queries
    from knowledge.selectors import MODES

    queries = load_queries(_common.TASKS)
    qrels = load_qrels(_common.QRELS)
    judged = sum(1 for q in queries if q.id in qrels)
    with tqdm(total=judged * len(MODES), unit="query", desc=label, file=sys.stderr, leave=False) as bar:
        return evaluate(queries, qrels, modes=MODES, ks=(5, 10), progress=bar.update)


def _print_report(report: dict[str, dict[str, float]]) -> None:
    rows = [[mode] + [f"{r[c]:.4f}" if "ms" not in c else f"{r[c]:.2f}" for c in COLS] for mode, r in report.items()]
    _common.print_table(["mode", *COLS], rows)


def _hybrid_check(report: dict[str, dict[str, float]]) -> bool:
    best = max(report["keyword"]["recall@5"], report["vector"]["recall@5"])
    ok = report["hybrid"]["recall@5"] >= best
    print(f"  hybrid recall@5 {report['hybrid']['recall@5']:.4f} >= max(keyword, vector) {best:.4f}: "
          f"{'PASS' if ok else 'FAIL'}")
    return ok


def main(*, machine: bool = True) -> dict:
    _common.setup()
    from django.conf import settings
    from django.test import override_settings

    from knowledge.evaluation import load_qrels, load_queries

    if machine:
        _common.print_machine_info()
    _common.print_header("Retrieval quality: MTRAG-UN cloud tasks on 349 IBM Cloud docs passages")
    chunks = _common.ensure_only_mtrag()
    queries = load_queries(_common.TASKS)
    qrels = load_qrels(_common.QRELS)
    judged = [q for q in queries if q.id in qrels]
    bound = int(settings.KB_FTS_MAX_RANKED or 0)
    print(f"  queries: {len(judged)} judged tasks of {len(queries)} (last user turn), qrels: "
          f"{sum(len(v) for v in qrels.values())} relevant passages; KB: 349 passages, {chunks} chunks")
    print("  latency = search() wall time at k=40 (the evaluation's depth), query embedding excluded")
    print(f"  keyword ranking bound KB_FTS_MAX_RANKED = {bound}: {_common.bounded_query_count(judged, bound)} of "
          f"{len(judged)} queries rank a bounded candidate set on this knowledge base, the others every match")
    _evaluate("warm-up")

    results: dict = {"chunks": chunks, "queries": len(judged), "bound": bound, "runs": {}}
    configs = [("ts_rank_cd", bound), ("ts_rank", bound), ("ts_rank_cd", 0), ("ts_rank", 0)]
    for rank_fn, b in configs:
        default = " (default)" if rank_fn == settings.KB_FTS_RANK else ""
        what = f"KB_FTS_MAX_RANKED = {b}" if b else "KB_FTS_MAX_RANKED = 0: every match ranked (the code before the bound)"
        print()
        print(f"  KB_FTS_RANK = {rank_fn}{default}; {what}; normalization {settings.KB_FTS_RANK_NORMALIZATION},"
              f" RRF k {settings.KB_RRF_K}, ef_search {settings.KB_HNSW_EF_SEARCH}")
        with override_settings(KB_FTS_RANK=rank_fn, KB_FTS_MAX_RANKED=b):
            report = _evaluate(f"{rank_fn} bound {b}")
        _print_report(report)
        ok = _hybrid_check(report)
        results["runs"][f"{rank_fn}/{b}"] = {"rank": rank_fn, "bound": b, "report": report, "hybrid_recall5_ge_best": ok}
    print()
    print("  recall@5 with the bound vs every match ranked:")
    for rank_fn in ("ts_rank_cd", "ts_rank"):
        a, e = results["runs"][f"{rank_fn}/{bound}"]["report"], results["runs"][f"{rank_fn}/0"]["report"]
        parts = [f"{m} {a[m]['recall@5']:.4f} vs {e[m]['recall@5']:.4f}" for m in ("keyword", "hybrid")]
        ok = all(a[m]["recall@5"] >= e[m]["recall@5"] for m in ("keyword", "hybrid"))
        results[f"no_drop_{rank_fn}"] = ok
        print(f"    {rank_fn}: " + "; ".join(parts) + f" -> {'no drop' if ok else 'DROP'}")
    return results


if __name__ == "__main__":
    main()
