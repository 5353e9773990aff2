"""Run every benchmark against the ``sdrbot_bench`` database and print the figures (docs/benchmarks.md records them).

    .venv/bin/python bench/run_all.py [--json results.json] [--repeats 3]

Order: ingest throughput (starts from an empty knowledge base), retrieval quality (re-syncs the 349 MTRAG
passages, reusing the embeddings stored by the throughput run, and drops the other sources), query latency (grows
the knowledge base to 10k and 100k chunks with synthetic chunks, then drops them again). About 9 minutes on
2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    ap.add_argument("--repeats", type=int, default=3, help="measured passes per mode in query_latency")
    args = ap.parse_args()

    import ingest_throughput
    import kb_quality
    import query_latency

    started = time.perf_counter()
    _common.setup()
    print(f"sdrbot benchmarks, database {_common.BENCH_DB}, {time.strftime('%Y-%m-%d %H:%M:%S')}")
    machine = _common.print_machine_info()
    results: dict = {"machine": machine}
    results["ingest_throughput"] = ingest_throughput.main(machine=False)
    results["kb_quality"] = kb_quality.main(machine=False)
    results["query_latency"] = query_latency.main(machine=False, repeats=args.repeats)

    _common.print_header("Summary")
    it = results["ingest_throughput"]
    q = results["kb_quality"]
    ql = results["query_latency"]
    big = max(ql["scales"])
    default_run = q["runs"][f"ts_rank_cd/{q['bound']}"]
    checks = [
        (f"ingest throughput >= 85% of the raw model (passages/s): {it['ratio']:.3f}", it["target_pass"]),
        (f"hybrid recall@5 >= max(keyword, vector) (default ts_rank_cd): "
         f"{default_run['report']['hybrid']['recall@5']:.4f}", default_run["hybrid_recall5_ge_best"]),
        ("recall@5 does not drop with the keyword bound (ts_rank_cd and ts_rank)",
         q["no_drop_ts_rank_cd"] and q["no_drop_ts_rank"]),
        (f"hybrid p95 <= 20 ms at {big:,} chunks (synthetic scale chunks): "
         f"{ql['scales'][big]['modes']['hybrid']['p95_ms']:.2f} ms", ql.get("target_pass", False)),
    ]
    for text, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    print(f"  total time {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
        print(f"  figures written to {args.json}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
