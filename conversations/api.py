"""The public API of the customer widget (DRF), under ``/api/widget/v1/``; the schema at ``schema/``, its docs
page at ``docs/``.

Who is calling: every request names its site with the ``X-Site-Key`` header (public, from the embedding tag); a
browser's ``Origin`` must be one of that site key's allowed origins (403 otherwise; CORS headers are only sent to
allowed origins). Conversation endpoints take the conversation token as ``Authorization: Bearer <token>``; the event
stream, which an ``EventSource`` opens without headers, takes a short-lived ``stream_token`` query parameter
instead. ``X-Identity-Token`` carries the company-signed identity (conversations/identity.py).

Limits: request bodies over ``WIDGET_MAX_REQUEST_BYTES`` → 413; messages over ``WIDGET_MAX_MESSAGE_CHARS`` → 400;
throttles per site, per IP and per conversation (DRF throttles on the Redis cache) → 429 with ``Retry-After``.
Every write goes through conversations.services (the same services as the console).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any, Literal, Protocol, overload

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core import signing
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle
from rest_framework.views import APIView

from conversations import selectors, services
from conversations.identity import Identity, IdentityInvalid, identity_verify
from conversations.models import Category, Message, SiteKey, WidgetConversation

STREAM_SALT = "sdrbot.widget.stream"
KEEPALIVE_SECONDS = 10.0
LIVENESS_SECONDS = 1.0  # an event stream writes at least this often, to notice a widget that went away


# ---------------------------------------------------------------------------------------------------- errors


class Unauthorized(exceptions.APIException):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_code = "unauthorized"


class OriginRefused(exceptions.APIException):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "origin_not_allowed"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


class LimitedJSONParser(JSONParser):
    """JSON bodies up to ``WIDGET_MAX_REQUEST_BYTES`` (413 beyond it, also without a Content-Length)."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.WIDGET_MAX_REQUEST_BYTES
        request = (parser_context or {}).get("request")
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        except ValueError:
            declared = 0
        if declared > limit:
            raise PayloadTooLarge(f"body: {declared} bytes, over the {limit}-byte limit")
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"body: over the {limit}-byte limit")
        try:
            return json.loads(raw.decode("utf-8")) if raw else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"body: not valid JSON ({exc})") from exc


# ------------------------------------------------------------------------------------------- who is calling


class WidgetAuth:
    """``request.auth`` of the widget API: the site key, and the conversation when a token was given."""

    def __init__(self, site_key: SiteKey, conversation: WidgetConversation | None) -> None:
        self.site_key = site_key
        self.conversation = conversation


class ConversationAuth(Protocol):
    """A :class:`WidgetAuth` with its conversation: ``request.auth`` behind :class:`HasConversation`."""

    site_key: SiteKey
    conversation: WidgetConversation


class WidgetRequest(Request):
    """The type of a request in a :class:`WidgetView`: :class:`HasSiteKey` has refused any whose ``auth`` is not a
    :class:`WidgetAuth`; for annotations only."""

    auth: WidgetAuth


class ConversationRequest(Request):
    """The type of a request in a view behind :class:`HasConversation` (a conversation token was given); for
    annotations only."""

    auth: ConversationAuth


def origin_check(request, site_key: SiteKey) -> None:
    origin = request.headers.get("Origin")
    # no Origin: a server-side caller (a browser always sends it cross-origin); the site key is public anyway
    if origin and origin not in (site_key.allowed_origins or []):
        raise OriginRefused(f"Origin: {origin[:200]} is not an allowed origin of this site key")


class SiteKeyAuthentication(BaseAuthentication):
    """``X-Site-Key`` (required) and ``Authorization: Bearer <conversation token>`` (when present)."""

    def authenticate(self, request: Request):
        key = request.headers.get("X-Site-Key", "")
        conversation = None
        auth_header = request.headers.get("Authorization", "")
        if auth_header:
            scheme, _, token = auth_header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("Authorization: expected 'Bearer <conversation token>'")
            conversation = selectors.conversation_by_token(token.strip())
            if conversation is None or not conversation.site_key.active or (key and conversation.site_key.key != key):
                raise Unauthorized("Authorization: unknown or expired conversation token")
            site_key = conversation.site_key
            if not key:
                raise Unauthorized("X-Site-Key: the site key header is required")
        else:
            active_key = selectors.site_key_active(key)
            if active_key is None:
                raise Unauthorized("X-Site-Key: missing, unknown or inactive site key")
            site_key = active_key
        origin_check(request, site_key)
        return AnonymousUser(), WidgetAuth(site_key, conversation)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="sdrbot-widget"'


class SiteKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = SiteKeyAuthentication
    name = ["SiteKey", "ConversationToken"]

    def get_security_requirement(self, auto_schema):
        needs_conversation = any(p is HasConversation for p in auto_schema.view.permission_classes)
        return {"SiteKey": [], "ConversationToken": []} if needs_conversation else {"SiteKey": []}

    def get_security_definition(self, auto_schema):
        return [{"type": "apiKey", "in": "header", "name": "X-Site-Key"}, {"type": "http", "scheme": "bearer"}]


class HasSiteKey(BasePermission):
    def has_permission(self, request, view) -> bool:
        if not isinstance(request.auth, WidgetAuth):
            raise Unauthorized("X-Site-Key: missing, unknown or inactive site key")
        return True


class HasConversation(HasSiteKey):
    def has_permission(self, request, view) -> bool:
        super().has_permission(request, view)
        if request.auth.conversation is None:
            raise Unauthorized("Authorization: 'Bearer <conversation token>' is required")
        return True


@overload
def identity_of(request, site_key: SiteKey, *, required: Literal[True]) -> Identity: ...
@overload
def identity_of(request, site_key: SiteKey, *, required: bool) -> Identity | None: ...
def identity_of(request, site_key: SiteKey, *, required: bool) -> Identity | None:
    token = request.headers.get("X-Identity-Token", "")
    if not token:
        if required:
            raise Unauthorized("X-Identity-Token: a verified identity is required")
        return None
    try:
        return identity_verify(secret=site_key.secret, token=token)
    except IdentityInvalid as exc:
        raise Unauthorized(f"X-Identity-Token: {exc}") from exc


# ------------------------------------------------------------------------------------------------- throttles


# One fixed-window counter per key: INCR, start the window's expiry on its first hit, report the count and the time
# left. One script call (EVALSHA) instead of a pipeline of three commands per key.
_WINDOW_COUNT_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, ARGV[i]) end
  out[2 * i - 1] = n
  out[2 * i] = redis.call('PTTL', key)
end
return out
"""
_window_count = None


def _parse_rate(rate: str) -> tuple[int, int]:
    """A DRF rate string ("100/min") → (requests, window in seconds), parsed by DRF itself."""
    limit, seconds = SimpleRateThrottle.parse_rate(None, rate)  # type: ignore[arg-type]  # it never reads self
    assert limit is not None and seconds is not None  # only a None rate parses to (None, None)
    return limit, seconds


class WidgetThrottle(BaseThrottle):
    """Fixed-window rate limits per IP, per site key and (on writes) per conversation, counted in Redis by one
    script call (INCR, EXPIRE on the window's first hit, PTTL per key). DRF's ``SimpleRateThrottle`` keeps every
    request's timestamp in one cached list, so its cost grows with the rate (6,000/min per site = a 6,000-item list
    read and written per request); counters cost the same at any rate. A window may let through up to twice the rate
    across its boundary. Rates are DRF rate strings read from settings at request time."""

    scopes: tuple[str, ...] = ("ip", "site")
    SETTINGS = {"ip": "WIDGET_THROTTLE_IP", "site": "WIDGET_THROTTLE_SITE",
                "conversation": "WIDGET_THROTTLE_CONVERSATION"}

    def __init__(self) -> None:
        self.retry_after: float | None = None

    def keys(self, request) -> list[tuple[str, int, int]]:
        auth = request.auth if isinstance(request.auth, WidgetAuth) else None
        out = []
        for scope in self.scopes:
            if scope == "ip":
                ident = self.get_ident(request)
            elif scope == "site" and auth is not None:
                ident = auth.site_key.key
            elif scope == "conversation" and auth is not None and auth.conversation is not None:
                ident = f"{auth.site_key.key}:{auth.conversation.pk}"
            else:
                continue
            limit, seconds = _parse_rate(getattr(settings, self.SETTINGS[scope]))
            window = int(time.time() // seconds)
            out.append((f"sdrbot:widget:throttle:{scope}:{ident}:{window}", limit, seconds))
        return out

    def allow_request(self, request, view) -> bool:
        global _window_count
        keys = self.keys(request)
        if not keys:
            return True
        if _window_count is None:
            _window_count = selectors.redis_client().register_script(_WINDOW_COUNT_LUA)
        replies = _window_count(keys=[k for k, _l, _s in keys], args=[s for _k, _l, s in keys])
        waits = [max(replies[2 * i + 1], 1000) / 1000 for i, (_k, limit, _s) in enumerate(keys)
                 if replies[2 * i] > limit]
        if waits:
            self.retry_after = max(waits)
            return False
        return True

    def wait(self) -> float | None:
        return self.retry_after


class IPOnlyThrottle(WidgetThrottle):
    scopes = ("ip",)


class ConversationThrottle(WidgetThrottle):
    scopes = ("ip", "site", "conversation")


# ------------------------------------------------------------------------------------------------ serializers


class MessageOut(serializers.Serializer):
    id = serializers.IntegerField()
    cursor = serializers.IntegerField(source="turn_index", help_text="pass as `after` to get what follows")
    role = serializers.ChoiceField(choices=["customer", "agent", "bot"])
    body = serializers.CharField()
    sent_at = serializers.DateTimeField()
    rating = serializers.SerializerMethodField()

    def get_rating(self, m: Message) -> str | None:
        value = getattr(m, "rating", None)
        return None if value is None else ("up" if value >= 0.5 else "down")


_datetime = serializers.DateTimeField()


def message_dict(m: Message) -> dict[str, Any]:
    """``MessageOut`` by hand: on the posting path a serializer instance per response costs more than the dict."""
    rating = getattr(m, "rating", None)
    return {"id": m.pk, "cursor": m.turn_index, "role": m.role, "body": m.body,
            "sent_at": _datetime.to_representation(m.sent_at),
            "rating": None if rating is None else ("up" if rating >= 0.5 else "down")}


class AvailabilityOut(serializers.Serializer):
    open_now = serializers.BooleanField()
    opens_at = serializers.DateTimeField(allow_null=True)
    expected_reply_by = serializers.DateTimeField(allow_null=True)
    timezone = serializers.CharField(allow_null=True)


class StateOut(serializers.Serializer):
    status = serializers.ChoiceField(choices=["idle", "typing", "teammate"])
    ticket_status = serializers.CharField(allow_null=True)
    availability = AvailabilityOut(required=False)


class ConversationOut(serializers.Serializer):
    conversation_id = serializers.IntegerField()
    token = serializers.CharField(required=False, help_text="only when the conversation is started or resumed")
    verified = serializers.BooleanField()
    messages = MessageOut(many=True)
    cursor = serializers.IntegerField()
    state = StateOut()


class StartIn(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)
    category = serializers.SlugField(max_length=100, required=False, allow_blank=True,
                                     help_text="a category slug; default: the site key's, else the classifier decides")
    message = serializers.CharField(max_length=settings.WIDGET_MAX_MESSAGE_CHARS, required=False, allow_blank=False)

    def validate_category(self, slug: str) -> Category | None:
        if not slug:
            return None
        category = Category.objects.filter(slug=slug).first()
        if category is None:
            raise serializers.ValidationError(f"unknown category {slug!r}")
        return category


class MessageIn(serializers.Serializer):
    body = serializers.CharField(max_length=settings.WIDGET_MAX_MESSAGE_CHARS, trim_whitespace=False)
    client_id = serializers.CharField(max_length=100, required=False, allow_blank=True,
                                      help_text="the client's id for this message: a retried post is stored once")

    def validate_body(self, body: str) -> str:
        if not body.strip():
            raise serializers.ValidationError("the message is empty")
        return body


class RatingIn(serializers.Serializer):
    message_id = serializers.IntegerField(min_value=1, max_value=2**62)
    value = serializers.ChoiceField(choices=["up", "down"])


class ConversationSummaryOut(serializers.Serializer):
    conversation_id = serializers.IntegerField(source="pk")
    created_at = serializers.DateTimeField()
    subject = serializers.SerializerMethodField()
    ticket_status = serializers.SerializerMethodField()

    def get_subject(self, c: WidgetConversation) -> str:
        return c.ticket.subject if c.ticket is not None else ""

    def get_ticket_status(self, c: WidgetConversation) -> str | None:
        return c.ticket.status if c.ticket is not None else None


def conversation_payload(conversation: WidgetConversation, *, after: int = -1, token: str | None = None,
                         messages: list[Message] | None = None) -> dict[str, Any]:
    messages = selectors.widget_messages(conversation, after=after) if messages is None else messages
    out = {
        "conversation_id": conversation.pk, "verified": bool(conversation.subject),
        "messages": [message_dict(m) for m in messages],
        "cursor": messages[-1].turn_index if messages else after,
        "state": selectors.widget_state(conversation, timezone.now()),
    }
    if token is not None:
        out["token"] = token
    return out


def _reload(conversation_id: int) -> WidgetConversation:
    return WidgetConversation.objects.select_related("site_key", "ticket__category", "category").get(pk=conversation_id)


# ---------------------------------------------------------------------------------------------------- views


class _Refusals(APIView):
    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if isinstance(exc, Unauthorized):
            response["WWW-Authenticate"] = 'Bearer realm="sdrbot-widget"'
        return response


class WidgetView(_Refusals, APIView):
    authentication_classes = [SiteKeyAuthentication]
    permission_classes = [HasSiteKey]
    throttle_classes = [WidgetThrottle]
    parser_classes = [LimitedJSONParser]
    renderer_classes = [JSONRenderer]


class ConversationsView(WidgetView):
    """Start a conversation (POST) or list a verified customer's earlier ones (GET)."""

    @extend_schema(operation_id="conversation_start", request=StartIn, responses={201: ConversationOut},
                   summary="Start a conversation (optionally with a first message)")
    def post(self, request: WidgetRequest) -> Response:
        data = StartIn(data=request.data)
        data.is_valid(raise_exception=True)
        site_key = request.auth.site_key
        identity = identity_of(request, site_key, required=False)
        conversation, token = services.widget_conversation_start(
            site_key=site_key, identity=identity, name=data.validated_data.get("name", ""),
            email=data.validated_data.get("email", ""), category=data.validated_data.get("category"))
        if data.validated_data.get("message"):
            _post(conversation, data.validated_data["message"], "")
        return Response(conversation_payload(_reload(conversation.pk), token=token), status=status.HTTP_201_CREATED)

    @extend_schema(operation_id="conversations_list", responses={200: ConversationSummaryOut(many=True)},
                   summary="Earlier conversations of the verified customer (needs X-Identity-Token)")
    def get(self, request: WidgetRequest) -> Response:
        site_key = request.auth.site_key
        identity = identity_of(request, site_key, required=True)
        rows = selectors.conversations_of(site_key=site_key, subject=identity.subject)
        return Response(ConversationSummaryOut(rows, many=True).data)


class ResumeView(WidgetView):
    throttle_classes = [WidgetThrottle]

    @extend_schema(operation_id="conversation_resume", request=None, responses={200: ConversationOut},
                   summary="A new token for an earlier conversation of the verified customer")
    def post(self, request: WidgetRequest, conversation_id: int) -> Response:
        site_key = request.auth.site_key
        identity = identity_of(request, site_key, required=True)
        if conversation_id > 2**63 - 1:  # beyond bigint: no such row (and PostgreSQL would refuse the value)
            raise exceptions.NotFound("conversation_id: no such conversation of this customer")
        try:
            conversation, token = services.widget_token_resume(site_key=site_key, identity=identity,
                                                               conversation_id=conversation_id)
        except LookupError as exc:
            raise exceptions.NotFound("conversation_id: no such conversation of this customer") from exc
        return Response(conversation_payload(_reload(conversation.pk), token=token))


def _post(conversation: WidgetConversation, body: str, client_id: str) -> Message:
    try:
        return services.widget_message_post(conversation=conversation, body=body, client_message_id=client_id)
    except services.MessageRejected as exc:
        field, _, why = str(exc).partition(": ")
        raise exceptions.ValidationError({field or "body": [why or str(exc)]}) from exc


class ConversationView(WidgetView):
    permission_classes = [HasConversation]

    @extend_schema(operation_id="conversation_get", responses={200: ConversationOut},
                   summary="The conversation of the token: its messages and what the widget shows")
    def get(self, request: ConversationRequest) -> Response:
        return Response(conversation_payload(request.auth.conversation))


class MessagesView(WidgetView):
    permission_classes = [HasConversation]

    def get_throttles(self):
        return [ConversationThrottle()] if self.request.method == "POST" else super().get_throttles()

    @extend_schema(operation_id="messages_post", request=MessageIn, responses={201: ConversationOut},
                   summary="Post the customer's message")
    def post(self, request: ConversationRequest) -> Response:
        data = MessageIn(data=request.data)
        data.is_valid(raise_exception=True)
        conversation = request.auth.conversation
        first = conversation.ticket_id is None
        message = _post(conversation, data.validated_data["body"], data.validated_data.get("client_id", ""))
        if first:
            conversation = _reload(conversation.pk)  # the ticket was just created
        else:  # no extra query: the status message_receive left (reopened, maybe) is all that changed for the widget
            ticket = conversation.ticket
            assert ticket is not None  # ticket_id was set, so the descriptor gives the ticket or raises
            ticket.status = message.ticket.status
        return Response(conversation_payload(conversation, after=message.turn_index - 1, messages=[message]),
                        status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="messages_list", responses={200: ConversationOut},
        parameters=[
            OpenApiParameter("after", OpenApiTypes.INT, description="cursor: the last turn seen (-1: from the start)"),
            OpenApiParameter("wait", OpenApiTypes.NUMBER, description="long polling: wait up to this many seconds "
                             "(at most WIDGET_LONGPOLL_MAX_SECONDS) for something new"),
        ],
        summary="Messages after a cursor; with `wait`, a long poll (the fallback of the event stream)")
    def get(self, request: ConversationRequest) -> Response:
        after = _int_param(request, "after", -1, low=-1)
        wait = _float_param(request, "wait", 0.0)
        conversation = request.auth.conversation
        wait = min(max(wait, 0.0), settings.WIDGET_LONGPOLL_MAX_SECONDS)
        from conversations.live import conversation_key, ticket_key
        from conversations.live import hub as live_hub

        deadline = time.monotonic() + wait
        keys = [conversation_key(conversation.pk)]
        if conversation.ticket_id is not None:
            keys.append(ticket_key(conversation.ticket_id))
        with live_hub.watch(*keys) if wait > 0 else contextlib.nullcontext() as watch:
            start_probe = selectors.stream_probe(conversation)
            while True:
                messages = selectors.widget_messages(conversation, after=after)
                remaining = deadline - time.monotonic()
                if messages or remaining <= 0 or watch is None:
                    break
                # woken by a change (conversations.live), or polling every WIDGET_STREAM_POLL_SECONDS without it
                watch.wait(remaining, fallback=settings.WIDGET_STREAM_POLL_SECONDS)
                probe = selectors.stream_probe(conversation)
                if probe is None:
                    break
                if probe != start_probe:
                    conversation = _reload(conversation.pk)
                    messages = selectors.widget_messages(conversation, after=after)
                    break
        return Response(conversation_payload(conversation, after=after, messages=messages))


def _int_param(request: Request, name: str, default: int, *, low: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise exceptions.ValidationError({name: ["a whole number"]}) from exc
    if value < low or value > 2**31:
        raise exceptions.ValidationError({name: [f"between {low} and {2**31}"]})
    return value


def _float_param(request: Request, name: str, default: float) -> float:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise exceptions.ValidationError({name: ["a number of seconds"]}) from exc
    if value != value or value < 0:
        raise exceptions.ValidationError({name: ["a non-negative number of seconds"]})
    return value


class RatingView(WidgetView):
    permission_classes = [HasConversation]
    throttle_classes = [ConversationThrottle]

    @extend_schema(operation_id="reply_rate", request=RatingIn,
                   responses={200: inline_serializer("RatingOut", {"message_id": serializers.IntegerField(),
                                                                   "rating": serializers.CharField()})},
                   summary="Thumbs up or down on a bot reply (changeable)")
    def post(self, request: ConversationRequest) -> Response:
        data = RatingIn(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            services.widget_reply_rate(conversation=request.auth.conversation,
                                       message_id=data.validated_data["message_id"],
                                       thumbs_up=data.validated_data["value"] == "up")
        except LookupError as exc:
            raise exceptions.NotFound(str(exc)) from exc
        return Response({"message_id": data.validated_data["message_id"], "rating": data.validated_data["value"]})


class HandoffView(WidgetView):
    permission_classes = [HasConversation]
    throttle_classes = [ConversationThrottle]

    @extend_schema(operation_id="handoff", request=None, responses={200: ConversationOut},
                   summary="Talk to a person: the conversation goes to the team's queue")
    def post(self, request: ConversationRequest) -> Response:
        services.widget_handoff(conversation_id=request.auth.conversation.pk)
        return Response(conversation_payload(_reload(request.auth.conversation.pk)))


class StreamTokenView(WidgetView):
    permission_classes = [HasConversation]

    @extend_schema(operation_id="stream_token", request=None,
                   responses={200: inline_serializer("StreamTokenOut", {
                       "stream_token": serializers.CharField(), "expires_in": serializers.IntegerField()})},
                   summary="A short-lived token for the event stream's URL (EventSource cannot send headers)")
    def post(self, request: ConversationRequest) -> Response:
        token = signing.dumps({"c": request.auth.conversation.pk}, salt=STREAM_SALT, compress=False)
        return Response({"stream_token": token, "expires_in": settings.WIDGET_STREAM_TOKEN_SECONDS})


class EventStreamRenderer(BaseRenderer):
    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return f"event: error\ndata: {json.dumps(data)}\n\n".encode()


def _sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class StreamView(_Refusals, APIView):
    """Server-sent events of one conversation, for ``WIDGET_STREAM_SECONDS``; then an ``end`` event and the client
    reconnects with a new stream token and its cursor (a gunicorn thread is held while a stream is open)."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes = [IPOnlyThrottle]
    renderer_classes = [EventStreamRenderer, JSONRenderer]

    @extend_schema(
        operation_id="stream",
        parameters=[OpenApiParameter("stream_token", OpenApiTypes.STR, required=True),
                    OpenApiParameter("after", OpenApiTypes.INT, description="cursor: the last turn seen")],
        responses={(200, "text/event-stream"): OpenApiResponse(
            OpenApiTypes.STR, description="events: `message` (a message), `state` (what the widget shows), `end`")},
        summary="Server-sent events: new messages and state changes")
    def get(self, request: Request):
        try:
            claims = signing.loads(request.query_params.get("stream_token", ""), salt=STREAM_SALT,
                                   max_age=settings.WIDGET_STREAM_TOKEN_SECONDS)
            conversation = _reload(int(claims["c"]))
        except (signing.BadSignature, KeyError, TypeError, ValueError, WidgetConversation.DoesNotExist) as exc:
            raise Unauthorized("stream_token: invalid or expired; ask for a new one") from exc
        if not conversation.site_key.active:
            raise Unauthorized("stream_token: the site key is inactive")
        origin_check(request, conversation.site_key)
        after = _int_param(request, "after", -1, low=-1)
        response = StreamingHttpResponse(_events(conversation, after), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response


def _events(conversation: WidgetConversation, after: int) -> Iterator[bytes]:
    """The stream's events. It reads the database when conversations.live says its ticket or conversation changed,
    and otherwise once per ``KEEPALIVE_SECONDS`` (every ``WIDGET_STREAM_POLL_SECONDS`` while the listener is down),
    giving its database connection back while it waits. Every ``LIVENESS_SECONDS`` it writes an empty line (ignored by
    EventSource): writing is how a server thread learns that the widget went away, and a gone stream must give its
    thread back at once, not at the next keepalive."""
    from django.db import connection

    from conversations.live import conversation_key, ticket_key
    from conversations.live import hub as live_hub

    yield b"retry: 2000\n\n"
    last_state = None
    probe = None
    deadline = time.monotonic() + settings.WIDGET_STREAM_SECONDS
    last_sent = time.monotonic()
    with live_hub.watch(conversation_key(conversation.pk)) as watch:
        read = True
        while True:
            if read:
                last_read = time.monotonic()
                if conversation.ticket_id is not None:
                    watch.add(ticket_key(conversation.ticket_id))  # before the read: no change can slip between
                current = selectors.stream_probe(conversation)
                if current is None:
                    return
                if conversation.ticket_id is None and current[0] is not None:
                    conversation = _reload(conversation.pk)  # the first message created the ticket: watch it now
                    assert conversation.ticket_id is not None  # the probe just read it
                    watch.add(ticket_key(conversation.ticket_id))
                    current = selectors.stream_probe(conversation)
                    if current is None:
                        return
                if current != probe:
                    probe = current
                    conversation = _reload(conversation.pk)
                    for m in selectors.widget_messages(conversation, after=after):
                        after = m.turn_index
                        yield _sse("message", message_dict(m), after)
                        last_sent = time.monotonic()
                    state = selectors.widget_state(conversation, timezone.now())
                    key = _state_key(state)
                    if key != last_state:
                        last_state = key
                        yield _sse("state", state)
                        last_sent = time.monotonic()
                if live_hub.listening.is_set() and not connection.in_atomic_block:
                    connection.close()  # an idle stream holds no database connection (back to the pool)
            now = time.monotonic()
            if now >= deadline:
                yield _sse("end", {"after": after})
                return
            if now - last_sent >= KEEPALIVE_SECONDS:
                yield b": keepalive\n\n"
                last_sent = now
            else:
                yield b"\n"
            notified = watch.wait(max(min(LIVENESS_SECONDS, deadline - now), 0.0),
                                  fallback=settings.WIDGET_STREAM_POLL_SECONDS)
            # a lost notification (a pooler that drops LISTEN) costs at most KEEPALIVE_SECONDS, never a stuck stream
            read = notified or not live_hub.listening.is_set() or time.monotonic() - last_read >= KEEPALIVE_SECONDS


def _state_key(state: dict[str, Any]) -> tuple:
    # expected_reply_by moves with the clock; a new state event only when something a customer sees changes
    a = state.get("availability") or {}
    return state["status"], state["ticket_status"], a.get("open_now"), a.get("opens_at")


def cors_origin_allowed(sender, request, **kwargs) -> bool:
    """django-cors-headers' ``check_request_enabled`` hook: CORS headers only for origins some active site key
    allows (the per-site check is :func:`origin_check`, on every request)."""
    origin = request.headers.get("Origin")
    return bool(origin) and selectors.origin_allowed_anywhere(origin)


def schema_public_only(endpoints: list, **kwargs) -> list:
    """drf-spectacular preprocessing hook: the published schema holds the public widget API only."""
    return [e for e in endpoints if e[0].startswith("/api/widget/v1/") and "/schema/" not in e[0] and "/docs/" not in e[0]]
