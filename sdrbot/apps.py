from django.apps import AppConfig


class SdrbotConfig(AppConfig):
    name = "sdrbot"
    verbose_name = "sdrbot"
