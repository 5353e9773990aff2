"""External CRM adapters: deliver one outbox write, carrying its idempotency key, over HTTP (httpx).

- **webhook**: ``POST {endpoint}`` with the JSON event, an ``Idempotency-Key`` header and a Stripe-style signature
  ``X-Sdrbot-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` (the scheme of Stripe's
  webhook signatures). The receiver is expected to dedupe by the key, as Stripe's API does.
- **hubspot**: the shape of HubSpot's CRM v3 objects API — ``POST /crm/v3/objects/{contacts|deals|notes|tasks}/
  batch/upsert`` with ``idProperty`` = ``sdrbot_idempotency_key`` and ``id`` = the key, Bearer token auth. An upsert
  by a unique property makes a retry after a timeout update the record the first attempt created, never add one.

Errors are split in two: :class:`TransientDeliveryError` (timeouts, connection errors, 408/409/425/429, 5xx) is
retried through the outbox with the same key; :class:`PermanentDeliveryError` (other 4xx, a missing
configuration) marks the row dead at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

TRANSIENT_STATUS = {408, 409, 425, 429}


class DeliveryError(Exception):
    outcome = "error"


class TransientDeliveryError(DeliveryError):
    def __init__(self, message: str, outcome: str) -> None:
        super().__init__(message)
        self.outcome = outcome


class PermanentDeliveryError(DeliveryError):
    def __init__(self, message: str, outcome: str = "permanent_error") -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass(frozen=True)
class Delivery:
    status_code: int
    body: Any


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret`` (the value after ``v1=``)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(secret: str, header: str, body: bytes, *, tolerance_s: float = 300, now: float | None = None) -> bool:
    """Check an ``X-Sdrbot-Signature`` header (for receivers, and the tests' receiver): right HMAC, fresh time."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), parts.get("v1", ""))


def _post(url: str, *, json_body: dict, headers: dict[str, str], timeout: float, sign_secret: str = "") -> Delivery:
    body = json.dumps(json_body, separators=(",", ":"), sort_keys=True).encode()
    if sign_secret:
        ts = int(time.time())
        headers = {**headers, "X-Sdrbot-Signature": f"t={ts},v1={sign(sign_secret, ts, body)}"}
    try:
        with httpx.Client(timeout=timeout) as client:
            r = client.post(url, content=body, headers={"Content-Type": "application/json", **headers})
    except httpx.TimeoutException as exc:
        raise TransientDeliveryError(f"timed out after {timeout}s: {type(exc).__name__}", "timeout") from exc
    except httpx.TransportError as exc:
        raise TransientDeliveryError(f"{type(exc).__name__}: {exc}", "connection_error") from exc
    try:
        parsed: Any = r.json()
    except ValueError:
        parsed = r.text[:2000]
    if r.status_code >= 500 or r.status_code in TRANSIENT_STATUS:
        raise TransientDeliveryError(f"HTTP {r.status_code}: {str(parsed)[:500]}", f"http_{r.status_code}")
    if r.status_code >= 400:
        raise PermanentDeliveryError(f"HTTP {r.status_code}: {str(parsed)[:500]}", f"http_{r.status_code}")
    return Delivery(r.status_code, parsed)


def webhook_deliver(*, url: str, key: str, action: str, payload: dict, timeout: float | None = None) -> Delivery:
    """POST the event to a generic webhook. Raises the delivery errors above."""
    if not url:
        raise PermanentDeliveryError("the webhook adapter has no endpoint URL (console → Leads → Settings)", "not_configured")
    if not settings.CRM_WEBHOOK_SECRET:
        raise PermanentDeliveryError("CRM_WEBHOOK_SECRET is not set: webhook events must be signed", "not_configured")
    event = {"idempotency_key": key, "action": action, "data": payload}
    return _post(url, json_body=event, timeout=timeout or settings.CRM_TIMEOUT,
                 headers={"Idempotency-Key": key}, sign_secret=settings.CRM_WEBHOOK_SECRET)


# action → HubSpot object type
HUBSPOT_OBJECTS = {"contact_upsert": "contacts", "lead_outcome": "deals", "turn_note": "notes", "handoff_task": "tasks"}
HUBSPOT_ID_PROPERTY = "sdrbot_idempotency_key"


def hubspot_properties(action: str, key: str, payload: dict) -> dict[str, str]:
    """HubSpot property names and string values for one write (HubSpot takes every property as a string)."""
    p: dict[str, Any] = {HUBSPOT_ID_PROPERTY: key}
    contact = payload.get("contact") or {}
    lead = payload.get("lead") or {}
    if action == "contact_upsert":
        first, _, last = (contact.get("name") or "").partition(" ")
        p.update(email=contact.get("email", ""), firstname=first, lastname=last, company=contact.get("company", ""),
                 jobtitle=contact.get("role", ""))
    elif action == "lead_outcome":
        p.update(dealname=f"{contact.get('company') or contact.get('name') or 'Inbound lead'} — {lead.get('sub_intent') or 'inquiry'}",
                 amount=lead.get("budget_amount") or "", dealstage=lead.get("next_action", ""),
                 sdrbot_score=lead.get("score", 0), sdrbot_tier=lead.get("tier", ""),
                 description=payload.get("briefing", ""))
    elif action == "handoff_task":
        p.update(hs_task_subject=payload.get("subject", "Sales handoff"), hs_task_body=payload.get("briefing", ""),
                 hs_task_priority="HIGH", hs_timestamp=payload.get("occurred_at", ""))
    else:  # turn_note and anything else: a note on the timeline
        p.update(hs_note_body=payload.get("summary", json.dumps(payload, sort_keys=True)[:5000]),
                 hs_timestamp=payload.get("occurred_at", ""))
    return {k: "" if v is None else str(v) for k, v in p.items()}


def hubspot_deliver(*, base_url: str, key: str, action: str, payload: dict, timeout: float | None = None) -> Delivery:
    """Batch-upsert one record by the unique ``sdrbot_idempotency_key`` property. Raises the delivery errors."""
    if not base_url:
        raise PermanentDeliveryError("the HubSpot adapter has no API base URL", "not_configured")
    if not settings.CRM_HUBSPOT_TOKEN:
        raise PermanentDeliveryError("CRM_HUBSPOT_TOKEN is not set", "not_configured")
    obj = HUBSPOT_OBJECTS.get(action, "notes")
    body = {"inputs": [{"idProperty": HUBSPOT_ID_PROPERTY, "id": key, "properties": hubspot_properties(action, key, payload)}]}
    d = _post(f"{base_url.rstrip('/')}/crm/v3/objects/{obj}/batch/upsert", json_body=body,
              timeout=timeout or settings.CRM_TIMEOUT,
              headers={"Authorization": f"Bearer {settings.CRM_HUBSPOT_TOKEN}"})
    if not isinstance(d.body, dict) or not d.body.get("results"):
        raise TransientDeliveryError(f"unexpected HubSpot answer: {str(d.body)[:300]}", "bad_response")
    return d


def deliver(*, adapter: str, endpoint_url: str, key: str, action: str, payload: dict) -> Delivery:
    if adapter == "webhook":
        return webhook_deliver(url=endpoint_url, key=key, action=action, payload=payload)
    if adapter == "hubspot":
        return hubspot_deliver(base_url=endpoint_url, key=key, action=action, payload=payload)
    raise PermanentDeliveryError(f"unknown adapter {adapter!r}", "not_configured")
