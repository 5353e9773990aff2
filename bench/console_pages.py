"""Server time of the agent console at 100,000 tickets and ~300,000 messages: inbox and ticket page.

    .venv/bin/python bench/console_pages.py [--requests 200] [--wait-quiet 600] [--regenerate] [--explain]

Target (issue): inbox server time p95 <= 80 ms and ticket page p95 <= 60 ms, with a fixed number of SQL queries
whatever the page size.

Database: ``sdrbot_bench_console`` on the embedded PostgreSQL (created if missing, with pgvector, migrated). The dev
database ``sdrbot`` and the other benchmarks' ``sdrbot_bench`` are never touched.

Data (generated once, about 35 s, then reused; ``--regenerate`` rebuilds it), deterministic (seeded RNG, fixed
clock anchor): 20 categories (the 20 most frequent Bitext intents; 3 % of tickets uncategorised, with texts of the 7
other intents), 2,000 customers, 5 staff agents (agent1 … agent5, not superusers), 100,000 tickets over 90 days
(70 % resolved, 25 % awaiting_agent, 1.5 % new, 1.5 % drafting, 2 % reopened; channels widget/email/api, never
import; resolved 85 %, reopened 80 %, awaiting_agent 35 % assigned), ~300,000 messages alternating customer/agent
(open tickets end with a customer message) whose bodies are Bitext ``instruction`` (customer) and ``response``
(agent) texts of the ticket's intent; drafts: a *sent* draft behind 65 % of agent replies (the others are written
without a draft), a *ready* draft (two citations, 15 % needs_human) on the latest customer message of every
awaiting_agent/reopened ticket, a *pending* draft on drafting tickets, none on new tickets. Loaded with COPY
(explicit ids; model fields not listed get their default; the message GIN index rebuilt after the load), then
VACUUM ANALYZE.

Measurement: Django's test ``Client`` in process, logged in (``force_login``) as staff user agent1: the whole
Django request path (middleware, session and user lookups, view, selectors, SQL, template rendering), no network,
no HTTP server. ``setup_test_environment()`` is NOT called, so templates are not instrumented. The test client
disconnects ``close_old_connections``, so one database connection serves every request (no per-request
``CONN_HEALTH_CHECKS`` round trip). Warm-up, then ``--requests`` rounds; each round makes one request of every
scenario in turn (interleaved, so load from elsewhere on the machine hits all scenarios alike) and times a fixed
CPU task, whose spread is printed as the machine's noise. Then a separate, untimed pass under
``CaptureQueriesContext`` counts the SQL queries per request and sums their database time. Page-size invariance:
the same requests with ``drafts.selectors.inbox_page`` wrapped to pass ``page_size=10 | 25 | 100`` (the view calls
the module attribute, so the full request path is measured).

``--wait-quiet`` waits (bounded) for the load average to drop before each measured phase: other processes on a
2-core machine dominate a p95. ``--explain`` prints EXPLAIN (ANALYZE, BUFFERS) of the slowest query of every
scenario (always printed for a scenario that misses its target).
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import random
import statistics
import sys
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

DB = "sdrbot_bench_console"
SEED = 20261121
ANCHOR = datetime(2026, 11, 20, 12, 0, tzinfo=dt_timezone.utc)  # "now" of the generated data (fixed: deterministic)
N_TICKETS = 100_000
N_CUSTOMERS = 2_000
N_CATEGORIES = 20
STAFF = [f"agent{i}" for i in range(1, 6)]
ME = "agent1"
INBOX_TARGET_MS = 80.0
TICKET_TARGET_MS = 60.0
COMMON_WORD = "refund"
RARE_WORD = "supplier"
DEEP_PAGES = 20
STATUS_WEIGHTS = [("resolved", 0.70), ("awaiting_agent", 0.25), ("new", 0.015), ("drafting", 0.015), ("reopened", 0.02)]
# number of messages (customer, agent, customer, …): open tickets end with the customer, resolved with the agent
MESSAGE_COUNTS = {"resolved": ([2, 4], [0.5, 0.5]), "awaiting_agent": ([1, 3, 5], [0.2, 0.5, 0.3]),
                  "new": ([1], [1.0]), "drafting": ([1, 3], [0.5, 0.5]), "reopened": ([3, 5], [0.6, 0.4])}
ASSIGNED_SHARE = {"resolved": 0.85, "awaiting_agent": 0.35, "new": 0.0, "drafting": 0.0, "reopened": 0.80}
CHANNELS = (["widget", "email", "api"], [0.45, 0.35, 0.20])
FIRST = ["Ana", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kofi", "Lena", "Mateo",
         "Nora", "Omar", "Priya", "Quentin", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Ximena", "Yusuf", "Zoe"]
LAST = ["Silva", "Müller", "Okafor", "Nguyen", "Smith", "García", "Kowalski", "Tanaka", "Dubois", "Rossi", "Ivanova",
        "Haddad", "Johansson", "Patel", "Cohen", "Kim", "Moreau", "Novak", "O'Brien", "Santos"]
FOLLOW_UPS = ["", "", "Thanks for the reply, but ", "That did not work. ", "Any update? ", "Sorry, one more thing: ",
              "I tried that already. "]


# ------------------------------------------------------------------------------------------------------ database


def setup() -> None:
    """Point Django at ``sdrbot_bench_console`` (created if missing, with pgvector), ``django.setup()``, migrate."""
    import psycopg
    from psycopg import sql

    from sdrbot import devservices

    if not devservices.postgres_running():
        devservices.postgres_start()

    def create():
        with psycopg.connect(devservices.postgres_url("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
        with psycopg.connect(devservices.postgres_url(DB), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    create()
    os.environ["DATABASE_URL"] = devservices.postgres_url(DB)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sdrbot.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections
    from django.db.migrations.exceptions import InconsistentMigrationHistory

    if settings.DATABASES["default"]["NAME"] != DB:
        raise SystemExit(f"refusing to run: Django is configured for {settings.DATABASES['default']['NAME']!r}")
    try:
        call_command("migrate", verbosity=0)
    except InconsistentMigrationHistory as exc:  # migrations rewritten since the data was generated: start over
        print(f"  {DB}: {exc}; recreating the database", file=sys.stderr)
        connections.close_all()
        with psycopg.connect(devservices.postgres_url("postgres"), autocommit=True) as conn:
            # no FORCE: refuses (raises) while another session uses the database
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(DB)))
        create()
        call_command("migrate", verbosity=0)


# ---------------------------------------------------------------------------------------------------------- data


def _bitext() -> dict[str, tuple[list[str], list[str]]]:
    """intent -> (instructions, responses), in file order."""
    by_intent: dict[str, tuple[list[str], list[str]]] = {}
    with open(_common.BITEXT, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            ins, res = by_intent.setdefault(row["intent"], ([], []))
            ins.append(row["instruction"].strip())
            res.append(row["response"].strip())
    return by_intent


def _staff_users():
    from django.contrib.auth import get_user_model

    User = get_user_model()
    users = []
    for name in STAFF:
        user, created = User.objects.get_or_create(username=name, defaults={"is_staff": True, "is_active": True,
                                                                            "email": f"{name}@example.com"})
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        users.append(user)
    return users


def ensure_data(*, regenerate: bool) -> None:
    from conversations.models import Ticket

    staff = _staff_users()
    have = Ticket.objects.count()
    if have >= N_TICKETS and not regenerate:
        print(f"  data present: {have:,} tickets (generation skipped; --regenerate rebuilds it)")
        return
    t0 = time.perf_counter()
    counts = _generate(staff)
    t_load = time.perf_counter() - t0
    from django.db import connection

    t1 = time.perf_counter()
    with connection.cursor() as cur:
        for table in ("conversations_category", "conversations_customer", "conversations_ticket",
                      "conversations_message", "drafts_draft", "auth_user"):
            cur.execute(f"VACUUM ANALYZE {table}")
    t_analyze = time.perf_counter() - t1
    print(f"  generated {counts['categories']} categories, {counts['customers']:,} customers, {counts['tickets']:,} "
          f"tickets, {counts['messages']:,} messages, {counts['drafts']:,} drafts in {t_load:.1f} s "
          f"(+ VACUUM ANALYZE {t_analyze:.1f} s)")


def _generate(staff) -> dict[str, int]:
    import psycopg
    from django.db import connection
    from psycopg.types.json import Jsonb

    from conversations.models import Message
    from sdrbot import devservices

    rng = random.Random(SEED)
    bitext = _bitext()
    intents = sorted(bitext, key=lambda i: (-len(bitext[i][0]), i))
    cat_intents, other_intents = intents[:N_CATEGORIES], intents[N_CATEGORIES:]
    cat_weights = [1 / (r + 1) ** 0.6 for r in range(N_CATEGORIES)]  # a few big categories, a long tail
    staff_ids = [u.pk for u in staff]
    statuses, status_w = zip(*STATUS_WEIGHTS)
    mins = timedelta(minutes=1)

    # wipe what an earlier (partial) run left, and the GIN index during the load (rebuilt afterwards)
    gin = next(i for i in Message._meta.indexes if i.name == "message_search_vector_gin")
    with connection.cursor() as cur:
        cur.execute("TRUNCATE drafts_feedback, drafts_datasetitem, drafts_draft, conversations_message,"
                    " conversations_ticket, conversations_customer, conversations_category RESTART IDENTITY CASCADE")
        cur.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [gin.name])
        if cur.fetchone():
            with connection.schema_editor() as editor:
                editor.remove_index(Message, gin)

    categories = [(k + 1, intent.replace("_", " ").capitalize(), intent.replace("_", "-"),
                   f"Tickets about {intent.replace('_', ' ')}.", ANCHOR - timedelta(days=400))
                  for k, intent in enumerate(cat_intents)]
    customers = []
    for c in range(1, N_CUSTOMERS + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        customers.append((c, f"{first} {last}", f"{first}.{last}{c}@example.com".lower().replace("'", ""),
                          f"cust-{c:05d}", ANCHOR - timedelta(days=rng.uniform(90, 900))))

    tickets, messages, drafts = [], [], []
    mid = did = 0

    def citations(intent):
        return Jsonb([{"n": n, "title": f"Help centre: {intent.replace('_', ' ')} ({n})", "source": "help-centre",
                       "chunk_id": rng.randint(1, 100_000),
                       "snippet": rng.choice(bitext[intent][1])[:240]} for n in (1, 2)])

    def draft_row(ticket_id, message_id, status, body, created, intent, cat_id, *, needs_human=False,
                  sent=None, sent_by=None, sent_at=None, bucket=""):
        nonlocal did
        did += 1
        ready = status in ("ready", "sent")
        dist = {"": None, "unchanged": 0.0, "light": 0.08, "heavy": 0.35, "rewritten": 0.8}[bucket]
        return (did, status, body, "offline" if ready else "", "compose" if ready else "", "",
                citations(intent) if ready else Jsonb([]), round(rng.uniform(0.4, 0.95), 3) if ready else None,
                needs_human, "Low retrieval similarity." if needs_human else "",
                round(rng.uniform(0.5, 1.0), 3) if ready else None, Jsonb([]),
                round(rng.uniform(0.5, 0.99), 3) if cat_id else None, 0, 0, 0, Jsonb({"total": 900} if ready else {}),
                1 if ready else 0, None, "", created, sent_at or created, message_id, cat_id, ticket_id, None, None,
                None if dist is None else int(dist * 300), None if dist is None else int(dist * 250), Jsonb([]),
                bucket, dist, sent_at, sent_by, sent)

    for tid in range(1, N_TICKETS + 1):
        status = rng.choices(statuses, status_w)[0]
        if rng.random() < 0.97:
            k = rng.choices(range(N_CATEGORIES), cat_weights)[0]
            intent, cat_id = cat_intents[k], k + 1
        else:
            intent, cat_id = rng.choice(other_intents), None
        ins, res = bitext[intent]
        channel = rng.choices(*CHANNELS)[0]
        assignee = rng.choice(staff_ids) if rng.random() < ASSIGNED_SHARE[status] else None
        n = rng.choices(*MESSAGE_COUNTS[status])[0]
        created = ANCHOR - timedelta(days=90) * rng.random()
        times, t = [], created
        for k in range(n):
            if k:
                t += mins * (rng.uniform(5, 480) if k % 2 else rng.uniform(10, 2160))
            times.append(t)
        if times[-1] > ANCHOR - mins:  # keep the conversation in the past
            shift = times[-1] - (ANCHOR - mins * rng.uniform(1, 60))
            times = [x - shift for x in times]
        first_text = rng.choice(ins)
        last_customer_mid = None
        for k, at in enumerate(times):
            mid += 1
            if k % 2 == 0:  # customer
                body = first_text if k == 0 else rng.choice(FOLLOW_UPS) + rng.choice(ins)
                messages.append((mid, tid, "customer", body, k, None, "", "", at))
                last_customer_mid = mid
            else:  # agent reply: from a draft (65 %) or written without one
                author = assignee or rng.choice(staff_ids)
                body = rng.choice(res)
                from_draft = rng.random() < 0.65
                messages.append((mid, tid, "agent", body, k, author, "", "draft" if from_draft else "no_draft", at))
                if from_draft:
                    bucket = rng.choices(["unchanged", "light", "heavy", "rewritten"], [0.4, 0.35, 0.2, 0.05])[0]
                    drafts.append(draft_row(tid, mid - 1, "sent", body, times[k - 1] + mins, intent, cat_id,
                                            sent=mid, sent_by=author, sent_at=at, bucket=bucket))
        last_cust_at = times[n - 1] if status != "resolved" else times[n - 2]
        if status in ("awaiting_agent", "reopened"):
            drafts.append(draft_row(tid, last_customer_mid, "ready", rng.choice(res), last_cust_at + mins, intent,
                                    cat_id, needs_human=rng.random() < 0.15))
        elif status == "drafting":
            drafts.append(draft_row(tid, last_customer_mid, "pending", "", last_cust_at + mins / 6, intent, cat_id))
        resolved_at = times[-1] + mins * rng.uniform(1, 30) if status == "resolved" else None
        subject = first_text[:1].upper() + first_text[1:120]
        tickets.append((tid, subject, channel, status, intent, "classifier" if cat_id else "",
                        uuid.UUID(int=rng.getrandbits(128), version=4), "", "", Jsonb({}), created,
                        resolved_at or times[-1], last_cust_at, resolved_at, assignee, cat_id, rng.randint(1, N_CUSTOMERS),
                        n + 1))

    from conversations.models import Category, Customer, Ticket
    from drafts.models import Draft

    with psycopg.connect(devservices.postgres_url(DB)) as conn, conn.cursor() as cur:
        def copy(model, columns, rows):
            """COPY rows into the model's table; fields not listed (e.g. added by later migrations) get their
            model default, so the generator keeps working while the models grow."""
            from django.db.models import NOT_PROVIDED

            extra = [f for f in model._meta.concrete_fields
                     if f.column not in columns and not getattr(f, "generated", False) and f.db_default is NOT_PROVIDED]
            names = ", ".join(f'"{c}"' for c in [*columns, *(f.column for f in extra)])
            with cur.copy(f"COPY {model._meta.db_table} ({names}) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row((*r, *(f.get_db_prep_save(f.get_default(), connection) for f in extra)))

        copy(Category, ["id", "name", "slug", "description", "created_at"], categories)
        copy(Customer, ["id", "name", "email", "external_id", "created_at"], customers)
        copy(Ticket, ["id", "subject", "channel", "status", "intent", "category_source", "thread_id", "external_id",
                      "split", "metadata", "created_at", "updated_at", "last_customer_message_at", "resolved_at",
                      "assignee_id", "category_id", "customer_id", "version"], tickets)
        copy(Message, ["id", "ticket_id", "role", "body", "turn_index", "author_user_id", "external_id", "origin",
                       "sent_at"], messages)
        copy(Draft, ["id", "status", "body", "generator", "strategy", "model", "citations", "confidence",
                     "needs_human", "abstain_reason", "grounding_score", "flags", "category_confidence",
                     "prompt_tokens", "completion_tokens", "cost_usd", "latency_ms", "attempts", "claimed_at", "error",
                     "created_at", "updated_at", "message_id", "predicted_category_id", "ticket_id", "trace_id",
                     "prompt_version_id", "chars_deleted", "chars_inserted", "diff", "edit_bucket", "edit_distance",
                     "sent_at", "sent_by_id", "sent_message_id"], drafts)
        for table in ("conversations_category", "conversations_customer", "conversations_ticket",
                      "conversations_message", "drafts_draft"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        conn.commit()
    with connection.cursor() as cur:
        cur.execute("SET maintenance_work_mem = '512MB'")
    with connection.schema_editor() as editor:
        editor.add_index(Message, gin)
    with connection.cursor() as cur:
        cur.execute("RESET maintenance_work_mem")
    return {"categories": len(categories), "customers": len(customers), "tickets": len(tickets),
            "messages": len(messages), "drafts": len(drafts)}


def describe_data() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT status, count(*) FROM conversations_ticket GROUP BY status ORDER BY 2 DESC")
        by_status = ", ".join(f"{s} {n:,}" for s, n in cur.fetchall())
        cur.execute("SELECT (SELECT count(*) FROM conversations_ticket), (SELECT count(*) FROM conversations_message),"
                    " (SELECT count(*) FROM drafts_draft), (SELECT count(*) FROM conversations_customer),"
                    " (SELECT count(*) FROM conversations_category),"
                    " pg_size_pretty(pg_total_relation_size('conversations_message')),"
                    " pg_size_pretty(pg_total_relation_size('conversations_ticket'))")
        t, m, d, c, k, msize, tsize = cur.fetchone()
    print(f"  {t:,} tickets ({by_status}), {m:,} messages, {d:,} drafts, {c:,} customers, {k} categories")
    print(f"  table sizes with indexes: messages {msize}, tickets {tsize}")


# --------------------------------------------------------------------------------------------------- measurement


def _pct(values: list[float], p: float) -> float:
    import numpy as np

    return float(np.percentile(values, p))


class Scenario:
    """A named list of GET requests (path, extra headers) cycled through; ``impl`` replaces
    ``drafts.selectors.inbox_page`` while its requests run (None: the product's own)."""

    def __init__(self, name: str, requests: list[tuple[str, dict]], target_ms: float, impl=None):
        self.name, self.requests, self.target_ms, self.impl = name, requests, target_ms, impl
        self.times: list[float] = []
        self.cpu: list[float] = []  # ms of CPU, this process + its PostgreSQL backend
        self.query_counts: list[int] = []
        self.sql_ms: list[float] = []
        self.slowest: tuple[float, str] | None = None

    def p(self, q: float) -> float:
        return _pct(self.times, q)

    def cpu_p(self, q: float) -> float:
        return _pct(self.cpu, q) if self.cpu else float("nan")


_ORIGINAL_INBOX_PAGE = None


def _use(impl) -> None:
    from drafts import selectors

    selectors.inbox_page = impl or _ORIGINAL_INBOX_PAGE


def _get(client, path: str, headers: dict):
    response = client.get(path, **headers)
    if response.status_code != 200:
        raise SystemExit(f"GET {path} -> {response.status_code}")
    return response


def _schedstat(path: str) -> tuple[int, int]:
    """(ns on a CPU, ns waiting on a run queue) of one task, from /proc/…/schedstat (0, 0 when unreadable)."""
    try:
        run, wait, _ = Path(path).read_text().split()
        return int(run), int(wait)
    except (OSError, ValueError):
        return 0, 0


def _backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]


def measure(client, scenarios: list[Scenario], *, n: int, warmup: int) -> None:
    """Warm-up, then ``n`` rounds; each round makes one request of every scenario in turn, so a burst of load from
    elsewhere on the machine hits every scenario alike instead of whichever ran at that moment.

    Besides the wall time, each request's CPU time is read from the kernel's schedstat counters of this thread and
    of its PostgreSQL backend: their sum is the request's busy time, what the wall time would be on an otherwise idle
    machine (it leaves out time spent waiting for a CPU behind other processes; parallel query workers, if a plan
    used them, are not counted)."""
    try:
        for sc in scenarios:
            _use(sc.impl)
            for i in range(max(warmup, min(len(sc.requests), 50))):
                _get(client, *sc.requests[i % len(sc.requests)])
            sc.times, sc.cpu = [], []
        backend = f"/proc/{_backend_pid()}/schedstat"
        me = "/proc/thread-self/schedstat"
        CALIBRATION.clear()
        for i in range(n):
            t = time.perf_counter()
            _calibration_work()
            CALIBRATION.append((time.perf_counter() - t) * 1000)
            for sc in scenarios:
                path, headers = sc.requests[i % len(sc.requests)]
                _use(sc.impl)
                a0, b0 = _schedstat(me), _schedstat(backend)
                t = time.perf_counter()
                _get(client, path, headers)
                sc.times.append((time.perf_counter() - t) * 1000)
                a1, b1 = _schedstat(me), _schedstat(backend)
                sc.cpu.append(((a1[0] - a0[0]) + (b1[0] - b0[0])) / 1e6)
        if backend != f"/proc/{_backend_pid()}/schedstat" or not any(sc.cpu[-1] for sc in scenarios):
            for sc in scenarios:  # the connection changed (or no schedstat): CPU figures would be wrong
                sc.cpu = []
    finally:
        _use(None)


CALIBRATION: list[float] = []


def _calibration_work() -> int:
    """A fixed pure-Python task (~3 ms on an idle core), timed once per round: its spread shows how much other
    processes on the machine disturbed the rounds (an idle machine gives p95/p50 close to 1)."""
    return sum(i * i for i in range(100_000))


def noise_line() -> str:
    c = CALIBRATION
    return (f"machine noise: a fixed CPU task timed every round took p50 {_pct(c, 50):.2f} ms, p95 {_pct(c, 95):.2f} ms"
            f" (p95/p50 {_pct(c, 95) / _pct(c, 50):.2f}; 1.0 = undisturbed)")


def wait_quiet(max_seconds: float, threshold: float = 1.5) -> None:
    """Wait (at most ``max_seconds``) until the 1-minute load average drops below ``threshold``."""
    if max_seconds <= 0:
        return
    deadline = time.monotonic() + max_seconds
    while os.getloadavg()[0] >= threshold and time.monotonic() < deadline:
        time.sleep(5)
    print(f"  waited for a quiet machine: load average now {os.getloadavg()[0]:.2f} (threshold {threshold})")


def count_queries(client, scenario: Scenario, *, limit: int | None = None) -> None:
    """An untimed pass under CaptureQueriesContext: SQL queries per request, their database time, the slowest."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts, sql_ms = [], []
    _use(scenario.impl)
    try:
        for path, headers in scenario.requests[:limit]:
            with CaptureQueriesContext(connection) as ctx:
                _get(client, path, headers)
            counts.append(len(ctx.captured_queries))
            sql_ms.append(sum(float(q["time"]) for q in ctx.captured_queries) * 1000)
            for q in ctx.captured_queries:
                if scenario.slowest is None or float(q["time"]) * 1000 > scenario.slowest[0]:
                    scenario.slowest = (float(q["time"]) * 1000, q["sql"])
    finally:
        _use(None)
    scenario.query_counts, scenario.sql_ms = counts, sql_ms


def page_size_counts(client, scenario: Scenario, sizes=(10, 25, 100)) -> dict[int, tuple[set[int], int]]:
    """SQL queries per request and rows rendered with ``inbox_page(page_size=N)`` (full request path)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    out = {}
    try:
        for size in sizes:
            _use(functools.partial(scenario.impl or _ORIGINAL_INBOX_PAGE, page_size=size))
            counts, rows = set(), 0
            for k, (path, headers) in enumerate(scenario.requests[:3]):
                with CaptureQueriesContext(connection) as ctx:
                    html = _get(client, path, headers).content.decode()
                counts.add(len(ctx.captured_queries))
                if k == 0:
                    rows = html.count('class="ticket-row"')
            out[size] = (counts, rows)
    finally:
        _use(None)
    return out


def explain(sql: str) -> str:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        return "\n".join(r[0] for r in cur.fetchall())


def results_table(scenarios: list[Scenario]) -> None:
    rows = []
    for sc in scenarios:
        qc = sorted(set(sc.query_counts))
        rows.append([sc.name, len(sc.times), f"{sc.p(50):.1f}", f"{sc.p(95):.1f}", f"{sc.p(99):.1f}",
                     f"{max(sc.times):.1f}", f"{sc.cpu_p(50):.1f}", f"{sc.cpu_p(95):.1f}",
                     "-".join(map(str, [qc[0], qc[-1]] if len(qc) > 1 else qc)),
                     f"{statistics.median(sc.sql_ms):.1f}", f"{sc.target_ms:.0f}",
                     "PASS" if sc.p(95) <= sc.target_ms else "FAIL",
                     "PASS" if sc.cpu_p(95) <= sc.target_ms else "FAIL"])
    _common.print_table(["scenario", "n", "p50 ms", "p95 ms", "p99 ms", "max ms", "busy p50", "busy p95",
                         "SQL queries", "SQL ms p50", "target p95", "wall", "busy"], rows)
    print("  p50…max: wall time of client.get. busy: CPU time of this process + its PostgreSQL backend per request"
          " (the wall time without waits for a CPU behind other processes)")


# ---------------------------------------------------------------------------------------------------------- main


def main(*, machine: bool = True, requests: int = 200, regenerate: bool = False, show_explain: bool = False,
         wait: float = 0.0) -> dict:
    global _ORIGINAL_INBOX_PAGE
    started = time.perf_counter()
    setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    from conversations.models import Category, Ticket
    from drafts import selectors

    _ORIGINAL_INBOX_PAGE = selectors.inbox_page
    _common.print_header(f"Console pages: data in {DB}")
    ensure_data(regenerate=regenerate)
    describe_data()

    me = get_user_model().objects.get(username=ME)
    client = Client()
    client.force_login(me)
    inbox = reverse("console:inbox")
    htmx = {"HTTP_HX_REQUEST": "true"}
    slugs = list(Category.objects.order_by("name").values_list("slug", flat=True))

    # cursors: pages 2 … DEEP_PAGES+1 of the default inbox (followed), and cursors deep in it
    cursors, cursor = [], ""
    for _ in range(DEEP_PAGES):
        cursor = selectors.inbox_page(selectors.InboxFilters(), me, cursor)["next_cursor"]
        cursors.append(cursor)
    open_qs = (Ticket.objects.exclude(channel="import").filter(status__in=selectors.OPEN_STATUSES)
               .order_by("last_customer_message_at", "pk"))
    n_open = open_qs.count()

    def cursor_after(k: int) -> str:
        row = open_qs.values_list("last_customer_message_at", "pk")[k - 1]
        return selectors._encode_cursor(*row)

    mid_rows = 25_000
    deep_cursor, last_cursor = cursor_after(mid_rows), cursor_after(n_open - selectors.PAGE_SIZE)

    rng = random.Random(SEED + 1)
    open_ids = sorted(Ticket.objects.filter(status__in=selectors.OPEN_STATUSES).values_list("pk", flat=True))
    ticket_ids = rng.sample(open_ids, 200)

    with connection.cursor() as cur:
        words = {}
        for word in (COMMON_WORD, RARE_WORD):
            cur.execute("SELECT count(*), count(DISTINCT ticket_id) FROM conversations_message"
                        " WHERE search_vector @@ websearch_to_tsquery('english', %s)", [word])
            words[word] = cur.fetchone()
    print(f"  {n_open:,} open tickets (the default inbox: {n_open // selectors.PAGE_SIZE:,} pages of "
          f"{selectors.PAGE_SIZE}); search words: {COMMON_WORD!r} in {words[COMMON_WORD][0]:,} messages of "
          f"{words[COMMON_WORD][1]:,} tickets, {RARE_WORD!r} in {words[RARE_WORD][0]:,} messages of "
          f"{words[RARE_WORD][1]:,} tickets")

    scenarios = [
        Scenario("inbox default (status=open)", [(inbox, {})], INBOX_TARGET_MS),
        Scenario("inbox category=<each of 20>", [(f"{inbox}?status=open&category={s}", {}) for s in slugs],
                 INBOX_TARGET_MS),
        Scenario("inbox assignee=me", [(f"{inbox}?status=open&assignee=me", {})], INBOX_TARGET_MS),
        Scenario(f"inbox q={COMMON_WORD} (common)", [(f"{inbox}?status=open&q={COMMON_WORD}", {})], INBOX_TARGET_MS),
        Scenario(f"inbox q={RARE_WORD} (rare)", [(f"{inbox}?status=open&q={RARE_WORD}", {})], INBOX_TARGET_MS),
        Scenario(f"inbox page {DEEP_PAGES + 1} (cursor)", [(f"{inbox}?status=open&cursor={cursors[-1]}", {})],
                 INBOX_TARGET_MS),
        Scenario(f"inbox pages 2-{DEEP_PAGES + 1} (cursor walk)",
                 [(f"{inbox}?status=open&cursor={c}", {}) for c in cursors], INBOX_TARGET_MS),
        Scenario(f"inbox page {mid_rows // selectors.PAGE_SIZE + 1:,} (cursor)",
                 [(f"{inbox}?status=open&cursor={deep_cursor}", {})], INBOX_TARGET_MS),
        Scenario(f"inbox last page ({n_open // selectors.PAGE_SIZE + 1:,})",
                 [(f"{inbox}?status=open&cursor={last_cursor}", {})], INBOX_TARGET_MS),
        Scenario("inbox HTMX rows fragment", [(f"{inbox}?fragment=rows&status=open", htmx)], INBOX_TARGET_MS),
        Scenario("ticket page (200 open tickets)", [(reverse("console:ticket", args=[pk]), {}) for pk in ticket_ids],
                 TICKET_TARGET_MS),
    ]

    _common.print_header(f"Server time per request: {requests} timed requests per scenario, interleaved rounds")
    wait_quiet(wait)
    load_before = os.getloadavg()[0]
    measure(client, scenarios, n=requests, warmup=20)
    load_after = os.getloadavg()[0]
    for sc in scenarios:
        count_queries(client, sc)
    results_table(scenarios)
    print(f"  load average (1 min) before {load_before:.2f}, after {load_after:.2f} on {os.cpu_count()} cores")
    print(f"  {noise_line()}")
    noise_main = noise_line()
    print("  SQL ms: database time of the request's queries as Django sees them (separate untimed pass, median)")

    _common.print_header("SQL queries per inbox request by page size (full request path, inbox_page(page_size=N))")
    sizes = (10, 25, 100)
    inv_rows, invariant = [], True
    for sc in scenarios:
        if sc.target_ms != INBOX_TARGET_MS or "walk" in sc.name:
            continue
        by_size = page_size_counts(client, sc, sizes)
        counts = set().union(*(c for c, _ in by_size.values()))
        invariant &= len(counts) == 1
        inv_rows.append([sc.name] + [f"{'/'.join(map(str, sorted(by_size[s][0])))} queries, {by_size[s][1]} rows"
                                     for s in sizes] + ["same" if len(counts) == 1 else "DIFFERS"])
    _common.print_table(["scenario"] + [f"page_size={s}" for s in sizes] + [""], inv_rows)

    tsc = scenarios[-1]
    from django.db.models import Count

    shape = {pk: (n, s) for pk, n, s in Ticket.objects.filter(pk__in=ticket_ids).annotate(n=Count("messages"))
             .values_list("pk", "n", "status")}
    by_shape: dict[tuple, list[int]] = defaultdict(list)
    for pk, q in zip(ticket_ids, tsc.query_counts):
        by_shape[shape[pk]].append(q)
    _common.print_header("SQL queries per ticket page by conversation length and status")
    _common.print_table(["messages", "status", "tickets", "SQL queries"],
                        [[m, s, len(v), "/".join(map(str, sorted(set(v))))] for (m, s), v in sorted(by_shape.items())])
    print("  (new tickets have no draft yet, so the feedback lookup is skipped)")

    for sc in scenarios if show_explain else [sc for sc in scenarios if sc.p(95) > sc.target_ms]:
        if sc.slowest:
            _common.print_header(f"Slowest query of {sc.name!r} ({sc.slowest[0]:.1f} ms when captured)")
            print(sc.slowest[1])
            print(explain(sc.slowest[1]))

    _common.print_header("Summary")
    checks = [(f"{sc.name}: p95 {sc.p(95):.1f} ms (busy p95 {sc.cpu_p(95):.1f} ms) <= {sc.target_ms:.0f} ms",
               sc.p(95) <= sc.target_ms) for sc in scenarios]
    checks.append(("SQL queries per inbox request identical for page sizes 10, 25, 100", invariant))
    checks.append((f"SQL queries per ticket page: {sorted(set(tsc.query_counts))} for 1-5 messages",
                   len(set(tsc.query_counts)) <= 2))
    for text, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    print(f"  ({noise_main})")
    print(f"  total time {time.perf_counter() - started:.0f} s")
    info = machine_line() if machine else {}
    return {"scenarios": {sc.name: {"p50_ms": sc.p(50), "p95_ms": sc.p(95), "p99_ms": sc.p(99),
                                    "busy_p50_ms": sc.cpu_p(50), "busy_p95_ms": sc.cpu_p(95),
                                    "queries": sorted(set(sc.query_counts)), "target_ms": sc.target_ms}
                          for sc in scenarios},
            "page_size_invariant": invariant, "machine": info}


def machine_line() -> dict[str, str]:
    import django
    from django.db import connection

    info = _common.machine_info()
    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        info["PostgreSQL"] = cur.fetchone()[0]
        cur.execute("SHOW shared_buffers")
        info["shared_buffers"] = cur.fetchone()[0]
    print(f"\ncode: {_common.code_state()}")
    print(f"machine: {info['CPU']}, {info['cores (os.cpu_count)']} cores, {info['RAM']} RAM, PostgreSQL "
          f"{info['PostgreSQL']} (shared_buffers {info['shared_buffers']}), Python {info['Python']}, "
          f"Django {django.__version__}, {info['OS']}")
    return info


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200, help="timed requests per scenario")
    ap.add_argument("--regenerate", action="store_true", help="rebuild the generated data even if present")
    ap.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the slowest query of every scenario")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                    help="before each measured phase, wait up to SECONDS for the 1-min load average to drop below 1.5")
    args = ap.parse_args()
    main(requests=args.requests, regenerate=args.regenerate, show_explain=args.explain, wait=args.wait_quiet)
