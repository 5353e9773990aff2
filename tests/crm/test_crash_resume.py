"""A turn whose process is SIGKILLed in the middle of a step's transaction (after the CRM rows were inserted, before
the commit): PostgreSQL rolls the step back, and the turn run again resumes after its last committed checkpoint and
writes every row exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conversations.models import Customer, Message, Ticket
from crm import services
from crm.models import Activity, Checkpoint, Lead, OutboxWrite, SlotValue
from drafts.services import DraftOutcome
from sdrbot.tracing import SpanCollector
from tests.conftest import ROOT, database_url
from tests.crm.conftest import configure

pytestmark = pytest.mark.django_db(transaction=True)

# Runs one qualification turn in a separate process that kills itself (SIGKILL: no cleanup, no rollback by Python)
# when the crm_write step inserts its checkpoint, i.e. inside that step's open transaction.
CHILD = textwrap.dedent("""
    import os, signal, sys
    import django
    django.setup()
    from django.db import connection
    from conversations.models import Message
    from crm import services
    from drafts.services import DraftOutcome
    from sdrbot.tracing import SpanCollector

    def die_in_crm_write(execute, sql, params, many, context):
        if sql.startswith('INSERT INTO "crm_checkpoint"') and params and "crm_write" in params:
            os.kill(os.getpid(), signal.SIGKILL)
        return execute(sql, params, many, context)

    m = Message.objects.select_related("ticket").get(pk=int(sys.argv[1]))
    outcome = DraftOutcome(body="", generator="offline", strategy="abstain", model="none", prompt_version_id=None,
                           citations=[], confidence=0.0, needs_human=False, abstain_reason="", grounding_score=None,
                           flags=[], category=None, category_confidence=None, intent="")
    with connection.execute_wrapper(die_in_crm_write):
        services.qualification_run(ticket=m.ticket, message=m, outcome=outcome, recorder=SpanCollector())
    print("not killed")
""")


def empty_outcome() -> DraftOutcome:
    return DraftOutcome(body="", generator="offline", strategy="abstain", model="none", prompt_version_id=None,
                        citations=[], confidence=0.0, needs_human=False, abstain_reason="", grounding_score=None,
                        flags=[], category=None, category_confidence=None, intent="")


def test_sigkill_inside_a_step_transaction_then_resume(sdr_model) -> None:
    from django.db import connection

    configure("webhook", "http://127.0.0.1:9/webhook")
    ticket = Ticket.objects.create(subject="x", channel="widget", customer=Customer.objects.create(name="Visitor"))
    m0 = Message.objects.create(ticket=ticket, role="customer", body="Can I get a demo of your product?", turn_index=0)
    services.qualification_run(ticket=ticket, message=m0, outcome=empty_outcome(), recorder=SpanCollector())
    m1 = Message.objects.create(ticket=ticket, role="customer", turn_index=1,
                                body="We need it for our 80 support agents, I'm the VP of Support at Initech.")
    env = {**os.environ, "DATABASE_URL": database_url(connection.settings_dict),
           "DJANGO_SETTINGS_MODULE": "sdrbot.settings_test"}
    child = subprocess.run([sys.executable, "-c", CHILD, str(m1.pk)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    lead = Lead.objects.get(ticket=ticket)
    thread = lead.thread_id
    # the committed steps are there; the killed step left nothing (its transaction died with the process)
    assert set(Checkpoint.objects.filter(thread_id=thread, turn_id=1).values_list("step", flat=True)) == {
        "sdr_intent", "slots", "score"}
    assert SlotValue.objects.filter(lead=lead, turn_index=1).exists()
    assert not Activity.objects.filter(lead=lead, turn_index=1).exists()
    assert not OutboxWrite.objects.filter(idempotency_key__startswith=f"{thread}:1:").exists()

    rec = SpanCollector()
    out = services.qualification_run(ticket=ticket, message=m1, outcome=empty_outcome(), recorder=rec)
    assert {s.name for s in rec.spans if s.metadata.get("resumed")} == {"sdr_intent", "slots", "score"}
    assert out.body == services.QUESTIONS["company"] or out.body.endswith("?")
    assert Activity.objects.filter(lead=lead, turn_index=1, kind="note").count() == 1
    assert list(OutboxWrite.objects.filter(idempotency_key__startswith=f"{thread}:1:").values_list("action", flat=True)) == ["turn_note"]
    assert Checkpoint.objects.filter(thread_id=thread, turn_id=1).count() == 5
    assert SlotValue.objects.filter(lead=lead, turn_index=1, slot="team_size").count() == 1
