"""The customer widget in real Chromium, embedded in a page served from a second local origin (its own
http.server), against the live server and a real Celery worker: the bot answers in a customer-facing category; in an
internal one the customer is told a teammate will reply and then sees the agent's reply sent from the console;
hostile text stays inert; a disallowed origin is refused; phone-sized, keyboard and closed business hours."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest

from conversations.models import Category, Message, Ticket, WidgetConversation
from conversations.services import site_key_create
from drafts.models import ReplySignal
from tests.browser.conftest import login, screenshot, wait_for
from tests.drafts.conftest import kb  # noqa: F401  (the small knowledge base and resolved tickets)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

XSS = "<img src=x onerror=\"window.__xss=1\"><script>window.__xss=2</script> Where is my package?"
AGENT_XSS = "Your package left our warehouse today. <b onmouseover=\"window.__xss=3\">Tracking</b> <script>window.__xss=4</script>"


@pytest.fixture(autouse=True)
def streams_settle() -> Iterator[None]:
    """Torn down after the page closes and before the database is flushed: the live server's event-stream threads
    notice the closed connection and stop polling first."""
    yield
    time.sleep(1.0)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@dataclass
class HostSite:
    origin: str
    folder: Path
    widget_src: str

    def page(self, site_key: str, *, category: str = "", name: str = "index") -> str:
        """Write a host page that embeds the widget with one tag; returns its URL. The page's own CSS is hostile
        (it would restyle any button or div it could reach) to show the widget's shadow DOM isolation."""
        tag = f'<script src="{self.widget_src}" data-site-key="{site_key}"' + \
              (f' data-category="{category}"' if category else "") + " defer></script>"
        (self.folder / f"{name}.html").write_text(
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width, initial-scale=1'><title>Acme Shop</title>"
            "<style>body{font:18px Georgia,serif;margin:40px;background:#fffbe8}"
            " button{background:#ff00ff !important;font-size:40px !important} div{border:3px dashed green}</style>"
            "</head><body><h1>Acme Shop</h1><p>Garden furniture since 1987. Questions? Use the chat.</p>"
            f"{tag}</body></html>")
        return f"{self.origin}/{name}.html"


@pytest.fixture
def host_site(live_server, tmp_path) -> Iterator[HostSite]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(tmp_path)))
    Thread(target=server.serve_forever, daemon=True).start()
    yield HostSite(origin=f"http://127.0.0.1:{server.server_address[1]}", folder=tmp_path,
                   widget_src=f"{live_server.url}/static/sdrbot/widget.js")
    server.shutdown()
    server.server_close()



def widget_open(page) -> None:
    page.get_by_role("button", name="Open chat").click()
    page.get_by_role("dialog", name="Chat with us").wait_for()


def test_customer_facing_category_the_bot_answers_at_once_and_is_rated(page, kb, celery_worker_process, host_site) -> None:  # noqa: F811
    Category.objects.filter(slug="account").update(phase="customer_facing", auto_send=True, auto_send_min_confidence=0.5)
    site = site_key_create(name="acme", allowed_origins=[host_site.origin])
    page.goto(host_site.page(site.key, category="account"))
    widget_open(page)
    box = page.get_by_label("Your message")
    assert box.evaluate("el => el.getRootNode().activeElement === el")  # focus moved into the chat
    box.fill("How do I delete my account?")
    box.press("Enter")
    page.locator(".msg-customer").get_by_text("How do I delete my account?").wait_for()
    bot = page.locator(".msg-bot .body")
    bot.wait_for(timeout=30_000)
    assert "delete your account under Settings > Account > Delete" in bot.inner_text()
    assert page.locator(".msg-bot .who").inner_text() == "Assistant (automated)"
    assert page.get_by_role("log", name="Conversation").get_attribute("aria-live") == "polite"
    ticket = Ticket.objects.get(widget__site_key=site)
    assert ticket.status == "auto_replied" and ticket.channel == "widget"
    # isolation: the host page's `button {background: magenta !important}` does not reach the widget
    assert page.get_by_role("button", name="Send").evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(26, 86, 219)"
    screenshot(page, "widget-bot-answer")

    page.get_by_role("button", name="Yes, helpful").click()
    signal = wait_for(lambda: ReplySignal.objects.filter(kind="rating").first())
    assert signal.value == 1.0 and signal.draft.ticket_id == ticket.pk
    page.get_by_role("button", name="No, not helpful").click()
    wait_for(lambda: ReplySignal.objects.filter(kind="rating", value=0.0).exists())
    assert ReplySignal.objects.filter(kind="rating").count() == 1

    # the conversation survives a page load (token in localStorage) with its history and rating
    page.reload()
    widget_open(page)
    page.locator(".msg-bot").wait_for()
    assert page.locator(".msg").count() == 2
    assert page.get_by_role("button", name="No, not helpful").get_attribute("aria-pressed") == "true"

    page.get_by_role("button", name="Talk to a person").click()
    page.get_by_text("A teammate will reply").wait_for()
    wait_for(lambda: ReplySignal.objects.filter(kind="human_request").exists())
    assert Ticket.objects.get(pk=ticket.pk).status == "awaiting_agent"
    screenshot(page, "widget-handoff")


def test_closed_panel_holds_no_stream_and_the_reply_lights_the_launcher(page, kb, celery_worker_process,  # noqa: F811
                                                                        host_site) -> None:
    Category.objects.filter(slug="account").update(phase="customer_facing", auto_send=True, auto_send_min_confidence=0.5)
    site = site_key_create(name="acme", allowed_origins=[host_site.origin])
    streams: list[str] = []
    calls: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/conversation/stream?" in r.url else None)
    page.on("request", lambda r: calls.append(r.url) if "/api/widget/v1/" in r.url else None)
    page.goto(host_site.page(site.key, category="account"))
    widget_open(page)
    page.get_by_label("Your message").fill("How do I delete my account?")
    page.get_by_role("button", name="Send").click()
    page.get_by_role("button", name="Close chat").click()  # before the bot answers: no stream, a check every 5 s
    page.get_by_role("dialog", name="Chat with us").wait_for(state="hidden")
    page.get_by_role("button", name="Open chat (new message)").wait_for(timeout=30_000)
    assert streams == []
    screenshot(page, "widget-closed-new-message")
    with page.expect_request(lambda r: "/conversation/stream?" in r.url):  # open again: the stream is back
        page.get_by_role("button", name="Open chat (new message)").click()
    page.locator(".msg-bot").wait_for()
    page.get_by_role("button", name="Close chat").click()
    before = len(calls)
    page.wait_for_timeout(6000)  # answered, nothing awaited: no requests at all while closed
    assert calls[before:] == [] and len(streams) == 1


def test_internal_category_teammate_replies_from_the_console_and_hostile_text_is_inert(
        page, browser, live_server, kb, celery_worker_process, host_site, agent_user) -> None:  # noqa: F811
    orders = Category.objects.get(slug="order")
    orders.phase = "internal"
    orders.save(update_fields=["phase"])
    site = site_key_create(name="acme", allowed_origins=[host_site.origin], default_category=orders)
    page.goto(host_site.page(site.key))
    widget_open(page)
    page.get_by_label("Your message").fill(XSS)
    page.get_by_role("button", name="Send").click()
    page.get_by_text("A teammate will reply").wait_for()
    assert "usually by" in page.locator(".status").inner_text()
    body = page.locator(".msg-customer .body")
    assert body.inner_text() == XSS  # shown as text
    screenshot(page, "widget-teammate-will-reply")
    ticket = Ticket.objects.get(widget__site_key=site)
    assert ticket.category == orders

    console = browser.new_context(base_url=live_server.url).new_page()
    console.goto("/console/login/")
    login(console, "agent-t", "pw-agent-123")
    console.wait_for_url("**/console/")
    console.goto(f"/console/tickets/{ticket.pk}/")
    reply = console.get_by_label("Reply", exact=True)
    reply.wait_for(timeout=30_000)  # the worker's draft
    reply.fill(AGENT_XSS)
    reply.press("Control+Enter")
    console.get_by_text("Reply sent.").wait_for()
    console.context.close()

    agent = page.locator(".msg-agent .body")
    agent.wait_for(timeout=15_000)
    assert agent.inner_text() == AGENT_XSS
    assert page.locator(".msg-agent .who").inner_text() == "Support team"
    page.wait_for_timeout(300)
    # nothing the customer or the agent wrote became markup or ran
    assert page.evaluate("window.__xss") is None and page.dialogs == []
    assert page.evaluate("document.getElementById('sdrbot-widget').shadowRoot.querySelectorAll('.body *').length") == 0
    assert Message.objects.filter(ticket=ticket, role="agent").count() == 1
    screenshot(page, "widget-agent-reply")


def test_disallowed_origin_is_refused(page, host_site) -> None:
    site = site_key_create(name="elsewhere", allowed_origins=["https://www.example.com"])
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.goto(host_site.page(site.key))
    widget_open(page)
    page.get_by_label("Your message").fill("hello?")
    page.get_by_label("Your message").press("Enter")
    page.get_by_text("The chat is not available on this site right now.").wait_for()
    assert not WidgetConversation.objects.exists() and not Message.objects.exists()
    assert any("/api/widget/v1/conversations" in u for u in failed)  # the browser's CORS check stopped it
    screenshot(page, "widget-refused-origin")


def test_phone_sized_keyboard_and_outside_business_hours(browser, live_server, host_site) -> None:
    from tests.conversations.test_widget_api import closed_today

    Category.objects.create(slug="billing", name="Billing", phase="internal", business_hours=closed_today())
    site = site_key_create(name="acme", allowed_origins=[host_site.origin])
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(host_site.page(site.key, category="billing"))
    page.keyboard.press("Tab")  # the launcher is reachable by keyboard
    launcher = page.get_by_role("button", name="Open chat")
    assert launcher.evaluate("el => el.getRootNode().activeElement === el")
    page.keyboard.press("Enter")
    panel = page.get_by_role("dialog", name="Chat with us")
    panel.wait_for()
    box = panel.bounding_box()
    assert box["width"] == 390 and box["height"] == 844  # the whole phone screen
    page.get_by_label("Your message").fill("Why was I charged twice?")
    page.keyboard.press("Enter")
    status = page.get_by_text("Our team is away right now")
    status.wait_for()
    assert "A teammate will reply when we open" in status.inner_text()
    screenshot(page, "widget-phone-closed-hours")
    page.keyboard.press("Escape")
    assert panel.is_hidden() and launcher.evaluate("el => el.getRootNode().activeElement === el")
    context.close()


def test_demo_page(page, live_server) -> None:
    site_key_create(name="demo", allowed_origins=[live_server.url])
    page.goto("/demo/")
    assert "Northwind Cloud" in page.title()
    widget_open(page)
    page.get_by_label("Your message").fill("Can I add more storage to my plan?")
    screenshot(page, "widget-demo-page")


def test_long_polling_fallback_without_event_source(page, host_site, agent_user) -> None:
    from conversations.services import reply_send

    site = site_key_create(name="acme", allowed_origins=[host_site.origin])
    page.add_init_script("delete window.EventSource")  # an old browser, or a proxy that breaks streams
    stream_requests: list[str] = []
    page.on("request", lambda r: stream_requests.append(r.url) if "/conversation/stream" in r.url else None)
    page.goto(host_site.page(site.key))
    widget_open(page)
    page.get_by_label("Your message").fill("Is anyone there?")
    page.get_by_label("Your message").press("Enter")
    page.locator(".msg-customer").wait_for()
    ticket = wait_for(lambda: Ticket.objects.filter(widget__site_key=site).first())
    reply_send(ticket_id=ticket.pk, actor=agent_user, body="Yes, we are here.", expected_version=None)
    page.locator(".msg-agent").get_by_text("Yes, we are here.").wait_for(timeout=15_000)
    assert stream_requests == []  # it arrived through GET conversation/messages?wait=…


def test_api_docs_page_renders_offline(page, live_server) -> None:
    elsewhere: list[str] = []
    page.on("request", lambda r: elsewhere.append(r.url) if not r.url.startswith(live_server.url) else None)
    page.goto("/api/widget/v1/docs/")
    try:
        page.get_by_text("Post the customer's message").wait_for(timeout=30_000)
    finally:
        screenshot(page, "widget-api-docs")
    assert page.get_by_role("heading", name="sdrbot public widget API").first.is_visible()
    assert [u for u in elsewhere if not u.startswith(("blob:", "data:"))] == []  # no CDN: works offline
