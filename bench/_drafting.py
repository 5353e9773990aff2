"""Shared helpers of the drafting benchmarks (pipeline_overhead, draft_backlog, draft_replay).

- :func:`setup`: the ``sdrbot_bench`` database (bench/_common.py) holding what drafting needs, each step skipped
  when it is done already: the 349 MTRAG passages (source ``ibm-cloud-docs``), the Bitext and Twitter CDP imports
  (``tickets_import --resolved --split-test 0.2 --seed 7``: 4,514 + 525 tickets, 3,660 + 427 train tickets in the
  ``resolved-tickets`` source) and the trained classifiers (``classifier_train``).
- Benchmark tickets are created through ``message_receive`` for customers whose email ends in
  :data:`BENCH_EMAIL_DOMAIN`; :func:`cleanup` deletes them with their drafts and traces.
- A dedicated Redis database (:data:`REDIS_DB`, env ``REDIS_URL`` set before Django reads its settings) is the
  broker of the benchmark process and of the workers it starts.
- :class:`FakeLLM`: an OpenAI-compatible chat-completions server (``ThreadingHTTPServer``) in a subprocess,
  answering every ``POST /v1/chat/completions`` after a fixed delay with a structured reply that cites the first
  passage of the prompt. Run alone: ``.venv/bin/python bench/_drafting.py fake-llm --delay-ms 200 [--port 0]``.

Note: ``bench/run_all.py`` (ingest_throughput's ``reset_knowledge`` and kb_quality's ``ensure_only_mtrag``) empties
or drops every knowledge source but ``ibm-cloud-docs``, including ``resolved-tickets``. :func:`setup` notices and
rebuilds the imports (about two minutes), so run the drafting benchmarks after run_all, never at the same time.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _common  # noqa: E402  (puts the repository on sys.path)

REDIS_DB = 5
BENCH_EMAIL_DOMAIN = "drafting-bench.example"
TWITTER = _common.DATA / "twitter-customer-care-cdp" / "dev.json"
IMPORTS = [  # (path, format, expected tickets, expected train tickets)
    (_common.BITEXT, "bitext", 4514, 3660),
    (TWITTER, "twitter-cdp", 525, 427),
]
SPLIT_TEST = 0.2
SEED = 7
RESOLVED_SOURCE = "resolved-tickets"


def _bench_redis_url() -> str:
    from sdrbot import devservices

    if not devservices.redis_running():
        devservices.redis_start()
    return devservices.redis_url(db=REDIS_DB)


def setup(*, quiet: bool = False) -> dict:
    """Django against ``sdrbot_bench`` with the bench Redis db, then the data drafting needs (idempotent).
    Returns {"steps": {name: seconds or "present"}, "counts": {...}}."""
    os.environ["REDIS_URL"] = _bench_redis_url()
    _common.setup()
    from django.conf import settings

    assert settings.REDIS_URL.endswith(f"/{REDIS_DB}"), settings.REDIS_URL
    steps: dict[str, object] = {}
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    stale = _repair_stale_schema(say)
    if stale:
        steps["schema_repaired"] = ",".join(stale)

    from knowledge.models import Document, KnowledgeSource

    t = time.perf_counter()
    if Document.objects.filter(source__name=_common.MTRAG_SOURCE).count() != 349:
        _common.ingest_mtrag(quiet=quiet)
        steps["kb_ingest"] = round(time.perf_counter() - t, 1)
    else:
        steps["kb_ingest"] = "present"

    steps.update(_ensure_imports(say))

    from drafts.models import ClassifierModel

    train_n = _train_ticket_count()
    active = {m.target: m for m in ClassifierModel.objects.filter(is_active=True)}
    # _ensure_imports deactivates them when it re-imports; the category model sees every train ticket, the intent
    # model only those with an intent (Bitext's)
    if "intent" in active and "category" in active and active["category"].trained_on >= 0.95 * train_n:
        steps["classifier_train"] = "present"
    else:
        from django.core.management import call_command

        say(f"  training classifiers on {train_n} train tickets (about 70 s) ...")
        t = time.perf_counter()
        call_command("classifier_train", verbosity=0 if quiet else 1)
        steps["classifier_train"] = round(time.perf_counter() - t, 1)

    from conversations.models import Ticket
    from knowledge.models import Chunk

    counts = {
        "kb_chunks": Chunk.objects.filter(document__source__name=_common.MTRAG_SOURCE).count(),
        "kb_documents": Document.objects.filter(source__name=_common.MTRAG_SOURCE).count(),
        "resolved_ticket_documents": Document.objects.filter(source__name=RESOLVED_SOURCE).count(),
        "resolved_ticket_chunks": Chunk.objects.filter(document__source__name=RESOLVED_SOURCE).count(),
        "imported_tickets": Ticket.objects.filter(channel=Ticket.Channel.IMPORT).count(),
        "test_tickets": Ticket.objects.filter(channel=Ticket.Channel.IMPORT, split=Ticket.Split.TEST).count(),
        "other_sources": list(KnowledgeSource.objects.exclude(name__in=[_common.MTRAG_SOURCE, RESOLVED_SOURCE])
                              .values_list("name", flat=True)),
    }
    say("  setup: " + ", ".join(f"{k} {v}" for k, v in steps.items()))
    say("  data: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return {"steps": steps, "counts": counts}


def _stale_apps() -> list[str]:
    """Apps of the drafting pipeline whose tables lack a column that their models have *and* that their migration
    files create: the bench database was migrated with an earlier, since-rewritten migration (seen: drafts_draft
    without claimed_at after 0001_initial was rewritten). A model change without a migration is not "stale"."""
    from django.apps import apps
    from django.db import connection

    stale = []
    with connection.cursor() as cur:
        for label in ("sdrbot", "conversations", "drafts"):
            config = apps.get_app_config(label)
            migrations_text = "".join(p.read_text() for p in (Path(config.path) / "migrations").glob("0*.py"))
            for model in config.get_models():
                cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s",
                            [model._meta.db_table])
                have = {r[0] for r in cur.fetchall()}
                missing = {f.column for f in model._meta.local_concrete_fields} - have
                if any(f"'{col}'" in migrations_text or f'"{col}"' in migrations_text for col in missing):
                    stale.append(label)
                    break
    return stale


def _repair_stale_schema(say) -> list[str]:
    """Unapply and reapply the migrations of stale apps (bench database only; their rows are lost and rebuilt by
    the rest of :func:`setup`)."""
    from django.core.management import call_command
    from django.db import connection

    stale = _stale_apps()
    if not stale:
        return []
    assert connection.settings_dict["NAME"] == _common.BENCH_DB
    for label in stale:
        say(f"  bench schema of {label!r} is stale (a column of the models is missing): migrate {label} zero + migrate")
        call_command("migrate", label, "zero", verbosity=0)
    call_command("migrate", verbosity=0)
    if _stale_apps():
        raise SystemExit(f"schema still stale after re-migrating {stale}")
    return stale


def _train_ticket_count() -> int:
    from conversations.models import Ticket

    return Ticket.objects.filter(channel=Ticket.Channel.IMPORT, split=Ticket.Split.TRAIN).count()


def _ensure_imports(say) -> dict[str, object]:
    """Both imports present with their resolved-tickets documents; otherwise (e.g. after run_all dropped the
    source) the imported tickets are deleted and the files imported again."""
    from conversations.importing import read_records, tickets_import_path
    from conversations.models import Customer, Ticket
    from knowledge.models import Document

    expected_tickets = sum(e for *_, e, _ in IMPORTS)
    expected_train = sum(tr for *_, tr in IMPORTS)
    have_tickets = Ticket.objects.filter(channel=Ticket.Channel.IMPORT).count()
    have_train = _train_ticket_count()
    docs = Document.objects.filter(source__name=RESOLVED_SOURCE).count()
    if have_tickets == expected_tickets and have_train == expected_train and docs == expected_train:
        return {"tickets_import": "present"}
    steps: dict[str, object] = {}
    if have_tickets or docs:
        say(f"  imports incomplete (tickets {have_tickets}/{expected_tickets}, train {have_train}/{expected_train}, "
            f"resolved-ticket documents {docs}/{expected_train}): deleting and importing again")
        from django.db import connection

        _common.drop_source(RESOLVED_SOURCE)
        imported = Ticket.objects.filter(channel=Ticket.Channel.IMPORT)
        customer_ids = list(imported.values_list("customer_id", flat=True))
        with connection.cursor() as cur:  # the drafting tables reference tickets and messages
            cur.execute("DELETE FROM drafts_draft WHERE ticket_id IN (SELECT id FROM conversations_ticket"
                        " WHERE channel = 'import')")
        imported.delete()
        Customer.objects.filter(pk__in=customer_ids, tickets__isnull=True).delete()
    for path, fmt, n, n_train in IMPORTS:
        records, _ = read_records(path, fmt=fmt)
        t = time.perf_counter()
        say(f"  tickets_import {path.name} --format {fmt} --resolved --split-test {SPLIT_TEST} --seed {SEED} ...")
        r = tickets_import_path(path=path, fmt=fmt, resolved=True, split_test=SPLIT_TEST, seed=SEED)
        steps[f"tickets_import {fmt}"] = round(time.perf_counter() - t, 1)
        say(f"    imported {r.imported} (train {r.train}, test {r.test}), {r.chunks_embedded} texts embedded "
            f"in {steps[f'tickets_import {fmt}']} s")
        if r.imported + r.skipped_existing != n or len(records) != n:
            raise SystemExit(f"{path}: expected {n} tickets, imported {r.imported} + {r.skipped_existing} existing")
    # new training data: the classifiers must be retrained (setup does that next)
    from drafts.models import ClassifierModel

    ClassifierModel.objects.filter(is_active=True).update(is_active=False)
    _common.vacuum_analyze("knowledge_chunk")
    return steps


def code_version() -> dict[str, str]:
    """The commit and the working-tree state of the product code the figures were taken with (other engineers
    commit while benchmarks run)."""
    import hashlib
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=_common.REPO, capture_output=True, text=True).stdout.rstrip()

    dirty = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    digest = hashlib.sha256()
    for rel in sorted(dirty):
        path = _common.REPO / rel
        if path.is_file():
            digest.update(rel.encode() + path.read_bytes())
    return {"commit": git("log", "-1", "--format=%h %cI %s").strip()[:120],
            "modified": ", ".join(dirty) or "none", "modified_sha256": digest.hexdigest()[:12] if dirty else ""}


def print_code_version() -> dict[str, str]:
    v = code_version()
    print(f"  code: {v['commit']}")
    print(f"  uncommitted changes: {v['modified']}" + (f" (sha256 {v['modified_sha256']})" if v["modified_sha256"] else ""))
    return v


def load_note() -> str:
    """Load average and CPU pressure: the machine is shared; figures taken under load are flagged."""
    la = os.getloadavg()
    psi = ""
    try:
        psi = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        pass
    return f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}; cpu pressure: {psi or 'n/a'}"


def wait_for_quiet(max_wait_s: float, *, busy_percent: float = 30.0) -> str:
    """Wait (at most ``max_wait_s``) until the machine's CPU use over 3 s is below ``busy_percent`` of all cores —
    other engineers' jobs share these 2 cores. Returns a note of what was found."""
    import psutil

    if max_wait_s <= 0:
        return "not waited"
    deadline = time.monotonic() + max_wait_s
    while True:
        busy = psutil.cpu_percent(interval=3.0)
        if busy < busy_percent:
            return f"machine quiet ({busy:.0f}% of all cores busy)"
        if time.monotonic() >= deadline:
            return f"machine still busy after {max_wait_s:.0f} s ({busy:.0f}% of all cores): figures taken under load"
        print(f"  waiting for a quiet machine: {busy:.0f}% of all cores busy ...", flush=True)
        time.sleep(5)


# ------------------------------------------------------------------------------------------------- messages


def test_messages(n: int, *, seed: int = 7) -> list[dict]:
    """Up to ``n`` held-out (test split) imported tickets, round-robin over categories (Bitext's 11 and the Twitter
    brands, in a seeded shuffle within each): {"body": first customer message, "category": Category, "source":
    "bitext"|"twitter", "external_id"}."""
    import random
    from collections import defaultdict

    from conversations.models import Message, Ticket

    tickets = list(Ticket.objects.filter(channel=Ticket.Channel.IMPORT, split=Ticket.Split.TEST)
                   .select_related("category").order_by("pk"))
    first: dict[int, str] = {}
    for tid, body in (Message.objects.filter(ticket__in=tickets, role=Message.Role.CUSTOMER)
                      .order_by("ticket_id", "turn_index").values_list("ticket_id", "body")):
        first.setdefault(tid, body)
    by_cat: dict[str, list] = defaultdict(list)
    for t in tickets:
        if t.pk in first and t.category is not None:
            by_cat[t.category.slug].append(t)
    rng = random.Random(seed)
    for lst in by_cat.values():
        rng.shuffle(lst)
    out: list[dict] = []
    cats = sorted(by_cat)
    i = 0
    while len(out) < n and any(by_cat.values()):
        slug = cats[i % len(cats)]
        i += 1
        if by_cat[slug]:
            t = by_cat[slug].pop()
            out.append({"body": first[t.pk], "category": t.category,
                        "source": "bitext" if t.external_id.startswith("bitext-") else "twitter",
                        "external_id": t.external_id})
    return out


def receive(messages: list[dict], *, tag: str, categorised_every: int = 2) -> list[int]:
    """``message_receive`` for each message (a new ticket each, its own customer); every ``categorised_every``-th
    arrives with its category, the others without (the classifier runs). Returns the pending draft ids in order."""
    from conversations.services import message_receive
    from drafts.models import Draft

    ids = []
    for i, m in enumerate(messages):
        msg = message_receive(body=m["body"], channel="api", customer_email=f"{tag}-{i}@{BENCH_EMAIL_DOMAIN}",
                              category=m["category"] if i % categorised_every == 0 else None)
        ids.append(Draft.objects.filter(message=msg).values_list("pk", flat=True).get())
    return ids


def cleanup() -> dict[str, int]:
    """Delete every benchmark ticket (customers @BENCH_EMAIL_DOMAIN) with its messages, drafts, traces and spans,
    and the benchmark customers. Plain SQL: quick for thousands of rows."""
    from django.db import connection, transaction

    assert connection.settings_dict["NAME"] == _common.BENCH_DB
    like = f"%@{BENCH_EMAIL_DOMAIN}"
    out = {}
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("CREATE TEMP TABLE _bench_tickets ON COMMIT DROP AS SELECT t.id FROM conversations_ticket t"
                    " JOIN conversations_customer c ON c.id = t.customer_id WHERE c.email LIKE %s", [like])
        cur.execute("DELETE FROM drafts_draft WHERE ticket_id IN (SELECT id FROM _bench_tickets)")
        out["drafts"] = cur.rowcount
        cur.execute("DELETE FROM sdrbot_span WHERE trace_id IN (SELECT id FROM sdrbot_trace WHERE ticket_id IN"
                    " (SELECT id FROM _bench_tickets))")
        out["spans"] = cur.rowcount
        cur.execute("DELETE FROM sdrbot_score WHERE trace_id IN (SELECT id FROM sdrbot_trace WHERE ticket_id IN"
                    " (SELECT id FROM _bench_tickets))")
        cur.execute("DELETE FROM sdrbot_trace WHERE ticket_id IN (SELECT id FROM _bench_tickets)")
        out["traces"] = cur.rowcount
        cur.execute("DELETE FROM conversations_message WHERE ticket_id IN (SELECT id FROM _bench_tickets)")
        cur.execute("DELETE FROM conversations_ticket WHERE id IN (SELECT id FROM _bench_tickets)")
        out["tickets"] = cur.rowcount
        cur.execute("DELETE FROM conversations_customer c WHERE c.email LIKE %s AND NOT EXISTS"
                    " (SELECT 1 FROM conversations_ticket t WHERE t.customer_id = c.id)", [like])
    return out


def purge_queue() -> int:
    """Empty the benchmark Redis database (broker queue and results): it is the benchmark's alone."""
    import redis
    from django.conf import settings

    assert settings.REDIS_URL.endswith(f"/{REDIS_DB}")
    r = redis.Redis.from_url(settings.REDIS_URL)
    n = r.llen("celery")
    r.flushdb()
    return n


def queue_length() -> int:
    import redis
    from django.conf import settings

    return int(redis.Redis.from_url(settings.REDIS_URL).llen("celery"))


# ------------------------------------------------------------------------------------------------- statistics


def pct(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else float("nan")


def fmt_ms(v: float) -> str:
    return f"{v:.1f}"


# ------------------------------------------------------------------------------------------------- fake chat model


class FakeLLM:
    """An OpenAI-compatible chat-completions server in a subprocess (its own GIL). ``with FakeLLM(delay_ms=200) as
    llm: llm.base_url``; ``llm.env()`` is the environment that points sdrbot at it."""

    def __init__(self, *, delay_ms: float, threads_hint: int = 0) -> None:
        self.delay_ms = delay_ms
        self.proc = None
        self.port = None

    def __enter__(self) -> FakeLLM:
        import subprocess

        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "fake-llm", "--delay-ms",
                                      str(self.delay_ms), "--port", "0"], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            self.proc.kill()
            raise RuntimeError(f"fake LLM server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def env(self) -> dict[str, str]:
        return {"OPENAI_API_KEY": "bench-fake-key", "OPENAI_BASE_URL": self.base_url,
                "OPENAI_CHAT_MODEL": "fake-chat-model"}

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except Exception:
                self.proc.kill()


def _serve_fake_llm(delay_ms: float, port: int) -> None:
    import json
    import re
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    passage = re.compile(r'<(?:passage|past_reply) id="(\d+)"')

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                req = json.loads(raw)
                user = next((m["content"] for m in req["messages"] if m["role"] == "user"), "")
            except Exception as exc:  # noqa: BLE001
                self._send(400, {"error": {"message": str(exc)}})
                return
            time.sleep(delay_ms / 1000)
            ids = [int(i) for i in passage.findall(user)[:1]]
            content = json.dumps({"reply": "Thanks for reaching out. Here is what to do next, step by step.",
                                  "cited_chunk_ids": ids, "confidence": 0.8, "needs_human": False})
            self._send(200, {
                "id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()),
                "model": req.get("model", "fake"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": len(user) // 4, "completion_tokens": 20,
                          "total_tokens": len(user) // 4 + 20},
            })

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024  # many workers connect at once

    server = Server(("127.0.0.1", port), Handler)
    print(f"port {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass


# ------------------------------------------------------------------------------------------------- CPU sampling


class CpuSampler:
    """Samples CPU use (share of one core, summed over processes) of groups of processes every ``interval`` s in a
    background thread: ``groups`` maps a name to a callable returning the current pids of that group."""

    def __init__(self, groups: dict, interval: float = 0.5) -> None:
        import threading

        self.groups = groups
        self.interval = interval
        self.samples: dict[str, list[float]] = {name: [] for name in groups}
        self.system: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._procs: dict[int, object] = {}

    def _cpu(self, pid: int) -> float:
        """% of one core since the previous sample; 0 the first time a process is seen (that call only sets the
        baseline: a second call microseconds later would divide by almost nothing)."""
        import psutil

        p = self._procs.get(pid)
        if p is None:
            p = psutil.Process(pid)
            p.cpu_percent(None)
            self._procs[pid] = p
            return 0.0
        return p.cpu_percent(None)

    def _run(self) -> None:
        import psutil

        psutil.cpu_percent(None)
        while not self._stop.wait(self.interval):
            for name, pids in self.groups.items():
                total = 0.0
                for pid in pids():
                    try:
                        total += self._cpu(pid)
                    except Exception:  # noqa: BLE001  (process ended)
                        self._procs.pop(pid, None)
                self.samples[name].append(total)
            self.system.append(psutil.cpu_percent(None))

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self, skip: int = 0) -> dict[str, float]:
        """Mean CPU % (100 = one core) per group; ``system_all_cores_%``: the machine's mean use of all its cores;
        ``rest``: what the groups do not explain (this process, other engineers' jobs, the kernel), % of one core."""
        import numpy as np

        out = {name: round(float(np.mean(v[skip:])), 1) if v[skip:] else 0.0 for name, v in self.samples.items()}
        system = float(np.mean(self.system[skip:])) if self.system[skip:] else 0.0
        out["rest"] = round(system * (os.cpu_count() or 1) - sum(out.values()), 1)
        out["system_all_cores_%"] = round(system, 1)
        return out


def postgres_pids(database: str | None = None, *, others: bool = False) -> list[int]:
    """PostgreSQL processes of the embedded server: with ``database``, the backends serving it (process title
    ``postgres: user DB [local] ...``); with ``others=True`` every other one (background processes and backends of
    other databases — other engineers' benchmarks and tests share this server)."""
    import psutil

    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if p.info["name"] not in ("postgres", "postmaster"):
                continue
            words = " ".join(p.info["cmdline"] or []).split()
            mine = database is not None and len(words) >= 3 and words[0] == "postgres:" and words[2] == database
            if database is None or mine != others:
                out.append(p.pid)
        except Exception:  # noqa: BLE001
            pass
    return out


def tree_pids(pid: int) -> list[int]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root.pid] + [c.pid for c in root.children(recursive=True)]
    except Exception:  # noqa: BLE001
        return []


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="helpers of the drafting benchmarks")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fake-llm", help="serve a fake OpenAI-compatible chat model")
    f.add_argument("--delay-ms", type=float, default=200.0)
    f.add_argument("--port", type=int, default=0)
    sub.add_parser("setup", help="prepare the bench database for drafting (idempotent)")
    sub.add_parser("cleanup", help="delete the benchmark tickets and purge the bench queue")
    args = ap.parse_args(argv)
    if args.cmd == "fake-llm":
        _serve_fake_llm(args.delay_ms, args.port)
    elif args.cmd == "setup":
        setup()
    elif args.cmd == "cleanup":
        setup(quiet=True)
        print(cleanup(), "queue purged:", purge_queue())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
