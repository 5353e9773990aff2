"""A qualification turn's overhead, excluding the chat model: wall time of crm.services.qualification_run (intent
embedding + classification, slot extraction, scoring and routing, the internal CRM rows, the outbox rows queued to
Redis after commit, one checkpoint per step, the reply) over scripted 5-turn sales conversations.

    .venv/bin/python bench/sdr_overhead.py [--turns 500] [--wait-quiet 60]

Database ``sdrbot_bench_sdr``; broker on Redis database 12 (the queued deliveries are purged at the end: nothing
consumes them here). Target: p95 ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

import _common
import _sdr

DB = "sdrbot_bench_sdr"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--turns", type=int, default=500)
    ap.add_argument("--wait-quiet", type=float, default=60.0, help="seconds to wait for load average < 1.5")
    args = ap.parse_args()
    _sdr.setup(DB)
    _common.print_machine_info()
    from django.db import connection, reset_queries, transaction
    from django.test.utils import CaptureQueriesContext

    from crm.models import CrmSettings
    from crm.services import qualification_run
    from sdrbot.celery import app
    from sdrbot.embeddings import get_embedder
    from sdrbot.tracing import SpanCollector

    _sdr.reset()
    _sdr.ensure_intent_model()
    CrmSettings.objects.create(pk=1, adapter="webhook", endpoint_url="http://127.0.0.1:9/webhook",
                               booking_link="https://cal.example.org/sales")
    get_embedder().embed(["warm up"])
    deadline = time.monotonic() + args.wait_quiet
    while os.getloadavg()[0] >= 1.5 and time.monotonic() < deadline:
        time.sleep(5)
    load_before = os.getloadavg()
    print(f"  load average before: {load_before}")
    rng = random.Random(7)
    times: list[float] = []
    steps: dict[str, list[float]] = {}
    queries: list[int] = []
    n_conv = 0
    while len(times) < args.turns + 20:
        ticket = _sdr.new_ticket(n_conv)
        for i, body in enumerate(_sdr.conversation(rng, n_conv)):
            with transaction.atomic():
                m = _sdr.add_message(ticket, body, i)
            rec = SpanCollector()
            reset_queries()  # the query log holds 9,000 entries; a full log would count 0
            with CaptureQueriesContext(connection) as q:
                t = time.perf_counter()
                qualification_run(ticket=ticket, message=m, outcome=_sdr.outcome_without_model(), recorder=rec)
                times.append((time.perf_counter() - t) * 1000)
            queries.append(len(q.captured_queries))
            for s in rec.spans:
                steps.setdefault(s.name, []).append(s.duration_ms)
        n_conv += 1
    load_after = os.getloadavg()
    times, queries = times[20:], queries[20:]  # the first 20 turns warm up caches and connections
    app.control.purge()

    def pct(xs: list[float], p: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

    _common.print_header(f"Qualification turn overhead, chat model excluded: {len(times)} turns, {n_conv} conversations")
    _common.print_table(["what", "n", "p50 ms", "p95 ms", "max ms"],
                        [["qualification_run", len(times), f"{statistics.median(times):.1f}", f"{pct(times, 95):.1f}",
                          f"{max(times):.1f}"]] +
                        [[f"  span {k}", len(v), f"{statistics.median(v):.1f}", f"{pct(v, 95):.1f}", f"{max(v):.1f}"]
                         for k, v in steps.items()])
    print(f"  SQL queries per turn: median {statistics.median(queries)}, max {max(queries)}")
    print(f"  load average before {load_before}, after {load_after}")
    p95 = pct(times, 95)
    print(f"  RESULT: p95 {p95:.1f} ms (target ≤ 100 ms) — {'met' if p95 <= 100 else 'NOT met'}")


if __name__ == "__main__":
    main()
