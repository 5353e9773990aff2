"""``manage.py sdr_intent_train`` and the sales part of ``demo_setup``."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from conversations.models import Ticket
from crm import intent
from crm.models import CrmSettings
from drafts.models import ClassifierModel
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.django_db


def test_sdr_intent_train_small_subset_stores_an_active_model_with_held_out_figures() -> None:
    out = StringIO()
    call_command("sdr_intent_train", data=SHARED_DATA, limit_per_label=12, stdout=out)
    figures = json.loads(out.getvalue())
    model = ClassifierModel.objects.get(target=intent.TARGET, is_active=True)
    assert set(model.labels) == {"out_of_scope", "support", "sales/pricing", "sales/demo_request",
                                 "sales/product_question", "sales/objection", "sales/partnership"}
    assert 0 <= figures["oos_threshold"] < 1 and figures["test_n"] > 10 and figures["test_accuracy"] > 0.5


def test_dataset_mapping_and_split_are_deterministic() -> None:
    texts, labels = intent.dataset(SHARED_DATA)
    assert len(texts) == len(set(t.lower() for t in texts)) and len(texts) > 1000
    assert labels[texts.index("EMI")] == "sales/pricing" if "EMI" in texts else True
    assert intent.split(labels) == intent.split(labels)
    tr, dv, te = intent.split(labels)
    assert not set(tr) & set(te) and not set(dv) & set(te) and len(tr) + len(dv) + len(te) == len(labels)


def test_demo_setup_sales_part(django_capture_on_commit_callbacks) -> None:
    from sdrbot.management.commands.demo_setup import Command

    cmd = Command(stdout=StringIO())
    cmd._sales(SHARED_DATA, {"stdout": StringIO()})
    assert ClassifierModel.objects.filter(target=intent.TARGET, is_active=True).count() == 1
    assert CrmSettings.objects.get(pk=1).booking_link.startswith("https://")
    with django_capture_on_commit_callbacks() as queued:
        cmd._sales_inquiries()
        cmd._sales_inquiries()  # idempotent
    assert Ticket.objects.filter(metadata__sales_demo=True).count() == 2 and len(queued) == 2
