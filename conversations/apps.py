from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from corsheaders.signals import check_request_enabled

        from conversations.api import cors_origin_allowed

        check_request_enabled.connect(cors_origin_allowed, dispatch_uid="widget-cors")
