"""The CRM outbox: separate thinking from doing.

A write to the external CRM is first a row (:class:`crm.models.OutboxWrite`) created in the same transaction as the
internal CRM rows, with the unique idempotency key ``{thread_id}:{turn_id}:{action}``. After commit a Celery task
(:func:`outbox_deliver`) claims the row with a lease (a conditional UPDATE: one worker at a time), sends it through
the adapter with that key, and records the attempt. A transient failure (timeout, 5xx…) puts the row back with
exponential backoff and full jitter; after ``max_attempts`` it is dead (``failed``) and listed for admins, who can
re-deliver it. A worker killed mid-delivery leaves a lease that expires; the beat sweeper (:func:`outbox_sweep`)
queues every due row whose lease has passed. Since every attempt carries the same key and the CRM dedupes by it,
a write that was applied but not acknowledged is never applied twice.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from crm import adapters
from crm.models import Activity, CrmSettings, Lead, OutboxAttempt, OutboxWrite

log = logging.getLogger(__name__)


def idempotency_key(*, thread_id: str, turn_id: int | str, action: str) -> str:
    """``{thread_id}:{turn_id}:{action}`` (ARCHITECTURE.md)."""
    return f"{thread_id}:{turn_id}:{action}"


def crm_settings() -> CrmSettings:
    obj, _ = CrmSettings.objects.get_or_create(pk=1)
    return obj


def outbox_enqueue(*, lead: Lead | None, thread_id: str, turn_id: int | str, action: str, payload: dict,
                   config: CrmSettings | None = None) -> OutboxWrite | None:
    """Record an external write (call inside the transaction that writes the internal rows). Returns the row, the
    existing row when the key was recorded already (a turn run twice), or None when no adapter is configured.
    Delivery is queued after commit."""
    config = config or crm_settings()
    if config.adapter == CrmSettings.Adapter.NONE:
        return None
    key = idempotency_key(thread_id=thread_id, turn_id=turn_id, action=action)
    try:
        with transaction.atomic():  # a savepoint: a duplicate key must not break the caller's transaction
            row = OutboxWrite.objects.create(idempotency_key=key, lead=lead, action=action, adapter=config.adapter,
                                             payload=payload, max_attempts=settings.OUTBOX_MAX_ATTEMPTS)
    except IntegrityError:
        return OutboxWrite.objects.get(idempotency_key=key)
    _queue_after_commit(row.pk)
    return row


def _send(write_id: int, countdown: float = 0) -> None:
    from crm.tasks import outbox_deliver as task

    task.apply_async((write_id,), countdown=countdown or None, queue=settings.OUTBOX_QUEUE)


def _queue_after_commit(write_id: int, countdown: float = 0) -> None:
    transaction.on_commit(lambda: _send(write_id, countdown))


def backoff_seconds(attempt: int) -> float:
    """Full-jitter exponential backoff: U(0, min(cap, base·2^(attempt-1))) seconds ("Exponential Backoff And
    Jitter", AWS Architecture Blog, 2015), with a floor of a tenth of the base so a retry never spins."""
    cap = min(settings.OUTBOX_RETRY_MAX_SECONDS, settings.OUTBOX_RETRY_BASE_SECONDS * 2 ** max(0, attempt - 1))
    return max(settings.OUTBOX_RETRY_BASE_SECONDS / 10, random.uniform(0, cap))


def outbox_deliver(*, write_id: int) -> OutboxWrite | None:
    """Claim the row (pending, due, lease free or expired), send it once, record the attempt. Returns the row, or
    None when there was nothing to do (gone, not pending, not due, or held by another worker). Never raises for a
    delivery failure: the row records it."""
    now = timezone.now()
    lease_until = now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    claimed = (OutboxWrite.objects.filter(pk=write_id, status=OutboxWrite.Status.PENDING, next_attempt_at__lte=now,
                                          attempts__lt=F("max_attempts"))
               .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
               .update(lease_until=lease_until, attempts=F("attempts") + 1, updated_at=now))
    if claimed != 1:
        _bury_exhausted(write_id)
        return None
    row = OutboxWrite.objects.get(pk=write_id)
    endpoint = crm_settings().endpoint_url
    t0 = time.perf_counter()
    outcome, error, response, status = "delivered", "", {}, OutboxWrite.Status.DELIVERED
    try:
        d = adapters.deliver(adapter=row.adapter, endpoint_url=endpoint, key=row.idempotency_key, action=row.action,
                             payload=row.payload)
        response = {"status_code": d.status_code, "body": d.body if isinstance(d.body, (dict, list)) else str(d.body)[:2000]}
    except adapters.TransientDeliveryError as exc:
        outcome, error = exc.outcome, str(exc)
        status = OutboxWrite.Status.FAILED if row.attempts >= row.max_attempts else OutboxWrite.Status.PENDING
    except adapters.PermanentDeliveryError as exc:
        outcome, error, status = exc.outcome, str(exc), OutboxWrite.Status.FAILED
    duration_ms = (time.perf_counter() - t0) * 1000
    done = timezone.now()
    fields: dict = {"status": status, "lease_until": None, "last_error": error[:5000], "updated_at": done}
    if status == OutboxWrite.Status.DELIVERED:
        fields.update(delivered_at=done, response=response)
    elif status == OutboxWrite.Status.PENDING:
        fields["next_attempt_at"] = done + timedelta(seconds=backoff_seconds(row.attempts))
    with transaction.atomic():
        # only while our lease holds: a worker that overran its lease must not overwrite the next one's outcome
        updated = OutboxWrite.objects.filter(pk=write_id, lease_until=lease_until).update(**fields)
        OutboxAttempt.objects.create(write_id=write_id, number=row.attempts, started_at=now, duration_ms=round(duration_ms, 1),
                                     outcome=outcome, error=error[:5000])
        if updated and status == OutboxWrite.Status.PENDING:
            delay = (fields["next_attempt_at"] - done).total_seconds()
            _queue_after_commit(write_id, countdown=delay)
    if status == OutboxWrite.Status.FAILED:
        log.warning("CRM write %s is dead after %s attempts: %s", row.idempotency_key, row.attempts, error[:200])
    row.refresh_from_db()
    return row


def _bury_exhausted(write_id: int) -> None:
    """A row whose last attempt died with its worker (attempts used up, lease expired) becomes dead."""
    now = timezone.now()
    OutboxWrite.objects.filter(pk=write_id, status=OutboxWrite.Status.PENDING, attempts__gte=F("max_attempts")).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)).update(
        status=OutboxWrite.Status.FAILED, lease_until=None, updated_at=now,
        last_error="attempts exhausted (the last attempt's worker was lost)")


def outbox_sweep(*, limit: int = 500) -> int:
    """Beat: queue every pending row that is due and not held (lost tasks, dead workers). Returns how many."""
    now = timezone.now()
    ids = list(OutboxWrite.objects.filter(status=OutboxWrite.Status.PENDING, next_attempt_at__lte=now)
               .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
               .order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    for pk in ids:
        _send(pk)
    return len(ids)


@transaction.atomic
def outbox_redeliver(*, write_id: int, actor) -> OutboxWrite:
    """An admin sends a dead row again: back to pending with a fresh set of attempts, audited, queued after commit.
    Raises ``ValueError`` when the row is not failed."""
    row = OutboxWrite.objects.select_for_update().get(pk=write_id)
    if row.status != OutboxWrite.Status.FAILED:
        raise ValueError(f"only a failed write can be re-delivered; this one is {row.status}")
    now = timezone.now()
    OutboxWrite.objects.filter(pk=row.pk).update(
        status=OutboxWrite.Status.PENDING, next_attempt_at=now, lease_until=None, updated_at=now,
        max_attempts=row.attempts + settings.OUTBOX_MAX_ATTEMPTS)
    Activity.objects.create(lead_id=row.lead_id, kind=Activity.Kind.AUDIT, actor=actor,
                            subject=f"CRM write {row.idempotency_key} re-delivered",
                            body=f"after {row.attempts} attempts; last error: {row.last_error[:500]}")
    _queue_after_commit(row.pk)
    row.refresh_from_db()
    return row
