"""Sales qualification in conversation: one turn of a lead, as a small state machine checkpointed after every step.

:func:`qualification_run` is called by the drafting pipeline (drafts.services.draft_generate) once the support
pipeline has composed its answer, on the same trace. For a sales conversation it runs, one span and one checkpoint
each:

``sdr_intent`` (sales / support / out of scope + sub-intent) → ``slots`` (extract, store with their turn; a later
answer supersedes an earlier one, both kept) → ``score`` (rules → score, tier, next action) → ``crm_write``
(internal CRM rows and the outbox rows, one transaction) → ``reply`` (the next question, one at a time, or the
routing message).

Every step writes its checkpoint (the agent's whole state) in the same transaction as its rows, so a turn run
again — a worker killed mid-turn, a redelivered task — resumes after its last checkpoint and does nothing twice;
the outbox's unique idempotency keys guard the external writes as well. A support question inside a sales
conversation keeps the support pipeline's answer; a sales question inside a support ticket starts a lead.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from crm import outbox, scoring, slots
from crm.models import Activity, Checkpoint, Company, Contact, CrmSettings, Lead, SlotValue

log = logging.getLogger(__name__)

STEPS = ["sdr_intent", "slots", "score", "crm_write", "reply"]
# the order in which missing slots are asked for (one per turn); role also stands for authority
QUESTION_ORDER = ["need", "company", "team_size", "role", "timeline", "budget", "email", "name"]
QUESTIONS = {
    "need": "What are you hoping to solve with us?",
    "company": "Which company are you with?",
    "team_size": "Roughly how many people would use it?",
    "role": "What's your role there — will you be the one deciding on this?",
    "timeline": "When are you hoping to have something in place?",
    "budget": "Do you have a budget range in mind?",
    "email": "What's the best email to send the details to?",
    "name": "And who do I have the pleasure of talking with?",
}
OPENERS = {
    "pricing": "Happy to help with pricing.",
    "demo_request": "Happy to set up a demo.",
    "product_question": "Good question.",
    "objection": "That's a fair concern, and thanks for saying it.",
    "partnership": "Thanks for your interest in partnering with us.",
}
SUPPORT_MIN_CONFIDENCE = 0.6  # a support prediction below this inside a sales chat is treated as an answer


def _checkpoints(thread_id: str, turn: int) -> dict[str, dict]:
    return {c.step: c.state for c in Checkpoint.objects.filter(thread_id=thread_id, turn_id=turn)}


def _checkpoint(thread_id: str, turn: int, step: str, state: dict) -> None:
    # not get_or_create: the caller read this turn's checkpoints first, and a racing twin fails on the unique key
    Checkpoint.objects.create(thread_id=thread_id, turn_id=turn, step=step, seq=STEPS.index(step), state=state)


def current_slots(lead: Lead) -> dict[str, dict]:
    """slot → {"value", "normalized", "quote", "turn"} of the current values."""
    return {v.slot: {"value": v.value, "normalized": v.normalized, "quote": v.quote, "turn": v.turn_index}
            for v in SlotValue.objects.filter(lead=lead, is_current=True)}


def _state(lead: Lead | None, turn: int, cur: dict | None = None, **extra) -> dict:
    base: dict[str, Any] = {"turn_id": turn, "lead_id": lead.pk if lead else None}
    if lead is not None:
        base.update(thread_id=str(lead.thread_id), status=lead.status, intent=lead.intent, sub_intent=lead.sub_intent,
                    slots=current_slots(lead) if cur is None else cur, score=lead.score, tier=lead.tier, next_action=lead.next_action)
    return {**base, **extra}


def _last_asked(lead: Lead, before_turn: int) -> str:
    asked = [(t, s) for s, t in (lead.asked or {}).items() if t < before_turn]
    return max(asked)[1] if asked else ""


def qualification_run(*, ticket, message, outcome, recorder):
    """Qualify the lead on this turn and return the draft outcome to store (``outcome`` unchanged when the turn is
    not a sales one). ``ticket``/``message`` are the conversation's Ticket and the customer Message being answered;
    ``outcome`` is drafts.services.DraftOutcome; ``recorder`` the turn's TraceRecorder. Safe to run twice."""
    from crm import intent as intent_mod
    from sdrbot.embeddings import get_embedder

    from drafts.classifier import active_model_id

    thread_id, turn = str(ticket.thread_id), message.turn_index
    model_id = active_model_id(intent_mod.TARGET)
    if model_id is None:
        return outcome  # no intent model trained (manage.py sdr_intent_train): the pipeline is unchanged
    done = _checkpoints(thread_id, turn)
    lead = Lead.objects.filter(ticket=ticket).first()

    with recorder.span("sdr_intent", "classify", input={"message": message.body[:2000]}) as s:
        if "sdr_intent" in done:
            st = done["sdr_intent"]["sdr_intent"]
            s.metadata["resumed"] = True
        else:
            # the drafting step embedded the same text (its first 2,000 characters) already
            embedding = outcome.embedding if outcome.embedding is not None else get_embedder().embed([message.body[:2000]])[0]
            pred = intent_mod.intent_classify(embedding, model_id=model_id)
            if pred is None:  # trained with another embedding model
                s.output = {"skipped": "the sdr_intent model does not match the embedding model"}
                return outcome
            st = {"intent": pred.intent, "sub_intent": pred.sub_intent, "confidence": pred.confidence,
                  "top": pred.top}
        s.output = st
    in_sales = lead is not None
    support_here = st["intent"] == "support" and st["confidence"] >= SUPPORT_MIN_CONFIDENCE
    if not in_sales and st["intent"] != "sales":
        return outcome  # support or out of scope, no lead: the support pipeline's answer stands
    if "sdr_intent" not in done:
        _checkpoint(thread_id, turn, "sdr_intent", _state(lead, turn, **{"sdr_intent": st}))

    config = outbox.crm_settings()
    rules = config.scoring_rules or scoring.DEFAULT_RULES

    # ------------------------------------------------------------------ slots
    with recorder.span("slots", "tool") as s:
        if "slots" in done:
            s.metadata["resumed"] = True
            lead = Lead.objects.get(pk=done["slots"]["lead_id"])
            ex_flags, refused_now = done["slots"]["flags"], done["slots"]["refused"]
        else:
            # a confident support question is not read as a bare answer to our last question
            asked = "" if support_here or lead is None else _last_asked(lead, turn)
            ex, source = _extract(message.body, asked, recorder, s)  # before the lock: it may call the chat model
            with transaction.atomic():
                if lead is None:
                    lead = _lead_for(ticket, st)
                    _channel_email(ticket, ex)
                else:
                    lead = Lead.objects.select_for_update().get(pk=lead.pk)
                ex_flags, refused_now = _slots_store(lead, message, ex, asked, source)
                cur = current_slots(lead)
                _checkpoint(thread_id, turn, "slots", _state(lead, turn, cur, flags=ex_flags, refused=refused_now,
                                                               sdr_intent=st))
        if "slots" in done:
            cur = current_slots(lead)
        s.output = {"lead_id": lead.pk, "flags": ex_flags, "refused": refused_now,
                    "slots": {k: v["value"] for k, v in cur.items()}}

    # a support question inside a sales chat goes to the support pipeline, unless the turn answered our questions
    filled_now = [k for k, v in cur.items() if v["turn"] == turn]
    support_here = support_here and in_sales and not filled_now

    # ------------------------------------------------------------------ score
    with recorder.span("score", "tool") as s:
        if "score" in done:
            s.metadata["resumed"] = True
            lead.refresh_from_db()
        else:
            with transaction.atomic():
                lead = Lead.objects.select_for_update().get(pk=lead.pk)
                r = _score(lead, rules, st, support_here, cur, message.body)
                _checkpoint(thread_id, turn, "score", _state(lead, turn, cur, fired=r.fired, handoff=r.handoff_reasons))
        s.output = {"score": lead.score, "tier": lead.tier, "next_action": lead.next_action,
                    "fired": [f["rule"] for f in lead.fired_rules], "handoff": lead.handoff_reasons}

    # ------------------------------------------------------------------ decide, write the CRM (internal + outbox)
    with recorder.span("crm_write", "tool") as s:
        if "crm_write" in done:
            s.metadata["resumed"] = True
            decision = done["crm_write"]["decision"]
            lead.refresh_from_db()
        else:
            with transaction.atomic():
                lead = Lead.objects.select_for_update(of=("self",)).select_related("contact", "company").get(pk=lead.pk)
                decision = _decide_and_write(lead, message, st, ex_flags, refused_now, support_here, config, outcome, cur)
                _checkpoint(thread_id, turn, "crm_write", _state(
                    lead, turn, cur, decision=decision,
                    retrieved_context=[{k: c.get(k) for k in ("title", "url", "chunk_id")} for c in outcome.citations[:5]]))
        s.output = decision

    # ------------------------------------------------------------------ reply
    with recorder.span("reply", "generate") as s:
        if "reply" in done:
            s.metadata["resumed"] = True
            reply = done["reply"]["reply"]
        else:
            reply = _reply(lead, st, decision, outcome, config, cur)
            _checkpoint(thread_id, turn, "reply", _state(lead, turn, cur, reply=reply))
        s.output = reply
    if reply is None:
        return outcome
    flags = list(dict.fromkeys([*outcome.flags, *reply["flags"]]))
    # instructions inside the message keep the draft for a human, as the support pipeline decided
    needs_human = reply["needs_human"] or "prompt_injection" in outcome.flags
    return dataclasses.replace(outcome, body=reply["body"], strategy=reply["strategy"], confidence=reply["confidence"],
                               needs_human=needs_human, abstain_reason=reply["abstain_reason"], flags=flags,
                               citations=outcome.citations if reply["keeps_answer"] else [],
                               latency_ms=recorder.step_latency_ms())


def _lead_for(ticket, st: dict) -> Lead:
    now = timezone.now()
    contact = None
    if ticket.customer_id:
        contact, _ = Contact.objects.get_or_create(customer_id=ticket.customer_id, defaults={
            "name": ticket.customer.name[:200], "email": ticket.customer.email})
    lead, _ = Lead.objects.get_or_create(ticket=ticket, defaults={
        "thread_id": ticket.thread_id, "contact": contact, "status": Lead.Status.NEW, "intent": st["intent"],
        "sub_intent": st["sub_intent"], "created_at": now, "updated_at": now})
    return Lead.objects.select_for_update().get(pk=lead.pk)


def _channel_email(ticket, ex: slots.Extraction) -> None:
    """An email the channel already knows (the widget's visitor form, an email ticket) fills the slot at the lead's
    first turn, if valid, so the agent does not ask for it."""
    email, _ = slots.check_email(ticket.customer.email) if ticket.customer_id and ticket.customer.email else ("", "")
    if email and ex.get("email") is None:
        ex.slots.append(slots.Extracted("email", email, {"domain": email.split("@")[1], "from_channel": True},
                                        f"(given to the {ticket.get_channel_display().lower()} channel)"))


def _extract(text: str, asked: str, recorder, span) -> tuple[slots.Extraction, str]:
    """The chat model's structured output when one is configured (crm.llm_slots), else the offline extractor."""
    from drafts import llm

    if llm.llm_enabled():
        from crm import llm_slots

        ex = llm_slots.extract(text, asked=asked, recorder=recorder, parent=span)
        return ex, slots.SOURCE if any(f["flag"] == "llm_slots_fallback" for f in ex.flags) else llm_slots.SOURCE
    return slots.extract(text, asked=asked), slots.SOURCE


def _slots_store(lead: Lead, message, ex: slots.Extraction, asked: str, source: str) -> tuple[list[dict], list[str]]:
    """Store the extracted values (superseding earlier ones), the flags and refusals. Returns (flags, refused)."""
    turn = message.turn_index
    current = {v.slot: v for v in SlotValue.objects.filter(lead=lead, is_current=True)}
    flags = [{**f, "turn": turn} for f in ex.flags]
    for e in ex.slots:
        old = current.get(e.slot)
        if old is not None and (old.value == e.value or e.normalized.get("from_email_domain")):
            continue  # a company guessed from the email domain never overrides one the prospect named
        if old is not None:
            SlotValue.objects.filter(pk=old.pk).update(is_current=False)
            flags.append({"flag": "answer_changed", "slot": e.slot, "from": old.value, "to": e.value,
                          "from_turn": old.turn_index, "turn": turn, "quote": e.quote[:200]})
        SlotValue.objects.create(lead=lead, slot=e.slot, value=e.value[:500], normalized=e.normalized,
                                 quote=e.quote[:2000], turn_index=turn, message=message, source=source)
    refused: list[str] = []
    if ex.refused:
        refused = [asked] if asked and not ex.get(asked) else []
        flags.append({"flag": "declined_details", "turn": turn, "quote": message.body[:200]})
    lead.flags = [*lead.flags, *flags]
    lead.refused = list(dict.fromkeys([*lead.refused, *refused]))
    lead.last_turn = turn
    lead.updated_at = timezone.now()
    lead.save(update_fields=["flags", "refused", "last_turn", "updated_at"])
    return flags, refused


def _conversation_text(lead: Lead) -> str:
    from conversations.models import Message

    return "\n".join(Message.objects.filter(ticket_id=lead.ticket_id, role=Message.Role.CUSTOMER)
                     .order_by("turn_index").values_list("body", flat=True))


def _score(lead: Lead, rules: dict, st: dict, support_here: bool, current: dict[str, dict], text: str) -> scoring.Routing:
    angry = any(f.get("flag") == "angry" for f in lead.flags)
    support_turns = sum(1 for f in lead.flags if f.get("flag") == "support_turn") + int(support_here)
    # the hard rules read the whole conversation; a first turn is just this message (no query)
    conversation = text if lead.last_turn <= 0 and not lead.flags else _conversation_text(lead)
    r = scoring.route(current=current, rules=rules, conversation_text=conversation,
                      angry=angry, intent="support" if support_here else lead.intent or st["intent"],
                      support_turns=support_turns)
    lead.score, lead.tier, lead.fired_rules, lead.handoff_reasons = r.score, r.tier, r.fired, r.handoff_reasons
    if lead.decided_at is None or r.next_action == "human_handoff":
        lead.next_action = r.next_action
    if st["intent"] == "sales" and not lead.sub_intent:
        lead.sub_intent = st["sub_intent"]
    lead.updated_at = timezone.now()
    lead.save(update_fields=["score", "tier", "fired_rules", "handoff_reasons", "next_action", "sub_intent", "updated_at"])
    return r


def next_question(lead: Lead, current: dict[str, dict]) -> str:
    """The first slot in :data:`QUESTION_ORDER` that is missing, not declined and not asked yet ("" when none)."""
    for slot in QUESTION_ORDER:
        if slot in current or slot in lead.refused or slot in (lead.asked or {}):
            continue
        if slot == "role" and "authority" in current:
            continue
        return slot
    return ""


def _decide_and_write(lead: Lead, message, st: dict, flags: list[dict], refused_now: list[str], support_here: bool,
                      config: CrmSettings, outcome, current: dict[str, dict]) -> dict:
    """Decide this turn (ask a question or route), update the lead and contact, write the activity and the outbox
    rows. Returns the decision: {"kind": "ask"|"route"|"support_answer"|"routed_already", "slot", "action", …}."""
    turn, thread_id = message.turn_index, str(lead.thread_id)
    now = timezone.now()
    _contact_sync(lead, current)
    email_new = "email" in current and current["email"]["turn"] == turn
    bad_email = next((f for f in flags if f["flag"] == "email_refused"), None)
    decided_before = lead.decided_at is not None
    declined_all = sum(1 for f in lead.flags if f.get("flag") == "declined_details") >= 2 or any(
        w in message.body.lower() for w in ("just give me the price", "just tell me the price", "just send me the link",
                                            "no more questions", "stop asking"))
    decision: dict[str, Any] = {"turn": turn, "first": not lead.asked}
    if support_here:
        decision.update(kind="support_answer")
        lead.flags = [*lead.flags, {"flag": "support_turn", "turn": turn, "quote": message.body[:200]}]
        if lead.next_action == "support_ticket" and not decided_before:
            decision.update(kind="route", action="support_ticket")
    elif decided_before and lead.next_action != "human_handoff" or decided_before and lead.status == Lead.Status.HANDED_OFF:
        decision.update(kind="routed_already", action=lead.next_action)
    elif lead.next_action == "human_handoff":
        decision.update(kind="route", action="human_handoff")
    elif bad_email and "email" not in current and lead.asked.get("email_retry") is None:
        decision.update(kind="ask", slot="email", retry=True, reason=bad_email.get("reason", ""))
        lead.asked = {**lead.asked, "email_retry": turn}
    else:
        slot = "" if declined_all else next_question(lead, current)
        if slot:
            decision.update(kind="ask", slot=slot)
            lead.asked = {**lead.asked, slot: turn}
        else:
            decision.update(kind="route", action=lead.next_action or "self_serve", declined=declined_all)
    decision["declined_now"] = refused_now

    status_for = {"book_meeting": Lead.Status.QUALIFIED, "human_handoff": Lead.Status.HANDED_OFF,
                  "self_serve": Lead.Status.DISQUALIFIED, "support_ticket": Lead.Status.DISQUALIFIED}
    fields = ["asked", "flags", "status", "updated_at"]
    if decision["kind"] == "route":
        lead.status = status_for[decision["action"]]
        lead.next_action = decision["action"]
        lead.decided_at = lead.decided_at or now
        fields += ["next_action", "decided_at"]
    elif lead.status == Lead.Status.NEW:
        lead.status = Lead.Status.QUALIFYING
    lead.briefing, lead.briefing_data = briefing(lead, current)
    lead.updated_at = now
    lead.save(update_fields=[*fields, "briefing", "briefing_data"])

    summary = (f"Turn {turn}: intent {st['intent']}{'/' + st['sub_intent'] if st['sub_intent'] else ''}; "
               f"score {lead.score} (tier {lead.tier}); "
               + (f"asked for {decision['slot']}" if decision["kind"] == "ask" else
                  f"routed: {decision.get('action')}" if decision["kind"] == "route" else decision["kind"]))
    Activity.objects.create(lead=lead, kind=Activity.Kind.NOTE, subject=summary[:300], body=message.body[:5000],
                            turn_index=turn)
    payload = {"occurred_at": now.isoformat(), "summary": summary, "lead": _lead_payload(lead, current),
               "contact": _contact_payload(lead, current)}
    outbox.outbox_enqueue(lead=lead, thread_id=thread_id, turn_id=turn, action="turn_note", payload=payload, config=config)
    if email_new:
        outbox.outbox_enqueue(lead=lead, thread_id=thread_id, turn_id=turn, action="contact_upsert", payload=payload,
                              config=config)
    if decision["kind"] == "route" and not decided_before or decision["kind"] == "route" and decision["action"] == "human_handoff":
        kind = {"book_meeting": Activity.Kind.MEETING_REQUEST, "human_handoff": Activity.Kind.HANDOFF}.get(
            decision["action"], Activity.Kind.TASK)
        Activity.objects.create(lead=lead, kind=kind, turn_index=turn, body=lead.briefing,
                                subject=f"{lead.get_next_action_display()}: {lead.contact or 'prospect'}"[:300],
                                due_at=now + timedelta(hours=4) if kind == Activity.Kind.HANDOFF else None)
        full = {**payload, "briefing": lead.briefing, "subject": f"Sales handoff: {lead.contact or 'prospect'}"}
        outbox.outbox_enqueue(lead=lead, thread_id=thread_id, turn_id=turn, action="lead_outcome", payload=full,
                              config=config)
        if decision["action"] == "human_handoff":
            outbox.outbox_enqueue(lead=lead, thread_id=thread_id, turn_id=turn, action="handoff_task", payload=full,
                                  config=config)
    return decision


def _contact_sync(lead: Lead, current: dict[str, dict]) -> None:
    contact = lead.contact
    lead_fields = []
    if contact is None:
        contact = Contact.objects.create()
        lead.contact = contact
        lead_fields.append("contact")
    updates = {}
    for slot, attr in (("name", "name"), ("email", "email"), ("role", "role")):
        if slot in current and getattr(contact, attr) != current[slot]["value"][:200]:
            updates[attr] = current[slot]["value"][:200]
    company = lead.company
    if "company" in current:
        name = current["company"]["value"][:200]
        domain = (current["company"]["normalized"] or {}).get("from_email_domain", "")
        if company is None or company.name != name:
            company = (Company.objects.filter(domain=domain).first() if domain else None) or \
                Company.objects.filter(name__iexact=name, domain="").first() or Company.objects.create(name=name, domain=domain)
            lead.company = company
            updates["company"] = company
            lead_fields.append("company")
    if updates:
        for k, v in updates.items():
            setattr(contact, k, v)
        contact.updated_at = timezone.now()
        contact.save(update_fields=[*updates, "updated_at"])
    if lead_fields:
        lead.save(update_fields=lead_fields)


def _lead_payload(lead: Lead, current: dict[str, dict]) -> dict:
    budget = current.get("budget", {}).get("normalized", {})
    return {"lead_id": lead.pk, "thread_id": str(lead.thread_id), "status": lead.status, "score": lead.score,
            "tier": lead.tier, "next_action": lead.next_action, "sub_intent": lead.sub_intent,
            "budget_amount": budget.get("amount"), "budget_currency": budget.get("currency"),
            "slots": {k: v["value"] for k, v in current.items()}}


def _contact_payload(lead: Lead, current: dict[str, dict]) -> dict:
    return {k: current[k]["value"] for k in ("name", "email", "company", "role") if k in current}


BANT = [("budget", "Budget"), ("authority", "Authority"), ("need", "Need"), ("timeline", "Timeline")]


def briefing(lead: Lead, current: dict[str, dict]) -> tuple[str, dict]:
    """The sales rep's briefing: who, what they need, BANT with the customer's own words quoted, the recommended
    next step, and what to watch (changed answers, ignored instructions, declined questions). Returns (text, data)."""
    who_bits = [current[k]["value"] for k in ("name",) if k in current]
    role = current.get("role", {}).get("value")
    company = current.get("company", {}).get("value")
    who = (who_bits[0] if who_bits else "An unnamed prospect") + (f", {role}" if role else "") + (f" at {company}" if company else "")
    if "email" in current:
        who += f" ({current['email']['value']})"
    if "team_size" in current:
        who += f"; team of {current['team_size']['value']}"
    bant = []
    for slot, label in BANT:
        v = current.get(slot)
        if v:
            bant.append({"slot": slot, "label": label, "value": v["value"], "quote": v["quote"], "turn": v["turn"]})
        else:
            bant.append({"slot": slot, "label": label, "value": "declined" if slot in lead.refused else "unknown",
                         "quote": "", "turn": None})
    action = lead.get_next_action_display() if lead.next_action else "keep qualifying"
    watch = [f for f in lead.flags if f.get("flag") in ("answer_changed", "instruction_ignored", "email_refused",
                                                         "declined_details", "angry")]
    lines = [f"Who: {who}.", f"Needs: {current['need']['quote'] if 'need' in current else 'not stated yet'}", "BANT:"]
    for b in bant:
        lines.append(f"- {b['label']}: {b['value']}" + (f' — "{b["quote"]}" (turn {b["turn"]})' if b["quote"] else ""))
    lines.append(f"Score {lead.score}/100, tier {lead.tier or '—'}: "
                 + (", ".join(f"{f['label']} (+{f['points']})" for f in lead.fired_rules) or "no rule fired"))
    if lead.handoff_reasons:
        lines.append("Handoff because: " + "; ".join(lead.handoff_reasons))
    lines.append(f"Recommended next step: {action}.")
    for f in watch:
        if f["flag"] == "answer_changed":
            lines.append(f"Note: {f['slot']} changed from {f['from']} (turn {f['from_turn']}) to {f['to']} (turn {f['turn']}).")
        elif f["flag"] == "instruction_ignored":
            lines.append(f'Note: instructions in the message were ignored (turn {f["turn"]}): "{f["quote"][:120]}"')
        elif f["flag"] == "email_refused":
            lines.append(f"Note: email {f['quote'][:80]} refused ({f.get('reason', '')}) on turn {f['turn']}.")
        elif f["flag"] == "declined_details":
            lines.append(f"Note: the prospect declined to give details on turn {f['turn']}.")
        elif f["flag"] == "angry":
            lines.append(f'Note: the prospect sounded upset on turn {f["turn"]}: "{f["quote"][:120]}"')
    data = {"who": who, "bant": bant, "next_action": lead.next_action, "score": lead.score, "tier": lead.tier}
    return "\n".join(lines), data


def _kb_link(lead: Lead) -> str:
    """A knowledge-base page for a self-serve prospect: the best hit with a URL for what they asked about first."""
    from conversations.models import Message
    from drafts.services import KB_KINDS
    from knowledge.selectors import search

    first = (Message.objects.filter(ticket_id=lead.ticket_id, role=Message.Role.CUSTOMER).order_by("turn_index")
             .values_list("body", flat=True).first() or "")
    query = " ".join(filter(None, [first, current_slots(lead).get("need", {}).get("value", "")]))[:1000]
    if not query.strip():
        return ""
    hits = search(query, k=5, mode="hybrid", filters={"kind": KB_KINDS}).hits
    return next((h.url for h in hits if h.url), "")


def _reply(lead: Lead, st: dict, decision: dict, outcome, config: CrmSettings, current: dict[str, dict]) -> dict | None:
    """The customer-facing reply of this turn, or None to keep the support pipeline's draft."""
    kind = decision["kind"]
    if kind in ("support_answer", "routed_already") and decision.get("action") != "support_ticket":
        return None
    if kind == "route" and decision["action"] == "support_ticket":
        return None
    name = current.get("name", {}).get("value", "").split(" ")[0]
    answer = ""
    keeps = False
    if st["intent"] == "sales" and st["sub_intent"] in ("pricing", "product_question", "objection") and \
            outcome.strategy not in ("abstain",) and not outcome.needs_human and outcome.body:
        answer, keeps = outcome.body.strip(), True
    parts: list[str] = []
    if decision.get("first") and st["intent"] == "sales":
        parts.append(OPENERS.get(st["sub_intent"], "Thanks for reaching out."))
    if answer:
        parts.append(answer)
    if decision.get("declined_now"):
        parts.append("No problem, we can skip that.")
    flags = [f"sdr:{st['sub_intent'] or st['intent']}"]
    needs_human, abstain = False, ""
    confidence = max(0.0, min(1.0, float(st["confidence"])))
    if kind == "ask":
        if decision.get("retry"):
            parts.append(f"That email address doesn't look right ({decision.get('reason') or 'invalid'}) — could you "
                         "double-check it?")
        else:
            parts.append(QUESTIONS[decision["slot"]])
        strategy = "sdr_question"
    else:
        action = decision["action"]
        thanks = f"Thanks{', ' + name if name else ''}!"
        if action == "book_meeting":
            link = config.booking_link or config.self_serve_link
            parts.append(f"{thanks} From what you've told me, the best next step is a short call with our sales team"
                         + (f" — you can pick a time that suits you here: {link}" if link else
                            "; someone will email you to find a time") + ". I've passed your details on, so you won't "
                         "have to repeat yourself.")
        elif action == "self_serve":
            link = next((c.get("url") for c in outcome.citations if c.get("url")), "") or _kb_link(lead) or \
                config.self_serve_link
            parts.append(f"{thanks} The quickest way to get going is on your own"
                         + (f": {link}" if link else " with our documentation") +
                         " — and if you'd like to talk to someone later, just write here.")
        else:  # human_handoff
            parts.append("Thanks for the details. I'm bringing in a member of our sales team who can help with this "
                         "directly; they'll reply here shortly.")
            needs_human, abstain = True, "sales handoff: " + "; ".join(lead.handoff_reasons)[:150]
        strategy = f"sdr_{action}"
        flags.append(f"sdr_route:{action}")
    if any(f.get("flag") == "instruction_ignored" and f.get("turn") == decision["turn"] for f in lead.flags):
        flags.append("instruction_ignored")
    return {"body": "\n\n".join(parts), "strategy": strategy, "confidence": confidence, "needs_human": needs_human,
            "abstain_reason": abstain, "flags": flags, "keeps_answer": keeps}


@transaction.atomic
def crm_settings_update(*, actor, booking_link: str, self_serve_link: str, adapter: str, endpoint_url: str,
                        scoring_rules: dict | None) -> CrmSettings:
    """An admin changes the sales settings (audited). ``scoring_rules`` None or {} means the defaults. Raises
    ``ValueError`` for an unknown adapter, an adapter without its URL, or invalid rules (crm.scoring.validate_rules)."""
    if adapter not in CrmSettings.Adapter.values:
        raise ValueError(f"adapter: choose one of {', '.join(CrmSettings.Adapter.values)}")
    if adapter != CrmSettings.Adapter.NONE and not endpoint_url:
        raise ValueError("endpoint URL: the adapter needs one")
    if scoring_rules:
        scoring.validate_rules(scoring_rules)
    config = CrmSettings.objects.select_for_update().get_or_create(pk=1)[0]
    before = {"adapter": config.adapter, "endpoint_url": config.endpoint_url, "booking_link": config.booking_link,
              "custom_rules": bool(config.scoring_rules)}
    config.booking_link, config.self_serve_link = booking_link, self_serve_link
    config.adapter, config.endpoint_url = adapter, endpoint_url
    config.scoring_rules = scoring_rules or {}
    config.updated_by, config.updated_at = actor, timezone.now()
    config.save()
    Activity.objects.create(kind=Activity.Kind.AUDIT, actor=actor, subject="Sales settings changed",
                            body=f"before: {before}; after: adapter {adapter}, endpoint {endpoint_url}, booking "
                                 f"{booking_link}, custom rules {bool(scoring_rules)}")
    return config
