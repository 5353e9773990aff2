from django.urls import path

from crm import views

app_name = "leads"
urlpatterns = [
    path("", views.leads, name="list"),
    path("<int:lead_id>/", views.lead_detail, name="lead"),
    path("outbox/", views.dead_writes, name="outbox"),
    path("outbox/<int:write_id>/redeliver/", views.redeliver, name="redeliver"),
    path("settings/", views.sales_settings, name="settings"),
]
