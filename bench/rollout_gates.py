"""Rollout gates and the rollout dashboard at 1,000,000 drafts over 20 categories.

    .venv/bin/python bench/rollout_gates.py [--requests 20] [--regenerate] [--experiments | --no-experiments]
                                            [--wait-quiet 150]

Target (issue): "With 1,000,000 drafts over 20 categories: evaluating every gate <= 1 s, dashboard server time
<= 300 ms."

Database: ``sdrbot_bench_rollout`` on the embedded PostgreSQL. ``bench/_common.py`` is reused with its database name
pointed at it (created if missing, with pgvector, migrated); the dev database ``sdrbot`` and the other benchmarks'
databases are never touched.

Data (generated once by PostgreSQL itself, then reused; regenerated when it holds fewer than 1,000,000 drafts, when
its newest draft is more than 3 days old — the dashboard's 12-week window is relative to now() — or with
``--regenerate``), deterministic (``setseed``):

- 20 categories, Zipf-like volumes (largest ~14 %, smallest ~3 % of drafts), phases interleaved over the volume
  ranks: 6 offline (3 ReplayRuns each, 2 of them passing their gate), 8 internal (2 of them with good drafts: their
  gate is expected to be open), 6 customer_facing (auto-send on);
- 10,000 customers, 1,000,000 tickets, 1,000,000 customer messages (one per ticket, turn 0), 1,000,000 drafts (one per
  message) created uniformly over 182 days: 90 % sent, 4 % discarded, 3 % ready and 1 % pending (both in the last 2
  days), 2 % failed; 15 % of the sent drafts of customer-facing categories auto-sent (no edit distance); agent-sent
  drafts: a category-specific share sent unchanged, the rest with a Beta(1, b) normalised edit distance (b per
  category), ``edit_bucket`` by drafts/edits.py (0 unchanged, <= 0.15 light, <= 0.5 heavy, else rewritten);
  ``would_auto_send`` on 40 % of internal/customer-facing drafts; 3 % with a non-critical monitor flag, 0.3 % (never
  auto-sent) with a critical one; bodies ~600 characters, a word-diff JSON, citations and latency JSON so the rows
  have a realistic width;
- Feedback on 11 % of agent-sent drafts (~9.4 % of all drafts): thumbs down at a category rate that grows with the
  edit distance, reasons from the taxonomy (hallucination at a category rate); ReplySignals on auto-sent drafts
  (8 % human_request, 10 % reopen, 3 % repeat_question); PhaseChange rows (promotions, 3 automatic fallbacks in the
  last 12 weeks, one in the last 7 days).

Loading: one connection with ``session_replication_role = replica`` (no FK trigger per row), secondary indexes of
the five big tables dropped before and rebuilt after the load (their definitions are saved in a table of the bench
database first, so an interrupted run restores them), then VACUUM ANALYZE.

Measurement (warm, in process; the machine is shared, so before the gates and before the experiments' dashboard
requests the run waits up to ``--wait-quiet`` seconds for the CPU to be below 35 % busy, and prints the load):
- ``drafts.rollout.gates_evaluate_all()``: 3 warm-up calls, then ``--requests`` timed calls: p50/p95, SQL queries;
- the dashboard ``GET /console/rollout/`` through Django's test ``Client`` logged in (``force_login``) as a superuser:
  the whole request path (middleware, session, view, selectors, SQL, template); 3 warm-up requests, ``--requests``
  timed requests: p50/p95; a separate untimed pass under ``CaptureQueriesContext`` counts the SQL queries and their
  database time;
- each dashboard SQL statement alone (median of 5 runs), EXPLAIN (ANALYZE, BUFFERS) of the slowest ones.

Experiments (run when a target is missed, or with ``--experiments``), in this database only (prefix ``bench_exp_``,
dropped afterwards; no product file is edited): (A) the three slow dashboard statements rewritten, with four indexes
created by hand; (B) A plus a weekly rollup table ``bench_exp_rollup`` (one row per category and closed week: the
trend medians/shares and the additive shadow counts) read together with a live aggregate of the current week. Each
statement current vs proposed (results compared in one transaction, so with the same now()), then the whole
dashboard request with the proposed SQL patched into ``drafts.selectors`` in this process, and
``rollout_dashboard()``'s output compared with the current SQL's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

DB = "sdrbot_bench_rollout"
N_DRAFTS = 1_000_000
N_CUSTOMERS = 10_000
N_AGENTS = 12
ADMIN = "bench_admin"
SEED = 0.20261121
STALE_DAYS = 3
GATES_TARGET_MS = 1000.0
DASHBOARD_TARGET_MS = 300.0
BIG_TABLES = ["conversations_ticket", "conversations_message", "drafts_draft", "drafts_feedback", "drafts_replysignal"]

CATEGORY_NAMES = [
    "Track order", "Cancel order", "Get refund", "Change shipping address", "Payment issue", "Delivery options",
    "Check invoice", "Change order", "Create account", "Delete account", "Recover password", "Contact customer service",
    "Check refund policy", "Newsletter subscription", "Place order", "Edit account", "Complaint", "Review",
    "Registration problems", "Check payment methods"]
# by volume rank: phase, share sent unchanged (p0), Beta(1, b) of the edits, thumbs-down rate, hallucination share
# of thumbs down
GOOD = (0.50, 12.0, 0.02, 0.0)
FAIR = (0.25, 4.0, 0.08, 0.15)
CF = (0.55, 14.0, 0.03, 0.05)
OFF = (0.15, 3.0, 0.12, 0.20)
PHASE_PLAN = ["customer_facing", "internal", "offline", "internal", "customer_facing", "internal", "offline",
              "customer_facing", "internal", "offline", "internal", "customer_facing", "offline", "internal",
              "customer_facing", "internal", "offline", "customer_facing", "internal", "offline"]
GOOD_INTERNAL_RANKS = {4, 11}
PASSING_OFFLINE_RANKS = {3, 13}
FALLBACK_RANKS = {5, 15}  # customer-facing categories that fell back to internal 5 weeks ago, promoted again after
RECENT_FALLBACK_RANK = 9  # an internal category that fell back 3 days ago

SENTENCES = [
    "Thank you for reaching out to us about this, I completely understand how frustrating it must be.",
    "I have checked your account and I can confirm that the request was received by our team yesterday.",
    "You can follow every step of the process from the Orders section of your account at any time.",
    "If the problem persists after 48 hours, please reply to this message and we will escalate it for you.",
    "Our help center article on this topic explains the options available and the usual processing times.",
    "Please note that refunds are issued to the original payment method within 5 to 10 business days.",
    "I have updated the details on our side, so there is nothing more you need to do right now.",
    "For security reasons we cannot change this without a confirmation sent to the email on file.",
    "We are sorry for the inconvenience and appreciate your patience while we sort this out.",
    "Let me know if there is anything else I can help you with, I am happy to assist further.",
    "The carrier has confirmed the parcel is on its way and the tracking link should update shortly.",
]
QUESTIONS = ["Where is my order?", "I want to cancel my purchase", "How do I get my money back?",
             "The payment failed twice", "Can I change the delivery address?", "I cannot log in to my account",
             "I need a copy of my invoice", "Nobody answered my last email"]


# ---------------------------------------------------------------------------------------------------------- setup


def setup() -> None:
    """``bench/_common.py``'s setup, pointed at ``sdrbot_bench_rollout`` (its functions read the module global)."""
    _common.BENCH_DB = DB
    _common.setup()


def _pg():
    import psycopg

    from sdrbot import devservices

    return psycopg.connect(devservices.postgres_url(DB), autocommit=True)


# ---------------------------------------------------------------------------------------------------------- data


def _restore_saved_indexes(conn) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS bench_saved_index (name text PRIMARY KEY, def text NOT NULL)")
    rows = conn.execute("SELECT name, def FROM bench_saved_index").fetchall()
    for name, definition in rows:
        if not conn.execute("SELECT 1 FROM pg_class WHERE relname = %s", [name]).fetchone():
            conn.execute(definition)
        conn.execute("DELETE FROM bench_saved_index WHERE name = %s", [name])
    return len(rows)


def drop_experiment_indexes(conn) -> None:
    for (name,) in conn.execute("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'bench_exp_%%'").fetchall():
        conn.execute(f'DROP INDEX IF EXISTS "{name}"')
    conn.execute("DROP TABLE IF EXISTS bench_exp_trends_weekly, bench_exp_rollup")


def data_state() -> tuple[int, float | None]:
    with _pg() as conn:
        restored = _restore_saved_indexes(conn)
        if restored:
            print(f"  restored {restored} index(es) left dropped by an interrupted generation")
        drop_experiment_indexes(conn)
        conn.execute("CREATE TABLE IF NOT EXISTS bench_rollout_meta (generated_at timestamptz, seconds float8)")
        complete = conn.execute("SELECT count(*) FROM bench_rollout_meta").fetchone()[0] > 0
        n = conn.execute("SELECT count(*) FROM drafts_draft").fetchone()[0] if complete else 0
        age = conn.execute("SELECT extract(epoch FROM now() - max(created_at)) / 86400 FROM drafts_draft").fetchone()[0]
    return n, (float(age) if age is not None else None)


def ensure_data(*, regenerate: bool) -> float | None:
    n, age = data_state()
    if not regenerate and n >= N_DRAFTS and age is not None and age <= STALE_DAYS:
        print(f"  reusing {n:,} drafts (newest {age * 24:.1f} h old)")
        return None
    why = "--regenerate" if regenerate else (f"{n:,} drafts < {N_DRAFTS:,}" if n < N_DRAFTS else
                                           f"newest draft {age:.1f} days old > {STALE_DAYS}")
    print(f"  generating ({why}) ...", flush=True)
    return generate()


def _category_rows() -> list[tuple]:
    weights = [1 / (r ** 0.55) for r in range(1, 21)]
    total = sum(weights)
    rows, lo = [], 0.0
    for rank in range(1, 21):
        phase = PHASE_PLAN[rank - 1]
        if phase == "customer_facing":
            p0, b, p_down, p_halluc = CF
        elif phase == "internal":
            p0, b, p_down, p_halluc = GOOD if rank in GOOD_INTERNAL_RANKS else FAIR
        else:
            p0, b, p_down, p_halluc = OFF
        hi = 1.0 if rank == 20 else lo + weights[rank - 1] / total
        rows.append((rank, CATEGORY_NAMES[rank - 1], phase, lo, hi, p0, b, p_down, p_halluc))
        lo = hi
    return rows


def generate() -> float:
    from django.contrib.auth import get_user_model

    started = time.perf_counter()
    steps: list[tuple[str, float]] = []

    def step(name: str, t0: float) -> float:
        t = time.perf_counter()
        steps.append((name, t - t0))
        print(f"    {name:<52} {t - t0:6.1f} s", flush=True)
        return t

    User = get_user_model()
    t = time.perf_counter()
    with _pg() as conn:
        conn.execute("DELETE FROM bench_rollout_meta")  # set again when the generation completes
        conn.execute("TRUNCATE conversations_category, conversations_customer, conversations_ticket, "
                     "conversations_message, drafts_draft, drafts_feedback, drafts_replysignal, drafts_phasechange, "
                     "drafts_replayrun RESTART IDENTITY CASCADE")
    User.objects.filter(username__in=[ADMIN] + [f"bench_agent{i}" for i in range(1, N_AGENTS + 1)]).delete()
    admin = User.objects.create_user(ADMIN, email="admin@bench.invalid", is_staff=True, is_superuser=True)
    admin.set_unusable_password()
    admin.save()
    agents = []
    for i in range(1, N_AGENTS + 1):
        u = User.objects.create_user(f"bench_agent{i}", email=f"agent{i}@bench.invalid", is_staff=True)
        u.set_unusable_password()
        u.save()
        agents.append(u.pk)

    with _pg() as conn:
        conn.execute("SET session_replication_role = replica")  # no FK trigger per row (ids are consistent by construction)
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET work_mem = '256MB'")
        # secondary indexes off during the load; definitions saved first so an interrupted run restores them
        conn.execute("CREATE TABLE IF NOT EXISTS bench_saved_index (name text PRIMARY KEY, def text NOT NULL)")
        for table in BIG_TABLES:
            rows = conn.execute(
                "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid = %s::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
                [table]).fetchall()
            for name, definition in rows:
                conn.execute("INSERT INTO bench_saved_index VALUES (%s, %s) ON CONFLICT (name) DO NOTHING", [name, definition])
                conn.execute(f'DROP INDEX "{name}"')
        t = step("truncate, users, drop secondary indexes", t)

        cats = _category_rows()
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO conversations_category (id, name, slug, description, created_at, phase, auto_send,"
                " auto_send_min_confidence, business_hours, gate_overrides) VALUES (%s, %s, %s, '', now() - interval '300 days',"
                " %s, %s, 0.8, '{}', '{}')",
                [(r[0], r[1], r[1].lower().replace(" ", "-"), r[2], r[2] == "customer_facing") for r in cats])
        conn.execute("DROP TABLE IF EXISTS bench_cat, bench_gen, bench_d")
        conn.execute("CREATE UNLOGGED TABLE bench_cat (cid bigint, phase text, lo float8, hi float8, p0 float8, b float8,"
                     " p_down float8, p_halluc float8)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO bench_cat VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                            [(r[0], r[2], r[3], r[4], r[5], r[6], r[7], r[8]) for r in cats])
        conn.execute(
            "INSERT INTO conversations_customer (id, name, email, external_id, created_at)"
            " SELECT g, 'Customer ' || g, 'customer' || g || '@example.invalid', '', now() - interval '400 days'"
            " FROM generate_series(1, %s) g", [N_CUSTOMERS])
        conn.execute("SELECT setseed(%s)", [SEED])
        conn.execute(
            "CREATE UNLOGGED TABLE bench_gen AS SELECT g AS id, random() r1, random() r2, random() r3, random() r4,"
            " random() r5, random() r6, random() r7, random() r8, random() r9, random() r10, random() r11, random() r12"
            " FROM generate_series(1, %s) g", [N_DRAFTS])
        # derived columns, once: category, status, times, auto-sent, edit distance
        conn.execute("""
            CREATE UNLOGGED TABLE bench_d AS
            WITH x AS (
                SELECT s.*, c.cid, c.phase, c.p0, c.b, c.p_down, c.p_halluc,
                       CASE WHEN s.r3 < 0.90 THEN 'sent' WHEN s.r3 < 0.94 THEN 'discarded' WHEN s.r3 < 0.97 THEN 'ready'
                            WHEN s.r3 < 0.99 THEN 'failed' ELSE 'pending' END AS status
                FROM bench_gen s JOIN bench_cat c ON s.r1 >= c.lo AND s.r1 < c.hi
            ), y AS (
                SELECT x.*,
                       CASE WHEN x.status IN ('ready', 'pending') THEN now() - x.r2 * interval '2 days'
                            ELSE now() - x.r2 * interval '182 days' END AS created_at,
                       (x.status = 'sent' AND x.phase = 'customer_facing' AND x.r4 < 0.15) AS auto_sent
                FROM x
            )
            SELECT y.*,
                   CASE WHEN y.status = 'sent' THEN least(now(), y.created_at + y.r12 * interval '3 hours') END AS sent_at,
                   CASE WHEN y.status = 'sent' AND NOT y.auto_sent THEN
                        CASE WHEN y.r5 < y.p0 THEN 0.0 ELSE round((1 - power(1 - y.r6, 1.0 / y.b))::numeric, 4)::float8 END
                   END AS ed
            FROM y
        """)
        t = step("categories, customers, random draws (bench_d)", t)

        conn.execute("""
            INSERT INTO conversations_ticket (id, subject, channel, status, category_id, intent, category_source,
                customer_id, thread_id, external_id, split, metadata, version, created_at, updated_at,
                last_customer_message_at, resolved_at)
            SELECT id, (%(q)s::text[])[1 + id %% 8] || ' (#' || id || ')', CASE WHEN r7 < 0.5 THEN 'email' ELSE 'widget' END,
                   CASE WHEN status IN ('ready', 'failed') THEN 'awaiting_agent' WHEN status = 'pending' THEN 'drafting'
                        WHEN auto_sent THEN 'auto_replied' ELSE 'resolved' END,
                   cid, '', 'classifier', 1 + id %% %(nc)s, gen_random_uuid(), '', '', '{}', 1, created_at,
                   coalesce(sent_at, created_at), created_at, CASE WHEN status IN ('sent', 'discarded') THEN coalesce(sent_at, created_at) END
            FROM bench_d
        """, {"q": QUESTIONS, "nc": N_CUSTOMERS})
        t = step(f"{N_DRAFTS:,} tickets", t)
        conn.execute("""
            INSERT INTO conversations_message (id, ticket_id, role, body, turn_index, external_id, origin, sent_at)
            SELECT id, id, 'customer', (%(q)s::text[])[1 + id %% 8] || ' Order ' || (100000 + id) || ', thanks.', 0, '', '',
                   created_at
            FROM bench_d
        """, {"q": QUESTIONS})
        t = step(f"{N_DRAFTS:,} messages (generated tsvector)", t)
        conn.execute("""
            INSERT INTO drafts_draft (id, ticket_id, message_id, status, category_id, would_auto_send, auto_sent, body,
                generator, strategy, model, citations, confidence, needs_human, abstain_reason, grounding_score, flags,
                monitor_flags, predicted_category_id, category_confidence, prompt_tokens, completion_tokens, cost_usd,
                latency_ms, attempts, claimed_at, error, created_at, updated_at, sent_by_id, sent_at, edit_distance,
                chars_inserted, chars_deleted, edit_bucket, diff)
            SELECT d.id, d.id, d.id, d.status, d.cid,
                   CASE WHEN d.phase = 'offline' THEN NULL ELSE d.r7 < 0.4 END, d.auto_sent, b.body,
                   'openai', 'llm', 'gpt-4o-mini',
                   jsonb_build_array(jsonb_build_object('document_id', d.id %% 349, 'chunk_id', d.id %% 4000, 'title', 'Help article ' || d.id %% 349),
                                     jsonb_build_object('document_id', (d.id + 7) %% 349, 'chunk_id', (d.id + 7) %% 4000, 'title', 'Help article ' || (d.id + 7) %% 349)),
                   0.5 + 0.5 * d.r11, d.r8 > 0.97, '', 0.6 + 0.4 * d.r12, '[]',
                   CASE WHEN d.r8 < 0.003 AND NOT d.auto_sent THEN
                            jsonb_build_array(jsonb_build_object('monitor', (ARRAY['risky_promise', 'foreign_personal_data', 'toxic'])[1 + d.id %% 3],
                                                                 'blocking', true, 'evidence', 'we guarantee a full refund'))
                        WHEN d.r8 < 0.033 THEN
                            jsonb_build_array(jsonb_build_object('monitor', 'tone', 'blocking', false, 'evidence', 'unfortunately'))
                        ELSE '[]'::jsonb END,
                   d.cid, 0.6 + 0.4 * d.r5, 900 + (d.id %% 600), 120 + (d.id %% 120), 0.000350,
                   jsonb_build_object('retrieve', 30 + d.id %% 40, 'generate', 700 + d.id %% 900, 'monitors', 5),
                   CASE WHEN d.status = 'pending' THEN 0 ELSE 1 END, NULL,
                   CASE WHEN d.status = 'failed' THEN 'provider timeout' ELSE '' END,
                   d.created_at, coalesce(d.sent_at, d.created_at),
                   CASE WHEN d.status = 'sent' AND NOT d.auto_sent THEN (%(a)s::int[])[1 + d.id %% %(na)s] END,
                   d.sent_at, d.ed,
                   CASE WHEN d.ed IS NOT NULL THEN round(d.ed * 300)::int END,
                   CASE WHEN d.ed IS NOT NULL THEN round(d.ed * 250)::int END,
                   CASE WHEN d.ed IS NULL THEN '' WHEN d.ed = 0 THEN 'unchanged' WHEN d.ed <= 0.15 THEN 'light'
                        WHEN d.ed <= 0.5 THEN 'heavy' ELSE 'rewritten' END,
                   CASE WHEN d.ed IS NULL THEN '[]'::jsonb
                        WHEN d.ed = 0 THEN jsonb_build_array(jsonb_build_array('equal', b.body, b.body))
                        ELSE jsonb_build_array(jsonb_build_array('equal', b.s1 || ' ' || b.s2, b.s1 || ' ' || b.s2),
                                               jsonb_build_array('replace', b.s3, (%(s)s::text[])[1 + (d.id + 5) %% 11]),
                                               jsonb_build_array('equal', b.s4 || ' ' || b.s5, b.s4 || ' ' || b.s5)) END
            FROM bench_d d
            CROSS JOIN LATERAL (
                SELECT s1, s2, s3, s4, s5, concat_ws(' ', s1, s2, s3, s4, s5) AS body
                FROM (SELECT (%(s)s::text[])[1 + d.id %% 11] s1, (%(s)s::text[])[1 + (d.id / 11) %% 11] s2,
                             (%(s)s::text[])[1 + (d.id / 121) %% 11] s3, (%(s)s::text[])[1 + (d.id / 7) %% 11] s4,
                             (%(s)s::text[])[1 + (d.id / 3) %% 11] s5) p
            ) b
        """, {"s": SENTENCES, "a": agents, "na": len(agents)})
        t = step(f"{N_DRAFTS:,} drafts", t)
        conn.execute("""
            INSERT INTO drafts_feedback (id, draft_id, user_id, thumbs_up, reasons, comment, created_at, updated_at)
            SELECT id, id, (%(a)s::int[])[1 + (id / 7) %% %(na)s], NOT down,
                   CASE WHEN NOT down THEN '[]'::jsonb
                        WHEN r11 < p_halluc * 0.5 THEN '["hallucination"]'
                        WHEN r11 < p_halluc THEN '["hallucination", "outdated_information"]'
                        ELSE jsonb_build_array((ARRAY['tone_mismatch', 'missed_required_fields', 'outdated_information',
                                                      'wrong_routing', 'other', 'tool_failure'])[1 + id %% 6]) END,
                   '', sent_at + interval '5 minutes', sent_at + interval '5 minutes'
            FROM (SELECT *, r10 < p_down * (0.4 + 3 * ed) AS down FROM bench_d
                  WHERE status = 'sent' AND NOT auto_sent AND r9 < 0.11) s
        """, {"a": agents, "na": len(agents)})
        conn.execute("""
            INSERT INTO drafts_replysignal (draft_id, category_id, kind, value, message_id, created_at)
            SELECT id, cid, k.kind, NULL, NULL, sent_at + interval '2 hours'
            FROM bench_d, LATERAL (VALUES ('human_request', r9 < 0.08), ('reopen', r10 < 0.10),
                                          ('repeat_question', r11 < 0.03)) k(kind, hit)
            WHERE auto_sent AND k.hit
        """)
        t = step("feedback, reply signals", t)

        # replay runs: 3 per category (the latest decides); phase changes: the rollout's history
        conn.execute("""
            INSERT INTO drafts_replayrun (category_id, n, edit_similarity, baseline_similarity, grounding, abstain_rate,
                                          metrics, created_at)
            SELECT c.cid, 40 + 10 * k, sim, 0.35, gr, ab, '{}', now() - (40 - 10 * k) * interval '1 day'
            FROM bench_cat c, generate_series(1, 3) k,
                 LATERAL (SELECT CASE WHEN c.cid = ANY(%(pass)s) OR c.phase <> 'offline' THEN 0.40 + 0.02 * k ELSE 0.28 + 0.01 * k END sim,
                                 CASE WHEN c.cid = ANY(%(pass)s) OR c.phase <> 'offline' THEN 0.86 ELSE 0.74 END gr,
                                 CASE WHEN c.cid = ANY(%(pass)s) OR c.phase <> 'offline' THEN 0.12 ELSE 0.30 END ab) v
        """, {"pass": sorted(PASSING_OFFLINE_RANKS)})
        conn.execute("""
            INSERT INTO drafts_phasechange (category_id, from_phase, to_phase, actor_id, reason, override, automatic,
                                            metrics, created_at)
            SELECT cid, 'offline', 'internal', %(admin)s, 'gate open: offline_to_internal', false, false, '{}'::jsonb,
                   now() - interval '270 days' FROM bench_cat WHERE phase <> 'offline'
            UNION ALL
            SELECT cid, 'internal', 'customer_facing', %(admin)s, 'gate open: internal_to_customer_facing', false, false,
                   '{}'::jsonb, now() - interval '200 days' FROM bench_cat WHERE phase = 'customer_facing'
            UNION ALL
            SELECT cid, 'customer_facing', 'internal', NULL, 'automatic fallback: human requests 18%% > 15%%', false, true,
                   '{}'::jsonb, now() - interval '35 days' FROM bench_cat WHERE cid = ANY(%(fb)s)
            UNION ALL
            SELECT cid, 'internal', 'customer_facing', %(admin)s, 'gate open: internal_to_customer_facing', false, false,
                   '{}'::jsonb, now() - interval '21 days' FROM bench_cat WHERE cid = ANY(%(fb)s)
            UNION ALL
            SELECT %(recent)s, 'internal', 'customer_facing', %(admin)s, 'override: seasonal', true, false, '{}'::jsonb,
                   now() - interval '40 days'
            UNION ALL
            SELECT %(recent)s, 'customer_facing', 'internal', NULL, 'automatic fallback: reopens 24%% > 20%%', false, true,
                   '{}'::jsonb, now() - interval '3 days'
        """, {"admin": admin.pk, "fb": sorted(FALLBACK_RANKS), "recent": RECENT_FALLBACK_RANK})
        for table in ["conversations_customer", "conversations_ticket", "conversations_message", "drafts_draft",
                      "drafts_feedback", "conversations_category"]:
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        conn.execute("DROP TABLE bench_cat, bench_gen, bench_d")
        t = step("replay runs, phase changes, sequences", t)

        for name, definition in conn.execute("SELECT name, def FROM bench_saved_index ORDER BY name").fetchall():
            conn.execute(definition)
            conn.execute("DELETE FROM bench_saved_index WHERE name = %s", [name])
        t = step("rebuild secondary indexes", t)
        conn.execute("SET session_replication_role = origin")
        for table in BIG_TABLES + ["conversations_customer", "conversations_category", "drafts_phasechange",
                                   "drafts_replayrun", "auth_user"]:
            conn.execute(f"VACUUM (ANALYZE) {table}")
        step("VACUUM ANALYZE", t)
    total = time.perf_counter() - started
    with _pg() as conn:
        conn.execute("INSERT INTO bench_rollout_meta VALUES (now(), %s)", [total])
    print(f"    {'generation total':<52} {total:6.1f} s")
    return total


def describe_data() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("""
            SELECT c.name, c.phase, count(d.id), count(*) FILTER (WHERE d.status = 'sent'),
                   count(*) FILTER (WHERE d.auto_sent),
                   count(*) FILTER (WHERE d.status = 'sent' AND d.sent_at >= now() - interval '12 weeks')
            FROM conversations_category c LEFT JOIN drafts_draft d ON d.category_id = c.id
            GROUP BY c.id ORDER BY count(d.id) DESC""")
        per_cat = cur.fetchall()
        counts = {}
        for table in ["conversations_ticket", "conversations_message", "drafts_draft", "drafts_feedback",
                      "drafts_replysignal", "drafts_phasechange", "drafts_replayrun"]:
            cur.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cur.fetchone()[0]
        cur.execute("SELECT edit_bucket, count(*), round(avg(edit_distance)::numeric, 3) FROM drafts_draft"
                    " WHERE status = 'sent' AND NOT auto_sent GROUP BY 1 ORDER BY 2 DESC")
        buckets = cur.fetchall()
        cur.execute("SELECT count(*) FILTER (WHERE NOT thumbs_up), count(*) FILTER (WHERE reasons ? 'hallucination')"
                    " FROM drafts_feedback")
        down, halluc = cur.fetchone()
        cur.execute("SELECT pg_size_pretty(pg_table_size('drafts_draft')), pg_size_pretty(pg_indexes_size('drafts_draft')),"
                    " (SELECT avg(pg_column_size(d.*))::int FROM drafts_draft d TABLESAMPLE SYSTEM (1))")
        tsize, isize, width = cur.fetchone()
    _common.print_table(["category", "phase", "drafts", "sent", "auto-sent", "sent, last 12 weeks"],
                        [[n, p, f"{a:,}", f"{b:,}", f"{c:,}", f"{d:,}"] for n, p, a, b, c, d in per_cat])
    print("  " + ", ".join(f"{t.split('_', 1)[1]} {n:,}" for t, n in counts.items()))
    print("  agent-sent drafts by edit bucket: " + ", ".join(f"{b or '(none)'} {n:,} (mean {m})" for b, n, m in buckets))
    print(f"  feedback: {down:,} thumbs down, {halluc:,} with 'hallucination'; drafts_draft: table {tsize}, "
          f"indexes {isize}, mean row {width} bytes")


# ---------------------------------------------------------------------------------------------------- measuring


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


def timed(fn, n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def capture(fn) -> tuple[int, float, list[tuple[float, str]]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        fn()
    qs = [(float(q["time"]) * 1000, q["sql"]) for q in ctx.captured_queries]
    return len(qs), sum(t for t, _ in qs), qs


def sql_ms(sql: str, params=None, n: int = 5) -> tuple[float, list]:
    from django.db import connection

    times, rows = [], None
    with connection.cursor() as cur:
        for _ in range(n):
            t = time.perf_counter()
            cur.execute(sql, params)
            rows = cur.fetchall()
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), rows


def explain(sql: str, params=None) -> str:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return "\n".join("    " + r[0] for r in cur.fetchall())


def dashboard_statements() -> list[tuple[str, str, list | None]]:
    """(label, SQL, params) of every statement the dashboard's selector runs, in order."""
    from conversations.models import Category
    from drafts import rollout, selectors
    from drafts.models import ReplayRun

    out = [("_TRENDS_SQL", selectors._TRENDS_SQL, None), ("_SHADOW_SQL", selectors._SHADOW_SQL, None),
           ("_REASONS_SQL", selectors._REASONS_SQL, None), ("_FALLBACKS_SQL", selectors._FALLBACKS_SQL, None)]
    for c in Category.objects.order_by("name"):
        t = rollout.thresholds(c)
        if c.phase == "offline":
            q, p = ReplayRun.objects.filter(category=c)[:1].query.sql_with_params()
            out.append((f"ReplayRun latest [{c.name}]", q, list(p)))
        elif c.phase == "internal":
            out.append((f"_WINDOW_SQL [{c.name}]", rollout._WINDOW_SQL, [c.pk, int(t["window"])]))
        else:
            out.append((f"_BREAKER_SQL [{c.name}]", rollout._BREAKER_SQL,
                        [c.pk, int(t["breaker_window"]), list(rollout.CRITICAL_MONITORS)]))
    return out


# ------------------------------------------------------------------------------------------- experiments (proposed)

PROPOSED_TRENDS_SQL = """
SELECT d.category_id, date_trunc('week', d.sent_at) AS wk,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY d.edit_distance) FILTER (WHERE NOT d.auto_sent) AS median_ed,
       avg((d.edit_bucket IN ('unchanged', 'light'))::int) FILTER (WHERE NOT d.auto_sent AND d.edit_distance IS NOT NULL) AS light,
       count(*) FILTER (WHERE d.auto_sent) AS auto_n,
       avg((NOT f.thumbs_up)::int) AS down
FROM drafts_draft d
LEFT JOIN (SELECT ff.draft_id, bool_and(ff.thumbs_up) AS thumbs_up FROM drafts_feedback ff GROUP BY ff.draft_id) f
       ON f.draft_id = d.id
WHERE d.status = 'sent' AND d.sent_at >= now() - interval '12 weeks' AND d.category_id IS NOT NULL
GROUP BY 1, 2 ORDER BY 1, 2
"""
PROPOSED_SHADOW_SQL = """
SELECT category_id, count(*) FILTER (WHERE edit_distance IS NOT NULL),
       count(*) FILTER (WHERE edit_bucket IN ('unchanged', 'light'))
FROM drafts_draft WHERE would_auto_send AND status = 'sent' AND NOT auto_sent AND category_id IS NOT NULL
GROUP BY category_id
"""
PROPOSED_REASONS_SQL = """
SELECT d.category_id, r.reason, count(*) FROM drafts_feedback f JOIN drafts_draft d ON d.id = f.draft_id,
     jsonb_array_elements_text(f.reasons) AS r(reason)
WHERE d.category_id IS NOT NULL AND f.reasons <> '[]'::jsonb GROUP BY 1, 2 ORDER BY 1, 3 DESC
"""
EXP_INDEXES = {
    "sent": "CREATE INDEX bench_exp_draft_sent ON drafts_draft (sent_at) INCLUDE (id, category_id, auto_sent, "
            "would_auto_send, edit_distance, edit_bucket) WHERE status = 'sent'",
    "shadow": "CREATE INDEX bench_exp_draft_shadow ON drafts_draft (category_id) INCLUDE (edit_distance, edit_bucket) "
              "WHERE would_auto_send AND status = 'sent' AND NOT auto_sent",
    "reasons": "CREATE INDEX bench_exp_feedback_reasons ON drafts_feedback (draft_id) INCLUDE (reasons) "
               "WHERE reasons <> '[]'::jsonb",
    "draft_cat": "CREATE INDEX bench_exp_draft_id_category ON drafts_draft (id) INCLUDE (category_id)",
}
# a weekly rollup of every closed week (all history: the shadow counts are all-time sums), refreshed when a week
# closes (and, for late feedback, the last weeks again nightly); the current week is computed live
ROLLUP_DDL = """
CREATE TABLE bench_exp_rollup AS
SELECT d.category_id, date_trunc('week', d.sent_at) AS wk,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY d.edit_distance) FILTER (WHERE NOT d.auto_sent) AS median_ed,
       avg((d.edit_bucket IN ('unchanged', 'light'))::int) FILTER (WHERE NOT d.auto_sent AND d.edit_distance IS NOT NULL) AS light,
       count(*) FILTER (WHERE d.auto_sent) AS auto_n,
       avg((NOT f.thumbs_up)::int) AS down,
       count(*) FILTER (WHERE d.would_auto_send AND NOT d.auto_sent AND d.edit_distance IS NOT NULL) AS shadow_n,
       count(*) FILTER (WHERE d.would_auto_send AND NOT d.auto_sent AND d.edit_bucket IN ('unchanged', 'light')) AS shadow_ok
FROM drafts_draft d
LEFT JOIN (SELECT draft_id, bool_and(thumbs_up) AS thumbs_up FROM drafts_feedback GROUP BY draft_id) f ON f.draft_id = d.id
WHERE d.status = 'sent' AND d.sent_at < date_trunc('week', now()) AND d.category_id IS NOT NULL
GROUP BY 1, 2
"""
_LIVE_FROM = """
FROM drafts_draft d
LEFT JOIN LATERAL (SELECT bool_and(ff.thumbs_up) AS thumbs_up FROM drafts_feedback ff WHERE ff.draft_id = d.id) f ON true
WHERE d.status = 'sent' AND d.sent_at >= {start} AND d.category_id IS NOT NULL
"""
ROLLUP_TRENDS_SQL = """
SELECT category_id, wk, median_ed, light, auto_n, down FROM bench_exp_rollup
WHERE wk >= date_trunc('week', now() - interval '12 weeks')
UNION ALL
SELECT d.category_id, date_trunc('week', d.sent_at),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY d.edit_distance) FILTER (WHERE NOT d.auto_sent),
       avg((d.edit_bucket IN ('unchanged', 'light'))::int) FILTER (WHERE NOT d.auto_sent AND d.edit_distance IS NOT NULL),
       count(*) FILTER (WHERE d.auto_sent), avg((NOT f.thumbs_up)::int)
""" + _LIVE_FROM.format(start="date_trunc('week', now())") + """GROUP BY 1, 2 ORDER BY 1, 2
"""
ROLLUP_SHADOW_SQL = """
SELECT category_id, sum(n)::bigint, sum(ok)::bigint FROM (
    SELECT category_id, shadow_n AS n, shadow_ok AS ok FROM bench_exp_rollup
    UNION ALL
    SELECT category_id, count(*) FILTER (WHERE edit_distance IS NOT NULL),
           count(*) FILTER (WHERE edit_bucket IN ('unchanged', 'light'))
    FROM drafts_draft WHERE status = 'sent' AND sent_at >= date_trunc('week', now()) AND would_auto_send
         AND NOT auto_sent AND category_id IS NOT NULL GROUP BY category_id
) s GROUP BY category_id
"""
# the live part of a week that is about to close (Sunday night): 7 days of sent drafts instead of the current week's
WORST_LIVE_TRENDS_SQL = """
SELECT d.category_id, date_trunc('week', d.sent_at),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY d.edit_distance) FILTER (WHERE NOT d.auto_sent),
       avg((d.edit_bucket IN ('unchanged', 'light'))::int) FILTER (WHERE NOT d.auto_sent AND d.edit_distance IS NOT NULL),
       count(*) FILTER (WHERE d.auto_sent), avg((NOT f.thumbs_up)::int)
""" + _LIVE_FROM.format(start="now() - interval '7 days'") + """GROUP BY 1, 2 ORDER BY 1, 2
"""
WORST_LIVE_SHADOW_SQL = """
SELECT category_id, count(*) FILTER (WHERE edit_distance IS NOT NULL),
       count(*) FILTER (WHERE edit_bucket IN ('unchanged', 'light'))
FROM drafts_draft WHERE status = 'sent' AND sent_at >= now() - interval '7 days' AND would_auto_send
     AND NOT auto_sent AND category_id IS NOT NULL GROUP BY category_id
"""


def _norm_rows(rows, *, drop_zero_counts: bool = False) -> list[tuple]:
    from decimal import Decimal

    out = []
    for r in rows:
        r = tuple(float(v) if isinstance(v, Decimal) else v for v in r)
        r = tuple(round(v, 9) if isinstance(v, float) else v for v in r)
        if drop_zero_counts and all(v == 0 for v in r[1:]):
            continue  # the selector reads a missing category as (0, 0)
        out.append(r)
    return sorted(out, key=repr)


def _same_rows(sql_a: str, sql_b: str, *, drop_zero_counts: bool = False, skip_oldest_week: bool = False) -> bool:
    """Both statements in one transaction, so now() — and the 12-week window — is the same for both."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(sql_a)
        a = cur.fetchall()
        cur.execute(sql_b)
        b = cur.fetchall()
    if skip_oldest_week:
        oldest = min(r[1] for r in a)
        a = [r for r in a if r[1] != oldest]
        b = [r for r in b if r[1] != oldest]
    return _norm_rows(a, drop_zero_counts=drop_zero_counts) == _norm_rows(b, drop_zero_counts=drop_zero_counts)


def _dashboard_data(rows) -> list:
    # reasons with equal counts come in any order (ORDER BY 1, 3 DESC has no tie-breaker): compare them sorted
    return [{**{k: v for k, v in r.items() if k not in ("category", "gate", "reasons")}, "category": r["category"].pk,
             "gate": r["gate"].as_dict() if r["gate"] else None,
             "reasons": sorted(r["reasons"], key=lambda x: (-x[1], x[0]))} for r in rows]


def _patched(trends: str, shadow: str, reasons: str):
    from contextlib import contextmanager

    from drafts import selectors

    @contextmanager
    def cm():
        saved = (selectors._TRENDS_SQL, selectors._SHADOW_SQL, selectors._REASONS_SQL)
        selectors._TRENDS_SQL, selectors._SHADOW_SQL, selectors._REASONS_SQL = trends, shadow, reasons
        try:
            yield
        finally:
            selectors._TRENDS_SQL, selectors._SHADOW_SQL, selectors._REASONS_SQL = saved
    return cm()


def _dashboard_same(variant: tuple[str, str, str], *, skip_oldest_week: bool) -> str:
    """rollout_dashboard() with the current and with the proposed SQL, in one transaction (same now())."""
    from django.db import transaction

    from drafts import selectors

    with transaction.atomic():
        ref = _dashboard_data(selectors.rollout_dashboard())
        with _patched(*variant):
            new = _dashboard_data(selectors.rollout_dashboard())
    if skip_oldest_week:
        for rows in (ref, new):
            for r in rows:
                r["series"] = {k: v[1:] for k, v in r["series"].items()}
    if ref == new:
        return "identical" if not skip_oldest_week else "identical but the oldest week"
    diff = [(a["category"], k) for a, b in zip(ref, new) for k in a if a[k] != b[k]]
    return f"DIFFERS ({len(diff)} fields, e.g. {diff[:3]})"


def experiments(client, url: str, n_requests: int, wait_s: float) -> dict:
    from django.db import connection

    from drafts import selectors

    out: dict = {}
    _common.print_header("Experiments: proposed SQL, indexes and a weekly rollup (this database only; no product file edited)")
    with connection.cursor() as cur:
        cur.execute("SELECT current_setting('jit'), pg_jit_available(), to_char(now(), 'Dy HH24:MI')")
        jit, jit_available, today = cur.fetchone()
    print(f"  jit = {jit}, pg_jit_available() = {jit_available}; now = {today} (the rollup's live part is the current week)")

    base = {"trends": sql_ms(selectors._TRENDS_SQL)[0], "shadow": sql_ms(selectors._SHADOW_SQL)[0],
            "reasons": sql_ms(selectors._REASONS_SQL)[0]}
    table = []

    def row(label, key, sql, same, note=""):
        ms, _ = sql_ms(sql)
        table.append([label, f"{base[key]:.1f}" if key else "-", f"{ms:.1f}", same, note])
        return ms

    row("trends: LATERAL -> hash-joined feedback aggregate", "trends", PROPOSED_TRENDS_SQL,
        "yes" if _same_rows(selectors._TRENDS_SQL, PROPOSED_TRENDS_SQL) else "NO", "no index")
    build = {}
    with connection.cursor() as cur:
        for key, ddl in EXP_INDEXES.items():
            t = time.perf_counter()
            cur.execute(ddl)
            build[key] = time.perf_counter() - t
        cur.execute("ANALYZE drafts_draft")
        cur.execute("ANALYZE drafts_feedback")
        cur.execute("SELECT indexrelname, pg_size_pretty(pg_relation_size(indexrelid)) FROM pg_stat_user_indexes"
                    " WHERE indexrelname LIKE 'bench_exp_%' ORDER BY 1")
        sizes = cur.fetchall()
    for (key, ddl), (_, size) in zip(EXP_INDEXES.items(), sorted(sizes, key=lambda s: list(EXP_INDEXES).index(
            {"bench_exp_draft_sent": "sent", "bench_exp_draft_shadow": "shadow", "bench_exp_feedback_reasons": "reasons",
             "bench_exp_draft_id_category": "draft_cat"}[s[0]]))):
        print(f"  [{key}] {ddl}\n      built in {build[key]:.1f} s, {size}")
    same_t = "yes" if _same_rows(selectors._TRENDS_SQL, PROPOSED_TRENDS_SQL) else "NO"
    row("trends: current SQL + [sent]", "trends", selectors._TRENDS_SQL, "yes")
    ms_trends = row("trends: hash-joined feedback + [sent]", "trends", PROPOSED_TRENDS_SQL, same_t)
    same_s = "yes" if _same_rows(selectors._SHADOW_SQL, PROPOSED_SHADOW_SQL, drop_zero_counts=True) else "NO"
    row("shadow: current SQL + [shadow]", "shadow", selectors._SHADOW_SQL, "yes")
    ms_shadow = row("shadow: predicates in WHERE + [shadow]", "shadow", PROPOSED_SHADOW_SQL, same_s,
                    "categories without rows omitted (read as 0, 0)")
    same_r = "yes" if _same_rows(selectors._REASONS_SQL, PROPOSED_REASONS_SQL) else "NO"
    row("reasons: current SQL + [reasons] [draft_cat]", "reasons", selectors._REASONS_SQL, "yes")
    ms_reasons = row("reasons: non-empty reasons only + [reasons] [draft_cat]", "reasons", PROPOSED_REASONS_SQL, same_r)
    with connection.cursor() as cur:
        cur.execute("DROP INDEX bench_exp_draft_id_category")
    row("reasons: non-empty reasons only + [reasons] (no [draft_cat])", "reasons", PROPOSED_REASONS_SQL, same_r)
    with connection.cursor() as cur:
        cur.execute(EXP_INDEXES["draft_cat"])
        t = time.perf_counter()
        cur.execute(ROLLUP_DDL)
        rollup_build = time.perf_counter() - t
        cur.execute("CREATE UNIQUE INDEX bench_exp_rollup_key ON bench_exp_rollup (wk, category_id)")
        cur.execute("ANALYZE bench_exp_rollup")
        cur.execute("SELECT count(*), count(DISTINCT wk) FROM bench_exp_rollup")
        rollup_rows, rollup_weeks = cur.fetchone()
        t = time.perf_counter()
        cur.execute("SELECT count(*) FROM (" + ROLLUP_DDL.split("AS\n", 1)[1].replace(
            "d.sent_at < date_trunc('week', now())", "d.sent_at >= date_trunc('week', now()) - interval '1 week'"
            " AND d.sent_at < date_trunc('week', now())") + ") s")
        week_refresh = time.perf_counter() - t
    print(f"  [rollup] bench_exp_rollup: {rollup_rows} rows ({rollup_weeks} closed weeks x categories); full build "
          f"{rollup_build:.1f} s, recomputing one closed week {week_refresh * 1000:.0f} ms")
    ms_rt = row("trends: [rollup] closed weeks + live current week", "trends", ROLLUP_TRENDS_SQL,
                "yes, but the oldest week" if _same_rows(selectors._TRENDS_SQL, ROLLUP_TRENDS_SQL, skip_oldest_week=True)
                else "NO", "oldest week whole instead of cut at now()-12w")
    ms_rs = row("shadow: [rollup] all closed weeks + live current week", "shadow", ROLLUP_SHADOW_SQL,
                "yes" if _same_rows(selectors._SHADOW_SQL, ROLLUP_SHADOW_SQL, drop_zero_counts=True) else "NO")
    ms_wt = row("trends live part, worst case (7 days, Sunday night)", None, WORST_LIVE_TRENDS_SQL, "-")
    ms_ws = row("shadow live part, worst case (7 days)", None, WORST_LIVE_SHADOW_SQL, "-")
    _common.print_table(["statement", "current ms", "proposed ms", "same rows", "note"], table)
    print("  (median of 5 runs each; 'same rows': both statements run in one transaction, so with the same now())")

    _common.print_header("EXPLAIN (ANALYZE, BUFFERS) of the proposed statements")
    for label, sql in [("trends, hash-joined feedback + [sent]", PROPOSED_TRENDS_SQL),
                       ("shadow + [shadow]", PROPOSED_SHADOW_SQL), ("reasons + [reasons] [draft_cat]", PROPOSED_REASONS_SQL),
                       ("trends from [rollup]", ROLLUP_TRENDS_SQL), ("shadow from [rollup]", ROLLUP_SHADOW_SQL)]:
        print(f"  {label}:")
        print(explain(sql))

    # the whole dashboard request with the proposed SQL patched into drafts.selectors (this process only)
    _common.print_header(f"Dashboard with the proposed SQL: {n_requests} timed requests per variant")
    variants = [("A: rewritten SQL + 4 indexes", (PROPOSED_TRENDS_SQL, PROPOSED_SHADOW_SQL, PROPOSED_REASONS_SQL), False),
                ("B: A + weekly rollup (trends, shadow)", (ROLLUP_TRENDS_SQL, ROLLUP_SHADOW_SQL, PROPOSED_REASONS_SQL), True)]
    print("  " + wait_quiet(wait_s))
    load_before = os.getloadavg()[0]
    same = {label: _dashboard_same(variant, skip_oldest_week=skip) for label, variant, skip in variants}
    times: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    for i in range(n_requests + 3):  # interleaved rounds (3 warm-up): a burst of load hits both variants alike
        for label, variant, _ in variants:
            with _patched(*variant):
                t = time.perf_counter()
                _get(client, url)
                if i >= 3:
                    times[label].append((time.perf_counter() - t) * 1000)
    load_after = os.getloadavg()[0]
    dash_rows = []
    for label, variant, _ in variants:
        with _patched(*variant):
            nq, sqlms, _ = capture(lambda: _get(client, url))
            sel = timed(selectors.rollout_dashboard, 5, warmup=1)
        ts = times[label]
        out[label] = {"p50_ms": pct(ts, 50), "p95_ms": pct(ts, 95), "queries": nq, "sql_ms": sqlms,
                      "same": same[label], "selector_p50_ms": pct(sel, 50)}
        dash_rows.append([label, len(ts), f"{pct(ts, 50):.1f}", f"{pct(ts, 95):.1f}", f"{max(ts):.1f}",
                          nq, f"{sqlms:.1f}", f"{pct(sel, 50):.1f}", same[label],
                          "PASS" if pct(ts, 95) <= DASHBOARD_TARGET_MS else "FAIL"])
    _common.print_table(["variant", "n", "p50 ms", "p95 ms", "max ms", "SQL queries", "SQL ms", "selector p50 ms",
                         "rollout_dashboard() vs current", "target"], dash_rows)
    print(f"  load average (1 min) before {load_before:.2f}, after {load_after:.2f} on {os.cpu_count()} cores; "
          "requests of A and B interleaved; SQL ms, selector p50: separate untimed passes")
    out.update({"trends_ms": ms_trends, "shadow_ms": ms_shadow, "reasons_ms": ms_reasons, "rollup_trends_ms": ms_rt,
                "rollup_shadow_ms": ms_rs, "worst_live_trends_ms": ms_wt, "worst_live_shadow_ms": ms_ws,
                "rollup_build_s": rollup_build, "rollup_week_refresh_ms": week_refresh * 1000})

    # the gates with the proposed indexes present (they must not get slower)
    from drafts import rollout

    gtimes = timed(rollout.gates_evaluate_all, 10, warmup=2)
    print(f"  gates_evaluate_all() with the proposed indexes present: p50 {pct(gtimes, 50):.1f} ms, "
          f"p95 {pct(gtimes, 95):.1f} ms (10 calls)")
    with _pg() as conn:
        drop_experiment_indexes(conn)
        conn.execute("ANALYZE drafts_draft")
        conn.execute("ANALYZE drafts_feedback")
    return out


def _get(client, url: str):
    r = client.get(url)
    if r.status_code != 200:
        raise SystemExit(f"GET {url} -> {r.status_code}")
    return r


# ---------------------------------------------------------------------------------------------------------- main


def wait_quiet(max_wait_s: float, busy_percent: float = 35.0) -> str:
    """Wait (at most ``max_wait_s``) until the machine's CPU use over 3 s is below ``busy_percent`` of all cores: the
    machine is shared, and other jobs' load inflates server times."""
    import psutil

    deadline = time.monotonic() + max_wait_s
    while True:
        busy = psutil.cpu_percent(interval=3)
        if busy < busy_percent:
            return f"machine quiet ({busy:.0f}% of all cores busy, load average {os.getloadavg()[0]:.2f})"
        if time.monotonic() >= deadline:
            return (f"machine still busy after {max_wait_s:.0f} s ({busy:.0f}% of all cores, load average "
                    f"{os.getloadavg()[0]:.2f}): figures taken under load")
        print(f"  waiting for a quiet machine: {busy:.0f}% of all cores busy ...", flush=True)
        time.sleep(7)


def main(*, requests: int = 20, regenerate: bool = False, run_experiments: bool | None = None,
         wait_quiet_s: float = 150.0) -> dict:
    started = time.perf_counter()
    setup()
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    from conversations.models import Category
    from drafts import rollout

    _common.print_header(f"Rollout gates and dashboard: data in {DB}")
    gen_s = ensure_data(regenerate=regenerate)
    describe_data()
    # the dashboard reads closed weeks from the weekly rollup (beat keeps it fresh): build it, and time the build
    _common.print_header("Weekly rollup (drafts.rollout.rollout_weeks_refresh)")
    t0 = time.perf_counter()
    rows = rollout.rollout_weeks_refresh(weeks=12)
    full_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rollout.rollout_weeks_refresh(weeks=2)
    nightly_s = time.perf_counter() - t0
    print(f"  full 12-week build: {rows} rows in {full_s * 1000:.0f} ms; nightly refresh of 2 weeks: {nightly_s * 1000:.0f} ms")

    print("  " + wait_quiet(wait_quiet_s))
    # ---- gates
    _common.print_header(f"gates_evaluate_all(): {requests} timed calls (3 warm-up)")
    gate_times = timed(rollout.gates_evaluate_all, requests, warmup=3)
    g_n, g_sql, g_queries = capture(rollout.gates_evaluate_all)
    gates = rollout.gates_evaluate_all()
    cats = {c.pk: c for c in Category.objects.all()}
    by_phase: dict[str, list[float]] = {}
    for c in cats.values():
        by_phase.setdefault(c.phase, []).append(statistics.median(timed(lambda c=c: rollout.gate_for(c), 5, 1)))
    _common.print_table(["call", "n", "p50 ms", "p95 ms", "max ms", "SQL queries", "SQL ms", "target p95", ""],
                        [["gates_evaluate_all()", len(gate_times), f"{pct(gate_times, 50):.1f}",
                          f"{pct(gate_times, 95):.1f}", f"{max(gate_times):.1f}", g_n, f"{g_sql:.1f}",
                          f"{GATES_TARGET_MS:.0f}", "PASS" if pct(gate_times, 95) <= GATES_TARGET_MS else "FAIL"]])
    print("  gate_for(category), median of 5, by phase: " + "; ".join(
        f"{p} ({len(v)}): max {max(v):.2f} ms, sum {sum(v):.1f} ms" for p, v in sorted(by_phase.items())))
    open_rows = []
    for cid, g in sorted(gates.items(), key=lambda kv: cats[kv[0]].name):
        failing = [c["name"] for c in g["criteria"] if not c["ok"]]
        open_rows.append([cats[cid].name, cats[cid].phase, g["gate"], "open" if g["open"] else "closed", g["sample"],
                          ", ".join(failing) or "-"])
    _common.print_table(["category", "phase", "gate", "state", "n", "failing criteria"], open_rows)

    # ---- dashboard
    User = get_user_model()
    admin = User.objects.get(username=ADMIN)
    client = Client()
    client.force_login(admin)
    url = reverse("console:rollout")
    _get(client, url)
    _common.print_header(f"Dashboard GET {url}: {requests} timed requests (3 warm-up), superuser, test Client")
    load_before = os.getloadavg()[0]
    dash_times = timed(lambda: _get(client, url), requests, warmup=3)
    load_after = os.getloadavg()[0]
    d_n, d_sql, d_queries = capture(lambda: _get(client, url))
    _common.print_table(["request", "n", "p50 ms", "p95 ms", "max ms", "SQL queries", "SQL ms", "target p95", ""],
                        [["GET /console/rollout/", len(dash_times), f"{pct(dash_times, 50):.1f}",
                          f"{pct(dash_times, 95):.1f}", f"{max(dash_times):.1f}", d_n, f"{d_sql:.1f}",
                          f"{DASHBOARD_TARGET_MS:.0f}",
                          "PASS" if pct(dash_times, 95) <= DASHBOARD_TARGET_MS else "FAIL"]])
    print(f"  load average (1 min) before {load_before:.2f}, after {load_after:.2f} on {os.cpu_count()} cores; "
          f"SQL ms = database time of the captured request (one untimed pass)")
    from drafts import selectors

    sel_times = timed(selectors.rollout_dashboard, 5, warmup=1)
    print(f"  selectors.rollout_dashboard() alone (its SQL + Python; no middleware, session or template): p50 "
          f"{pct(sel_times, 50):.1f} ms (5 calls, measured separately from the requests)")
    slow = sorted(d_queries, reverse=True)[:5]
    print("  slowest queries of the captured request: " + "; ".join(f"{ms:.1f} ms {' '.join(q.split())[:60]!r}"
                                                                  for ms, q in slow))

    # ---- each dashboard statement alone
    _common.print_header("Each dashboard statement alone (median of 5 runs)")
    stmts = dashboard_statements()
    st_rows, st_times = [], []
    for label, sql, params in stmts:
        ms, rows = sql_ms(sql, params)
        st_times.append((ms, label, sql, params))
        st_rows.append([label, f"{ms:.2f}", len(rows)])
    _common.print_table(["statement", "ms", "rows"], st_rows)
    per_cat = sum(ms for ms, label, _, _ in st_times if "[" in label)
    print(f"  sum: {sum(t[0] for t in st_times):.1f} ms (the 4 all-category statements "
          f"{sum(t[0] for t in st_times[:4]):.1f} ms, the 20 per-category statements {per_cat:.1f} ms)")
    for ms, label, sql, params in sorted(st_times, key=lambda t: t[0], reverse=True)[:3]:
        _common.print_header(f"EXPLAIN (ANALYZE, BUFFERS) {label} ({ms:.1f} ms)")
        print(explain(sql, params))

    gates_ok = pct(gate_times, 95) <= GATES_TARGET_MS
    dash_ok = pct(dash_times, 95) <= DASHBOARD_TARGET_MS
    exp = {}
    if run_experiments or (run_experiments is None and not (gates_ok and dash_ok)):
        exp = experiments(client, url, requests, wait_quiet_s)

    _common.print_header("Summary")
    print(f"  {'PASS' if gates_ok else 'FAIL'}  gates_evaluate_all() p95 {pct(gate_times, 95):.1f} ms <= "
          f"{GATES_TARGET_MS:.0f} ms (p50 {pct(gate_times, 50):.1f} ms, {g_n} SQL queries)")
    print(f"  {'PASS' if dash_ok else 'FAIL'}  dashboard server time p95 {pct(dash_times, 95):.1f} ms <= "
          f"{DASHBOARD_TARGET_MS:.0f} ms (p50 {pct(dash_times, 50):.1f} ms, {d_n} SQL queries, SQL {d_sql:.0f} ms)")
    for label, v in exp.items():
        if isinstance(v, dict):
            ok = v["p95_ms"] <= DASHBOARD_TARGET_MS
            print(f"  {'PASS' if ok else 'FAIL'}  dashboard, {label}: p95 {v['p95_ms']:.1f} ms (p50 {v['p50_ms']:.1f} ms,"
                  f" {v['queries']} SQL queries; rollout_dashboard() vs current: {v['same']})")
    if gen_s is not None:
        print(f"  data generated in {gen_s:.0f} s")
    print(f"  total time {time.perf_counter() - started:.0f} s")
    info = machine_line()
    return {"gates": {"p50_ms": pct(gate_times, 50), "p95_ms": pct(gate_times, 95), "queries": g_n},
            "dashboard": {"p50_ms": pct(dash_times, 50), "p95_ms": pct(dash_times, 95), "queries": d_n,
                          "sql_ms": d_sql},
            "experiments": exp, "generation_s": gen_s, "machine": info}


def machine_line() -> dict[str, str]:
    import django

    info = _common.machine_info()
    print(f"\ncode: {_common.code_state()}")
    print(f"machine: {info['CPU']}, {info['cores (os.cpu_count)']} cores, {info['RAM']} RAM, PostgreSQL "
          f"{info.get('PostgreSQL')} (shared_buffers {info.get('PostgreSQL shared_buffers')}, work_mem "
          f"{info.get('PostgreSQL work_mem')}), Python {info['Python']}, Django {django.__version__}, {info['OS']}")
    return info


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20, help="timed calls / requests per measurement")
    ap.add_argument("--regenerate", action="store_true", help="rebuild the generated data even if present")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--experiments", dest="experiments", action="store_true", default=None,
                   help="always measure the proposed SQL and indexes")
    g.add_argument("--no-experiments", dest="experiments", action="store_false",
                   help="never measure them (default: only when a target is missed)")
    ap.add_argument("--wait-quiet", type=float, default=150.0, metavar="SECONDS",
                    help="before measuring, wait at most this long for the shared machine to be quiet (0: never)")
    args = ap.parse_args()
    main(requests=args.requests, regenerate=args.regenerate, run_experiments=args.experiments,
         wait_quiet_s=args.wait_quiet)
