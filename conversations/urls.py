"""URLs of the public widget API (``/api/widget/v1/``) and the demo page."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from conversations import api

app_name = "widget-api"
urlpatterns = [
    path("conversations", api.ConversationsView.as_view(), name="conversations"),
    path("conversations/<int:conversation_id>/resume", api.ResumeView.as_view(), name="resume"),
    path("conversation", api.ConversationView.as_view(), name="conversation"),
    path("conversation/messages", api.MessagesView.as_view(), name="messages"),
    path("conversation/ratings", api.RatingView.as_view(), name="ratings"),
    path("conversation/handoff", api.HandoffView.as_view(), name="handoff"),
    path("conversation/stream-token", api.StreamTokenView.as_view(), name="stream-token"),
    path("conversation/stream", api.StreamView.as_view(), name="stream"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="widget-api:schema"), name="docs"),
]
