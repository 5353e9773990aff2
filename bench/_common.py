"""Shared setup of the benchmarks: a separate database ``sdrbot_bench`` on the embedded PostgreSQL, Django set up
against it, data paths, and machine information.

Import this module before anything that touches Django settings, then call :func:`setup`. The dev/demo database
``sdrbot`` is never touched: ``DATABASE_URL`` is pointed at ``sdrbot_bench`` before ``django.setup()``.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BENCH_DB = "sdrbot_bench"
DATA = Path(os.environ.get("SDRBOT_BENCH_DATA", REPO.parent / "shared" / "data"))
MTRAG = DATA / "mtrag-ibmcloud"
PASSAGES = MTRAG / "passages.jsonl"
TASKS = MTRAG / "mtragun_cloud_tasks.jsonl"
QRELS = MTRAG / "mtragun_cloud_qrels.tsv"
BITEXT = DATA / "bitext-customer-support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
MTRAG_SOURCE = "ibm-cloud-docs"

_ready = False


def _ensure_database() -> None:
    import psycopg
    from psycopg import sql

    from sdrbot import devservices

    if not devservices.postgres_running():
        devservices.postgres_start()  # idempotent; creates only the dev database and the extension
    with psycopg.connect(devservices.postgres_url("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    with psycopg.connect(devservices.postgres_url(BENCH_DB), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


def setup() -> None:
    """Point Django at ``sdrbot_bench`` (created if missing, with pgvector), ``django.setup()``, migrate."""
    global _ready
    if _ready:
        return
    from sdrbot import devservices

    _ensure_database()
    os.environ["DATABASE_URL"] = devservices.postgres_url(BENCH_DB)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sdrbot.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    name = settings.DATABASES["default"]["NAME"]
    if name != BENCH_DB:  # belt and braces: never benchmark against the dev database
        raise SystemExit(f"refusing to run: Django is configured for database {name!r}, not {BENCH_DB!r}")
    from django.db.migrations.exceptions import InconsistentMigrationHistory

    try:
        call_command("migrate", verbosity=0)
    except InconsistentMigrationHistory as exc:
        # The bench database was migrated by migrations that have since been rewritten (work in progress). It
        # holds only data the benchmarks rebuild, so it is recreated; never with other sessions connected.
        print(f"  {BENCH_DB}: {exc}; recreating the benchmark database", file=sys.stderr)
        _recreate_database()
        call_command("migrate", verbosity=0)
    _ready = True


def _recreate_database() -> None:
    import psycopg
    from django.db import connections
    from psycopg import sql

    from sdrbot import devservices

    connections.close_all()
    with psycopg.connect(devservices.postgres_url("postgres"), autocommit=True) as conn:
        others = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [BENCH_DB]).fetchone()[0]
        if others:
            raise SystemExit(f"{BENCH_DB} needs recreating but {others} other session(s) are connected to it; "
                             "run the benchmarks when nothing else uses that database")
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(BENCH_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    with psycopg.connect(devservices.postgres_url(BENCH_DB), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


# ------------------------------------------------------------------------------------------------- machine info


def machine_info() -> dict[str, str]:
    """CPU model, cores, RAM, OS, Python, PostgreSQL and pgvector versions (call after :func:`setup`)."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    info = {
        "CPU": cpu,
        "cores (os.cpu_count)": str(os.cpu_count()),
        "RAM": ram,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
    }
    if _ready:
        from django.db import connection

        with connection.cursor() as cur:
            cur.execute("SHOW server_version")
            info["PostgreSQL"] = cur.fetchone()[0]
            cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cur.fetchone()
            info["pgvector"] = row[0] if row else "not installed"
            cur.execute("SHOW shared_buffers")
            info["PostgreSQL shared_buffers"] = cur.fetchone()[0]
            cur.execute("SHOW work_mem")
            info["PostgreSQL work_mem"] = cur.fetchone()[0]
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    return info


def code_state() -> str:
    """The commit measured, and whether tracked files had uncommitted changes (others may be editing them)."""
    import subprocess

    def git(*args):
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--untracked-files=no").splitlines()
    return f"commit {head}" + (f" + uncommitted changes in {len(dirty)} tracked files" if dirty else "")


def print_machine_info() -> dict[str, str]:
    info = machine_info()
    print_header("Machine")
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"  {key:<{width}}  {value}")
    return info


def print_header(title: str) -> None:
    print()
    print(title)
    print("=" * len(title))


def print_table(headers: list[str], rows: list[list[object]]) -> None:
    """A plain aligned text table (also valid as the body of a Markdown table when piped through :func:`md_table`)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, r in enumerate(cells):
        print("  " + "  ".join(c.rjust(widths[i]) if i else c.ljust(widths[i]) for i, c in enumerate(r)))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


# ------------------------------------------------------------------------------------------------- shared data


def mtrag_documents():
    """The 349 MTRAG passages as DocumentInputs, with the field mapping of
    ``kb_ingest passages.jsonl --format jsonl --id-field _id --title-field page_id --text-field text``."""
    from django.conf import settings

    from knowledge.loaders import load_jsonl

    docs, problems = load_jsonl(PASSAGES, id_field="_id", title_field="page_id", text_field="text", url_field="url",
                                max_bytes=settings.KB_MAX_DOCUMENT_BYTES)
    if problems:
        raise SystemExit(f"{PASSAGES}: {len(problems)} invalid lines, first: {problems[0]}")
    return docs


def ingest_mtrag(*, quiet: bool = False):
    """Make source ``ibm-cloud-docs`` hold the 349 MTRAG passages (a no-op when they are there already)."""
    from knowledge.services import source_sync

    docs = mtrag_documents()
    result = source_sync(source_name=MTRAG_SOURCE, documents=docs, origin=str(PASSAGES))
    if not quiet:
        print(f"  source {MTRAG_SOURCE}: {len(docs)} passages (added {result.added}, updated {result.updated}, "
              f"unchanged {result.unchanged}); chunks embedded {result.chunks_embedded}, reused {result.chunks_reused}")
    return result


def reset_knowledge() -> None:
    """Empty every knowledge table of the bench database (TRUNCATE … CASCADE: also empties indexes, so a fresh
    ingest starts from nothing and reuses no stored embedding). Only ever runs against ``sdrbot_bench``."""
    from django.db import connection

    assert connection.settings_dict["NAME"] == BENCH_DB
    with connection.cursor() as cur:
        cur.execute("TRUNCATE knowledge_chunk, knowledge_documentversion, knowledge_document, knowledge_ingestrun,"
                    " knowledge_knowledgesource RESTART IDENTITY CASCADE")


def drop_source(name: str) -> int:
    """Delete a source with its documents, versions, runs and chunks in plain SQL (fast for 100k chunks).
    Returns the number of chunks deleted."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT id FROM knowledge_knowledgesource WHERE name = %s", [name])
        row = cur.fetchone()
        if not row:
            return 0
        sid = row[0]
        cur.execute("DELETE FROM knowledge_chunk c USING knowledge_document d WHERE d.id = c.document_id"
                    " AND d.source_id = %s", [sid])
        n = cur.rowcount
        cur.execute("DELETE FROM knowledge_documentversion v USING knowledge_document d WHERE d.id = v.document_id"
                    " AND d.source_id = %s", [sid])
        cur.execute("DELETE FROM knowledge_document WHERE source_id = %s", [sid])
        cur.execute("DELETE FROM knowledge_ingestrun WHERE source_id = %s", [sid])
        cur.execute("DELETE FROM knowledge_knowledgesource WHERE id = %s", [sid])
    return n


def ensure_only_mtrag(*, quiet: bool = False) -> int:
    """Leave the bench knowledge base holding exactly the 349 MTRAG passages (source ``ibm-cloud-docs``), as
    ``kb_ingest passages.jsonl --source ibm-cloud-docs --format jsonl --id-field _id --title-field page_id`` would.
    The MTRAG source is synced first, so embeddings stored under other sources (e.g. by ingest_throughput) are
    reused instead of recomputed; then every other source is dropped. Returns the number of chunks."""
    from knowledge.models import Chunk, KnowledgeSource

    ingest_mtrag(quiet=quiet)
    others = list(KnowledgeSource.objects.exclude(name=MTRAG_SOURCE).values_list("name", flat=True))
    dropped = sum(drop_source(n) for n in others)
    if others:
        vacuum_analyze()
        if not quiet:
            print(f"  dropped other sources {others} ({dropped} chunks)")
    n = Chunk.objects.count()
    if not quiet:
        print(f"  knowledge base: {n} chunks in source {MTRAG_SOURCE}")
    return n


def vacuum_analyze(table: str = "knowledge_chunk") -> None:
    """VACUUM ANALYZE (outside any transaction: Django's connection is in autocommit mode here)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(f"VACUUM ANALYZE {table}")


def bounded_query_count(queries, bound: int) -> int:
    """How many of ``queries`` take the bounded keyword path (the plan names a candidate tsquery) at ``bound``."""
    from django.conf import settings
    from django.db import connection

    from knowledge.selectors import _PLAN_SQL, _WEBSEARCH_OPERATORS

    if bound <= 0:
        return 0
    n = 0
    with connection.cursor() as cur:
        for q in queries:
            if _WEBSEARCH_OPERATORS.search(q.text):
                continue
            cur.execute(f"WITH {_PLAN_SQL} SELECT cand IS NOT NULL FROM plan", [settings.KB_FTS_CONFIG, q.text, *[bound] * 5])
            n += bool(cur.fetchone()[0])
    return n
