"""The public REST API for booking platforms."""

from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "Public API"

    def ready(self) -> None:
        from api import schema  # noqa: F401  registers the token scheme with drf-spectacular
