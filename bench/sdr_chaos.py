"""The failure from the field: 1,000 qualification turns whose CRM writes go through the outbox to a CRM that applies
30% of writes and then times out before answering, while the Celery worker delivering them is SIGKILLed mid-run
(twice) and replaced. At the end the CRM must hold exactly one record per logical write: zero duplicates, zero lost.

    .venv/bin/python bench/sdr_chaos.py [--turns 1000] [--adapter webhook|hubspot|both] [--hang-rate 0.3]

Database ``sdrbot_bench_sdr_chaos``; Celery broker on Redis database 12. Real parts: the qualification service
(crm.services.qualification_run, without the chat model) writes the internal CRM rows and the outbox rows; real
Celery worker processes (threads pool) deliver them through the real adapters (httpx) to crm.testserver.FakeCrm
(a thread of this process, speaking the webhook and HubSpot protocols, deduping by idempotency key); real Celery
beat runs the sweeper every second.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter

import _common
import _sdr

DB = "sdrbot_bench_sdr_chaos"
SECRET = "whsec-bench"
TOKEN = "pat-bench"


def _env(queue: str, timeout: float) -> dict[str, str]:
    from django.db import connection

    from tests.conftest import database_url

    env = dict(os.environ)
    env.update(DATABASE_URL=database_url(connection.settings_dict), DJANGO_SETTINGS_MODULE="sdrbot.settings",
               OUTBOX_QUEUE=queue, CRM_WEBHOOK_SECRET=SECRET, CRM_HUBSPOT_TOKEN=TOKEN, CRM_TIMEOUT=str(timeout),
               OUTBOX_RETRY_BASE_SECONDS="0.2", OUTBOX_RETRY_MAX_SECONDS="2", OUTBOX_LEASE_SECONDS="3",
               OUTBOX_MAX_ATTEMPTS="12", OUTBOX_SWEEP_SECONDS="1", LOG_LEVEL="WARNING")
    return env


def start_worker(env: dict[str, str], queue: str, n: int) -> subprocess.Popen:
    from sdrbot.celery import app

    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "sdrbot", "worker", "--loglevel", "ERROR", "-Q", queue,
         "--pool", "threads", "--concurrency", "8", "--without-gossip", "--without-mingle",
         "--hostname", f"chaos-{n}-{uuid.uuid4().hex[:6]}@%h"],
        cwd=_sdr.REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5) or []
        if any(f"chaos-{n}-" in name for r in replies for name in r):
            return proc
        if proc.poll() is not None:
            raise SystemExit("celery worker exited at start")
    raise SystemExit("celery worker did not answer within 60 s")


def run(*, turns: int, adapter: str, hang_rate: float, hang_s: float, timeout: float, seed: int) -> dict:
    from django.db import transaction
    from django.test.utils import override_settings

    from crm.models import CrmSettings, OutboxAttempt, OutboxWrite
    from crm.services import qualification_run
    from crm.testserver import FakeCrm
    from sdrbot.tracing import SpanCollector

    _sdr.reset()
    queue = f"sdr-chaos-{uuid.uuid4().hex[:8]}"
    crm = FakeCrm(secret=SECRET, token=TOKEN, hang_rate=hang_rate, hang_s=hang_s, seed=seed)
    CrmSettings.objects.create(pk=1, adapter=adapter, endpoint_url=f"{crm.url}/webhook" if adapter == "webhook" else crm.url,
                               booking_link="https://cal.example.org/sales")
    env = _env(queue, timeout)
    beat_dir = tempfile.mkdtemp(prefix="sdr-chaos-beat-")
    beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "sdrbot", "beat", "--loglevel", "ERROR",
                             "-s", os.path.join(beat_dir, "schedule")],
                            cwd=_sdr.REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = [start_worker(env, queue, 0)]
    kills_at = {int(turns * 0.35), int(turns * 0.7)}
    kills: list[dict] = []
    rng = random.Random(seed)
    t0 = time.perf_counter()
    done_turns = 0
    try:
        with override_settings(OUTBOX_QUEUE=queue):
            n_conv = 0
            while done_turns < turns:
                ticket = _sdr.new_ticket(n_conv)
                for i, body in enumerate(_sdr.conversation(rng, n_conv)):
                    if done_turns >= turns:
                        break
                    with transaction.atomic():
                        m = _sdr.add_message(ticket, body, i)
                    qualification_run(ticket=ticket, message=m, outcome=_sdr.outcome_without_model(),
                                      recorder=SpanCollector())
                    done_turns += 1
                    if done_turns in kills_at:
                        leased = OutboxWrite.objects.filter(status="pending", lease_until__isnull=False).count()
                        w = workers[-1]
                        w.send_signal(signal.SIGKILL)  # mid-delivery: leases held, tasks unacknowledged
                        w.wait()
                        kills.append({"after_turns": done_turns, "rows_leased_at_kill": leased,
                                      "server_requests_so_far": crm.requests})
                        workers.append(start_worker(env, queue, len(workers)))
                n_conv += 1
            produced_s = time.perf_counter() - t0
            deadline = time.monotonic() + 600
            while OutboxWrite.objects.filter(status="pending").exists() and time.monotonic() < deadline:
                time.sleep(0.5)
        drained_s = time.perf_counter() - t0
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
        beat.terminate()
        for p in [*workers, beat]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        crm.close()
        from sdrbot.celery import app

        app.control.purge()  # beat's other periodic tasks, sent to the default queue nobody consumes here
    expected = set(OutboxWrite.objects.values_list("idempotency_key", flat=True))
    held = crm.keys()
    statuses = Counter(OutboxWrite.objects.values_list("status", flat=True))
    attempts = Counter(OutboxWrite.objects.values_list("attempts", flat=True))
    outcomes = Counter(OutboxAttempt.objects.values_list("outcome", flat=True))
    actions = Counter(OutboxWrite.objects.values_list("action", flat=True))
    return {
        "adapter": adapter, "turns": done_turns, "conversations": n_conv, "logical_writes": len(expected),
        "writes_by_action": dict(actions), "server_records": len(held), "duplicates": crm.duplicates(),
        "lost": len(expected - held), "unexpected": len(held - expected), "server_requests": crm.requests,
        "applied_then_timed_out": crm.hung, "replays_deduped": crm.replayed, "rows": dict(statuses),
        "attempts_per_row": dict(sorted(attempts.items())), "attempt_outcomes": dict(outcomes), "kills": kills,
        "turns_s": round(produced_s, 1), "all_delivered_s": round(drained_s, 1), "max_attempts": 12,
        "client_timeout_s": timeout, "hang_s": hang_s, "hang_rate": hang_rate,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--turns", type=int, default=1000)
    ap.add_argument("--adapter", choices=["webhook", "hubspot", "both"], default="both")
    ap.add_argument("--hang-rate", type=float, default=0.3)
    ap.add_argument("--hang-seconds", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=0.5, help="the CRM client's timeout (seconds)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    _sdr.setup(DB)
    _common.print_machine_info()
    print(f"  load average before: {os.getloadavg()}")
    metrics = _sdr.ensure_intent_model()
    print(f"  intent model: held-out accuracy {metrics.get('test_accuracy')}, OOS F1 {metrics.get('test_oos_f1')}")
    ok = True
    for adapter in (["webhook", "hubspot"] if args.adapter == "both" else [args.adapter]):
        r = run(turns=args.turns, adapter=adapter, hang_rate=args.hang_rate, hang_s=args.hang_seconds,
                timeout=args.timeout, seed=args.seed)
        _common.print_header(f"Chaos run, {adapter} adapter: {r['turns']} turns, {r['hang_rate']:.0%} of writes applied "
                             f"then answered after {r['hang_s']} s (client timeout {r['client_timeout_s']} s), "
                             f"{len(r['kills'])} worker SIGKILLs")
        for k, v in r.items():
            print(f"  {k:<24} {v}")
        verdict = r["duplicates"] == 0 and r["lost"] == 0 and r["unexpected"] == 0
        ok &= verdict
        print(f"  RESULT: {r['duplicates']} duplicates, {r['lost']} lost out of {r['logical_writes']} logical writes "
              f"({r['turns']} turns) — {'PASS' if verdict else 'FAIL'}")
    print(f"  load average after: {os.getloadavg()}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
