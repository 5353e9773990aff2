"""The CRM outbox and its two adapters, through their real HTTP client code (httpx) against a local CRM that speaks
the webhook and HubSpot protocols (crm.testserver.FakeCrm); the chaos test runs real Celery workers and kills one."""

from __future__ import annotations

import signal
import time
import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from crm import adapters, outbox
from crm.models import Activity, OutboxAttempt, OutboxWrite
from tests.crm.conftest import SECRET, configure, start_worker

pytestmark = pytest.mark.django_db


def enqueue(n: int = 0, action: str = "turn_note", thread: str = "t1") -> OutboxWrite:
    row = outbox.outbox_enqueue(lead=None, thread_id=thread, turn_id=n, action=action,
                                payload={"summary": f"turn {n}", "contact": {"name": "Ana Lima", "email": "ana@acme.io"}})
    assert row is not None
    return row


def test_webhook_write_is_signed_keyed_and_delivered_once(fake_crm, crm_env, django_capture_on_commit_callbacks) -> None:
    crm = fake_crm()
    configure("webhook", f"{crm.url}/webhook")
    with django_capture_on_commit_callbacks() as queued:
        row = enqueue(3)
        again = enqueue(3)  # the same turn run twice records one write
    assert again.pk == row.pk and OutboxWrite.objects.count() == 1 and len(queued) == 1
    assert row.idempotency_key == "t1:3:turn_note" and row.status == "pending"
    done = outbox.outbox_deliver(write_id=row.pk)
    assert done.status == "delivered" and done.attempts == 1 and done.response["status_code"] == 201
    assert outbox.outbox_deliver(write_id=row.pk) is None  # a redelivered task finds nothing to do
    assert crm.keys() == {"t1:3:turn_note"} and crm.duplicates() == 0 and crm.requests == 1
    assert crm.records["t1:3:turn_note"]["data"]["summary"] == "turn 3"


def test_signature_scheme_and_bad_secret_is_a_dead_row(fake_crm, crm_env) -> None:
    body = b'{"a":1}'
    ts = int(time.time())
    header = f"t={ts},v1={adapters.sign(SECRET, ts, body)}"
    assert adapters.verify(SECRET, header, body) and not adapters.verify("other", header, body)
    assert not adapters.verify(SECRET, header, b'{"a":2}') and not adapters.verify(SECRET, f"t={ts - 1000},v1=x", body)
    crm = fake_crm()
    configure("webhook", f"{crm.url}/webhook")
    crm_env.CRM_WEBHOOK_SECRET = "wrong-secret"
    row = outbox.outbox_deliver(write_id=enqueue().pk)
    assert row.status == "failed" and row.attempts == 1 and "HTTP 401" in row.last_error
    assert crm.rejected == 1 and crm.keys() == set()


def test_hubspot_upsert_by_idempotency_property_survives_a_timeout(fake_crm, crm_env) -> None:
    crm = fake_crm(hang_rate=1.0, hang_s=1.0)  # applies, then answers after the 0.5 s client timeout
    configure("hubspot", crm.url)
    row = outbox.outbox_deliver(write_id=enqueue(1, action="contact_upsert").pk)
    assert row.status == "pending" and row.attempts == 1 and "timed out" in row.last_error
    assert crm.keys() == {"t1:1:contact_upsert"}  # applied although the client never heard back
    crm.hang_rate = 0.0
    OutboxWrite.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
    row = outbox.outbox_deliver(write_id=row.pk)
    assert row.status == "delivered" and row.attempts == 2
    assert row.response["body"]["results"][0]["new"] is False  # the retry found the first attempt's record
    assert crm.duplicates() == 0 and len(crm.records) == 1 and crm.replayed == 1
    rec = crm.records["t1:1:contact_upsert"]
    assert rec["objectType"] == "contacts" and rec["properties"]["email"] == "ana@acme.io"
    assert rec["properties"]["firstname"] == "Ana" and rec["properties"]["sdrbot_idempotency_key"] == "t1:1:contact_upsert"
    assert list(OutboxAttempt.objects.filter(write=row).values_list("number", "outcome")) == [(1, "timeout"), (2, "delivered")]


def test_dead_after_max_attempts_then_admin_redelivers(fake_crm, crm_env, admin_user, django_capture_on_commit_callbacks) -> None:
    crm_env.OUTBOX_MAX_ATTEMPTS = 3
    crm = fake_crm(fail_status=503)
    configure("webhook", f"{crm.url}/webhook")
    row = enqueue()
    for _ in range(3):
        OutboxWrite.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
        row = outbox.outbox_deliver(write_id=row.pk)
    assert row.status == "failed" and row.attempts == 3 and "HTTP 503" in row.last_error
    assert outbox.outbox_deliver(write_id=row.pk) is None  # dead rows are not retried by themselves
    crm.fail_status = None
    with django_capture_on_commit_callbacks(execute=False) as queued:
        row = outbox.outbox_redeliver(write_id=row.pk, actor=admin_user)
    assert row.status == "pending" and row.max_attempts == 6 and len(queued) == 1
    assert Activity.objects.get(kind="audit").actor == admin_user
    row = outbox.outbox_deliver(write_id=row.pk)
    assert row.status == "delivered" and row.attempts == 4 and crm.keys() == {"t1:0:turn_note"}
    with pytest.raises(ValueError, match="only a failed write"):
        outbox.outbox_redeliver(write_id=row.pk, actor=admin_user)


def test_lease_blocks_a_second_worker_and_sweeper_takes_over_a_dead_one(fake_crm, crm_env, django_capture_on_commit_callbacks) -> None:
    crm = fake_crm()
    configure("webhook", f"{crm.url}/webhook")
    row = enqueue()
    # a worker claimed it (lease in the future) and then died: nobody else may send it until the lease passes
    OutboxWrite.objects.filter(pk=row.pk).update(lease_until=timezone.now() + timedelta(seconds=30), attempts=1)
    assert outbox.outbox_deliver(write_id=row.pk) is None
    crm_env.OUTBOX_QUEUE = f"unconsumed-{uuid.uuid4().hex[:8]}"  # the sweeper's messages go where no worker listens
    assert outbox.outbox_sweep() == 0
    OutboxWrite.objects.filter(pk=row.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert outbox.outbox_sweep() == 1
    row = outbox.outbox_deliver(write_id=row.pk)
    assert row.status == "delivered" and row.attempts == 2 and crm.requests == 1


def test_no_adapter_means_internal_only() -> None:
    configure("none", "")
    assert outbox.outbox_enqueue(lead=None, thread_id="t", turn_id=0, action="turn_note", payload={}) is None
    assert OutboxWrite.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("adapter", ["webhook", "hubspot"])
def test_chaos_30pct_applied_then_timeout_and_a_killed_worker(fake_crm, adapter) -> None:
    """The failure from the field: 30% of writes are applied and then time out, and the worker delivering them is
    SIGKILLed mid-run and replaced. Every logical write must end up exactly once on the CRM."""
    turns = 150
    crm = fake_crm(hang_rate=0.3, hang_s=0.8, seed=11)
    configure(adapter, f"{crm.url}/webhook" if adapter == "webhook" else crm.url)
    queue = f"crm-chaos-{uuid.uuid4().hex[:8]}"
    env = {"CRM_WEBHOOK_SECRET": SECRET, "CRM_HUBSPOT_TOKEN": "pat-test-token", "CRM_TIMEOUT": "0.3",
           "OUTBOX_RETRY_BASE_SECONDS": "0.1", "OUTBOX_RETRY_MAX_SECONDS": "0.5", "OUTBOX_LEASE_SECONDS": "2",
           "OUTBOX_MAX_ATTEMPTS": "20"}
    from django.test import override_settings

    with override_settings(OUTBOX_QUEUE=queue, CRM_WEBHOOK_SECRET=SECRET, CRM_HUBSPOT_TOKEN="pat-test-token",
                           OUTBOX_MAX_ATTEMPTS=20):
        worker = start_worker(queue, env)
        try:
            thread = uuid.uuid4().hex
            for n in range(turns):
                with transaction.atomic():
                    outbox.outbox_enqueue(lead=None, thread_id=thread, turn_id=n, action="turn_note",
                                          payload={"summary": f"turn {n}"})
            deadline = time.monotonic() + 30
            while crm.requests < turns // 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            killed_at = crm.requests
            worker.send_signal(signal.SIGKILL)  # mid-delivery: leases held, tasks unacknowledged
            worker.wait()
            in_flight = OutboxWrite.objects.filter(status="pending", lease_until__isnull=False).count()
            worker = start_worker(queue, env)
            deadline = time.monotonic() + 120
            while OutboxWrite.objects.filter(status="pending").exists() and time.monotonic() < deadline:
                outbox.outbox_sweep()  # what beat does every OUTBOX_SWEEP_SECONDS
                time.sleep(0.5)
        finally:
            worker.kill()
            worker.wait()
    expected = {f"{thread}:{n}:turn_note" for n in range(turns)}
    assert crm.hung > 10 and killed_at < turns, (crm.hung, killed_at, in_flight)
    assert crm.duplicates() == 0, "a logical write was created twice on the CRM"
    assert expected - crm.keys() == set(), "a logical write never reached the CRM"
    assert crm.keys() == expected
    assert OutboxWrite.objects.filter(status="delivered").count() == turns
