from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from conversations.views import demo_page
from sdrbot.health import healthz

admin.site.site_header = "sdrbot administration"
admin.site.site_title = "sdrbot"

urlpatterns = [
    path("", RedirectView.as_view(url="/console/", permanent=False)),
    path("console/leads/", include("crm.urls")),
    path("console/", include("drafts.urls")),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("knowledge/", include("knowledge.urls")),
    path("api/widget/v1/", include("conversations.urls")),
    path("demo/", demo_page, name="demo"),
]
