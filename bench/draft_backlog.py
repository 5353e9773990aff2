"""Backlog throughput: N tickets (default 2,000) drafted by a real Celery worker.

    .venv/bin/python bench/draft_backlog.py [--n 2000] [--config offline:prefork:2 --config llm:threads:32 ...]
                                            [--llm-delay-ms 500] [--json out.json]

Per configuration: with no worker running, N customer messages go through ``message_receive`` (each queues
``drafts.draft_generate`` on commit, into the benchmark's own Redis database); then a worker subprocess starts and
the drafts/s are measured from its start until no draft of the run is pending (the database is polled every
0.25 s). The steady-state rate comes from the drafts' ``updated_at`` (set when the draft is stored): the 5th → 95th
percentile of completions, which leaves out worker start-up and the tail. CPU of the worker processes and of
PostgreSQL is sampled with psutil every 0.5 s. Between runs the benchmark tickets/drafts/traces are deleted and the
queue purged.

A configuration is ``MODE:POOL:CONCURRENCY[xPROCESSES]``: MODE ``offline`` (offline grounded responder) or ``llm``
(an OpenAI-compatible chat model served by a local subprocess answering after ``--llm-delay-ms``, default 500 ms);
POOL ``prefork`` or ``threads``; ``xP`` starts P worker processes (each ``-c CONCURRENCY``). Workers run with
``EMBEDDING_THREADS=1`` unless ``--embedding-threads`` says otherwise, with the product's settings (one OpenAI
client per process; database connections kept across tasks, sdrbot/celery.py).

Messages: the first customer message of the 952 held-out (test split) Bitext and Twitter tickets, round-robin over
the 30 categories and repeated to reach N; every other one arrives with its category (the others are classified).
Target (issue): >= 20 drafts/s on 2 cores, offline and with a 500 ms chat model.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import _drafting  # noqa: E402

TARGET_RATE = 20.0
DEFAULT_CONFIGS = ["offline:prefork:2", "llm:threads:16x2"]
BUDGET_S = 600.0  # configurations that would start after this many seconds are skipped
TIMEOUT_S = 240.0  # per configuration, after the worker starts


def parse_config(text: str) -> dict:
    mode, pool, conc = text.split(":")
    procs = 1
    if "x" in conc:
        conc, p = conc.split("x")
        procs = int(p)
    if mode not in ("offline", "llm") or pool not in ("prefork", "threads", "solo"):
        raise SystemExit(f"bad configuration {text!r}; expected offline|llm : prefork|threads|solo : N[xP]")
    return {"name": text, "mode": mode, "pool": pool, "concurrency": int(conc), "processes": procs}


def worker_command(cfg: dict, index: int) -> list[str]:
    return [str(_common.REPO / ".venv" / "bin" / "celery"), "-A", "sdrbot", "worker", "--loglevel", "INFO",
            "--pool", cfg["pool"], "--concurrency", str(cfg["concurrency"]), "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-n", f"bench{index}@%h"]


def worker_env(extra: dict[str, str], embedding_threads: int) -> dict[str, str]:
    from django.conf import settings

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LANGFUSE_"))}
    env.update({
        "DATABASE_URL": os.environ["DATABASE_URL"],  # sdrbot_bench (bench/_common.py)
        "REDIS_URL": settings.REDIS_URL,  # the benchmark's own Redis database
        "DJANGO_SETTINGS_MODULE": "sdrbot.settings",
        "EMBEDDING_THREADS": str(embedding_threads),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def _cpu_seconds(pid: int) -> float:
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system + t.children_user + t.children_system
    except Exception:  # noqa: BLE001  (gone)
        return 0.0


def run_config(cfg: dict, messages: list[dict], *, llm_delay_ms: float, embedding_threads: int,
               timeout_s: float) -> dict:
    from django.db.models import Count

    from drafts.models import Draft

    tag = f"backlog-{cfg['name'].replace(':', '-')}"
    _drafting.cleanup()
    _drafting.purge_queue()
    t = time.perf_counter()
    ids = _drafting.receive(messages, tag=tag)
    receive_s = time.perf_counter() - t
    queued = _drafting.queue_length()
    print(f"  {len(ids)} tickets received in {receive_s:.1f} s ({len(ids) / receive_s:.0f}/s); {queued} tasks queued",
          flush=True)

    fake = _drafting.FakeLLM(delay_ms=llm_delay_ms) if cfg["mode"] == "llm" else None
    procs: list[subprocess.Popen] = []
    logs = []
    result: dict = {"config": cfg, "n": len(ids), "receive_s": round(receive_s, 1), "queued": queued,
                    "load_before": _drafting.load_note()}
    try:
        extra = {}
        if fake is not None:
            fake.__enter__()
            extra = fake.env()
        env = worker_env(extra, embedding_threads)
        cmds = [worker_command(cfg, i) for i in range(cfg["processes"])]
        result["commands"] = [" ".join(c) for c in cmds]
        result["env"] = {k: env[k] for k in ("EMBEDDING_THREADS", "OPENAI_BASE_URL") if k in env}
        groups = {
            "worker": lambda: [p for proc in procs for p in _drafting.tree_pids(proc.pid)],
            "postgres": lambda: _drafting.postgres_pids(_common.BENCH_DB),
            "postgres_other": lambda: _drafting.postgres_pids(_common.BENCH_DB, others=True),
        }
        if fake is not None:
            groups["fake_llm"] = lambda: [fake.proc.pid]
        sampler = _drafting.CpuSampler(groups)
        pg_cpu0 = sum(_cpu_seconds(pid) for pid in _drafting.postgres_pids(_common.BENCH_DB))
        t0_wall = time.time()
        t0 = time.perf_counter()
        for i, c in enumerate(cmds):
            # the worker logs every task (INFO, as in the Procfile): to a file, never a pipe nobody reads
            log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"sdrbot-bench-worker{i}.log", "w")
            logs.append(log)
            procs.append(subprocess.Popen(c, cwd=_common.REPO, env=env, start_new_session=True,
                                          stdout=log, stderr=subprocess.STDOUT))
        pending = len(ids)
        trail = []
        with sampler:
            while pending and time.perf_counter() - t0 < timeout_s:
                time.sleep(0.25)
                pending = Draft.objects.filter(pk__in=ids, status=Draft.Status.PENDING).count()
                trail.append((time.perf_counter() - t0, pending))
                dead = [p for p in procs if p.poll() is not None]
                if dead:
                    raise RuntimeError(f"worker exited with {dead[0].returncode}; see {logs[0].name}")
        elapsed = time.perf_counter() - t0
        # CPU budget per draft from cumulative CPU times (less sensitive to other jobs than rates): the worker
        # processes (start-up included), and the bench's PostgreSQL backends (the workers keep theirs across tasks)
        worker_cpu_s = sum(_cpu_seconds(pid) for proc in procs for pid in _drafting.tree_pids(proc.pid))
        pg_cpu_s = sum(_cpu_seconds(pid) for pid in _drafting.postgres_pids(_common.BENCH_DB)) - pg_cpu0
    finally:
        for p in procs:  # warm shutdown of the workers we started (their own process groups), then kill
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if fake is not None:
            fake.__exit__(None, None, None)
        for log in logs:
            log.close()

    by_status = dict(Draft.objects.filter(pk__in=ids).values_list("status").annotate(n=Count("id")))
    done_rows = list(Draft.objects.filter(pk__in=ids).exclude(status=Draft.Status.PENDING)
                     .values_list("updated_at", "latency_ms", "status", "error", "generator"))
    times = sorted(r[0].timestamp() - t0_wall for r in done_rows)
    n_done = len(times)
    overall = n_done / elapsed if elapsed else 0.0
    steady = None
    if n_done >= 20:
        lo, hi = int(0.05 * (n_done - 1)), int(0.95 * (n_done - 1))
        steady = (hi - lo) / (times[hi] - times[lo]) if times[hi] > times[lo] else None
    failures = [r for r in done_rows if r[2] == Draft.Status.FAILED]
    lat = {k: _drafting.pct([float(r[1].get(k, 0.0)) for r in done_rows if r[1]], 50)
           for k in ("classify", "retrieve", "generate", "check")}
    lat95 = {k: _drafting.pct([float(r[1].get(k, 0.0)) for r in done_rows if r[1]], 95)
             for k in ("classify", "retrieve", "generate", "check")}
    cpu = sampler.summary(skip=2)
    gens: dict[str, int] = {}
    for r in done_rows:
        gens[r[4] or "-"] = gens.get(r[4] or "-", 0) + 1
    result.update({
        "elapsed_s": round(elapsed, 1), "completed": n_done, "pending_left": len(ids) - n_done,
        "status": by_status, "failed": len(failures), "first_error": failures[0][3][:300] if failures else "",
        "generators": gens,
        "drafts_per_s_overall": round(overall, 2), "drafts_per_s_steady": round(steady, 2) if steady else None,
        "first_draft_after_s": round(times[0], 2) if times else None,
        "last_draft_after_s": round(times[-1], 2) if times else None,
        "step_ms_p50": {k: round(v, 1) for k, v in lat.items()},
        "step_ms_p95": {k: round(v, 1) for k, v in lat95.items()},
        "cpu_percent": cpu,  # 100 = one core; system is % of all cores
        "worker_cpu_ms_per_draft": round(1000 * worker_cpu_s / max(n_done, 1), 1),
        "bench_postgres_cpu_ms_per_draft": round(1000 * pg_cpu_s / max(n_done, 1), 1),
        # the figure: drafts/s over the whole backlog, worker start-up included
        "pass": overall >= TARGET_RATE and not failures and n_done == len(ids),
    })
    removed = _drafting.cleanup()
    _drafting.purge_queue()
    result["cleaned"] = removed
    return result


def print_result(r: dict) -> None:
    cfg = r["config"]
    _common.print_header(f"{cfg['name']}: {r['n']} drafts")
    for c in r["commands"]:
        print(f"  worker: {c}")
    print(f"  worker env: {r['env']}")
    print(f"  drafts/s from worker start until none pending: {r['drafts_per_s_overall']:.1f} "
          f"({r['completed']} in {r['elapsed_s']} s); steady state (5th→95th pct of completions): "
          f"{r['drafts_per_s_steady'] if r['drafts_per_s_steady'] is not None else '–'}")
    print(f"  first draft stored {r['first_draft_after_s']} s after worker start; status {r['status']}; "
          f"failed {r['failed']}{' — ' + r['first_error'] if r['failed'] else ''}; generators {r['generators']}")
    print(f"  per-step p50 ms under load {r['step_ms_p50']}; p95 {r['step_ms_p95']}")
    print(f"  CPU (100 = one core): {r['cpu_percent']}")
    pg = r["bench_postgres_cpu_ms_per_draft"]
    print(f"  CPU per draft: worker {r['worker_cpu_ms_per_draft']} ms (start-up included)"
          + (f" + its PostgreSQL backends {pg} ms → ceiling {2000 / (r['worker_cpu_ms_per_draft'] + pg):.0f} drafts/s on"
             f" 2 cores" if pg is not None else "; PostgreSQL: one backend per task, not measurable here"
             " (see pipeline_overhead.py pass 1b)"))
    print(f"  before the run: {r['load_before']}")


def main(*, n: int = 2000, configs: list[str] | None = None, llm_delay_ms: float = 500.0,
         embedding_threads: int = 1, timeout_s: float = TIMEOUT_S, machine: bool = True,
         wait_quiet_s: float = 30.0, budget_s: float = BUDGET_S) -> dict:
    started = time.perf_counter()
    info = _drafting.setup()
    if machine:
        _common.print_machine_info()
    info["code"] = _drafting.print_code_version()
    from django.conf import settings

    print(f"  broker {settings.REDIS_URL}; load average {os.getloadavg()}")
    pool = _drafting.test_messages(10_000)
    messages = [dict(pool[i % len(pool)], given=(i % 2 == 0)) for i in range(n)]
    print(f"  {n} messages from {len(pool)} held-out tickets ({len({m['category'].slug for m in pool})} categories), "
          f"half with their category given")
    results = {"setup": info, "runs": []}
    try:
        for text in configs or DEFAULT_CONFIGS:
            cfg = parse_config(text)
            spent = time.perf_counter() - started
            if spent + n / TARGET_RATE + 30 > budget_s:
                print(f"\n--- {text}: skipped, {spent:.0f} s spent of the {budget_s:.0f} s budget (--budget) ---")
                results.setdefault("skipped", []).append(text)
                continue
            print(f"\n--- {text} ---", flush=True)
            quiet = _drafting.wait_for_quiet(wait_quiet_s)
            print(f"  {quiet}")
            r = run_config(cfg, messages, llm_delay_ms=llm_delay_ms, embedding_threads=embedding_threads,
                           timeout_s=timeout_s)
            r["quiet"] = quiet
            print_result(r)
            results["runs"].append(r)
    finally:
        _drafting.cleanup()
        _drafting.purge_queue()

    _common.print_header("Backlog throughput: summary")
    rows = []
    for r in results["runs"]:
        c = r["config"]
        rows.append([c["name"], f"{c['pool']} -c {c['concurrency']}" + (f" ×{c['processes']}" if c["processes"] > 1 else ""),
                     f"{r['drafts_per_s_overall']:.1f}", f"{r['drafts_per_s_steady'] or 0:.1f}", r["failed"],
                     f"{r['cpu_percent'].get('worker', 0):.0f}",
                     f"{r['cpu_percent'].get('postgres', 0):.0f}",
                     f"{r['cpu_percent'].get('postgres_other', 0):.0f}", f"{r['cpu_percent'].get('rest', 0):.0f}",
                     f"{r['cpu_percent'].get('system_all_cores_%', 0):.0f}",
                     "PASS" if r["pass"] else "FAIL"])
    _common.print_table(["config", "worker", "drafts/s (wall)", "drafts/s (steady)", "failed", "worker CPU %",
                         "bench postgres CPU %", "other postgres %", "rest %", "system %", f">= {TARGET_RATE:.0f}/s"],
                        rows)
    print(f"  (llm mode: chat model answering after {llm_delay_ms:.0f} ms. CPU in % of one core: worker processes;"
          f" PostgreSQL backends of {_common.BENCH_DB} (sampled every 0.5 s); other PostgreSQL processes;"
          f" rest = everything else on the machine (this process, the fake LLM, other engineers' jobs); system = % of"
          f" all {os.cpu_count()} cores)")
    print(f"  total time {time.perf_counter() - started:.0f} s")
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--config", action="append", default=None,
                    help="MODE:POOL:CONCURRENCY[xPROCESSES], repeatable")
    ap.add_argument("--llm-delay-ms", type=float, default=500.0)
    ap.add_argument("--embedding-threads", type=int, default=1, help="EMBEDDING_THREADS of the workers (0 = all cores)")
    ap.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per configuration after worker start")
    ap.add_argument("--budget", type=float, default=BUDGET_S,
                    help="skip the configurations that would start after this many seconds")
    ap.add_argument("--wait-quiet", type=float, default=30.0,
                    help="wait up to this many seconds for other jobs to leave the CPU before each run (0 = no)")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 when no configuration reaches the target (make bench goes on by default)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    res = main(n=a.n, configs=a.config, llm_delay_ms=a.llm_delay_ms, embedding_threads=a.embedding_threads,
               timeout_s=a.timeout, wait_quiet_s=a.wait_quiet, budget_s=a.budget)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2, default=str))
    sys.exit(1 if a.strict and not (res["runs"] and any(r["pass"] for r in res["runs"])) else 0)
