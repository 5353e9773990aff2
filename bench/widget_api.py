"""Customer widget and public API: posting throughput through gunicorn, and the time from a customer's message to
the bot's reply arriving on the widget's event stream.

    .venv/bin/python bench/widget_api.py [--duration 20] [--connections 8,16,32] [--workers 2] [--threads 8]
                                         [--replies 40] [--wait-quiet 0] [--no-variants]

Targets (issue 6): POST /api/widget/v1/conversation/messages ≥ 300 requests/s at p95 ≤ 50 ms on this 2-core machine;
customer message → bot reply visible in the widget, with the offline responder, p95 ≤ 2 s.

Database ``sdrbot_bench_widget`` (created if missing, with pgvector, migrated; its widget tables are emptied at each
run) and Redis database 13 for the Celery queue and the throttles, so neither the demo (``sdrbot``, Redis 0) nor the
tests are touched.

1. Throughput: gunicorn (``-k gthread``, ``--workers``, ``--threads``, no access log) serves the real app; the load
   generator is ``wrk`` (Debian package ``wrk``, installed with apt-get when missing) on loopback with one thread,
   posting customer messages into ``--conversations`` existing widget conversations in turn (a Lua script sets the
   site key, the conversation token, the Origin header and a JSON body). Every request is the full path: CORS check,
   site key and token lookup, origin check, the three throttles on Redis, JSON parsing and validation, then
   ``message_receive`` (ticket lock, message, implicit-signal check, pending draft) and the Celery message queued on
   commit. The throttle rates are raised (environment) so that the load generator, one IP, is not refused; the
   throttles still run. No Celery worker runs during this phase (drafting is measured in phase 2; the queued tasks
   are purged afterwards). wrk shares the two cores: its CPU time is printed.
   Variants (``--no-variants`` skips them): the same with ``DB_CONN_HEALTH_CHECKS=false`` (no ``SELECT 1`` per
   request) and with ``DB_SERVER_SIDE_BINDING=false`` (client-side parameters, no prepared statements: what a
   deployment behind PgBouncer in transaction mode runs; the default prepares statements run 5 times, so
   PostgreSQL stops planning them).
1e. ``--streams N`` (default 200): the same posting load while N idle event streams stay open on other
   conversations (gunicorn threads raised to N/2 + 16 per worker). Printed: req/s and latencies, the PostgreSQL
   backends connected to the bench database, and how many streams were still open at the end. An idle stream waits on
   the process's NOTIFY listener (conversations/live.py) with no query and no database connection.
2. Reply latency: a Celery worker (prefork, 2 processes) and gunicorn; a customer-facing category with auto-send and a
   small knowledge base (the offline responder answers from close resolved tickets). For each of ``--replies``
   conversations, one at a time: open the event stream (httpx), post the question, and time until the bot's message
   event arrives. Three warm-up conversations first (model load).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

_common.BENCH_DB = "sdrbot_bench_widget"
REDIS_DB = 13
ORIGIN = "https://shop.example"
POST_TARGET_RPS, POST_TARGET_P95_MS, REPLY_TARGET_P95_S = 300, 50.0, 2.0
QUESTIONS = ["How do I delete my account?", "how do I delete my account", "How can I delete my account?",
             "how do i delete my account please"]

LUA = r"""
local tokens = {}
for line in io.lines(os.getenv("WIDGET_TOKENS")) do tokens[#tokens + 1] = line end
local site = os.getenv("WIDGET_SITE_KEY")
local origin = os.getenv("WIDGET_ORIGIN")
local i = 0
request = function()
  i = i + 1
  local t = tokens[(i % #tokens) + 1]
  return wrk.format("POST", "/api/widget/v1/conversation/messages",
    {["Content-Type"] = "application/json", ["X-Site-Key"] = site, ["Authorization"] = "Bearer " .. t,
     ["Origin"] = origin},
    '{"body": "Where is my order? It was due on Monday (message ' .. i .. ')"}')
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT {\"requests\": %d, \"duration_us\": %d, \"non2xx\": %d, \"errors\": %d, " ..
    "\"p50_us\": %d, \"p90_us\": %d, \"p95_us\": %d, \"p99_us\": %d, \"max_us\": %d}\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    from sdrbot import devservices

    env = dict(os.environ)
    env.update({
        "DATABASE_URL": devservices.postgres_url(_common.BENCH_DB), "REDIS_URL": devservices.redis_url(REDIS_DB),
        "DJANGO_SETTINGS_MODULE": "sdrbot.settings", "LOG_LEVEL": "WARNING", "DEBUG": "false",
        "WIDGET_THROTTLE_IP": "10000000/min", "WIDGET_THROTTLE_SITE": "10000000/min",
        "WIDGET_THROTTLE_CONVERSATION": "10000000/min",
    })
    env.update(extra or {})
    return env


class Gunicorn:
    def __init__(self, workers: int, threads: int, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(_common.REPO / ".venv/bin/gunicorn"), "sdrbot.wsgi", "-k", "gthread", "--workers", str(workers),
             "--threads", str(threads), "--bind", f"127.0.0.1:{self.port}", "--backlog", "2048",
             "--graceful-timeout", "3", "--log-level", "warning"],
            cwd=_common.REPO, env=child_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/api/widget/v1/schema/", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        self.stop()
        raise SystemExit("gunicorn did not start")

    def cpu_seconds(self) -> float:
        import psutil

        try:
            p = psutil.Process(self.proc.pid)
            procs = [p, *p.children(recursive=True)]
            return sum(sum(x.cpu_times()[:2]) for x in procs)
        except psutil.Error:
            return 0.0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def postgres_cpu() -> dict[int, float]:
    """CPU seconds per PostgreSQL backend serving the bench database (the web tier's connections), by pid."""
    import psutil

    out = {}
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if p.info["name"] and p.info["name"].startswith("postgres") and \
                    any(_common.BENCH_DB in part for part in (p.info["cmdline"] or [])):
                out[p.pid] = sum(p.cpu_times()[:2])
        except psutil.Error:
            continue
    return out


def postgres_cpu_delta(before: dict[int, float]) -> float:
    """CPU used since ``before`` by the backends alive now (a backend that exited meanwhile — a connection past
    ``DB_CONN_MAX_AGE`` — is not counted: a lower bound)."""
    return sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in postgres_cpu().items())


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    print("  installing the load generator: apt-get install wrk")
    cmd = ["apt-get", "install", "-y", "-qq", "wrk"] if os.geteuid() == 0 else ["sudo", "apt-get", "install", "-y", "-qq", "wrk"]
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("wrk is needed (Debian: apt-get install wrk)")
    return path


def prepare(conversations: int) -> tuple[object, list[str]]:
    """Empty the widget tables, then a site key, the customer-facing category with its small knowledge base, and
    ``conversations`` conversations that already have a ticket (the posts measured are follow-up messages)."""
    from django.db import connection

    from conversations.models import Category
    from conversations.services import site_key_create, widget_conversation_start, widget_message_post
    from knowledge.services import DocumentInput, source_sync

    assert connection.settings_dict["NAME"] == _common.BENCH_DB
    with connection.cursor() as cur:
        cur.execute("TRUNCATE conversations_widgettoken, conversations_widgetconversation, conversations_sitekey, "
                    "drafts_replysignal, drafts_draft, conversations_message, conversations_ticket, "
                    "conversations_customer RESTART IDENTITY CASCADE")
    account, _ = Category.objects.get_or_create(slug="account", defaults={"name": "Account"})
    Category.objects.filter(pk=account.pk).update(phase="customer_facing", auto_send=True, auto_send_min_confidence=0.5,
                                                  business_hours={})
    source_sync(source_name="docs", kind="docs", documents=[DocumentInput(
        external_id="password", title="Reset password",
        text="To reset your password open Settings, choose Security and click Reset password.")])
    source_sync(source_name="resolved-tickets", kind="resolved_tickets", documents=[
        DocumentInput(external_id="ticket-1", title="delete account", text="how do I delete my account",
                      metadata={"category": "account", "ticket_id": 1,
                                "reply": "You can delete your account under Settings > Account > Delete."}),
        DocumentInput(external_id="ticket-2", title="remove account", text="I want to close and remove my account",
                      metadata={"category": "account", "ticket_id": 2,
                                "reply": "You can delete your account under Settings > Account > Delete."})])
    site = site_key_create(name="bench", allowed_origins=[ORIGIN])
    tokens = []
    for i in range(conversations):
        conversation, token = widget_conversation_start(site_key=site)
        widget_message_post(conversation=conversation, body=f"first message {i}")
        tokens.append(token)
    return site, tokens


def purge_queue() -> None:
    import redis

    from sdrbot import devservices

    redis.Redis.from_url(devservices.redis_url(REDIS_DB)).flushdb()


def run_wrk(wrk: str, url: str, site_key: str, token_file: str, lua: str, connections: int, seconds: int) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", lua, url],
                         env={**os.environ, "WIDGET_TOKENS": token_file, "WIDGET_SITE_KEY": site_key,
                              "WIDGET_ORIGIN": ORIGIN},
                         capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    r = json.loads(line[len("RESULT "):])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["wrk_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return r


def throughput(site, tokens: list[str], *, workers: int, threads: int, connections: list[int], seconds: int,
               env: dict[str, str] | None = None) -> list[dict]:
    from django.db import connection

    from conversations.models import Message

    wrk = ensure_wrk()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        token_file, lua = os.path.join(tmp, "tokens.txt"), os.path.join(tmp, "post.lua")
        Path(token_file).write_text("\n".join(tokens) + "\n")
        Path(lua).write_text(LUA)
        server = Gunicorn(workers, threads, env)
        try:
            run_wrk(wrk, server.url, site.key, token_file, lua, connections[0], 5)  # warm-up: connections, caches
            for c in connections:
                messages_before = Message.objects.count()
                load_before = os.getloadavg()[0]
                cpu_before, pg_before = server.cpu_seconds(), postgres_cpu()
                r = run_wrk(wrk, server.url, site.key, token_file, lua, c, seconds)
                r["gunicorn_cpu_s"] = server.cpu_seconds() - cpu_before
                r["postgres_cpu_s"] = postgres_cpu_delta(pg_before)
                r["load_before"], r["load_after"] = load_before, os.getloadavg()[0]
                r["connections"] = c
                r["stored"] = Message.objects.count() - messages_before
                rows.append(r)
                print(f"  {c:>3} connections: {r['rps']:.0f} req/s, p50 {r['p50_us'] / 1000:.1f} ms, "
                      f"p95 {r['p95_us'] / 1000:.1f} ms, p99 {r['p99_us'] / 1000:.1f} ms, non-2xx {r['non2xx']}, "
                      f"errors {r['errors']}, messages stored {r['stored']} (of {r['requests']} requests), "
                      f"CPU (cores): wrk {r['wrk_cpu_s'] / seconds:.2f}, gunicorn {r['gunicorn_cpu_s'] / seconds:.2f}, "
                      f"PostgreSQL {r['postgres_cpu_s'] / seconds:.2f}; per request: gunicorn "
                      f"{r['gunicorn_cpu_s'] / max(r['requests'], 1) * 1000:.1f} ms, PostgreSQL "
                      f"{r['postgres_cpu_s'] / max(r['requests'], 1) * 1000:.1f} ms; "
                      f"load {load_before:.2f} → {r['load_after']:.2f}")
        finally:
            server.stop()
    connection.close()
    purge_queue()
    return rows


def postgres_backends() -> int:
    """Client backends connected to the bench database now."""
    import psycopg

    from sdrbot import devservices

    with psycopg.connect(devservices.postgres_url("postgres"), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
                           [_common.BENCH_DB]).fetchone()
    return int(row[0]) if row else 0


class IdleStreams:
    """``n`` event streams held open (one asyncio loop in a thread, httpx) on conversations of their own, each
    reconnecting after its ``end`` event as the widget does; ``open_now`` counts the connected ones."""

    def __init__(self, base_url: str, site_key: str, tokens: list[str]) -> None:
        self.base_url, self.site_key, self.tokens = base_url, site_key, tokens
        self.open_now = 0
        self.errors = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> IdleStreams:
        self.thread.start()
        deadline = time.monotonic() + 60
        while self.open_now < len(self.tokens) and time.monotonic() < deadline:
            time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)

    def _run(self) -> None:
        import asyncio

        asyncio.run(self._main())

    async def _main(self) -> None:
        import asyncio

        import httpx

        limits = httpx.Limits(max_connections=len(self.tokens) + 10, max_keepalive_connections=len(self.tokens) + 10)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=60, limits=limits) as client:
            tasks = [asyncio.create_task(self._hold(client, t)) for t in self.tokens]
            while not self.stop.is_set():
                await asyncio.sleep(0.2)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _hold(self, client, token: str) -> None:
        headers = {"X-Site-Key": self.site_key, "Origin": ORIGIN, "Authorization": f"Bearer {token}"}
        while not self.stop.is_set():
            try:
                st = (await client.post("/api/widget/v1/conversation/stream-token", headers=headers)).json()["stream_token"]
                async with client.stream("GET", "/api/widget/v1/conversation/stream", params={"stream_token": st},
                                         headers={"Origin": ORIGIN}) as resp:
                    self.open_now += 1
                    try:
                        async for _line in resp.aiter_lines():
                            pass
                    finally:
                        self.open_now -= 1
            except Exception as exc:  # noqa: BLE001 — counted (the first kinds printed); the stream reconnects
                self.errors += 1
                if self.errors <= 3:
                    print(f"  stream error: {type(exc).__name__}: {str(exc)[:200]}")
                if not self.stop.is_set():
                    import asyncio

                    await asyncio.sleep(1)


def throughput_with_streams(site, tokens: list[str], stream_tokens: list[str], *, workers: int, connections: int,
                            seconds: int) -> dict:
    from django.db import connection

    wrk = ensure_wrk()
    threads = len(stream_tokens) // workers + 16
    with tempfile.TemporaryDirectory() as tmp:
        token_file, lua = os.path.join(tmp, "tokens.txt"), os.path.join(tmp, "post.lua")
        Path(token_file).write_text("\n".join(tokens) + "\n")
        Path(lua).write_text(LUA)
        server = Gunicorn(workers, threads)
        try:
            with IdleStreams(server.url, site.key, stream_tokens) as streams:
                opened = streams.open_now
                backends_idle = postgres_backends()
                run_wrk(wrk, server.url, site.key, token_file, lua, connections, 5)
                cpu_before = server.cpu_seconds()
                self_before = resource.getrusage(resource.RUSAGE_SELF)
                r = run_wrk(wrk, server.url, site.key, token_file, lua, connections, seconds)
                r["gunicorn_cpu_s"] = server.cpu_seconds() - cpu_before
                self_after = resource.getrusage(resource.RUSAGE_SELF)
                r["client_cores"] = ((self_after.ru_utime - self_before.ru_utime)
                                     + (self_after.ru_stime - self_before.ru_stime)) / seconds
                r["backends_during"] = postgres_backends()
                r["streams_open_at_end"], r["stream_errors"] = streams.open_now, streams.errors
                r["streams_opened"], r["backends_idle"], r["threads"] = opened, backends_idle, threads
        finally:
            server.stop()
    connection.close()
    purge_queue()
    print(f"  {len(stream_tokens)} idle streams (open: {r['streams_opened']} before, {r['streams_open_at_end']} at the end; "
          f"stream errors {r['stream_errors']}), gunicorn {workers}x{threads}, {connections} posting connections: "
          f"{r['rps']:.0f} req/s, p50 {r['p50_us'] / 1000:.1f} ms, p95 {r['p95_us'] / 1000:.1f} ms, "
          f"p99 {r['p99_us'] / 1000:.1f} ms, non-2xx {r['non2xx']}, errors {r['errors']}; the streams' client (this "
          f"process) used {r['client_cores']:.2f} core; gunicorn CPU "
          f"{r['gunicorn_cpu_s'] / max(r['requests'], 1) * 1000:.1f} ms per request; PostgreSQL backends on the bench "
          f"database: {r['backends_idle']} with the streams idle, {r['backends_during']} while posting")
    return r


def reply_latency(site, *, replies: int, workers: int, threads: int) -> dict:
    import httpx

    purge_queue()
    worker = subprocess.Popen(
        [str(_common.REPO / ".venv/bin/celery"), "-A", "sdrbot", "worker", "--loglevel", "WARNING", "--pool", "prefork",
         "--concurrency", "2", "--without-gossip", "--without-mingle", "--hostname", f"bench-widget-{os.getpid()}@%h"],
        cwd=_common.REPO, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Gunicorn(workers, threads)
    headers = {"X-Site-Key": site.key, "Origin": ORIGIN}
    times, missing = [], 0
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for i in range(3 + replies):
                start = client.post("/api/widget/v1/conversations", json={"category": "account"}, headers=headers).json()
                auth = {**headers, "Authorization": f"Bearer {start['token']}"}
                st = client.post("/api/widget/v1/conversation/stream-token", headers=auth).json()["stream_token"]
                got = threading.Event()
                opened = threading.Event()
                arrived: list[float] = []

                def listen() -> None:
                    with httpx.stream("GET", f"{server.url}/api/widget/v1/conversation/stream",
                                      params={"stream_token": st, "after": -1}, headers={"Origin": ORIGIN},
                                      timeout=30) as resp:
                        opened.set()
                        event = ""
                        for line in resp.iter_lines():
                            if line.startswith("event: "):
                                event = line[7:]
                            elif line.startswith("data: ") and event == "message" and json.loads(line[6:])["role"] == "bot":
                                arrived.append(time.perf_counter())
                                got.set()
                                return

                t = threading.Thread(target=listen, daemon=True)
                t.start()
                opened.wait(10)
                sent = time.perf_counter()
                r = client.post("/api/widget/v1/conversation/messages", json={"body": QUESTIONS[i % len(QUESTIONS)]},
                                headers=auth)
                assert r.status_code == 201, r.text
                if not got.wait(15):
                    missing += i >= 3
                    continue
                if i >= 3:
                    times.append(arrived[0] - sent)
                    if times[-1] > 2.0:
                        print(f"  slow reply: conversation {i}, {times[-1]:.3f} s")
    finally:
        server.stop()
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        purge_queue()
    times.sort()
    out = {"n": len(times), "missing": missing, "p50_s": statistics.median(times) if times else None,
           "p95_s": times[min(len(times) - 1, int(round(0.95 * len(times))) - 1)] if times else None,
           "max_s": times[-1] if times else None}
    if times:
        print(f"  {out['n']} replies: p50 {out['p50_s']:.3f} s, p95 {out['p95_s']:.3f} s, max {out['max_s']:.3f} s; "
              f"no bot reply within 15 s: {missing}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=20, help="seconds per load level")
    ap.add_argument("--connections", default="8,16,32", help="wrk connections per load level")
    ap.add_argument("--conversations", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    ap.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker (gthread)")
    ap.add_argument("--replies", type=int, default=40)
    ap.add_argument("--streams", type=int, default=200, help="idle event streams held open in phase 1e (0: skip)")
    ap.add_argument("--variants", action=argparse.BooleanOptionalAction, default=True,
                    help="also measure posting with DB_CONN_HEALTH_CHECKS=false and with DB_SERVER_SIDE_BINDING=false "
                         "(no prepared statements)")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                    help="wait up to SECONDS for the 1-minute load average to drop below 1.0 before measuring")
    args = ap.parse_args()

    _common.setup()
    info = _common.print_machine_info()
    print(f"  load average at start       {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    _common.print_header(f"Data: {_common.BENCH_DB}")
    site, all_tokens = prepare(args.conversations + args.streams)
    tokens, stream_tokens = all_tokens[:args.conversations], all_tokens[args.conversations:]
    print(f"  site key, customer-facing category 'account', {len(all_tokens)} conversations with a ticket "
          f"({len(stream_tokens)} of them for idle streams)")
    if args.wait_quiet:
        deadline = time.monotonic() + args.wait_quiet
        while os.getloadavg()[0] >= 1.0 and time.monotonic() < deadline:
            time.sleep(5)
        print(f"  load average now {os.getloadavg()[0]:.2f}")

    _common.print_header(f"1. POST conversation/messages through gunicorn gthread {args.workers}x{args.threads}, "
                         f"wrk on loopback, {args.duration} s per level")
    rows = throughput(site, tokens, workers=args.workers, threads=args.threads,
                      connections=[int(c) for c in args.connections.split(",")], seconds=args.duration)
    variant_rows: dict[str, list[dict]] = {}
    if args.variants:
        for title, extra in (("1b. DB_CONN_HEALTH_CHECKS=false", {"DB_CONN_HEALTH_CHECKS": "false"}),
                             ("1c. DB_SERVER_SIDE_BINDING=false", {"DB_SERVER_SIDE_BINDING": "false"})):
            _common.print_header(title)
            variant_rows[title] = throughput(site, tokens, workers=args.workers, threads=args.threads,
                                             seconds=args.duration, env=extra,
                                             connections=[int(c) for c in args.connections.split(",")])
    streams_row = None
    if stream_tokens:
        _common.print_header(f"1e. Posting with {len(stream_tokens)} idle event streams open")
        streams_row = throughput_with_streams(site, tokens, stream_tokens, workers=args.workers, seconds=args.duration,
                                              connections=int(args.connections.split(",")[1 if "," in args.connections else 0]))
    _common.print_header("2. Customer message → bot reply on the event stream (offline responder, one at a time)")
    latency = reply_latency(site, replies=args.replies, workers=args.workers, threads=args.threads) \
        if args.replies else {"p95_s": None}

    _common.print_header("Summary")
    best = max((r for r in rows if r["p95_us"] / 1000 <= POST_TARGET_P95_MS), key=lambda r: r["rps"], default=None)
    if best is None:
        print(f"  posting: no load level kept p95 ≤ {POST_TARGET_P95_MS:.0f} ms — target NOT met")
    else:
        ok = best["rps"] >= POST_TARGET_RPS
        print(f"  posting: {best['rps']:.0f} req/s at p95 {best['p95_us'] / 1000:.1f} ms ({best['connections']} connections) "
              f"— target ≥ {POST_TARGET_RPS} req/s at p95 ≤ {POST_TARGET_P95_MS:.0f} ms {'met' if ok else 'NOT met'}")
    for title, vrows in variant_rows.items():
        vbest = max((r for r in vrows if r["p95_us"] / 1000 <= POST_TARGET_P95_MS), key=lambda r: r["rps"], default=None)
        top = max(vrows, key=lambda r: r["rps"])
        print(f"  variant {title[4:]}: best within p95 ≤ {POST_TARGET_P95_MS:.0f} ms: "
              + (f"{vbest['rps']:.0f} req/s ({vbest['connections']} connections)" if vbest else "none")
              + f"; most {top['rps']:.0f} req/s at p95 {top['p95_us'] / 1000:.1f} ms")
    if streams_row is not None:
        print(f"  with {len(stream_tokens)} idle streams open: {streams_row['rps']:.0f} req/s at p95 "
              f"{streams_row['p95_us'] / 1000:.1f} ms; PostgreSQL backends {streams_row['backends_idle']} idle / "
              f"{streams_row['backends_during']} posting")
    if latency["p95_s"] is not None:
        ok = latency["p95_s"] <= REPLY_TARGET_P95_S and not latency["missing"]
        print(f"  message → bot reply visible: p95 {latency['p95_s']:.3f} s — target ≤ {REPLY_TARGET_P95_S} s "
              f"{'met' if ok else 'NOT met'}")
    print(f"  load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; CPU {info['CPU']}, "
          f"{info['cores (os.cpu_count)']} cores")


if __name__ == "__main__":
    main()
