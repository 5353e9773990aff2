"""Schemathesis against the public widget API's own OpenAPI schema, through the WSGI application (in process, on the
test database): generated requests — valid and malformed — to every operation must never get a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from conversations.models import Category, Ticket
from conversations.services import site_key_create, widget_conversation_start, widget_message_post
from drafts import rollout
from drafts.models import Draft

ORIGIN = "https://shop.example"
pytestmark = pytest.mark.django_db


@pytest.fixture
def widget_world(db, settings):
    """A site key, a conversation with a customer message and a bot reply, and fast streams."""
    from django.db import connection

    assert connection.settings_dict["NAME"].startswith("test_"), connection.settings_dict["NAME"]
    settings.WIDGET_STREAM_SECONDS = 0.2
    settings.WIDGET_STREAM_POLL_SECONDS = 0.05
    settings.WIDGET_LONGPOLL_MAX_SECONDS = 0.2
    category = Category.objects.create(slug="account", name="Account", phase="customer_facing", auto_send=True)
    site = site_key_create(name="fuzz", allowed_origins=[ORIGIN])
    conversation, token = widget_conversation_start(site_key=site, category=category)
    message = widget_message_post(conversation=conversation, body="how do I delete my account")
    draft = Draft.objects.get(message=message)
    Draft.objects.filter(pk=draft.pk).update(status="ready", body="Settings > Account > Delete.", confidence=0.9,
                                             category=category)
    rollout.draft_autosend(draft_id=draft.pk)
    assert Ticket.objects.get(pk=message.ticket_id).status == "auto_replied"
    return {"site": site, "token": token, "conversation": conversation}


EXAMPLES = 20  # per operation and mode: 11 operations x 2 modes, about 30 s on 2 cores


def test_public_api_never_answers_5xx(widget_world) -> None:
    """Every operation of the schema, with generated valid (positive) and invalid (negative) requests; the real
    site key, conversation token and origin are sent so requests get past authentication."""
    from django.core import signing
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from conversations.api import STREAM_SALT
    from sdrbot.wsgi import application

    headers = {"X-Site-Key": widget_world["site"].key, "Authorization": f"Bearer {widget_world['token']}",
               "Origin": ORIGIN}
    stream_token = signing.dumps({"c": widget_world["conversation"].pk}, salt=STREAM_SALT)
    seen: list[tuple[str, str, int]] = []
    # as Django's test client does: requests must not close the test's connection (its transaction holds the data)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        schema = schemathesis.openapi.from_wsgi("/api/widget/v1/schema/", application)
        operations = [result.ok() for result in schema.get_all_operations()]
        _fuzz(operations, headers, stream_token, seen)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert len(operations) >= 10
    assert {(m.upper(), p) for m, p, _ in seen} == {(o.method.upper(), o.path) for o in operations}
    statuses = {code for _, _, code in seen}
    assert all(code < 500 for code in statuses)
    # the fuzzing reached past authentication: successes and validation refusals both occurred
    assert {200, 201} & statuses and 400 in statuses


def _fuzz(operations, headers, stream_token, seen) -> None:
    from hypothesis import given

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                                 suppress_health_check=list(HealthCheck))
            def run(case) -> None:
                if operation.path.endswith("/stream") and mode == GenerationMode.POSITIVE:
                    case.query = {**(case.query or {}), "stream_token": stream_token}
                response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
                seen.append((operation.method, operation.path, response.status_code))

            run()
