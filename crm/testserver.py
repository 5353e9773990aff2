"""A local CRM that speaks both adapters' protocols, for tests and the chaos benchmark (not used in production).

- ``POST /webhook``: checks the ``X-Sdrbot-Signature`` HMAC, dedupes by ``Idempotency-Key`` like Stripe (a
  replayed key gets the first answer back, with ``Idempotent-Replayed: true``), stores one record per new key.
- ``POST /crm/v3/objects/{type}/batch/upsert``: HubSpot's batch upsert; checks the Bearer token, finds a record by
  the ``idProperty`` value and updates it, else creates one (``"new": true``).

Chaos: with probability ``hang_rate`` a request is *applied* and then the answer is held for ``hang_s`` seconds
(longer than the client's timeout), the failure seen in the field. ``creations`` counts records created per key,
so a duplicate (two records for one logical write) shows as a count of 2.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from crm.adapters import verify

_UPSERT = re.compile(r"^/crm/v3/objects/(\w+)/batch/upsert$")


class FakeCrm:
    def __init__(self, *, secret: str = "", token: str = "", hang_rate: float = 0.0, hang_s: float = 0.0,
                 seed: int = 0, fail_status: int | None = None) -> None:
        self.secret, self.token = secret, token
        self.hang_rate, self.hang_s = hang_rate, hang_s
        self.fail_status = fail_status  # answer every request with this status, applying nothing
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.records: dict[str, dict] = {}  # idempotency key → record
        self.creations: Counter[str] = Counter()  # records created per key (2+ is a duplicate)
        self.requests = 0
        self.hung = 0
        self.replayed = 0
        self.rejected = 0
        self._next_id = 1000
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, payload, extra = outer.handle(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): the write is applied all the same

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------------------------------------ protocol
    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, dict]:
        with self.lock:
            self.requests += 1
            hang = self.hang_rate > 0 and self.rng.random() < self.hang_rate
        if self.fail_status:
            return self.fail_status, {"message": "unavailable"}, {}
        if path == "/webhook":
            result = self._webhook(headers, body)
        elif (m := _UPSERT.match(path)) is not None:
            result = self._upsert(m.group(1), headers, body)
        else:
            return 404, {"message": "not found"}, {}
        if hang and result[0] < 300:
            with self.lock:
                self.hung += 1
            time.sleep(self.hang_s)  # applied, but the answer comes after the client stopped waiting
        return result

    def _create(self, key: str, record: dict) -> dict:
        self._next_id += 1
        record = {"id": str(self._next_id), **record}
        self.records[key] = record
        self.creations[key] += 1
        return record

    def _webhook(self, headers: dict[str, str], body: bytes) -> tuple[int, dict, dict]:
        if self.secret and not verify(self.secret, headers.get("x-sdrbot-signature", ""), body):
            with self.lock:
                self.rejected += 1
            return 401, {"error": "bad signature"}, {}
        key = headers.get("idempotency-key", "")
        if not key:
            return 400, {"error": "Idempotency-Key header required"}, {}
        event = json.loads(body)
        with self.lock:
            if key in self.records:
                self.replayed += 1
                return 200, self.records[key], {"Idempotent-Replayed": "true"}
            return 201, self._create(key, {"action": event.get("action"), "data": event.get("data")}), {}

    def _upsert(self, object_type: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, dict]:
        if self.token and headers.get("authorization") != f"Bearer {self.token}":
            with self.lock:
                self.rejected += 1
            return 401, {"status": "error", "message": "Authentication credentials not found.",
                         "category": "INVALID_AUTHENTICATION"}, {}
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        results = []
        with self.lock:
            for item in json.loads(body).get("inputs", []):
                key = item["id"]  # the idProperty value: our idempotency key, unique across object types
                existing = self.records.get(key)
                if existing is not None:
                    self.replayed += 1
                    existing["properties"].update(item.get("properties", {}))
                    existing["updatedAt"] = now
                    results.append({**existing, "new": False})
                else:
                    rec = self._create(key, {"objectType": object_type, "properties": dict(item.get("properties", {})), "createdAt": now,
                                             "updatedAt": now, "archived": False})
                    results.append({**rec, "new": True})
        return 200, {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}, {}

    # ------------------------------------------------------------------------------------------------- helpers
    def keys(self) -> set[str]:
        """The idempotency keys of the records held."""
        with self.lock:
            return set(self.records)

    def duplicates(self) -> int:
        with self.lock:
            return sum(n - 1 for n in self.creations.values() if n > 1)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
