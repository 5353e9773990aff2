/* sdrbot chat widget. Embed with one tag:
 *   <script src="https://HOST/static/sdrbot/widget.js" data-site-key="pk_..." defer></script>
 * Optional attributes: data-identity-token (a JWT signed by your backend, see the README), data-category (a category
 * slug), data-title. The UI lives in a shadow root (isolated from the page's CSS); message text is only ever set with
 * textContent, never parsed as HTML. The conversation token is kept in localStorage, so the conversation survives
 * page loads. While the panel is open (and the page visible) new messages arrive over server-sent events (falling
 * back to long polling); while it is closed nothing is held open on the server: a reply still awaited is checked for
 * with short requests (every 5 s while the bot is writing, 30 s while a teammate is due) and lights the launcher's dot;
 * otherwise the widget makes no requests until it is opened again.
 */
(function () {
  "use strict";
  var script = document.currentScript || document.querySelector("script[data-site-key]");
  if (!script || window.__sdrbotWidgetLoaded) return;
  window.__sdrbotWidgetLoaded = true;

  var SITE_KEY = script.getAttribute("data-site-key") || "";
  var API = new URL("/api/widget/v1/", script.src).href;
  var STORE = "sdrbot:" + SITE_KEY;
  var CATEGORY = script.getAttribute("data-category") || "";
  var TITLE = script.getAttribute("data-title") || "Chat with us";
  var identityToken = script.getAttribute("data-identity-token") || "";

  var token = null;
  try { token = window.localStorage.getItem(STORE); } catch (e) { token = null; }
  var cursor = -1;
  var seen = {};
  var source = null;
  var streamErrors = 0;
  var generation = 0;
  var isOpen = false;
  var awaiting = "";  // the last state's status: "typing" or "teammate" while a reply is expected
  var checkTimer = null;
  var CHECK_MS = { typing: 5000, teammate: 30000 };

  var CSS = [
    ":host { all: initial; }",
    "* { box-sizing: border-box; font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; }",
    ".launcher { position: fixed; right: 20px; bottom: 20px; width: 60px; height: 60px; border-radius: 50%; border: 0;",
    "  background: #1a56db; color: #fff; display: flex; align-items: center; justify-content: center; cursor: pointer; box-shadow: 0 4px 14px rgba(0,0,0,.25); z-index: 2147483000; }",
    ".launcher:focus-visible, button:focus-visible, textarea:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }",
    ".launcher .dot { position: absolute; top: 6px; right: 6px; width: 14px; height: 14px; border-radius: 50%; background: #ef4444; border: 2px solid #fff; }",
    ".panel { position: fixed; right: 20px; bottom: 92px; width: 370px; max-width: calc(100vw - 24px); height: 560px;",
    "  max-height: calc(100vh - 110px); background: #fff; color: #111827; border-radius: 14px; display: flex; flex-direction: column;",
    "  box-shadow: 0 10px 40px rgba(0,0,0,.28); overflow: hidden; z-index: 2147483000; font-size: 15px; line-height: 1.45; }",
    ".panel[hidden] { display: none; }",
    "header { background: #1a56db; color: #fff; padding: 12px 14px; display: flex; align-items: center; justify-content: space-between; }",
    "h2 { margin: 0; font-size: 16px; font-weight: 600; }",
    ".close { background: transparent; border: 0; color: #fff; font-size: 24px; line-height: 1; cursor: pointer; padding: 2px 8px; border-radius: 6px; }",
    ".log { flex: 1; overflow-y: auto; padding: 12px; background: #f3f4f6; }",
    ".empty { color: #4b5563; font-size: 14px; margin: 8px 4px; }",
    ".msg { margin: 8px 0; max-width: 85%; }",
    ".msg .who { display: block; font-size: 12px; color: #4b5563; margin: 0 4px 2px; }",
    ".msg .body { padding: 8px 12px; border-radius: 12px; white-space: pre-wrap; overflow-wrap: anywhere; }",
    ".msg-customer { margin-left: auto; text-align: right; }",
    ".msg-customer .body { background: #1a56db; color: #fff; text-align: left; }",
    ".msg-bot .body { background: #fff; border: 1px solid #d1d5db; }",
    ".msg-agent .body { background: #ecfdf5; border: 1px solid #6ee7b7; }",
    ".rate { margin: 4px 2px 0; display: flex; gap: 6px; align-items: center; font-size: 12px; color: #4b5563; }",
    ".rate button { border: 1px solid #d1d5db; background: #fff; color: #4b5563; border-radius: 14px; padding: 3px 9px; cursor: pointer; line-height: 0; }",
    ".rate button[aria-pressed='true'] { color: #1a56db; }",
    ".rate button[aria-pressed='true'] { background: #dbeafe; border-color: #1a56db; }",
    ".status { min-height: 0; padding: 0 12px; font-size: 13px; color: #374151; background: #f3f4f6; }",
    ".status:not(:empty) { padding: 6px 12px 8px; }",
    ".status.error { color: #b91c1c; }",
    ".typing span { display: inline-block; width: 7px; height: 7px; margin-right: 3px; border-radius: 50%; background: #6b7280; animation: b 1.2s infinite; }",
    ".typing span:nth-child(2) { animation-delay: .2s; } .typing span:nth-child(3) { animation-delay: .4s; }",
    "@keyframes b { 0%, 80%, 100% { opacity: .3; } 40% { opacity: 1; } }",
    "@media (prefers-reduced-motion: reduce) { .typing span { animation: none; } }",
    "form { display: flex; gap: 8px; padding: 10px; border-top: 1px solid #e5e7eb; background: #fff; }",
    "textarea { flex: 1; resize: none; border: 1px solid #9ca3af; border-radius: 8px; padding: 8px; font-size: 15px; min-height: 42px; max-height: 120px; }",
    ".send { background: #1a56db; color: #fff; border: 0; border-radius: 8px; padding: 0 14px; font-size: 15px; cursor: pointer; }",
    ".send:disabled { background: #93a8d8; cursor: default; }",
    ".actions { display: flex; justify-content: space-between; align-items: center; padding: 0 10px 10px; background: #fff; }",
    ".human { background: transparent; border: 1px solid #1a56db; color: #1a56db; border-radius: 8px; padding: 5px 10px; cursor: pointer; font-size: 13px; }",
    ".sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden; clip: rect(0,0,0,0); border: 0; }",
    "@media (max-width: 480px) { .panel { right: 0; bottom: 0; width: 100vw; max-width: 100vw; height: 100%; max-height: 100%; border-radius: 0; }",
    "  .panel:not([hidden]) ~ .launcher { display: none; } }"
  ].join("\n");

  // a custom element name: the page's own rules for div, section or button never match the host element
  var host = document.createElement("sdrbot-widget");
  host.id = "sdrbot-widget";
  var root = host.attachShadow({ mode: "open" });
  var style = document.createElement("style");
  style.textContent = CSS;
  root.appendChild(style);

  var SVG_NS = "http://www.w3.org/2000/svg";
  var ICONS = {
    chat: "M20 2H4c-1.1 0-2 .9-2 2v18l4-4h14c1.1 0 2-.9 2-2V4c0-1.1-.9-2-2-2z",
    up: "M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L14.17 1 7.59 7.59C7.22 7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23.14-.47.14-.73v-2z",
    down: "M15 3H6c-.83 0-1.54.5-1.84 1.22l-3.02 7.05c-.09.23-.14.47-.14.73v2c0 1.1.9 2 2 2h6.31l-.95 4.57-.03.32c0 .41.17.79.44 1.06L9.83 23l6.59-6.59c.36-.36.58-.86.58-1.41V5c0-1.1-.9-2-2-2zm4 0v12h4V3h-4z"
  };

  function icon(name, size) {  // inline SVG built with DOM calls (no emoji font needed, no markup parsing)
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", String(size));
    svg.setAttribute("height", String(size));
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("d", ICONS[name]);
    path.setAttribute("fill", "currentColor");
    svg.appendChild(path);
    return svg;
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  var panel = el("section", { "class": "panel", id: "sdrbot-panel", role: "dialog", "aria-labelledby": "sdrbot-title" });
  panel.hidden = true;
  var header = el("header");
  header.appendChild(el("h2", { id: "sdrbot-title" }, TITLE));
  var closeBtn = el("button", { "class": "close", type: "button", "aria-label": "Close chat" }, "\u00d7");
  header.appendChild(closeBtn);
  var log = el("div", { "class": "log", role: "log", "aria-live": "polite", "aria-label": "Conversation", tabindex: "0" });
  var empty = el("p", { "class": "empty" }, "Hi! Ask us anything \u2014 we usually answer right away.");
  log.appendChild(empty);
  var status = el("div", { "class": "status", role: "status", "aria-live": "polite" });
  var form = el("form", { "aria-label": "Send a message" });
  var label = el("label", { "for": "sdrbot-input", "class": "sr-only" }, "Your message");
  var input = el("textarea", { id: "sdrbot-input", rows: "1", maxlength: "4000", placeholder: "Write a message\u2026" });
  var sendBtn = el("button", { "class": "send", type: "submit" }, "Send");
  form.appendChild(label); form.appendChild(input); form.appendChild(sendBtn);
  var actions = el("div", { "class": "actions" });
  var humanBtn = el("button", { "class": "human", type: "button" }, "Talk to a person");
  actions.appendChild(humanBtn);
  panel.appendChild(header); panel.appendChild(log); panel.appendChild(status); panel.appendChild(form); panel.appendChild(actions);
  var launcher = el("button", { "class": "launcher", type: "button", "aria-label": "Open chat", "aria-expanded": "false",
                                "aria-controls": "sdrbot-panel" });
  launcher.appendChild(icon("chat", 28));
  root.appendChild(panel);
  root.appendChild(launcher);

  function mount() { document.body.appendChild(host); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);

  // ------------------------------------------------------------------------------------------------ rendering

  var WHO = { customer: "You", bot: "Assistant (automated)", agent: "Support team" };

  function renderMessage(m) {
    if (seen[m.id]) { updateRating(seen[m.id], m.rating); return; }
    if (empty.parentNode) empty.parentNode.removeChild(empty);
    var item = el("div", { "class": "msg msg-" + m.role, "data-message-id": String(m.id) });
    item.appendChild(el("span", { "class": "who" }, WHO[m.role] || m.role));
    item.appendChild(el("div", { "class": "body" }, m.body));  // textContent: customer and reply text stay inert
    if (m.role === "bot") {
      var rate = el("div", { "class": "rate", role: "group", "aria-label": "Was this answer helpful?" });
      rate.appendChild(el("span", {}, "Helpful?"));
      var up = el("button", { type: "button", "aria-label": "Yes, helpful", "aria-pressed": "false", "data-value": "up" });
      var down = el("button", { type: "button", "aria-label": "No, not helpful", "aria-pressed": "false", "data-value": "down" });
      up.appendChild(icon("up", 14)); down.appendChild(icon("down", 14));
      [up, down].forEach(function (b) { b.addEventListener("click", function () { rateReply(m.id, b.getAttribute("data-value"), item); }); });
      rate.appendChild(up); rate.appendChild(down);
      item.appendChild(rate);
    }
    seen[m.id] = item;
    updateRating(item, m.rating);
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
    if (m.cursor > cursor) cursor = m.cursor;
    if (!isOpen && m.role !== "customer") showDot(true);
  }

  function updateRating(item, value) {
    var buttons = item.querySelectorAll(".rate button");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].setAttribute("aria-pressed", buttons[i].getAttribute("data-value") === value ? "true" : "false");
    }
  }

  function when(iso) {
    var d = new Date(iso);
    var sameDay = d.toDateString() === new Date().toDateString();
    return sameDay ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
                   : d.toLocaleString([], { weekday: "long", hour: "2-digit", minute: "2-digit" });
  }

  function renderState(state) {
    status.className = "status";
    status.textContent = "";
    if (!state) return;
    awaiting = state.status === "typing" || state.status === "teammate" ? state.status : "";
    if (state.status === "typing") {
      var t = el("span", { "class": "typing" });
      t.appendChild(el("span")); t.appendChild(el("span")); t.appendChild(el("span"));
      status.appendChild(t);
      status.appendChild(document.createTextNode(" The assistant is writing a reply\u2026"));
    } else if (state.status === "teammate") {
      var a = state.availability || {};
      var text;
      if (a.open_now) {
        text = "A teammate will reply" + (a.expected_reply_by ? " \u2014 usually by " + when(a.expected_reply_by) : "") + ".";
      } else if (a.opens_at) {
        text = "Our team is away right now. A teammate will reply when we open, " + when(a.opens_at) + ".";
      } else {
        text = "A teammate will reply as soon as possible.";
      }
      status.textContent = text;
    }
  }

  function showError(text) {
    status.className = "status error";
    status.setAttribute("role", "alert");
    status.textContent = text;
  }

  function showDot(on) {
    var dot = launcher.querySelector(".dot");
    if (on && !dot) launcher.appendChild(el("span", { "class": "dot", "aria-hidden": "true" }));
    if (!on && dot) launcher.removeChild(dot);
    launcher.setAttribute("aria-label", on ? "Open chat (new message)" : "Open chat");
  }

  function applyConversation(data) {
    (data.messages || []).forEach(renderMessage);
    if (typeof data.cursor === "number" && data.cursor > cursor) cursor = data.cursor;
    status.setAttribute("role", "status");
    renderState(data.state);
  }

  // ------------------------------------------------------------------------------------------------------ API

  function api(method, path, body, extraHeaders) {
    var headers = { "X-Site-Key": SITE_KEY, "Accept": "application/json" };
    if (token) headers["Authorization"] = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    Object.keys(extraHeaders || {}).forEach(function (k) { headers[k] = extraHeaders[k]; });
    return fetch(API + path, { method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body),
                               credentials: "omit", mode: "cors" })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) {
          if (!r.ok) {
            var err = new Error(data.detail || "request failed");
            err.status = r.status; err.data = data; err.retryAfter = r.headers.get("Retry-After");
            throw err;
          }
          return data;
        });
      });
  }

  function explain(err) {
    if (!err.status) return "The chat is not available on this site right now.";
    if (err.status === 429) return "You are sending messages quickly \u2014 please wait " + (err.retryAfter || "a few") + " seconds.";
    if (err.status === 400 && err.data) {
      var k = Object.keys(err.data)[0];
      return k ? String(err.data[k]) : "That message could not be sent.";
    }
    if (err.status === 413) return "That message is too long.";
    return "Something went wrong; please try again.";
  }

  function forget() {
    token = null; cursor = -1;
    try { window.localStorage.removeItem(STORE); } catch (e) { /* private mode */ }
  }

  function remember(t) {
    token = t;
    try { window.localStorage.setItem(STORE, t); } catch (e) { /* private mode: this page only */ }
  }

  function start(message) {
    var body = { message: message };
    if (CATEGORY) body.category = CATEGORY;
    var headers = identityToken ? { "X-Identity-Token": identityToken } : {};
    return api("POST", "conversations", body, headers).then(function (data) {
      remember(data.token);
      applyConversation(data);
      live();
    });
  }

  function send(text) {
    sendBtn.disabled = true;
    var done = function () { sendBtn.disabled = false; };
    var p = token ? api("POST", "conversation/messages", { body: text, client_id: String(Date.now()) + Math.random().toString(16).slice(2) })
                      .then(function (data) { applyConversation(data); if (!isOpen) live(); })  // closed meanwhile
                  : start(text);
    return p.then(function () { input.value = ""; done(); }, function (err) {
      done();
      if (err.status === 401 && token) { forget(); return send(text); }
      showError(explain(err));
    });
  }

  function rateReply(id, value, item) {
    api("POST", "conversation/ratings", { message_id: id, value: value }).then(function () {
      updateRating(item, value);
      status.setAttribute("role", "status");
      status.className = "status";
      status.textContent = "Thanks for the feedback.";
    }, function (err) { showError(explain(err)); });
  }

  function handoff() {
    var go = function () { return api("POST", "conversation/handoff").then(applyConversation); };
    var p = token ? go() : api("POST", "conversations", CATEGORY ? { category: CATEGORY } : {},
                               identityToken ? { "X-Identity-Token": identityToken } : {})
      .then(function (data) { remember(data.token); live(); return go(); });
    p.catch(function (err) { showError(explain(err)); });
  }

  // ------------------------------------------------------------------------------- live updates: SSE, long poll

  // How the widget keeps up: an event stream only while someone looks at the panel (each open stream holds a server
  // thread); with the panel closed or the page hidden, a plain request now and then while a reply is awaited.
  function live() {
    generation += 1;
    if (source) { source.close(); source = null; }
    clearTimeout(checkTimer);
    if (!token || document.hidden) return;
    if (isOpen) { connect(); return; }
    if (awaiting) {
      var mine = generation;
      checkTimer = setTimeout(function () {
        if (mine !== generation) return;
        api("GET", "conversation/messages?after=" + cursor).then(function (data) {
          if (mine !== generation) return;
          applyConversation(data);
          live();
        }, function (err) {
          if (err.status === 401) { forget(); return; }
          if (mine === generation) { awaiting = "teammate"; live(); }
        });
      }, CHECK_MS[awaiting]);
    }
  }

  function connect() {
    if (!token) return;
    var mine = ++generation;
    if (source) { source.close(); source = null; }
    if (typeof window.EventSource !== "function" || streamErrors >= 3) { longPoll(mine); return; }
    api("POST", "conversation/stream-token").then(function (data) {
      if (mine !== generation) return;
      var es = new EventSource(API + "conversation/stream?stream_token=" + encodeURIComponent(data.stream_token) + "&after=" + cursor);
      source = es;
      es.addEventListener("message", function (e) { streamErrors = 0; renderMessage(JSON.parse(e.data)); });
      es.addEventListener("state", function (e) { status.setAttribute("role", "status"); renderState(JSON.parse(e.data)); });
      es.addEventListener("end", function () { es.close(); if (mine === generation) connect(); });
      es.onerror = function () {
        es.close();
        streamErrors += 1;
        if (mine === generation) setTimeout(connect, 1500);
      };
    }, function (err) {
      if (err.status === 401) { forget(); return; }
      streamErrors += 1;
      setTimeout(function () { if (mine === generation) connect(); }, 3000);
    });
  }

  function longPoll(mine) {  // one loop per connect(); an older loop ends at its next turn
    (function loop() {
      if (mine !== generation || !token) return;
      api("GET", "conversation/messages?after=" + cursor + "&wait=20").then(function (data) {
        applyConversation(data); loop();
      }, function (err) {
        if (err.status === 401) { forget(); return; }
        setTimeout(loop, err.status === 429 ? 1000 * (parseInt(err.retryAfter, 10) || 5) : 3000);
      });
    })();
  }

  // --------------------------------------------------------------------------------------------- interactions

  function open() {
    isOpen = true;
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    showDot(false);
    input.focus();
    log.scrollTop = log.scrollHeight;
    live();
  }

  function close() {
    isOpen = false;
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
    live();
  }

  document.addEventListener("visibilitychange", live);

  launcher.addEventListener("click", function () { if (isOpen) close(); else open(); });
  closeBtn.addEventListener("click", close);
  panel.addEventListener("keydown", function (e) { if (e.key === "Escape") { e.preventDefault(); close(); } });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value;
    if (!text.trim() || sendBtn.disabled) return;
    send(text);
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit")); }
  });
  humanBtn.addEventListener("click", handoff);

  window.sdrbot = {
    open: open,
    close: close,
    identify: function (jwt) { identityToken = jwt || ""; }
  };

  if (token) {
    api("GET", "conversation").then(function (data) { applyConversation(data); live(); }, function (err) {
      if (err.status === 401) forget();
    });
  }
})();
