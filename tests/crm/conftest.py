from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from crm.testserver import FakeCrm
from tests.conftest import ROOT, database_url

SECRET = "whsec-test-0123456789"
TOKEN = "pat-test-token"


@pytest.fixture
def fake_crm() -> Iterator[Callable[..., FakeCrm]]:
    servers: list[FakeCrm] = []

    def make(**kw) -> FakeCrm:
        s = FakeCrm(secret=SECRET, token=TOKEN, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def crm_env(settings):
    settings.CRM_WEBHOOK_SECRET = SECRET
    settings.CRM_HUBSPOT_TOKEN = TOKEN
    settings.CRM_TIMEOUT = 0.5
    settings.OUTBOX_RETRY_BASE_SECONDS = 0.05
    settings.OUTBOX_RETRY_MAX_SECONDS = 0.2
    return settings


def configure(adapter: str, url: str):
    from crm.models import CrmSettings

    CrmSettings.objects.update_or_create(pk=1, defaults={"adapter": adapter, "endpoint_url": url,
                                                         "booking_link": "https://cal.example.org/sales"})


def start_worker(queue: str, extra_env: dict[str, str], *, concurrency: int = 4) -> subprocess.Popen:
    """A real Celery worker process on the tests' broker and test database, consuming only ``queue`` (so the
    suite's shared worker never takes these deliveries), with its own CRM settings from the environment."""
    from django.db import connection

    from sdrbot.celery import app

    env = dict(os.environ)
    env.update(DATABASE_URL=database_url(connection.settings_dict), DJANGO_SETTINGS_MODULE="sdrbot.settings_test",
               OUTBOX_QUEUE=queue, **extra_env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "sdrbot", "worker", "--loglevel", "WARNING", "-Q", queue,
         "--pool", "threads", "--concurrency", str(concurrency), "--without-gossip", "--without-mingle",
         "--hostname", f"{queue}-{os.getpid()}-{time.monotonic_ns()}@%h"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("celery worker exited early")
        replies = app.control.ping(timeout=0.5) or []
        if any(queue in name for r in replies for name in r):
            return proc
    proc.kill()
    raise RuntimeError("celery worker did not answer a ping within 60 s")


@pytest.fixture
def sdr_model(db):
    """The SDR intent model trained on a small subset of the real data (the seed examples + 15 per label)."""
    from crm import intent
    from tests.conftest import SHARED_DATA

    texts, labels = intent.dataset(SHARED_DATA)
    texts, labels = intent.training_subset(texts, labels, 15)
    return intent.intent_train(texts=texts, labels=labels)


@pytest.fixture
def sales_kb(db):
    from knowledge.services import DocumentInput, source_sync

    source_sync(source_name="docs", kind="docs", documents=[
        DocumentInput(external_id="pricing", title="Plans and pricing", url="https://docs.example.org/pricing",
                      text="Plans and pricing. The Team plan costs 29 dollars per seat per month and includes the "
                           "widget and the knowledge base. The Business plan adds single sign-on and costs 59 dollars "
                           "per seat per month."),
        DocumentInput(external_id="password", title="Reset password", url="https://docs.example.org/password",
                      text="To reset your password open Settings, choose Security and click Reset password. A reset "
                           "link is emailed to the address on the account and expires after one hour."),
    ])
