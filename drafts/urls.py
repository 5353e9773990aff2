from django.contrib.auth.views import LogoutView
from django.urls import path

from drafts import views

app_name = "console"
urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("login/", views.ConsoleLoginView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(next_page="console:login"), name="logout"),
    path("tickets/<int:ticket_id>/", views.ticket_detail, name="ticket"),
    path("tickets/<int:ticket_id>/send/", views.ticket_send, name="send"),
    path("tickets/<int:ticket_id>/feedback/", views.ticket_feedback, name="feedback"),
    path("tickets/<int:ticket_id>/draft/<str:action>/", views.draft_action, name="draft-action"),
    path("tickets/<int:ticket_id>/<str:action>/", views.ticket_action, name="ticket-action"),
    path("replies/<int:message_id>/diff/", views.reply_diff, name="diff"),
    path("datasets/", views.datasets, name="datasets"),
    path("rollout/", views.rollout_dashboard, name="rollout"),
    path("rollout/<int:category_id>/phase/", views.rollout_phase, name="rollout-phase"),
    path("rollout/<int:category_id>/history/", views.rollout_history, name="rollout-history"),
    path("flagged/", views.flagged, name="flagged"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="dataset"),
]
