"""Celery tasks of the CRM outbox (thin: ids in, one service call). Both are safe to run twice: delivery claims the
row with a lease, the sweep only queues rows nobody holds."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="crm.outbox_deliver", acks_late=True, time_limit=120, soft_time_limit=100)
def outbox_deliver(write_id: int) -> str:
    from crm import outbox

    row = outbox.outbox_deliver(write_id=write_id)
    return "skipped" if row is None else row.status


@shared_task(name="crm.outbox_sweep", time_limit=60, soft_time_limit=50)
def outbox_sweep() -> int:
    from crm import outbox

    return outbox.outbox_sweep()
