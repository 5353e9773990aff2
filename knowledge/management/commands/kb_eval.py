"""``manage.py kb_eval --queries FILE --qrels FILE``: retrieval quality and latency per mode."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from knowledge.evaluation import EvalInputError, evaluate, load_qrels, load_queries
from knowledge.selectors import MODES


class Command(BaseCommand):
    help = "Evaluate retrieval against judged queries: recall@k, MRR@10, nDCG@10, latency p50/p95 per mode."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queries", type=Path, required=True, help="BEIR queries JSONL or MTRAG-UN tasks JSONL")
        parser.add_argument("--qrels", type=Path, required=True, help="BEIR qrels TSV with a header")
        parser.add_argument("--k", default="5,10", help="comma-separated cut-offs for recall (default 5,10)")
        parser.add_argument("--mode", choices=[*MODES, "all"], default="all")
        parser.add_argument("--source", default=None, help="only search this knowledge source")
        parser.add_argument("--json", action="store_true", help="print one JSON object keyed by mode")

    def handle(self, *args, **opts) -> None:
        try:
            ks = sorted({int(x) for x in opts["k"].split(",") if x.strip()})
        except ValueError as exc:
            raise CommandError(f"--k must be comma-separated whole numbers, got {opts['k']!r}") from exc
        if not ks or ks[0] < 1 or ks[-1] > 50:
            raise CommandError("--k values must be between 1 and 50")
        modes = list(MODES) if opts["mode"] == "all" else [opts["mode"]]
        try:
            queries = load_queries(opts["queries"])
            qrels = load_qrels(opts["qrels"])
            judged = sum(1 for q in queries if q.id in qrels)
            with tqdm(total=judged * len(modes), unit="query", disable=opts["json"] or opts["verbosity"] == 0,
                      file=self.stderr._out) as bar:
                report = evaluate(queries, qrels, modes=modes, ks=ks,
                                  filters={"source": opts["source"]} if opts["source"] else None, progress=bar.update)
        except (EvalInputError, UnicodeDecodeError) as exc:
            raise CommandError(str(exc)) from exc
        if opts["json"]:
            self.stdout.write(json.dumps(report))
            return
        cols = [f"recall@{k}" for k in ks] + ["mrr@10", "ndcg@10", "p50_ms", "p95_ms"]
        self.stdout.write(f"{judged} judged queries of {len(queries)}; latency is retrieval only "
                          f"(query embedding p50 {next(iter(report.values()))['embed_p50_ms']} ms, shared by modes)")
        self.stdout.write(f"{'mode':8s} " + " ".join(f"{c:>9s}" for c in cols))
        for mode, row in report.items():
            self.stdout.write(f"{mode:8s} " + " ".join(f"{row[c]:9.4f}" if "ms" not in c else f"{row[c]:9.2f}" for c in cols))
